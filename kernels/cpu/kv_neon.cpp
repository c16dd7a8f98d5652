// NEON row operations on KV-cache rows (formats in kv.h; aarch64 only). Rows
// are widened to fp32 in registers four values at a time.
#include <cstring>

#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/kv.h"
#include "kernels/cpu/kv_impl.h"
#include "kernels/cpu/neon_util.h"

namespace llm::cpu::detail {

namespace {

using namespace llm::cpu::neon;

float load_scale(const uint8_t *p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return f16_to_f32(h);
}

template <class W>
struct Dense {
  static float dot(const float *q, const uint8_t *r, int64_t hd) {
    const auto *p = reinterpret_cast<const typename W::T *>(r);
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8) {
      a0 = vfmaq_f32(a0, vld1q_f32(q + i), W::load4(p + i));
      a1 = vfmaq_f32(a1, vld1q_f32(q + i + 4), W::load4(p + i + 4));
    }
    for (; i + 4 <= hd; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(q + i), W::load4(p + i));
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < hd; ++i) s += q[i] * W::load1(p + i);
    return s;
  }
  static void axpy(float a, const uint8_t *r, int64_t hd, float *acc) {
    const auto *p = reinterpret_cast<const typename W::T *>(r);
    int64_t i = 0;
    for (; i + 4 <= hd; i += 4) vst1q_f32(acc + i, vfmaq_n_f32(vld1q_f32(acc + i), W::load4(p + i), a));
    for (; i < hd; ++i) acc[i] += a * W::load1(p + i);
  }
};

// 8 int8 values -> two vectors of 4 floats.
inline void load_i8x8(const uint8_t *p, float32x4_t *lo, float32x4_t *hi) {
  const int16x8_t w = vmovl_s8(vld1_s8(reinterpret_cast<const int8_t *>(p)));
  *lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
  *hi = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w)));
}

struct Q8 {
  static float dot(const float *q, const uint8_t *r, int64_t hd) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8) {
      float32x4_t lo, hi;
      load_i8x8(r + i, &lo, &hi);
      a0 = vfmaq_f32(a0, vld1q_f32(q + i), lo);
      a1 = vfmaq_f32(a1, vld1q_f32(q + i + 4), hi);
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < hd; ++i) s += q[i] * static_cast<float>(static_cast<int8_t>(r[i]));
    return s * load_scale(r + hd);
  }
  static void axpy(float a, const uint8_t *r, int64_t hd, float *acc) {
    const float c = a * load_scale(r + hd);
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8) {
      float32x4_t lo, hi;
      load_i8x8(r + i, &lo, &hi);
      vst1q_f32(acc + i, vfmaq_n_f32(vld1q_f32(acc + i), lo, c));
      vst1q_f32(acc + i + 4, vfmaq_n_f32(vld1q_f32(acc + i + 4), hi, c));
    }
    for (; i < hd; ++i) acc[i] += c * static_cast<float>(static_cast<int8_t>(r[i]));
  }
};

// One group of 32 int4 values as eight vectors of 4 floats (values 0-3, ...,
// 28-31), each already offset by -8.
struct Q4Group {
  float32x4_t v[8];
  explicit Q4Group(const uint8_t *b) {
    const uint8x16_t bytes = vld1q_u8(b);
    const int8x16_t eight = vdupq_n_s8(8);
    const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(0x0F))), eight);
    const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(bytes, 4)), eight);
    auto widen = [](int8x8_t x, float32x4_t *out) {
      const int16x8_t w = vmovl_s8(x);
      out[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
      out[1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w)));
    };
    widen(vget_low_s8(lo), v + 0);
    widen(vget_high_s8(lo), v + 2);
    widen(vget_low_s8(hi), v + 4);
    widen(vget_high_s8(hi), v + 6);
  }
};

struct Q4 {
  static float dot(const float *q, const uint8_t *r, int64_t hd) {
    const uint8_t *scales = r + hd / 2;
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t g = 0; g < hd / kKvQ4Group; ++g) {
      const Q4Group w(r + g * (kKvQ4Group / 2));
      const float *qg = q + g * kKvQ4Group;
      float32x4_t s = vmulq_f32(vld1q_f32(qg), w.v[0]);
      for (int k = 1; k < 8; ++k) s = vfmaq_f32(s, vld1q_f32(qg + 4 * k), w.v[k]);
      acc = vfmaq_n_f32(acc, s, load_scale(scales + 2 * g));
    }
    return vaddvq_f32(acc);
  }
  static void axpy(float a, const uint8_t *r, int64_t hd, float *acc) {
    const uint8_t *scales = r + hd / 2;
    for (int64_t g = 0; g < hd / kKvQ4Group; ++g) {
      const Q4Group w(r + g * (kKvQ4Group / 2));
      const float c = a * load_scale(scales + 2 * g);
      float *o = acc + g * kKvQ4Group;
      for (int k = 0; k < 8; ++k) vst1q_f32(o + 4 * k, vfmaq_n_f32(vld1q_f32(o + 4 * k), w.v[k], c));
    }
  }
};

}  // namespace

KvRowOps kv_row_ops_neon(KvType t) {
  return kv_rows::table<Dense<WF32>, Dense<WF16>, Dense<WBF16>, Q8, Q4>(t);
}

}  // namespace llm::cpu::detail
