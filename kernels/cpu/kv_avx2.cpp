// AVX2/FMA/F16C row operations on KV-cache rows (formats in kv.h): rows are
// decoded eight values at a time, and the attention kernels run on the
// decoded rows.
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
  static void decode(const uint8_t *r, int64_t hd, float *dst) {
    const auto *p = reinterpret_cast<const typename W::T *>(r);
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8) _mm256_storeu_ps(dst + i, W::load8(p + i));
    for (; i < hd; ++i) dst[i] = W::load1(p + i);
  }
};

// 8 int8 values -> 8 floats.
inline __m256 load_i8x8(const uint8_t *p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}

struct Q8 {
  static void decode(const uint8_t *r, int64_t hd, float *dst) {
    const float d = load_scale(r + hd);
    const __m256 vd = _mm256_set1_ps(d);
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8) _mm256_storeu_ps(dst + i, _mm256_mul_ps(vd, load_i8x8(r + i)));
    for (; i < hd; ++i) dst[i] = static_cast<float>(static_cast<int8_t>(r[i])) * d;
  }
};

struct Q4 {
  // Each group of 32: byte i holds value i (low nibble) and i + 16 (high).
  static void decode(const uint8_t *r, int64_t hd, float *dst) {
    const uint8_t *scales = r + hd / 2;
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m256i eight = _mm256_set1_epi32(8);
    for (int64_t g = 0; g < hd / kKvQ4Group; ++g) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i *>(r + g * (kKvQ4Group / 2)));
      const __m128i lo = _mm_and_si128(bytes, mask);
      const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
      const __m256 d = _mm256_set1_ps(load_scale(scales + 2 * g));
      float *o = dst + g * kKvQ4Group;
      auto put = [&](float *at, __m128i x) {
        const __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(x), eight));
        _mm256_storeu_ps(at, _mm256_mul_ps(d, v));
      };
      put(o, lo);
      put(o + 8, _mm_srli_si128(lo, 8));
      put(o + 16, hi);
      put(o + 24, _mm_srli_si128(hi, 8));
    }
  }
};

// Lane r of the result is the sum of the lanes of a[r].
inline __m256 hsum8(const __m256 *a) {
  const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
  // Lanes 0-3 of u: rows 0-3 over elements 0-3; lanes 4-7: rows 0-3 over 4-7.
  const __m256 u = _mm256_hadd_ps(s01, s23), w = _mm256_hadd_ps(s45, s67);
  return _mm256_add_ps(_mm256_permute2f128_ps(u, w, 0x20), _mm256_permute2f128_ps(u, w, 0x31));
}

struct Kernels {
  // Eight rows at a time, one accumulator each, reduced together.
  static void scores(const float *q, int64_t n_q, const float *rows, int64_t n, int64_t hd_pad, float scale,
                     float *s, int64_t s_stride) {
    const __m256 vs = _mm256_set1_ps(scale);
    for (int64_t g = 0; g < n_q; ++g) {
      const float *qg = q + g * hd_pad;
      float *sg = s + g * s_stride;
      int64_t j = 0;
      for (; j + 8 <= n; j += 8) {
        const float *r = rows + j * hd_pad;
        __m256 a[8];
        for (auto &x : a) x = _mm256_setzero_ps();
        for (int64_t i = 0; i < hd_pad; i += 8) {
          const __m256 qv = _mm256_loadu_ps(qg + i);
          for (int k = 0; k < 8; ++k) a[k] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + k * hd_pad + i), a[k]);
        }
        _mm256_storeu_ps(sg + j, _mm256_mul_ps(hsum8(a), vs));
      }
      for (; j < n; ++j) {
        const float *r = rows + j * hd_pad;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int64_t i = 0; i < hd_pad; i += 16) {  // hd_pad is a multiple of 16
          a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + i), _mm256_loadu_ps(r + i), a0);
          a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + i + 8), _mm256_loadu_ps(r + i + 8), a1);
        }
        sg[j] = hsum(_mm256_add_ps(a0, a1)) * scale;
      }
    }
  }

  // V vectors of 8 outputs; even and odd rows in separate accumulators so
  // 2V independent chains hide the FMA latency.
  template <int V>
  static void accumulate_cols(const float *p, const float *rows, int64_t n, int64_t hd_pad, float *o) {
    __m256 a[V], b[V];
    for (int k = 0; k < V; ++k) a[k] = _mm256_loadu_ps(o + 8 * k), b[k] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
      const __m256 p0 = _mm256_broadcast_ss(p + j), p1 = _mm256_broadcast_ss(p + j + 1);
      const float *r0 = rows + j * hd_pad, *r1 = r0 + hd_pad;
      for (int k = 0; k < V; ++k) {
        a[k] = _mm256_fmadd_ps(p0, _mm256_loadu_ps(r0 + 8 * k), a[k]);
        b[k] = _mm256_fmadd_ps(p1, _mm256_loadu_ps(r1 + 8 * k), b[k]);
      }
    }
    if (j < n) {
      const __m256 p0 = _mm256_broadcast_ss(p + j);
      for (int k = 0; k < V; ++k) a[k] = _mm256_fmadd_ps(p0, _mm256_loadu_ps(rows + j * hd_pad + 8 * k), a[k]);
    }
    for (int k = 0; k < V; ++k) _mm256_storeu_ps(o + 8 * k, _mm256_add_ps(a[k], b[k]));
  }

  static void accumulate(const float *p, int64_t p_stride, int64_t n_q, const float *rows, int64_t n,
                         int64_t hd_pad, float *o) {
    for (int64_t g = 0; g < n_q; ++g) {
      const float *pg = p + g * p_stride;
      float *og = o + g * hd_pad;
      int64_t i = 0;
      for (; i + 32 <= hd_pad; i += 32) accumulate_cols<4>(pg, rows + i, n, hd_pad, og + i);
      if (i < hd_pad) accumulate_cols<2>(pg, rows + i, n, hd_pad, og + i);  // hd_pad is a multiple of 16
    }
  }
};

}  // namespace

KvRowOps kv_row_ops_avx2(KvType t) {
  return kv_rows::table<Dense<WF32>, Dense<WF16>, Dense<WBF16>, Q8, Q4, Kernels>(t);
}

}  // namespace llm::cpu::detail
