// AVX2 bodies of quantize_acts and matmul_q (see quant.cpp for the task
// split and the scalar reference, quant_impl.h for the activation layout).
//
// Integer dot products. _mm256_maddubs_epi16 multiplies unsigned by signed
// bytes and adds adjacent pairs into int16; _mm256_madd_epi16 with ones
// widens pairs of those into int32. Activations are int8 in [-127, 127].
//  I4: the weight nibbles (0..15) are the unsigned operand as they are; the
//      zero point (8, or the stored one) is applied afterwards, see below.
//  I8: the sign trick: |w| is unsigned and sign(x, w) (x negated where w < 0)
//      signed, so |w| * sign(x, w) = w * x, and pairs <= 2 * 128 * 127 do not
//      saturate int16.
//
// Block pairs. The activations store blocks 2p and 2p + 1 interleaved by
// 16-byte halves, so one 256-bit vector holds half of each block:
//  I4: 32 weight bytes are exactly blocks 2p, 2p + 1 (16 bytes each); their
//      low nibbles are the first halves and their high nibbles the second
//      halves: one AND and one shift give both operands, no shuffles.
//  I8: the two 32-byte weight blocks are regrouped the same way with two
//      128-bit permutes per row, reused for every token.
// The int32 result of a pair is [b0 b0 b0 b0 | b1 b1 b1 b1] (partial sums),
// so one convert and one FMA with [d0 d0 d0 d0 d1 d1 d1 d1] * weight scales
// (the d4 row of the scratch) scale two blocks at once. Horizontal adds,
// slow on many x86 cores, are never used in the inner loops.
//
// Zero points. sum_e (q - z) x_e * d * s = q.x * d * s - z * s * (d * sum x):
// the inner loops use the raw q.x; the correction z * s times the stored
// d * sum is applied with one FMA per 8 blocks (an "octet", which is also
// the unit for loading 8 consecutive weight scales).
//
// Tiling. A task owns a range of weight rows. The k dimension is cut into
// panels small enough that a token tile's activations stay in L1; for each
// panel, tokens go in register tiles of T tokens x R rows: each decoded
// weight pair is reused for the T tokens from registers, and the task's
// weight rows (at most 64 x panel bytes) stay in L2 across token tiles, so
// weights come from memory once per call. Decode (n = 1) uses 4-row tiles:
// four weight streams in flight over whole rows. The float accumulators hold
// 8 lanes per (row, token) and are reduced at the end of each panel onto out
// (bias first) in a fixed order: results depend on the shapes only, never on
// the thread count.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/quant_impl.h"

namespace llm::cpu::detail {

namespace {

constexpr int64_t kOctet = 8;                    // blocks per octet
constexpr int64_t kOctetBytes = kOctet * kActBlock;  // activation bytes per octet
constexpr int64_t kPanelBytes = 12288;           // activation bytes of a token tile per panel

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

inline __m256i load256(const void *p) { return _mm256_loadu_si256(static_cast<const __m256i *>(p)); }
inline void store256(void *p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i *>(p), v); }

// ---- weight formats: decode a block pair of one row, dot it with activations ---------

struct I4 {
  static constexpr int kMaxT = 8;  // tokens per register tile
  struct Pair {
    __m256i lo, hi;  // nibbles of elements 0..15 / 16..31 of both blocks
  };
  static Pair decode(const uint8_t *row, int64_t pair) {
    const __m256i raw = load256(row + 32 * pair);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    return {_mm256_and_si256(raw, low4), _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4)};
  }
  // x: the pair's 64 interleaved activation bytes. maddubs pairs are
  // <= 2 * 15 * 127, so the two halves add in int16 before widening.
  static __m256i dot(const Pair &w, const int8_t *x) {
    const __m256i m = _mm256_add_epi16(_mm256_maddubs_epi16(w.lo, load256(x)),
                                       _mm256_maddubs_epi16(w.hi, load256(x + 32)));
    return _mm256_madd_epi16(m, _mm256_set1_epi16(1));
  }
};

struct I8 {
  static constexpr int kMaxT = 6;  // |w| and w of a pair take 4 registers
  struct Pair {
    __m256i lo, hi;    // first / second halves of both blocks
    __m256i alo, ahi;  // their magnitudes (|-128| reads as 128 unsigned)
  };
  static Pair decode(const uint8_t *row, int64_t pair) {
    const __m256i b0 = load256(row + 64 * pair), b1 = load256(row + 64 * pair + 32);
    Pair p;
    p.lo = _mm256_permute2x128_si256(b0, b1, 0x20);
    p.hi = _mm256_permute2x128_si256(b0, b1, 0x31);
    p.alo = _mm256_abs_epi8(p.lo);
    p.ahi = _mm256_abs_epi8(p.hi);
    return p;
  }
  static __m256i dot(const Pair &w, const int8_t *x) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i lo = _mm256_maddubs_epi16(w.alo, _mm256_sign_epi8(load256(x), w.lo));
    const __m256i hi = _mm256_maddubs_epi16(w.ahi, _mm256_sign_epi8(load256(x + 32), w.hi));
    return _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones));
  }
};

// ---- group layouts: the weight scales / zero points of an octet's 8 blocks ---------
//
// scales(): lane l = scale of block 8o + l, as float. zeros(): the same for
// zero points. `s` / `z` point at the row's first scale / zero point.

inline uint64_t load_bytes(const void *p, size_t n) {
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  return v;
}

template <bool Signed>
__m256 bytes_to_ps(uint64_t eight) {
  const __m128i v = _mm_cvtsi64_si128(static_cast<long long>(eight));
  return _mm256_cvtepi32_ps(Signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v));
}

// B = 1, 2 or 4 blocks per group: 8 / B consecutive groups per octet, each
// spread over B lanes with one permute.
template <int B>
struct GroupPow2 {
  static constexpr int kGroups = kOctet / B;
  static __m256 spread(__m256 v) {
    if constexpr (B == 1) {
      return v;
    } else {
      return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0 / B, 1 / B, 2 / B, 3 / B, 4 / B, 5 / B, 6 / B, 7 / B));
    }
  }
  static __m256 scales(const uint16_t *s, int64_t o, int64_t) {
    const uint16_t *p = s + o * kGroups;
    if constexpr (kGroups == 8) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    } else {
      return spread(_mm256_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(load_bytes(p, 2 * kGroups)))));
    }
  }
  template <bool Signed>
  static __m256 zeros(const uint8_t *z, int64_t o, int64_t) {
    return spread(bytes_to_ps<Signed>(load_bytes(z + o * kGroups, kGroups)));
  }
};

struct GroupWide {  // the group size is a multiple of 256: one group per octet
  static __m256 scales(const uint16_t *s, int64_t o, int64_t group) {
    return _mm256_set1_ps(_cvtsh_ss(s[o * kOctetBytes / group]));
  }
  template <bool Signed>
  static __m256 zeros(const uint8_t *z, int64_t o, int64_t group) {
    const uint8_t v = z[o * kOctetBytes / group];
    return _mm256_set1_ps(Signed ? static_cast<float>(static_cast<int8_t>(v)) : static_cast<float>(v));
  }
};

struct GroupAny {  // other multiples of 32 (96, 160, ...): lane by lane
  static int64_t group_of(int64_t o, int l, int64_t group) { return (o * kOctetBytes + l * kActBlock) / group; }
  static __m256 scales(const uint16_t *s, int64_t o, int64_t group) {
    alignas(32) float v[kOctet];
    for (int l = 0; l < kOctet; ++l) v[l] = _cvtsh_ss(s[group_of(o, l, group)]);
    return _mm256_load_ps(v);
  }
  template <bool Signed>
  static __m256 zeros(const uint8_t *z, int64_t o, int64_t group) {
    alignas(32) float v[kOctet];
    for (int l = 0; l < kOctet; ++l) {
      const uint8_t b = z[group_of(o, l, group)];
      v[l] = Signed ? static_cast<float>(static_cast<int8_t>(b)) : static_cast<float>(b);
    }
    return _mm256_load_ps(v);
  }
};

// ---- zero points ---------------------------------------------------------------------
//
// zsw(): z * s per block of the octet; correct(): acc -= z * s * (d * sum x),
// lane l taking block l's term (lanes are summed at the end anyway).
// value(): the zero point of one group, for the scalar-built partial octet.

struct ZeroNone {  // I8 symmetric
  static constexpr bool kApplies = false;
  template <class G>
  static __m256 zsw(__m256, const uint8_t *, int64_t, int64_t, int64_t) { return _mm256_setzero_ps(); }
  static float value(const QMatmulArgs &, int64_t) { return 0.0f; }
};

struct ZeroEight {  // I4 symmetric: z = 8
  static constexpr bool kApplies = true;
  template <class G>
  static __m256 zsw(__m256 sw, const uint8_t *, int64_t, int64_t, int64_t) {
    return _mm256_mul_ps(sw, _mm256_set1_ps(8.0f));
  }
  static float value(const QMatmulArgs &, int64_t) { return 8.0f; }
};

template <bool Signed>
struct ZeroGroup {  // stored zero points: int8 for I8, uint8 for I4
  static constexpr bool kApplies = true;
  template <class G>
  static __m256 zsw(__m256 sw, const uint8_t *zeros, int64_t offset, int64_t o, int64_t group) {
    return _mm256_mul_ps(sw, G::template zeros<Signed>(zeros + offset, o, group));
  }
  static float value(const QMatmulArgs &a, int64_t index) {
    const uint8_t b = a.zeros[index];
    return Signed ? static_cast<float>(static_cast<int8_t>(b)) : static_cast<float>(b);
  }
};

// ---- the register tile ---------------------------------------------------------------

// Octets [o0, o1) of one k-panel; `tail` adds the blocks past the last full
// octet (the last panel when k is not a multiple of 256).
struct Panel {
  int64_t o0, o1;
  bool tail;
};

// Per-token pointers of a token tile.
template <int T>
struct TokenRows {
  const int8_t *q[T];
  const float *d4[T];
  const float *dsum[T];
  TokenRows(const Acts &x, int64_t t0) {
    for (int t = 0; t < T; ++t) {
      q[t] = x.q + (t0 + t) * x.k;
      d4[t] = x.d4 + (t0 + t) * 4 * x.nb;
      dsum[t] = x.dsum + (t0 + t) * x.nb8;
    }
  }
};

// Lanes of the octet scale vector that belong to pair q's two blocks.
inline __m256i pair_lanes(int q) {
  const __m256i lo = _mm256_set1_epi32(2 * q);
  return _mm256_add_epi32(lo, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

// One weight pair against the T tokens: acc[t] += q.x * d * s, lane-wise.
template <class F, int T>
inline void pair_step(const typename F::Pair &w, __m256 sw2, const TokenRows<T> &x, int64_t pair, __m256 *acc) {
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const __m256i v = F::dot(w, x.q[t] + 64 * pair);
    const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(x.d4[t] + 8 * pair), sw2);
    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), scale, acc[t]);
  }
}

// Octet o of one weight row against the T tokens.
template <class F, class G, class Z, int T>
inline void octet_step(const QMatmulArgs &a, int64_t row, int64_t o, const TokenRows<T> &x, __m256 *acc) {
  const __m256 sw = G::scales(a.scales + row * a.groups, o, a.group);
  const uint8_t *w = a.q + row * a.row_bytes;
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q)
    pair_step<F, T>(F::decode(w, 4 * o + q), _mm256_permutevar8x32_ps(sw, pair_lanes(q)), x, 4 * o + q, acc);
  if constexpr (Z::kApplies) {
    const __m256 zsw = Z::template zsw<G>(sw, a.zeros, row * a.groups, o, a.group);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = _mm256_fnmadd_ps(zsw, _mm256_loadu_ps(x.dsum[t] + 8 * o), acc[t]);
  }
}

// The blocks after the last full octet (octet o): whole pairs like above
// with scales built lane by lane (zero past the pairs, so the padding of dsum
// and the odd block drop out of the correction), then an odd last block
// with the exact scalar dot. Returns that block's term per token in `odd`.
template <class F, class Z, int T>
void tail_step(const QMatmulArgs &a, int64_t row, int64_t o, int64_t t0, const TokenRows<T> &x, __m256 *acc,
               float *odd) {
  const int pairs = static_cast<int>(a.x.nb / 2 - 4 * o);
  alignas(32) float s[kOctet] = {}, zs[kOctet] = {};
  for (int l = 0; l < 2 * pairs; ++l) {
    const int64_t g = row * a.groups + (o * kOctet + l) * kActBlock / a.group;
    s[l] = _cvtsh_ss(a.scales[g]);
    zs[l] = Z::value(a, g) * s[l];
  }
  const __m256 sw = _mm256_load_ps(s), zsw = _mm256_load_ps(zs);
  const uint8_t *w = a.q + row * a.row_bytes;
  for (int q = 0; q < pairs; ++q)
    pair_step<F, T>(F::decode(w, 4 * o + q), _mm256_permutevar8x32_ps(sw, pair_lanes(q)), x, 4 * o + q, acc);
  for (int t = 0; t < T; ++t) {
    if constexpr (Z::kApplies) acc[t] = _mm256_fnmadd_ps(zsw, _mm256_loadu_ps(x.dsum[t] + 8 * o), acc[t]);
    odd[t] = 0.0f;
  }
  if (a.x.nb % 2 == 1) {
    const int64_t b = a.x.nb - 1;
    const float ws = _cvtsh_ss(a.scales[row * a.groups + b * kActBlock / a.group]);
    for (int t = 0; t < T; ++t) {
      const float dx = a.x.d[(t0 + t) * a.x.nb + b];
      odd[t] = static_cast<float>(block_dot_scalar(a, row, t0 + t, b)) * (dx * ws);
    }
  }
}

// out[t0 + t][j + r] for r < R, t < T over one panel.
template <class F, class G, class Z, int R, int T>
void tile(const QMatmulArgs &a, int64_t j, int64_t t0, const Panel &p) {
  const TokenRows<T> x(a.x, t0);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t o = p.o0; o < p.o1; ++o) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) octet_step<F, G, Z, T>(a, j + r, o, x, acc[r]);
  }
  float odd[R][T] = {};
  if (p.tail)
    for (int r = 0; r < R; ++r) tail_step<F, Z, T>(a, j + r, p.o1, t0, x, acc[r], odd[r]);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      const float s = avx2::hsum(acc[r][t]) + odd[r][t];
      float *o = a.out + (t0 + t) * a.ldo + j + r;
      // The first panel starts from the bias; later panels accumulate.
      *o = p.o0 > 0 ? *o + s : (a.bias ? a.bias[j + r] + s : s);
    }
}

// Rows per tile for a token tile of T: decode streams 4 rows at once; with
// more tokens the accumulators take the registers.
template <int T>
constexpr int rows_for_tokens() {
  return T == 1 ? 4 : T == 2 ? 2 : 1;
}

template <class F, class G, class Z, int T>
void token_tile(const QMatmulArgs &a, int64_t j0, int64_t j1, int64_t t0, const Panel &p) {
  constexpr int R = rows_for_tokens<T>();
  int64_t j = j0;
  for (; j + R <= j1; j += R) tile<F, G, Z, R, T>(a, j, t0, p);
  if constexpr (R > 1) {
    for (; j < j1; ++j) tile<F, G, Z, 1, T>(a, j, t0, p);
  }
}

// The last `left` (< kMaxT) tokens, through the tile made for that many.
template <class F, class G, class Z, int T>
void token_rest(const QMatmulArgs &a, int64_t j0, int64_t j1, int64_t t0, const Panel &p, int64_t left) {
  if constexpr (T > 0) {
    if (left == T) return token_tile<F, G, Z, T>(a, j0, j1, t0, p);
    token_rest<F, G, Z, T - 1>(a, j0, j1, t0, p, left);
  }
}

template <class F, class G, class Z>
void rows_impl(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  constexpr int kT = F::kMaxT;
  const int64_t octets = a.x.nb / kOctet;
  const bool has_tail = a.x.nb % kOctet != 0;
  const int64_t tile_tokens = std::min<int64_t>(a.n, kT);
  const int64_t panel_octets = std::max<int64_t>(1, kPanelBytes / (tile_tokens * kOctetBytes));
  for (int64_t o0 = 0;; o0 += panel_octets) {
    const int64_t o1 = std::min(octets, o0 + panel_octets);
    const Panel p{o0, o1, o1 == octets && has_tail};
    int64_t t0 = 0;
    for (; t0 + kT <= a.n; t0 += kT) token_tile<F, G, Z, kT>(a, j0, j1, t0, p);
    token_rest<F, G, Z, kT - 1>(a, j0, j1, t0, p, a.n - t0);
    if (o1 == octets) break;
  }
}

template <class F, class Z>
void pick_group(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  const int64_t blocks_per_group = a.group / kActBlock;
  if (blocks_per_group == 1) return rows_impl<F, GroupPow2<1>, Z>(a, j0, j1);
  if (blocks_per_group == 2) return rows_impl<F, GroupPow2<2>, Z>(a, j0, j1);
  if (blocks_per_group == 4) return rows_impl<F, GroupPow2<4>, Z>(a, j0, j1);
  if (blocks_per_group % kOctet == 0) return rows_impl<F, GroupWide, Z>(a, j0, j1);
  rows_impl<F, GroupAny, Z>(a, j0, j1);
}

}  // namespace

void quantize_row_avx2(const float *x, int64_t nb, int64_t nb8, const ActRow &row) {
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    // Regroup the pair by halves: [b0 lo | b1 lo], [b0 hi | b1 hi].
    const __m256i q0 = quantize_block(x + b * kActBlock, row.d + b, row.sum + b);
    const __m256i q1 = quantize_block(x + (b + 1) * kActBlock, row.d + b + 1, row.sum + b + 1);
    store256(row.q + b * kActBlock, _mm256_permute2x128_si256(q0, q1, 0x20));
    store256(row.q + b * kActBlock + 32, _mm256_permute2x128_si256(q0, q1, 0x31));
  }
  if (b < nb) store256(row.q + b * kActBlock, quantize_block(x + b * kActBlock, row.d + b, row.sum + b));
  finish_act_row(nb, nb8, row);
}

void matmul_q_rows_avx2(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  if (a.dtype == DType::I8) {
    if (a.zeros) return pick_group<I8, ZeroGroup<true>>(a, j0, j1);
    return pick_group<I8, ZeroNone>(a, j0, j1);
  }
  if (a.zeros) return pick_group<I4, ZeroGroup<false>>(a, j0, j1);
  pick_group<I4, ZeroEight>(a, j0, j1);
}

}  // namespace llm::cpu::detail
