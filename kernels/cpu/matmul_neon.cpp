// NEON matmul bodies (aarch64; see matmul.cpp for the task split and the
// scalar reference). The same two strategies as matmul_avx2.cpp:
//
//  n <= kMaxDotTokens (decode, short prompts): every weight row is streamed
//  once and dotted with all n token rows, weights converted to fp32 in
//  registers, several rows in flight.
//
//  larger n (prefill): 8 weight rows x kKc columns are converted and
//  transposed into a packed panel (8 KiB on the stack), then an 8-token x
//  8-row register block (16 of the 32 vector registers as accumulators)
//  sweeps every token over it. Each weight is read and converted once.
#include <algorithm>

#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/neon_util.h"

namespace llm::cpu::detail {

namespace {

using neon::WBF16;
using neon::WF16;
using neon::WF32;

constexpr int64_t kMaxDotTokens = 8;
constexpr int kNv = 2;               // vectors per panel row
constexpr int64_t kPanel = 4 * kNv;  // weight rows per packed panel
constexpr int64_t kKc = 256;         // k columns per packed panel
constexpr int kMr = 8;               // tokens per register block

// ---- decode: dot products -------------------------------------------------

// out[t][j] for NT tokens, R weight rows at a time, U vectors per row per
// step (R*NT*U accumulators hide the FMA latency).
template <class W, int NT, int R, int U>
void dot_rows(const MatmulArgs &a, int64_t j0, int64_t j1) {
  const auto *w = static_cast<const typename W::T *>(a.W);
  const int64_t k = a.k;
  const float *x[NT];
  for (int t = 0; t < NT; ++t) x[t] = a.x + t * a.ldx;
  int64_t j = j0;
  for (; j + R <= j1; j += R) {
    const typename W::T *wr[R];
    for (int r = 0; r < R; ++r) wr[r] = w + (j + r) * k;
    float32x4_t acc[R][NT][U];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < NT; ++t)
        for (int u = 0; u < U; ++u) acc[r][t][u] = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 * U <= k; i += 4 * U) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) {
          const float32x4_t wv = W::load4(wr[r] + i + 4 * u);
#pragma GCC unroll 8
          for (int t = 0; t < NT; ++t) acc[r][t][u] = vfmaq_f32(acc[r][t][u], vld1q_f32(x[t] + i + 4 * u), wv);
        }
    }
    for (; i + 4 <= k; i += 4)
      for (int r = 0; r < R; ++r) {
        const float32x4_t wv = W::load4(wr[r] + i);
        for (int t = 0; t < NT; ++t) acc[r][t][0] = vfmaq_f32(acc[r][t][0], vld1q_f32(x[t] + i), wv);
      }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < NT; ++t) {
        float32x4_t s = acc[r][t][0];
        for (int u = 1; u < U; ++u) s = vaddq_f32(s, acc[r][t][u]);
        float v = vaddvq_f32(s);
        for (int64_t ii = i; ii < k; ++ii) v += x[t][ii] * W::load1(wr[r] + ii);
        a.out[t * a.ldo + j + r] = a.bias ? v + a.bias[j + r] : v;
      }
  }
  if constexpr (R > 1) {
    if (j < j1) dot_rows<W, NT, 1, 4>(a, j, j1);  // leftover rows
  }
}

template <class W>
void dot_rows_any(const MatmulArgs &a, int64_t j0, int64_t j1) {
  switch (a.n) {
    case 1: return dot_rows<W, 1, 4, 2>(a, j0, j1);
    case 2: return dot_rows<W, 2, 4, 1>(a, j0, j1);
    case 3: return dot_rows<W, 3, 2, 1>(a, j0, j1);
    case 4: return dot_rows<W, 4, 2, 1>(a, j0, j1);
    case 5: return dot_rows<W, 5, 1, 2>(a, j0, j1);
    case 6: return dot_rows<W, 6, 1, 2>(a, j0, j1);
    case 7: return dot_rows<W, 7, 1, 2>(a, j0, j1);
    default: return dot_rows<W, 8, 1, 2>(a, j0, j1);
  }
}

// ---- prefill: packed panels ------------------------------------------------

// Transposes the 4x4 block held in four row vectors.
inline void transpose4(float32x4_t r[4]) {
  const float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
  const float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
  const auto lo = [](float32x4_t a, float32x4_t b) {
    return vreinterpretq_f32_f64(vzip1q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b)));
  };
  const auto hi = [](float32x4_t a, float32x4_t b) {
    return vreinterpretq_f32_f64(vzip2q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b)));
  };
  r[0] = lo(t0, t2);
  r[1] = lo(t1, t3);
  r[2] = hi(t0, t2);
  r[3] = hi(t1, t3);
}

// panel[c][r] = W[row r][c] (fp32) for c < kc, r < kPanel; rows >= `rows`
// are zero. `w` points at row 0, column kb; `ldw` is the weight row length.
template <class W>
void pack_panel(const typename W::T *w, int64_t ldw, int64_t rows, int64_t kc, float *panel) {
  for (int64_t quad = 0; quad < kPanel; quad += 4) {
    const int64_t valid = std::clamp<int64_t>(rows - quad, 0, 4);
    const typename W::T *row = w + quad * ldw;
    int64_t c = 0;
    for (; c + 4 <= kc; c += 4) {
      float32x4_t v[4];
      for (int64_t r = 0; r < 4; ++r) v[r] = r < valid ? W::load4(row + r * ldw + c) : vdupq_n_f32(0);
      transpose4(v);
      for (int r = 0; r < 4; ++r) vst1q_f32(panel + (c + r) * kPanel + quad, v[r]);
    }
    for (; c < kc; ++c)
      for (int64_t r = 0; r < 4; ++r) panel[c * kPanel + quad + r] = r < valid ? W::load1(row + r * ldw + c) : 0.0f;
  }
}

// out[r][0..cols) (+)= sum_c x[r][c] * panel[c][0..cols) for MR tokens.
// init != nullptr: start from init (bias or zeros, first k-tile); otherwise
// accumulate onto out (later k-tiles).
template <int MR>
void panel_kernel(const float *panel, int64_t kc, const float *x, int64_t ldx, float *out, int64_t ldo,
                  int64_t cols, const float *init) {
  float32x4_t acc[MR][kNv];
  const bool full = cols == kPanel;
  for (int r = 0; r < MR; ++r) {
    float part[kPanel] = {};
    const float *src = init ? init : out + r * ldo;
    if (!init && !full) std::copy(src, src + cols, part), src = part;
    for (int v = 0; v < kNv; ++v) acc[r][v] = vld1q_f32(src + 4 * v);
  }
  for (int64_t c = 0; c < kc; ++c) {
    float32x4_t b[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) b[v] = vld1q_f32(panel + c * kPanel + 4 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const float xv = x[r * ldx + c];
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[r][v] = vfmaq_n_f32(acc[r][v], b[v], xv);
    }
  }
  for (int r = 0; r < MR; ++r) {
    if (full) {
      for (int v = 0; v < kNv; ++v) vst1q_f32(out + r * ldo + 4 * v, acc[r][v]);
    } else {
      float part[kPanel];
      for (int v = 0; v < kNv; ++v) vst1q_f32(part + 4 * v, acc[r][v]);
      std::copy(part, part + cols, out + r * ldo);
    }
  }
}

// The last `left` (< kMr) tokens, through the kernel made for that many.
template <int MR>
void sweep_tail(const float *panel, int64_t kc, const float *x, int64_t ldx, float *out, int64_t ldo,
                int64_t cols, const float *init, int64_t left) {
  if constexpr (MR > 0) {
    if (left == MR) return panel_kernel<MR>(panel, kc, x, ldx, out, ldo, cols, init);
    sweep_tail<MR - 1>(panel, kc, x, ldx, out, ldo, cols, init, left);
  }
}

void sweep_tokens(const MatmulArgs &a, const float *panel, int64_t kb, int64_t kc, int64_t jb, int64_t cols,
                  const float *init) {
  int64_t i = 0;
  const float *x = a.x + kb;
  float *out = a.out + jb;
  for (; i + kMr <= a.n; i += kMr)
    panel_kernel<kMr>(panel, kc, x + i * a.ldx, a.ldx, out + i * a.ldo, a.ldo, cols, init);
  sweep_tail<kMr - 1>(panel, kc, x + i * a.ldx, a.ldx, out + i * a.ldo, a.ldo, cols, init, a.n - i);
}

template <class W>
void gemm_rows(const MatmulArgs &a, int64_t j0, int64_t j1) {
  alignas(16) float panel[kKc * kPanel];
  const auto *w = static_cast<const typename W::T *>(a.W);
  for (int64_t jb = j0; jb < j1; jb += kPanel) {
    const int64_t cols = std::min(kPanel, j1 - jb);
    alignas(16) float init[kPanel] = {};
    if (a.bias) std::copy(a.bias + jb, a.bias + jb + cols, init);
    for (int64_t kb = 0; kb < a.k; kb += kKc) {
      const int64_t kc = std::min(kKc, a.k - kb);
      pack_panel<W>(w + jb * a.k + kb, a.k, cols, kc, panel);
      sweep_tokens(a, panel, kb, kc, jb, cols, kb == 0 ? init : nullptr);
    }
  }
}

template <class W>
void rows_for_type(const MatmulArgs &a, int64_t j0, int64_t j1) {
  if (a.n <= kMaxDotTokens) return dot_rows_any<W>(a, j0, j1);
  gemm_rows<W>(a, j0, j1);
}

template <class W>
void convert_row(const void *src, int64_t n, float *dst) {
  const auto *s = static_cast<const typename W::T *>(src);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, W::load4(s + i));
  for (; i < n; ++i) dst[i] = W::load1(s + i);
}

}  // namespace

void matmul_rows_neon(const MatmulArgs &a, int64_t j0, int64_t j1) {
  switch (a.wtype) {
    case DType::F32: return rows_for_type<WF32>(a, j0, j1);
    case DType::F16: return rows_for_type<WF16>(a, j0, j1);
    default: return rows_for_type<WBF16>(a, j0, j1);  // BF16 (checked by matmul)
  }
}

void convert_row_neon(const void *src, DType dtype, int64_t n, float *dst) {
  switch (dtype) {
    case DType::F16: return convert_row<WF16>(src, n, dst);
    case DType::BF16: return convert_row<WBF16>(src, n, dst);
    default: return convert_row_scalar(src, dtype, n, dst);  // F32 copy; rejects the rest
  }
}

}  // namespace llm::cpu::detail
