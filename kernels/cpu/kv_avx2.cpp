// AVX2/FMA/F16C row operations on KV-cache rows (formats in kv.h). Each row
// is widened to fp32 in registers eight values at a time.
#include <cstring>

#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/kv.h"
#include "kernels/cpu/kv_impl.h"

namespace llm::cpu::detail {

namespace {

using namespace llm::cpu::avx2;

float load_scale(const uint8_t *p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return f16_to_f32(h);
}

// Dense rows: 8 values per step through the weight loaders of avx2_util.h.
template <class W>
struct Dense {
  static float dot(const float *q, const uint8_t *r, int64_t hd) {
    const auto *p = reinterpret_cast<const typename W::T *>(r);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= hd; i += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), W::load8(p + i), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), W::load8(p + i + 8), a1);
    }
    for (; i + 8 <= hd; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), W::load8(p + i), a0);
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < hd; ++i) s += q[i] * W::load1(p + i);
    return s;
  }
  static void axpy(float a, const uint8_t *r, int64_t hd, float *acc) {
    const auto *p = reinterpret_cast<const typename W::T *>(r);
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8)
      _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(va, W::load8(p + i), _mm256_loadu_ps(acc + i)));
    for (; i < hd; ++i) acc[i] += a * W::load1(p + i);
  }
};

// 8 int8 values -> 8 floats.
inline __m256 load_i8x8(const uint8_t *p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}

struct Q8 {
  static float dot(const float *q, const uint8_t *r, int64_t hd) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= hd; i += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_i8x8(r + i), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load_i8x8(r + i + 8), a1);
    }
    for (; i + 8 <= hd; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_i8x8(r + i), a0);
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < hd; ++i) s += q[i] * static_cast<float>(static_cast<int8_t>(r[i]));
    return s * load_scale(r + hd);
  }
  static void axpy(float a, const uint8_t *r, int64_t hd, float *acc) {
    const float c = a * load_scale(r + hd);
    const __m256 vc = _mm256_set1_ps(c);
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8)
      _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(vc, load_i8x8(r + i), _mm256_loadu_ps(acc + i)));
    for (; i < hd; ++i) acc[i] += c * static_cast<float>(static_cast<int8_t>(r[i]));
  }
};

// One group of 32 int4 values as four vectors of 8 floats (values 0-7, 8-15,
// 16-23, 24-31), each already offset by -8.
struct Q4Group {
  __m256 v[4];
  explicit Q4Group(const uint8_t *b) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i *>(b));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(bytes, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    const __m256i eight = _mm256_set1_epi32(8);
    auto widen = [&](__m128i x) {
      return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(x), eight));
    };
    v[0] = widen(lo);
    v[1] = widen(_mm_srli_si128(lo, 8));
    v[2] = widen(hi);
    v[3] = widen(_mm_srli_si128(hi, 8));
  }
};

struct Q4 {
  static float dot(const float *q, const uint8_t *r, int64_t hd) {
    const uint8_t *scales = r + hd / 2;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g = 0; g < hd / kKvQ4Group; ++g) {
      const Q4Group w(r + g * (kKvQ4Group / 2));
      const float *qg = q + g * kKvQ4Group;
      __m256 s = _mm256_mul_ps(_mm256_loadu_ps(qg), w.v[0]);
      s = _mm256_fmadd_ps(_mm256_loadu_ps(qg + 8), w.v[1], s);
      s = _mm256_fmadd_ps(_mm256_loadu_ps(qg + 16), w.v[2], s);
      s = _mm256_fmadd_ps(_mm256_loadu_ps(qg + 24), w.v[3], s);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(load_scale(scales + 2 * g)), s, acc);
    }
    return hsum(acc);
  }
  static void axpy(float a, const uint8_t *r, int64_t hd, float *acc) {
    const uint8_t *scales = r + hd / 2;
    for (int64_t g = 0; g < hd / kKvQ4Group; ++g) {
      const Q4Group w(r + g * (kKvQ4Group / 2));
      const __m256 c = _mm256_set1_ps(a * load_scale(scales + 2 * g));
      float *o = acc + g * kKvQ4Group;
      for (int k = 0; k < 4; ++k)
        _mm256_storeu_ps(o + 8 * k, _mm256_fmadd_ps(c, w.v[k], _mm256_loadu_ps(o + 8 * k)));
    }
  }
};

}  // namespace

KvRowOps kv_row_ops_avx2(KvType t) {
  return kv_rows::table<Dense<WF32>, Dense<WF16>, Dense<WBF16>, Q8, Q4>(t);
}

}  // namespace llm::cpu::detail
