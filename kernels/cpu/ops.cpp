// Element-wise and row kernels: rmsnorm, silu_mul, add, softmax, rope, and
// the scalar vector primitives used by attention.
#include <cmath>

#include "kernels/cpu/kernels_impl.h"

namespace llm::cpu {

namespace detail {

void axpy_scalar(float alpha, const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void softmax_scalar(float *x, int64_t n) {
  if (n <= 0) return;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::fmax(mx, x[i]);
  // Subtracting the max keeps every exponent <= 0: no overflow, and the sum
  // is at least 1. The sum is kept in double (cheap; exact enough for any n).
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

VectorOps vector_ops() {
#if defined(LLM_HAVE_X86)
  if (use_avx2()) return {dot_avx2, axpy_avx2, softmax_avx2};
#endif
#if defined(LLM_HAVE_NEON)
  if (use_neon()) return {dot_neon, axpy_neon, softmax_neon};
#endif
  return {dot_scalar, axpy_scalar, softmax_scalar};
}

}  // namespace detail

void rmsnorm(const float *x, const float *w, int64_t n, int64_t dim, float eps, float *out) {
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) return detail::rmsnorm_neon(x, w, n, dim, eps, out);
#endif
  // The mean of squares is accumulated in double (four partial sums, to
  // shorten the dependency chain): it costs nothing next to the matmuls and
  // removes any concern about rounding for large dim. `out` may alias `x`
  // (each row is read fully before it is written).
  for (int64_t r = 0; r < n; ++r) {
    const float *xr = x + r * dim;
    float *orow = out + r * dim;
    double s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= dim; i += 4)
      for (int l = 0; l < 4; ++l) s[l] += static_cast<double>(xr[i + l]) * xr[i + l];
    for (; i < dim; ++i) s[0] += static_cast<double>(xr[i]) * xr[i];
    const double ss = (s[0] + s[1]) + (s[2] + s[3]);
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    for (i = 0; i < dim; ++i) orow[i] = xr[i] * inv * w[i];
  }
}

void silu_mul(float *gate, const float *up, int64_t n) {
#if defined(LLM_HAVE_X86)
  if (detail::use_avx2()) return detail::silu_mul_avx2(gate, up, n);
#endif
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) return detail::silu_mul_neon(gate, up, n);
#endif
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add(float *x, const float *y, int64_t n) {
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) return detail::add_neon(x, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void softmax(float *x, int64_t n) {
#if defined(LLM_HAVE_X86)
  if (detail::use_avx2()) return detail::softmax_avx2(x, n);
#endif
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) return detail::softmax_neon(x, n);
#endif
  detail::softmax_scalar(x, n);
}

void rope(float *x, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin) {
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) return detail::rope_neon(x, n_heads, head_dim, cos, sin);
#endif
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float *xh = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      // rotate_half: (x1, x2) -> (x1*cos - x2*sin, x2*cos + x1*sin)
      const float x1 = xh[i], x2 = xh[i + half];
      xh[i] = x1 * cos[i] - x2 * sin[i];
      xh[i + half] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

}  // namespace llm::cpu
