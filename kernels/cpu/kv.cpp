// KV row formats (see kv.h): encoding, decoding, and the portable scalar row
// operations that the SIMD paths are tested against.
#include "kernels/cpu/kv.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/kv_impl.h"

namespace llm::cpu {

namespace {

uint16_t load_u16(const uint8_t *p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void store_u16(uint8_t *p, uint16_t v) { std::memcpy(p, &v, sizeof v); }

// Scale of the largest-magnitude value m of a block such that m = qmin * d.
float absmax_signed(const float *x, int64_t n) {
  float m = 0.0f, am = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > am) {
      am = a;
      m = x[i];
    }
  }
  return m;
}

// f16 of a positive or negative scale, clamped to the finite f16 range.
uint16_t scale_to_f16(float d) { return f32_to_f16(std::clamp(d, -65504.0f, 65504.0f)); }

// Decoding of one row of each type: hd floats (rotated types stay rotated).
template <KvType T>
struct Row;

template <>
struct Row<KvType::F32> {
  static void decode(const uint8_t *r, int64_t hd, float *out) { std::memcpy(out, r, hd * sizeof(float)); }
};
template <>
struct Row<KvType::F16> {
  static void decode(const uint8_t *r, int64_t hd, float *out) {
    for (int64_t i = 0; i < hd; ++i) out[i] = f16_to_f32(load_u16(r + 2 * i));
  }
};
template <>
struct Row<KvType::BF16> {
  static void decode(const uint8_t *r, int64_t hd, float *out) {
    for (int64_t i = 0; i < hd; ++i) out[i] = bf16_to_f32(load_u16(r + 2 * i));
  }
};
template <>
struct Row<KvType::Q8> {
  static void decode(const uint8_t *r, int64_t hd, float *out) {
    const float d = f16_to_f32(load_u16(r + hd));
    for (int64_t i = 0; i < hd; ++i) out[i] = static_cast<float>(static_cast<int8_t>(r[i])) * d;
  }
};
template <>
struct Row<KvType::Q4> {
  static void decode(const uint8_t *r, int64_t hd, float *out) {
    const uint8_t *scales = r + hd / 2;
    for (int64_t g = 0; g < hd / kKvQ4Group; ++g) {
      const float d = f16_to_f32(load_u16(scales + 2 * g));
      const uint8_t *b = r + g * (kKvQ4Group / 2);
      float *o = out + g * kKvQ4Group;
      for (int64_t i = 0; i < kKvQ4Group / 2; ++i) {
        o[i] = static_cast<float>((b[i] & 0x0F) - 8) * d;
        o[i + kKvQ4Group / 2] = static_cast<float>((b[i] >> 4) - 8) * d;
      }
    }
  }
};

// head_dim is bounded by kMaxHeadDim (checked when a session is planned).
constexpr int64_t kMaxHeadDim = 512;

// The portable kernels on decoded rows (kv.h's KvRowOps).
struct ScalarKernels {
  static void scores(const float *q, int64_t n_q, const float *rows, int64_t n, int64_t hd_pad, float scale,
                     float *s, int64_t s_stride) {
    for (int64_t g = 0; g < n_q; ++g)
      for (int64_t j = 0; j < n; ++j) {
        float d = 0.0f;
        for (int64_t i = 0; i < hd_pad; ++i) d += q[g * hd_pad + i] * rows[j * hd_pad + i];
        s[g * s_stride + j] = d * scale;
      }
  }
  static void accumulate(const float *p, int64_t p_stride, int64_t n_q, const float *rows, int64_t n,
                         int64_t hd_pad, float *o) {
    for (int64_t g = 0; g < n_q; ++g)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < hd_pad; ++i) o[g * hd_pad + i] += p[g * p_stride + j] * rows[j * hd_pad + i];
  }
};

}  // namespace

bool kv_rotated(KvType t) { return t == KvType::Q8 || t == KvType::Q4; }

int64_t kv_rotation_block(int64_t hd) { return hd & -hd; }

void kv_rotate(float *x, int64_t hd) {
  const int64_t n = kv_rotation_block(hd);
  const float norm = 1.0f / std::sqrt(static_cast<float>(n));
  for (int64_t b = 0; b < hd; b += n) {
    float *y = x + b;
    for (int64_t len = 1; len < n; len *= 2)
      for (int64_t i = 0; i < n; i += 2 * len)
        for (int64_t j = i; j < i + len; ++j) {
          const float u = y[j], v = y[j + len];
          y[j] = u + v;
          y[j + len] = u - v;
        }
    for (int64_t i = 0; i < n; ++i) y[i] *= norm;
  }
}

const char *kv_type_name(KvType t) {
  switch (t) {
    case KvType::F32: return "f32";
    case KvType::F16: return "f16";
    case KvType::BF16: return "bf16";
    case KvType::Q8: return "int8";
    case KvType::Q4: return "int4";
  }
  return "unknown";
}

bool kv_type_fits(KvType t, int64_t head_dim) {
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > kMaxHeadDim) return false;
  return t != KvType::Q4 || head_dim % kKvQ4Group == 0;
}

size_t kv_row_bytes(KvType t, int64_t hd) {
  const size_t n = static_cast<size_t>(hd);
  switch (t) {
    case KvType::F32: return 4 * n;
    case KvType::F16:
    case KvType::BF16: return 2 * n;
    case KvType::Q8: return n + 2;
    case KvType::Q4: return n / 2 + 2 * (n / kKvQ4Group);
  }
  return 0;
}

// v limited to [lo, hi], NaN taken as lo (as fminf(fmaxf(v, lo), hi) on the
// GPU): a NaN in a row (from a corrupt restored state, say) must still
// convert to an integer with defined behaviour.
static float clamp_finite(float v, float lo, float hi) { return std::fmin(std::fmax(v, lo), hi); }

void kv_quantize_row(KvType t, const float *x_in, int64_t hd, void *dst_) {
  uint8_t *dst = static_cast<uint8_t *>(dst_);
  float rotated[kMaxHeadDim];
  const float *x = x_in;
  if (kv_rotated(t)) {
    std::memcpy(rotated, x_in, static_cast<size_t>(hd) * sizeof(float));
    kv_rotate(rotated, hd);
    x = rotated;
  }
  switch (t) {
    case KvType::F32:
      std::memcpy(dst, x, hd * sizeof(float));
      return;
    case KvType::F16:
      for (int64_t i = 0; i < hd; ++i) store_u16(dst + 2 * i, f32_to_f16(x[i]));
      return;
    case KvType::BF16:
      for (int64_t i = 0; i < hd; ++i) store_u16(dst + 2 * i, f32_to_bf16(x[i]));
      return;
    case KvType::Q8: {
      const uint16_t dh = scale_to_f16(std::fabs(absmax_signed(x, hd)) / 127.0f);
      const float d = f16_to_f32(dh);
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      for (int64_t i = 0; i < hd; ++i)
        dst[i] = static_cast<uint8_t>(static_cast<int8_t>(clamp_finite(std::nearbyint(x[i] * id), -127.0f, 127.0f)));
      store_u16(dst + hd, dh);
      return;
    }
    case KvType::Q4: {
      uint8_t *scales = dst + hd / 2;
      for (int64_t g = 0; g < hd / kKvQ4Group; ++g) {
        const float *xg = x + g * kKvQ4Group;
        const uint16_t dh = scale_to_f16(absmax_signed(xg, kKvQ4Group) / -8.0f);
        const float d = f16_to_f32(dh);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t *b = dst + g * (kKvQ4Group / 2);
        auto q = [&](float v) {
          return static_cast<uint8_t>(clamp_finite(std::nearbyint(v * id), -8.0f, 7.0f) + 8.0f);
        };
        for (int64_t i = 0; i < kKvQ4Group / 2; ++i)
          b[i] = static_cast<uint8_t>(q(xg[i]) | (q(xg[i + kKvQ4Group / 2]) << 4));
        store_u16(scales + 2 * g, dh);
      }
      return;
    }
  }
}

void kv_dequantize_row(KvType t, const void *src, int64_t hd, float *dst) {
  const uint8_t *r = static_cast<const uint8_t *>(src);
  switch (t) {
    case KvType::F32: return Row<KvType::F32>::decode(r, hd, dst);
    case KvType::F16: return Row<KvType::F16>::decode(r, hd, dst);
    case KvType::BF16: return Row<KvType::BF16>::decode(r, hd, dst);
    case KvType::Q8:
      Row<KvType::Q8>::decode(r, hd, dst);
      return kv_rotate(dst, hd);
    case KvType::Q4:
      Row<KvType::Q4>::decode(r, hd, dst);
      return kv_rotate(dst, hd);
  }
}

namespace detail {

KvRowOps kv_row_ops_scalar(KvType t) {
  return kv_rows::table<Row<KvType::F32>, Row<KvType::F16>, Row<KvType::BF16>, Row<KvType::Q8>, Row<KvType::Q4>,
                        ScalarKernels>(t);
}

KvRowOps kv_row_ops(KvType t) {
#if defined(LLM_HAVE_X86)
  if (use_avx2()) return kv_row_ops_avx2(t);
#endif
#if defined(LLM_HAVE_NEON)
  if (use_neon()) return kv_row_ops_neon(t);
#endif
  return kv_row_ops_scalar(t);
}

}  // namespace detail

}  // namespace llm::cpu
