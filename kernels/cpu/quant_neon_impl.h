// The NEON body of matmul_q, included by quant_neon.cpp (baseline aarch64:
// int8 products by widening multiplies) and quant_neon_dot.cpp (compiled
// with +dotprod: sdot). Everything but the one entry point is file-local, so
// the two copies never meet at link time.
//
// Layout. The activation scratch is octet-interleaved for the x86 paths
// (quant_impl.h). For each k-panel and token tile, this body first copies a
// panel of the token rows back into element order on the stack (a 4-byte
// unit transpose, once per task, panel and token; each task has at least 16
// weight rows to amortise it). Weights are then used as stored, with no
// shuffles: block b's 32 int8 weights are two vectors; I4 blocks are one
// vector whose low nibbles are elements 0..15 and high nibbles 16..31.
//
// Products. Per block and token, two 16-byte dot steps leave the block's
// sum spread over the 4 lanes of an int32 vector; four blocks' vectors are
// folded by two pairwise adds into one vector of 4 block sums. The zero
// point is applied there in integers (sum - z * sum(x), exact), then one
// convert and one FMA with d * scale accumulate 4 blocks in float.
//  sdot:  vdotq_s32 adds 4 products of 4 consecutive bytes per lane.
//  plain: vmull_s8 + vmlal_high_s8 give 8 int16 sums of 2 products (at most
//         2 * 128 * 127 = 32512, no overflow), vpadalq_s16 widens them.
// I4 nibbles (0..15) are used as signed bytes; the zero point (8, or the
// stored one) is the integer correction above.
//
// Order of operations depends only on the shapes (panels, groups of 4
// blocks, remaining single blocks), never on the thread count.
#pragma once

#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/quant_impl.h"

namespace llm::cpu::detail {

namespace {

constexpr int64_t kPanelBlocks = 32;  // blocks of 32 per k-panel (1 KiB of int8 per token)
constexpr int64_t kTaskRows = 64;     // weight rows whose scales are expanded at once
constexpr int kMaxT = 4;              // tokens per register tile

inline int32x4_t dot16(int32x4_t acc, int8x16_t w, int8x16_t x) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, w, x);
#else
  int16x8_t p = vmull_s8(vget_low_s8(w), vget_low_s8(x));
  p = vmlal_high_s8(p, w, x);
  return vpadalq_s16(acc, p);
#endif
}

// One block's weights as two vectors of 16 signed bytes, in element order.
struct BlockW {
  int8x16_t lo, hi;
};

inline BlockW load_block(DType dtype, const uint8_t *row, int64_t b) {
  if (dtype == DType::I8) {
    const auto *p = reinterpret_cast<const int8_t *>(row + b * kActBlock);
    return {vld1q_s8(p), vld1q_s8(p + 16)};
  }
  const uint8x16_t v = vld1q_u8(row + b * (kActBlock / 2));
  return {vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))), vreinterpretq_s8_u8(vshrq_n_u8(v, 4))};
}

inline int32x4_t block_dot(const BlockW &w, const int8_t *x) {
  return dot16(dot16(vdupq_n_s32(0), w.lo, vld1q_s8(x)), w.hi, vld1q_s8(x + 16));
}

// Per-block float scales and int32 zero points of rows [j0, j0 + rows) over
// the blocks [b0, b0 + nbk) of a panel: sw[r][b], zw[r][b].
struct PanelScales {
  float sw[kTaskRows][kPanelBlocks];
  int32_t zw[kTaskRows][kPanelBlocks];
};

void expand_scales(const QMatmulArgs &a, int64_t j0, int64_t rows, int64_t b0, int64_t nbk, PanelScales &ps) {
  const int64_t per_group = a.group / kActBlock;
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t *s = a.scales + (j0 + r) * a.groups;
    const uint8_t *z = a.zeros ? a.zeros + (j0 + r) * a.groups : nullptr;
    for (int64_t b = 0; b < nbk;) {
      const int64_t g = (b0 + b) / per_group;
      const int64_t end = std::min(nbk, (g + 1) * per_group - b0);
      const float sv = f16_to_f32(s[g]);
      int32_t zv = a.dtype == DType::I8 ? 0 : 8;
      if (z) zv = a.dtype == DType::I8 ? static_cast<int32_t>(static_cast<int8_t>(z[g])) : z[g];
      for (; b < end; ++b) {
        ps.sw[r][b] = sv;
        ps.zw[r][b] = zv;
      }
    }
  }
}

// Copies blocks [b0, b0 + nbk) of token t's quantized row into element order.
void gather_acts(const Acts &x, int64_t t, int64_t b0, int64_t nbk, int8_t *dst) {
  const int8_t *q = x.q + t * x.q_row;
  for (int64_t b = 0; b < nbk; ++b)
    for (int64_t e = 0; e < kActBlock; e += 4) std::memcpy(dst + b * kActBlock + e, q + act_unit_offset(b0 + b, e), 4);
}

// Rows j..j+R-1 against tokens t0..t0+T-1 over one panel.
template <int R, int T>
void tile(const QMatmulArgs &a, int64_t j, int64_t jt, int64_t t0, int64_t b0, int64_t nbk, const PanelScales &ps,
          const int8_t (*xs)[kPanelBlocks * kActBlock]) {
  const bool has_zero = a.dtype == DType::I4 || a.zeros != nullptr;
  float32x4_t acc[R][T];
  float rest[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0), rest[r][t] = 0.0f;
  const uint8_t *wrow[R];
  for (int r = 0; r < R; ++r) wrow[r] = a.q + (j + r) * a.row_bytes;
  int64_t b = 0;
  for (; b + 4 <= nbk; b += 4) {
    for (int r = 0; r < R; ++r) {
      const int64_t rr = j + r - jt;
      BlockW w[4];
      for (int i = 0; i < 4; ++i) w[i] = load_block(a.dtype, wrow[r], b0 + b + i);
      const float32x4_t sw = vld1q_f32(&ps.sw[rr][b]);
      const int32x4_t zw = vld1q_s32(&ps.zw[rr][b]);
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const int8_t *x = xs[t] + b * kActBlock;
        const int32x4_t p0 = block_dot(w[0], x), p1 = block_dot(w[1], x + 32);
        const int32x4_t p2 = block_dot(w[2], x + 64), p3 = block_dot(w[3], x + 96);
        int32x4_t s = vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3));
        const int64_t xb = (t0 + t) * a.x.nb + b0 + b;
        if (has_zero) s = vmlsq_s32(s, zw, vld1q_s32(a.x.sum + xb));
        const float32x4_t coef = vmulq_f32(vld1q_f32(a.x.d + xb), sw);
        acc[r][t] = vfmaq_f32(acc[r][t], vcvtq_f32_s32(s), coef);
      }
    }
  }
  for (; b < nbk; ++b)
    for (int r = 0; r < R; ++r) {
      const int64_t rr = j + r - jt;
      const BlockW w = load_block(a.dtype, wrow[r], b0 + b);
      for (int t = 0; t < T; ++t) {
        const int64_t xb = (t0 + t) * a.x.nb + b0 + b;
        const int32_t s = vaddvq_s32(block_dot(w, xs[t] + b * kActBlock)) - ps.zw[rr][b] * a.x.sum[xb];
        rest[r][t] += static_cast<float>(s) * (a.x.d[xb] * ps.sw[rr][b]);
      }
    }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      const float s = vaddvq_f32(acc[r][t]) + rest[r][t];
      float *o = a.out + (t0 + t) * a.ldo + j + r;
      // The first panel starts from the bias; later panels accumulate.
      *o = b0 > 0 ? *o + s : (a.bias ? a.bias[j + r] + s : s);
    }
}

// Rows per tile for a token tile of T: decode streams 4 rows at once.
template <int T>
void token_tile(const QMatmulArgs &a, int64_t j0, int64_t j1, int64_t t0, int64_t b0, int64_t nbk,
                const PanelScales &ps, const int8_t (*xs)[kPanelBlocks * kActBlock]) {
  constexpr int R = T == 1 ? 4 : T == 2 ? 2 : 1;
  int64_t j = j0;
  for (; j + R <= j1; j += R) tile<R, T>(a, j, j0, t0, b0, nbk, ps, xs);
  if constexpr (R > 1) {
    for (; j < j1; ++j) tile<1, T>(a, j, j0, t0, b0, nbk, ps, xs);
  }
}

void rows_impl(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  PanelScales ps;
  alignas(16) int8_t xs[kMaxT][kPanelBlocks * kActBlock];
  for (int64_t jt = j0; jt < j1; jt += kTaskRows) {
    const int64_t jt1 = std::min(j1, jt + kTaskRows);
    for (int64_t b0 = 0; b0 < a.x.nb; b0 += kPanelBlocks) {
      const int64_t nbk = std::min(kPanelBlocks, a.x.nb - b0);
      expand_scales(a, jt, jt1 - jt, b0, nbk, ps);
      for (int64_t t0 = 0; t0 < a.n; t0 += kMaxT) {
        const int64_t tn = std::min<int64_t>(kMaxT, a.n - t0);
        for (int64_t t = 0; t < tn; ++t) gather_acts(a.x, t0 + t, b0, nbk, xs[t]);
        switch (tn) {
          case 1: token_tile<1>(a, jt, jt1, t0, b0, nbk, ps, xs); break;
          case 2: token_tile<2>(a, jt, jt1, t0, b0, nbk, ps, xs); break;
          case 3: token_tile<3>(a, jt, jt1, t0, b0, nbk, ps, xs); break;
          default: token_tile<4>(a, jt, jt1, t0, b0, nbk, ps, xs); break;
        }
      }
    }
  }
}

}  // namespace

}  // namespace llm::cpu::detail
