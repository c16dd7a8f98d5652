// AVX2/FMA matmul bodies (see matmul.cpp for the task split).
//
//  n <= kMaxDotTokens (decode, short prompts): every weight row is streamed
//  once and dotted with all n token rows; weights are converted to fp32 in
//  registers. Memory-bound, so the aim is bandwidth: several rows in flight.
//
//  larger n (prefill): 16 weight rows x kKc columns are converted and
//  transposed into a packed panel (16 KiB on the stack, stays in L1), then a
//  6-token x 16-row register-blocked kernel (12 accumulators) sweeps every
//  token over it. Each weight is read and converted once per call; the
//  packing cost is amortised over the n tokens, which is why small n takes
//  the dot path instead.
#include <algorithm>

#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/kernels_impl.h"

namespace llm::cpu::detail {

namespace {

using avx2::hsum;
using avx2::WBF16;
using avx2::WF16;
using avx2::WF32;

constexpr int64_t kMaxDotTokens = 8;
constexpr int kNv = 2;               // vectors per panel row
constexpr int64_t kPanel = 8 * kNv;  // weight rows per packed panel
constexpr int64_t kKc = 256;         // k columns per packed panel
constexpr int kMr = 6;               // tokens per register block (2*6 accumulators)

// ---- decode: dot products -------------------------------------------------

// out[t][j] for NT tokens, R weight rows at a time, U vectors per row per
// step. Each converted weight vector is reused NT times; R*NT*U >= 4
// accumulators hide FMA latency, and R > 1 streams several rows at once,
// which measurably raises the bandwidth one core draws from memory.
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
    __m256 acc[R][NT][U];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < NT; ++t)
        for (int u = 0; u < U; ++u) acc[r][t][u] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 * U <= k; i += 8 * U) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) {
          const __m256 wv = W::load8(wr[r] + i + 8 * u);
#pragma GCC unroll 8
          for (int t = 0; t < NT; ++t)
            acc[r][t][u] = _mm256_fmadd_ps(_mm256_loadu_ps(x[t] + i + 8 * u), wv, acc[r][t][u]);
        }
    }
    for (; i + 8 <= k; i += 8)
      for (int r = 0; r < R; ++r) {
        const __m256 wv = W::load8(wr[r] + i);
        for (int t = 0; t < NT; ++t) acc[r][t][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x[t] + i), wv, acc[r][t][0]);
      }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < NT; ++t) {
        __m256 s = acc[r][t][0];
        for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[r][t][u]);
        float v = hsum(s);
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
    case 1: return dot_rows<W, 1, 4, 1>(a, j0, j1);
    case 2: return dot_rows<W, 2, 2, 2>(a, j0, j1);
    case 3: return dot_rows<W, 3, 1, 2>(a, j0, j1);
    case 4: return dot_rows<W, 4, 1, 2>(a, j0, j1);
    case 5: return dot_rows<W, 5, 1, 1>(a, j0, j1);
    case 6: return dot_rows<W, 6, 1, 1>(a, j0, j1);
    case 7: return dot_rows<W, 7, 1, 1>(a, j0, j1);
    default: return dot_rows<W, 8, 1, 1>(a, j0, j1);
  }
}

// ---- prefill: packed panels ------------------------------------------------

// In-place transpose of an 8x8 block held in eight row vectors.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// panel[c][r] = W[row r][c] (fp32) for c < kc, r < kPanel; rows >= `rows`
// are zero so the kernel can always compute full 16-wide vectors.
// `w` points at row 0, column kb; `ldw` is the weight row length.
template <class W>
void pack_panel(const typename W::T *w, int64_t ldw, int64_t rows, int64_t kc, float *panel) {
  for (int64_t half = 0; half < kPanel; half += 8) {
    const int64_t valid = std::clamp<int64_t>(rows - half, 0, 8);
    const typename W::T *row = w + half * ldw;
    int64_t c = 0;
    for (; c + 8 <= kc; c += 8) {
      __m256 v[8];
      for (int64_t r = 0; r < 8; ++r) v[r] = r < valid ? W::load8(row + r * ldw + c) : _mm256_setzero_ps();
      transpose8(v);
      for (int r = 0; r < 8; ++r) _mm256_store_ps(panel + (c + r) * kPanel + half, v[r]);
    }
    for (; c < kc; ++c)
      for (int64_t r = 0; r < 8; ++r) panel[c * kPanel + half + r] = r < valid ? W::load1(row + r * ldw + c) : 0.0f;
  }
}

// Lane masks selecting the first `cols` columns of a panel row.
struct ColMask {
  __m256i m[kNv];
  explicit ColMask(int64_t cols) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int v = 0; v < kNv; ++v) m[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols) - 8 * v), idx);
  }
};

// out[r][0..cols) (+)= sum_c x[r][c] * panel[c][0..cols) for MR tokens.
// init != nullptr: start from init (bias or zeros, first k-tile);
// otherwise accumulate onto out (later k-tiles).
template <int MR>
void panel_kernel(const float *panel, int64_t kc, const float *x, int64_t ldx,
                  float *out, int64_t ldo, int64_t cols, const float *init) {
  __m256 acc[MR][kNv];
  const bool full = cols == kPanel;
  const ColMask mask(cols);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) {
      if (init)
        acc[r][v] = _mm256_load_ps(init + 8 * v);
      else if (full)
        acc[r][v] = _mm256_loadu_ps(out + r * ldo + 8 * v);
      else
        acc[r][v] = _mm256_maskload_ps(out + r * ldo + 8 * v, mask.m[v]);
    }
  for (int64_t c = 0; c < kc; ++c) {
    __m256 b[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) b[v] = _mm256_load_ps(panel + c * kPanel + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_broadcast_ss(x + r * ldx + c);
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[r][v] = _mm256_fmadd_ps(xv, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) {
      if (full)
        _mm256_storeu_ps(out + r * ldo + 8 * v, acc[r][v]);
      else
        _mm256_maskstore_ps(out + r * ldo + 8 * v, mask.m[v], acc[r][v]);
    }
}

// Runs the last `left` (< kMr) tokens through the kernel instantiated for
// exactly that many, so no accumulator is wasted on missing tokens.
template <int MR>
void sweep_tail(const float *panel, int64_t kc, const float *x, int64_t ldx, float *out, int64_t ldo,
                int64_t cols, const float *init, int64_t left) {
  if constexpr (MR > 0) {
    if (left == MR) return panel_kernel<MR>(panel, kc, x, ldx, out, ldo, cols, init);
    sweep_tail<MR - 1>(panel, kc, x, ldx, out, ldo, cols, init, left);
  }
}

// All n tokens against one packed panel, kMr tokens at a time.
void sweep_tokens(const MatmulArgs &a, const float *panel, int64_t kb, int64_t kc,
                  int64_t jb, int64_t cols, const float *init) {
  int64_t i = 0;
  const float *x = a.x + kb;
  float *out = a.out + jb;
  for (; i + kMr <= a.n; i += kMr)
    panel_kernel<kMr>(panel, kc, x + i * a.ldx, a.ldx, out + i * a.ldo, a.ldo, cols, init);
  sweep_tail<kMr - 1>(panel, kc, x + i * a.ldx, a.ldx, out + i * a.ldo, a.ldo, cols, init, a.n - i);
}

template <class W>
void gemm_rows(const MatmulArgs &a, int64_t j0, int64_t j1) {
  alignas(32) float panel[kKc * kPanel];
  const auto *w = static_cast<const typename W::T *>(a.W);
  for (int64_t jb = j0; jb < j1; jb += kPanel) {
    const int64_t cols = std::min(kPanel, j1 - jb);
    alignas(32) float init[kPanel] = {};
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
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, W::load8(s + i));
  for (; i < n; ++i) dst[i] = W::load1(s + i);
}

}  // namespace

void matmul_rows_avx2(const MatmulArgs &a, int64_t j0, int64_t j1) {
  switch (a.wtype) {
    case DType::F32: return rows_for_type<WF32>(a, j0, j1);
    case DType::F16: return rows_for_type<WF16>(a, j0, j1);
    default: return rows_for_type<WBF16>(a, j0, j1);  // BF16 (checked by matmul)
  }
}

void convert_row_avx2(const void *src, DType dtype, int64_t n, float *dst) {
  switch (dtype) {
    case DType::F16: return convert_row<WF16>(src, n, dst);
    case DType::BF16: return convert_row<WBF16>(src, n, dst);
    default: return convert_row_scalar(src, dtype, n, dst);  // F32 copy; rejects the rest
  }
}

}  // namespace llm::cpu::detail
