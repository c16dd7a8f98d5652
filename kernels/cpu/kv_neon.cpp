// NEON row operations on KV-cache rows (formats in kv.h; aarch64 only): rows
// are decoded four values at a time, and the attention kernels run on the
// decoded rows.
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
  static void decode(const uint8_t *r, int64_t hd, float *dst) {
    const auto *p = reinterpret_cast<const typename W::T *>(r);
    int64_t i = 0;
    for (; i + 4 <= hd; i += 4) vst1q_f32(dst + i, W::load4(p + i));
    for (; i < hd; ++i) dst[i] = W::load1(p + i);
  }
};

struct Q8 {
  static void decode(const uint8_t *r, int64_t hd, float *dst) {
    const float d = load_scale(r + hd);
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8) {
      const int16x8_t w = vmovl_s8(vld1_s8(reinterpret_cast<const int8_t *>(r + i)));
      vst1q_f32(dst + i, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))), d));
      vst1q_f32(dst + i + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(w))), d));
    }
    for (; i < hd; ++i) dst[i] = static_cast<float>(static_cast<int8_t>(r[i])) * d;
  }
};

struct Q4 {
  // Each group of 32: byte i holds value i (low nibble) and i + 16 (high).
  static void decode(const uint8_t *r, int64_t hd, float *dst) {
    const uint8_t *scales = r + hd / 2;
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t g = 0; g < hd / kKvQ4Group; ++g) {
      const uint8x16_t bytes = vld1q_u8(r + g * (kKvQ4Group / 2));
      const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(0x0F))), eight);
      const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(bytes, 4)), eight);
      const float d = load_scale(scales + 2 * g);
      float *o = dst + g * kKvQ4Group;
      auto put = [d](float *at, int8x8_t x) {
        const int16x8_t w = vmovl_s8(x);
        vst1q_f32(at, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))), d));
        vst1q_f32(at + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(w))), d));
      };
      put(o, vget_low_s8(lo));
      put(o + 8, vget_high_s8(lo));
      put(o + 16, vget_low_s8(hi));
      put(o + 24, vget_high_s8(hi));
    }
  }
};

struct Kernels {
  // Four rows at a time, one accumulator each, reduced together by pairwise
  // additions.
  static void scores(const float *q, int64_t n_q, const float *rows, int64_t n, int64_t hd_pad, float scale,
                     float *s, int64_t s_stride) {
    for (int64_t g = 0; g < n_q; ++g) {
      const float *qg = q + g * hd_pad;
      float *sg = s + g * s_stride;
      int64_t j = 0;
      for (; j + 4 <= n; j += 4) {
        const float *r = rows + j * hd_pad;
        float32x4_t a[4];
        for (auto &x : a) x = vdupq_n_f32(0);
        for (int64_t i = 0; i < hd_pad; i += 4) {
          const float32x4_t qv = vld1q_f32(qg + i);
          for (int k = 0; k < 4; ++k) a[k] = vfmaq_f32(a[k], qv, vld1q_f32(r + k * hd_pad + i));
        }
        const float32x4_t sum = vpaddq_f32(vpaddq_f32(a[0], a[1]), vpaddq_f32(a[2], a[3]));
        vst1q_f32(sg + j, vmulq_n_f32(sum, scale));
      }
      for (; j < n; ++j) {
        const float *r = rows + j * hd_pad;
        float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
        for (int64_t i = 0; i < hd_pad; i += 8) {  // hd_pad is a multiple of 16
          a0 = vfmaq_f32(a0, vld1q_f32(qg + i), vld1q_f32(r + i));
          a1 = vfmaq_f32(a1, vld1q_f32(qg + i + 4), vld1q_f32(r + i + 4));
        }
        sg[j] = vaddvq_f32(vaddq_f32(a0, a1)) * scale;
      }
    }
  }

  // 16 outputs; even and odd rows in separate accumulators (8 chains).
  static void accumulate_cols(const float *p, const float *rows, int64_t n, int64_t hd_pad, float *o) {
    float32x4_t a[4], b[4];
    for (int k = 0; k < 4; ++k) a[k] = vld1q_f32(o + 4 * k), b[k] = vdupq_n_f32(0);
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
      const float *r0 = rows + j * hd_pad, *r1 = r0 + hd_pad;
      for (int k = 0; k < 4; ++k) {
        a[k] = vfmaq_n_f32(a[k], vld1q_f32(r0 + 4 * k), p[j]);
        b[k] = vfmaq_n_f32(b[k], vld1q_f32(r1 + 4 * k), p[j + 1]);
      }
    }
    if (j < n)
      for (int k = 0; k < 4; ++k) a[k] = vfmaq_n_f32(a[k], vld1q_f32(rows + j * hd_pad + 4 * k), p[j]);
    for (int k = 0; k < 4; ++k) vst1q_f32(o + 4 * k, vaddq_f32(a[k], b[k]));
  }

  static void accumulate(const float *p, int64_t p_stride, int64_t n_q, const float *rows, int64_t n,
                         int64_t hd_pad, float *o) {
    for (int64_t g = 0; g < n_q; ++g)
      for (int64_t i = 0; i < hd_pad; i += 16)  // hd_pad is a multiple of 16
        accumulate_cols(p + g * p_stride, rows + i, n, hd_pad, o + g * hd_pad + i);
  }
};

}  // namespace

KvRowOps kv_row_ops_neon(KvType t) {
  return kv_rows::table<Dense<WF32>, Dense<WF16>, Dense<WBF16>, Q8, Q4, Kernels>(t);
}

}  // namespace llm::cpu::detail
