// NEON versions of the vector primitives used by attention and the forward
// pass (aarch64 only; see ops.cpp for the scalar references).
#include <cmath>

#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/neon_util.h"

namespace llm::cpu::detail {

float dot_neon(const float *a, const float *b, int64_t n) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
    s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
  }
  for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
  float r = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

void axpy_neon(float alpha, const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), alpha));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

void softmax_neon(float *x, int64_t n) {
  if (n <= 0) return;
  float32x4_t mv = vdupq_n_f32(-INFINITY);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) mv = vmaxq_f32(mv, vld1q_f32(x + i));
  float mx = vmaxvq_f32(mv);
  for (; i < n; ++i) mx = std::fmax(mx, x[i]);
  // As softmax_avx2: exp(x - max) <= 1, the sum >= 1; the tail goes through
  // the vector exp on a padded copy so every element is computed alike.
  const float32x4_t mxv = vdupq_n_f32(mx);
  float32x4_t sv = vdupq_n_f32(0);
  for (i = 0; i + 4 <= n; i += 4) {
    const float32x4_t e = neon::exp(vsubq_f32(vld1q_f32(x + i), mxv));
    vst1q_f32(x + i, e);
    sv = vaddq_f32(sv, e);
  }
  float sum = vaddvq_f32(sv);
  if (i < n) {
    float tail[4];
    for (int t = 0; t < 4; ++t) tail[t] = i + t < n ? x[i + t] - mx : -INFINITY;
    vst1q_f32(tail, neon::exp(vld1q_f32(tail)));
    for (int64_t t = 0; i + t < n; ++t) {
      x[i + t] = tail[t];
      sum += tail[t];
    }
  }
  const float inv = 1.0f / sum;
  for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
  for (; i < n; ++i) x[i] *= inv;
}

void silu_mul_neon(float *gate, const float *up, int64_t n) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t g = vld1q_f32(gate + i);
    // sigmoid from e = exp(-|g|) <= 1, so nothing overflows:
    // g >= 0: 1 / (1 + e);  g < 0: e / (1 + e).
    const float32x4_t e = neon::exp(vnegq_f32(vabsq_f32(g)));
    const float32x4_t num = vbslq_f32(vcltzq_f32(g), e, one);
    const float32x4_t sig = vdivq_f32(num, vaddq_f32(one, e));
    vst1q_f32(gate + i, vmulq_f32(vmulq_f32(g, sig), vld1q_f32(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void rmsnorm_neon(const float *x, const float *w, int64_t n, int64_t dim, float eps, float *out) {
  // As the scalar rmsnorm: the mean of squares in double (aarch64 has
  // two-lane double vectors), then out = x * inv * w in float.
  for (int64_t r = 0; r < n; ++r) {
    const float *xr = x + r * dim;
    float *orow = out + r * dim;
    float64x2_t s0 = vdupq_n_f64(0), s1 = s0;
    int64_t i = 0;
    for (; i + 4 <= dim; i += 4) {
      const float32x4_t v = vld1q_f32(xr + i);
      const float64x2_t lo = vcvt_f64_f32(vget_low_f32(v)), hi = vcvt_high_f64_f32(v);
      s0 = vfmaq_f64(s0, lo, lo);
      s1 = vfmaq_f64(s1, hi, hi);
    }
    double ss = vaddvq_f64(vaddq_f64(s0, s1));
    for (; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    for (i = 0; i + 4 <= dim; i += 4)
      vst1q_f32(orow + i, vmulq_f32(vmulq_n_f32(vld1q_f32(xr + i), inv), vld1q_f32(w + i)));
    for (; i < dim; ++i) orow[i] = xr[i] * inv * w[i];
  }
}

void add_neon(float *x, const float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vaddq_f32(vld1q_f32(x + i), vld1q_f32(y + i)));
  for (; i < n; ++i) x[i] += y[i];
}

void rope_neon(float *x, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float *x1p = x + h * head_dim, *x2p = x1p + half;
    int64_t i = 0;
    for (; i + 4 <= half; i += 4) {
      // rotate_half: (x1, x2) -> (x1*cos - x2*sin, x2*cos + x1*sin)
      const float32x4_t x1 = vld1q_f32(x1p + i), x2 = vld1q_f32(x2p + i);
      const float32x4_t c = vld1q_f32(cos + i), s = vld1q_f32(sin + i);
      vst1q_f32(x1p + i, vfmsq_f32(vmulq_f32(x1, c), x2, s));
      vst1q_f32(x2p + i, vfmaq_f32(vmulq_f32(x2, c), x1, s));
    }
    for (; i < half; ++i) {
      const float x1 = x1p[i], x2 = x2p[i];
      x1p[i] = x1 * cos[i] - x2 * sin[i];
      x2p[i] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

}  // namespace llm::cpu::detail
