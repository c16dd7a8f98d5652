// AVX2 bodies of quantize_acts and matmul_q: the AVX2 weight-format
// policies for the shared x86 machinery in quant_x86_impl.h (which explains
// the octet layout, the integer dot products and the tiling).
#include "kernels/cpu/quant_x86_impl.h"

#include "kernels/cpu/avx2_util.h"

namespace llm::cpu::detail {

namespace {

// ---- activations -----------------------------------------------------------------

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// Quantizes 32 floats; returns the int8 values in element order.
__m256i quantize_block(const float *x, float *d, int32_t *sum) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4], m = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
  }
  float inv;
  block_scale(avx2::hmax(m), d, &inv);
  const __m256 iv = _mm256_set1_ps(inv);
  __m256i r[4];
  for (int i = 0; i < 4; ++i) r[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], iv));  // nearest even
  *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3])));
  // The packs work within 128-bit lanes, leaving 4-byte groups in the order
  // x0-3 x8-11 x16-19 x24-27 | x4-7 x12-15 x20-23 x28-31; one dword permute
  // restores element order.
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// ---- weight formats: decode one row's octet, accumulate it against a token ---------

struct I4 {
  static constexpr int kSteps = 8;  // 32-byte vectors per octet
  static constexpr int64_t kOctetWeightBytes = kOctetBytes / 2;
  // Tokens per register tile: per token an int16 sum and a float
  // accumulator stay in registers (2 * 6 + the current weight vector and
  // constants fit in 16); more tokens amortize the octet decode further.
  static constexpr int kMaxT = 6;
  // Up to 8 tokens (a batch of decoding sessions) in one tile, run as two
  // halves of 4 against each decoded octet (octet_tokens).
  static constexpr int kBatchT = 8;
  struct Octet {
    __m256i w[8];  // nibble values, w[v] = elements 4v..4v+3 of every block
  };
  // p: the octet's 128 weight bytes (8 blocks of 16). Transposing 4-byte
  // units of the packed bytes gives both nibble planes in octet order: the
  // low nibbles of unit j are elements 4j.., the high nibbles 16 + 4j...
  LLM_ALWAYS_INLINE static void decode(const uint8_t *p, Octet &o) {
    const Quad u = transpose_units(load256(p), load256(p + 32), load256(p + 64), load256(p + 96));
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const auto lo = [&](__m256i v) { return _mm256_and_si256(v, low4); };
    const auto hi = [&](__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), low4); };
    o.w[0] = lo(u.v0), o.w[1] = lo(u.v1), o.w[2] = lo(u.v2), o.w[3] = lo(u.v3);
    o.w[4] = hi(u.v0), o.w[5] = hi(u.v1), o.w[6] = hi(u.v2), o.w[7] = hi(u.v3);
  }
  using Lane = __m256i;  // one decoded vector
  LLM_ALWAYS_INLINE static Lane lane(const Octet &o, int v) { return o.w[v]; }
  using Acc = __m256i;  // int16 partial sums, two per block lane
  static Acc zero() { return _mm256_setzero_si256(); }
  LLM_ALWAYS_INLINE static Acc step(Acc s, Lane w, const int8_t *x) {
    return _mm256_add_epi16(s, _mm256_maddubs_epi16(w, load256(x)));
  }
  static __m256i finish(Acc s) { return _mm256_madd_epi16(s, _mm256_set1_epi16(1)); }
};

struct I8 {
  static constexpr int kSteps = 8;
  static constexpr int64_t kOctetWeightBytes = kOctetBytes;
  static constexpr int kMaxT = 6;  // as for I4 (a weight vector and its magnitude)
  static constexpr int kBatchT = kMaxT;
  struct Octet {
    __m256i w[8], aw[8];  // values and magnitudes (|-128| reads as 128 unsigned)
  };
  LLM_ALWAYS_INLINE static void decode(const uint8_t *p, Octet &o) {
    interleave_octet(reinterpret_cast<const int8_t *>(p), o.w);
    for (int v = 0; v < 8; ++v) o.aw[v] = _mm256_abs_epi8(o.w[v]);
  }
  struct Lane {
    __m256i w, aw;
  };
  LLM_ALWAYS_INLINE static Lane lane(const Octet &o, int v) { return {o.w[v], o.aw[v]}; }
  using Acc = __m256i;  // int32 per block lane
  static Acc zero() { return _mm256_setzero_si256(); }
  LLM_ALWAYS_INLINE static Acc step(Acc s, const Lane &w, const int8_t *x) {
    const __m256i m = _mm256_maddubs_epi16(w.aw, _mm256_sign_epi8(load256(x), w.w));
    return _mm256_add_epi32(s, _mm256_madd_epi16(m, _mm256_set1_epi16(1)));
  }
  static __m256i finish(Acc s) { return s; }
};

}  // namespace

void quantize_row_avx2(const float *x, int64_t nb, int64_t nb8, const ActRow &row) {
  alignas(32) int8_t blocks[kOctetBytes];
  for (int64_t o = 0; o * kOctet < nb; ++o) {
    // Quantize up to 8 blocks in element order (zeros past nb), then store
    // them octet-interleaved.
    for (int64_t j = 0; j < kOctet; ++j) {
      const int64_t b = o * kOctet + j;
      const __m256i q = b < nb ? quantize_block(x + b * kActBlock, row.d + b, row.sum + b) : _mm256_setzero_si256();
      store256(blocks + j * kActBlock, q);
    }
    __m256i v[8];
    interleave_octet(blocks, v);
    for (int i = 0; i < 8; ++i) store256(row.q + o * kOctetBytes + 32 * i, v[i]);
  }
  finish_act_row(nb, nb8, row);
}

void matmul_q_rows_avx2(const QMatmulArgs &a, int64_t j0, int64_t j1) { rows_dispatch<I8, I4>(a, j0, j1); }

}  // namespace llm::cpu::detail
