// NEON helpers shared by the *_neon.cpp files (aarch64 only). Only files
// compiled with the baseline aarch64 flags include it: these inline functions
// must not be compiled with extra extensions (the dot-product file), or the
// linker could keep that copy for everyone.
#pragma once

#include <arm_neon.h>

#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace llm::cpu::neon {

// Weight element types: load 4 (or 1) elements as fp32.
struct WF32 {
  using T = float;
  static float32x4_t load4(const T *p) { return vld1q_f32(p); }
  static float load1(const T *p) { return *p; }
};

struct WF16 {
  using T = uint16_t;
  static float32x4_t load4(const T *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  static float load1(const T *p) { return f16_to_f32(*p); }
};

struct WBF16 {
  using T = uint16_t;
  // bf16 is the top half of an fp32: widen with a shift into place.
  static float32x4_t load4(const T *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
  static float load1(const T *p) { return bf16_to_f32(*p); }
};

// e^x for x <= ~88 (callers pass x <= 0), the same method and constants as
// avx2::exp: x = n*ln2 + r, degree-7 Taylor polynomial for e^r, 2^n built in
// the exponent field; results below FLT_MIN flush to 0; NaN propagates.
inline float32x4_t exp(float32x4_t x) {
  const float32x4_t lo = vdupq_n_f32(-87.33654475f);  // ln(FLT_MIN)
  const uint32x4_t underflow = vcltq_f32(x, lo);
  x = vmaxq_f32(x, lo);  // FMAX returns NaN for a NaN operand
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
  r = vfmsq_f32(r, n, vdupq_n_f32(1.4286068203094172e-06f));
  float32x4_t p = vdupq_n_f32(1.0f / 5040);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
  p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  const float32x4_t v = vmulq_f32(p, vreinterpretq_f32_s32(e));
  return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), underflow));
}

}  // namespace llm::cpu::neon
