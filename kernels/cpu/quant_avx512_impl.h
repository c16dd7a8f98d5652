// AVX-512 weight-format policies for the x86 matmul_q machinery
// (quant_x86_impl.h), included by quant_avx512.cpp (AVX-512 F/BW/VL) and
// quant_avx512vnni.cpp (the same plus VNNI). File-local, like the machinery.
//
// A 512-bit vector holds two 32-byte units of an octet: units 2i and 2i + 1
// (elements 8i..8i+7 of every block, block lanes in octet order in each
// half), which is exactly 64 consecutive bytes of the activation scratch. An
// octet is then 4 steps instead of 8. These policies take the wide tile of
// quant_x86_impl.h (kWide): rows go in pairs, decode_pair giving each 256-bit
// half of a weight vector to one row, so that an integer sum holds 16 blocks
// of two rows and the float work runs on all 16 lanes; tiles take up to 8
// tokens (kMaxT), which the 32 vector registers hold.
//
//  VNNI: vpdpbusd adds four u8 x s8 products per int32 lane with no int16
//        intermediate: I4 nibbles are the unsigned operand as they are; I8
//        uses the sign trick (|w| unsigned, x negated where w < 0, with a
//        mask since AVX-512 has no vpsignb).
//  BW:   vpmaddubsw + vpmaddwd as on AVX2 (I4: 4 steps * 2 * 15 * 127 =
//        15240 fits int16).
#pragma once

// GCC 12's AVX-512 intrinsics build "undefined" vectors as `__Y = __Y`,
// which -Wuninitialized reports wherever they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels/cpu/quant_x86_impl.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "quant_avx512_impl.h needs -mavx512f -mavx512bw -mavx512vl"
#endif

namespace llm::cpu::detail {

namespace {

inline __m512i load512(const void *p) { return _mm512_loadu_si512(p); }

LLM_ALWAYS_INLINE __m512i join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

LLM_ALWAYS_INLINE __m256i fold(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

#if defined(__AVX512VNNI__)
constexpr bool kVnni = true;
#else
constexpr bool kVnni = false;
#endif

struct I4x512 {
  static constexpr bool kWide = true;  // the wide tile (quant_x86_impl.h)
  static constexpr int kSteps = 4;
  static constexpr int64_t kOctetWeightBytes = kOctetBytes / 2;
  static constexpr int kMaxT = 8;
  static constexpr int kBatchT = kMaxT;  // n <= kBatchT: one token tile
  struct Octet {
    __m512i w[4];  // w[i] = units 2i, 2i + 1 of every block (nibble values)
  };
  // As I4 on AVX2: the 4-byte-unit transpose of the packed bytes gives both
  // nibble planes in octet order (low nibbles: units 0..3, high: 4..7).
  LLM_ALWAYS_INLINE static void decode(const uint8_t *p, Octet &o) {
    const Quad u = transpose_units(load256(p), load256(p + 32), load256(p + 64), load256(p + 96));
    nibbles(join(u.v0, u.v1), join(u.v2, u.v3), o);
  }
  // Octet o of two rows for the wide tile (quant_x86_impl.h): a holds row 0's
  // even units and row 1's odd ones, b the other way round.
  LLM_ALWAYS_INLINE static void decode_pair(const uint8_t *p0, const uint8_t *p1, Octet &a, Octet &b) {
    const Quad u = transpose_units(load256(p0), load256(p0 + 32), load256(p0 + 64), load256(p0 + 96));
    const Quad w = transpose_units(load256(p1), load256(p1 + 32), load256(p1 + 64), load256(p1 + 96));
    nibbles(join(u.v0, w.v1), join(u.v2, w.v3), a);
    nibbles(join(w.v0, u.v1), join(w.v2, u.v3), b);
  }
  // c0 / c1: units (0, 1) / (2, 3) in their low nibbles, (4, 5) / (6, 7) in
  // their high nibbles.
  LLM_ALWAYS_INLINE static void nibbles(__m512i c0, __m512i c1, Octet &o) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    o.w[0] = _mm512_and_si512(c0, low4);
    o.w[1] = _mm512_and_si512(c1, low4);
    o.w[2] = _mm512_and_si512(_mm512_srli_epi16(c0, 4), low4);
    o.w[3] = _mm512_and_si512(_mm512_srli_epi16(c1, 4), low4);
  }
  using Lane = __m512i;
  LLM_ALWAYS_INLINE static Lane lane(const Octet &o, int v) { return o.w[v]; }
  using Acc = __m512i;  // VNNI: int32 per lane; BW: int16 pairs
  static Acc zero() { return _mm512_setzero_si512(); }
  LLM_ALWAYS_INLINE static Acc step(Acc s, Lane w, const int8_t *x) { return step(s, w, load512(x)); }
  LLM_ALWAYS_INLINE static Acc step(Acc s, Lane w, __m512i x) {
    if constexpr (kVnni) {
      return _mm512_dpbusd_epi32(s, w, x);
    } else {
      return _mm512_add_epi16(s, _mm512_maddubs_epi16(w, x));
    }
  }
  LLM_ALWAYS_INLINE static __m256i finish(Acc s) {
    if constexpr (kVnni) return fold(s);
    return fold(_mm512_madd_epi16(s, _mm512_set1_epi16(1)));
  }
  // The 16 int32 lanes unfolded (the wide tile).
  LLM_ALWAYS_INLINE static __m512i finish512(Acc s) {
    if constexpr (kVnni) return s;
    return _mm512_madd_epi16(s, _mm512_set1_epi16(1));
  }
};

struct I8x512 {
  static constexpr bool kWide = true;
  static constexpr int kSteps = 4;
  static constexpr int64_t kOctetWeightBytes = kOctetBytes;
  static constexpr int kMaxT = 8;
  static constexpr int kBatchT = kMaxT;  // n <= kBatchT: one token tile
  struct Octet {
    __m512i aw[4];     // magnitudes (|-128| reads as 128 unsigned)
    __mmask64 neg[4];  // bytes where the weight is negative
  };
  LLM_ALWAYS_INLINE static void decode(const uint8_t *p, Octet &o) {
    __m256i w[8];
    interleave_octet(reinterpret_cast<const int8_t *>(p), w);
    for (int i = 0; i < 4; ++i) set(o, i, join(w[2 * i], w[2 * i + 1]));
  }
  LLM_ALWAYS_INLINE static void decode_pair(const uint8_t *p0, const uint8_t *p1, Octet &a, Octet &b) {
    __m256i u[8], w[8];
    interleave_octet(reinterpret_cast<const int8_t *>(p0), u);
    interleave_octet(reinterpret_cast<const int8_t *>(p1), w);
    for (int i = 0; i < 4; ++i) {
      set(a, i, join(u[2 * i], w[2 * i + 1]));
      set(b, i, join(w[2 * i], u[2 * i + 1]));
    }
  }
  LLM_ALWAYS_INLINE static void set(Octet &o, int i, __m512i v) {
    o.aw[i] = _mm512_abs_epi8(v);
    o.neg[i] = _mm512_movepi8_mask(v);
  }
  struct Lane {
    __m512i aw;
    __mmask64 neg;
  };
  LLM_ALWAYS_INLINE static Lane lane(const Octet &o, int v) { return {o.aw[v], o.neg[v]}; }
  using Acc = __m512i;  // int32 per lane
  static Acc zero() { return _mm512_setzero_si512(); }
  LLM_ALWAYS_INLINE static Acc step(Acc s, const Lane &w, const int8_t *x) { return step(s, w, load512(x)); }
  LLM_ALWAYS_INLINE static Acc step(Acc s, const Lane &w, __m512i xv) {
    const __m512i sx = _mm512_mask_sub_epi8(xv, w.neg, _mm512_setzero_si512(), xv);  // x * sign(w)
    if constexpr (kVnni) {
      return _mm512_dpbusd_epi32(s, w.aw, sx);
    } else {
      const __m512i m = _mm512_maddubs_epi16(w.aw, sx);
      return _mm512_add_epi32(s, _mm512_madd_epi16(m, _mm512_set1_epi16(1)));
    }
  }
  LLM_ALWAYS_INLINE static __m256i finish(Acc s) { return fold(s); }
  LLM_ALWAYS_INLINE static __m512i finish512(Acc s) { return s; }
};

}  // namespace

}  // namespace llm::cpu::detail
