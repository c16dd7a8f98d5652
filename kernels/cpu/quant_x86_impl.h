// The x86 matmul_q machinery shared by quant_avx2.cpp and quant_avx512*.cpp:
// octet transposes, scale / zero-point layouts and the register tiles,
// templated on a weight-format policy F that each instruction set supplies
// (decode an octet of a row into F::kSteps vectors, accumulate one vector
// against a token, finish to 8 int32 block lanes). See quant.cpp for the task
// split and the scalar reference, quant_impl.h for the activation layout.
//
// Everything here is in an anonymous namespace: each including file gets
// its own copy compiled with its own -m flags, so an AVX-512 instantiation
// can never be picked by the linker for the AVX2 path. For the same reason
// this header includes no other header with external-linkage inline SIMD
// code (avx2_util.h).
//
// What follows describes the AVX2 policies (quant_avx2.cpp); the AVX-512
// ones (quant_avx512_impl.h) do the same on 512-bit vectors holding two units.
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
// Octets. Activations are stored octet-interleaved: each 32-byte vector
// holds 4 consecutive elements of each of 8 blocks, one block per 32-bit
// lane (quant_impl.h). The weights of an octet are brought into the same
// arrangement by a 4-byte-unit transpose made of in-lane unpacks, once per
// weight row and octet and reused for every token of a tile. Then every
// product of a block lands in that block's lane: the 8 vectors of an octet
// are summed with plain adds (I4 in int16: 8 * 2 * 15 * 127 = 30480 fits),
// one madd widens to int32, and one convert + one FMA with the lane-ordered
// scales (activation dp times weight scales) finish 8 blocks. No horizontal
// adds, no per-block float work; the multiply pipes only see maddubs, one
// madd and a few float ops per octet.
//
// Zero points. sum_e (q - z) x_e * d * s = q.x * d * s - z * s * (d * sum x):
// the inner loops use the raw q.x; the correction z * s times the stored
// d * sum (dsum, lane-ordered) is one FMA per octet.
//
// Tiling. A task owns a range of weight rows. The k dimension is cut into
// panels small enough that a token tile's activations stay in L1; for each
// panel, tokens go in register tiles of T tokens x R rows: each decoded
// weight octet is reused for the T tokens, and the task's weight rows (at
// most 64 x panel bytes) stay in L2 across token tiles, so weights come from
// memory once per call. A token tile's activations over a panel are first
// packed token-interleaved (pack_tokens), so the tile reaches all of them
// through one pointer. A batch of up to F::kBatchT tokens (several sessions
// decoding together) is a single token tile: every weight octet is decoded
// once per call. Decode (n = 1) takes one row at a time, so that a
// thread reads its rows (and their scales) as one sequential stream, and
// prefetches that stream kDecodePrefetchBytes ahead into L2;
// ThreadPool::run_ranges gives each thread one contiguous share of the rows
// for the same reason.
// The last, partial octet of a row (k not a multiple of 256) is copied into
// a zero-padded buffer first, so no read goes past a row. The float
// accumulators hold 8 lanes per (row, token) (16 lanes per row pair in the
// AVX-512 wide tile, below) and are reduced at the end of each panel onto
// out (bias first) in a fixed order: results depend on the shapes only,
// never on the thread count.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/quant_impl.h"

namespace llm::cpu::detail {

namespace {

constexpr int64_t kPanelBytes = 16384;  // activation bytes of a token tile per k-panel
// Token tiles of more tokens than this (the batch tiles, up to 8) run each
// decoded octet against their tokens in two halves (octet_tokens).
constexpr int kHalfTile = 6;

// The inner loops rely on everything below being inlined into the tile
// (decoded octets live in registers); GCC's size heuristics give up on
// that for the larger tiles unless told.
#define LLM_ALWAYS_INLINE inline __attribute__((always_inline))

// An empty asm that claims to modify v: stops the compiler from
// reassociating a chain of integer adds into a tree, which would keep every
// product of an octet alive at once and spill them (integer adds are
// associative, so it otherwise feels free to).
LLM_ALWAYS_INLINE void keep_chain(__m256i &v) { __asm__("" : "+x"(v)); }
#if defined(__AVX512F__)
LLM_ALWAYS_INLINE void keep_chain(__m512i &v) { __asm__("" : "+v"(v)); }
#endif

inline __m256i load256(const void *p) { return _mm256_loadu_si256(static_cast<const __m256i *>(p)); }
inline __m128i load128(const void *p) { return _mm_loadu_si128(static_cast<const __m128i *>(p)); }
inline void store256(void *p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i *>(p), v); }

// ---- the octet transpose ---------------------------------------------------------
//
// In: r_k = [units 0..3 of block 2k | units 0..3 of block 2k + 1] (k < 4; a
// unit is 4 bytes). Out: u_j = unit j of every block, lane s holding block
// kOctetBlock[s] = 0 2 4 6 | 1 3 5 7. Two rounds of in-lane unpacks. (Values
// in and out, not arrays: arrays tempt the compiler into stack copies.)
struct Quad {
  __m256i v0, v1, v2, v3;
};

LLM_ALWAYS_INLINE Quad transpose_units(__m256i r0, __m256i r1, __m256i r2, __m256i r3) {
  const __m256i t0 = _mm256_unpacklo_epi32(r0, r1);  // b0.0 b2.0 b0.1 b2.1 | b1.0 b3.0 b1.1 b3.1
  const __m256i t1 = _mm256_unpackhi_epi32(r0, r1);  // units 2, 3
  const __m256i t2 = _mm256_unpacklo_epi32(r2, r3);  // b4.0 b6.0 b4.1 b6.1 | ...
  const __m256i t3 = _mm256_unpackhi_epi32(r2, r3);
  return {_mm256_unpacklo_epi64(t0, t2),  // b0.0 b2.0 b4.0 b6.0 | b1.0 b3.0 b5.0 b7.0
          _mm256_unpackhi_epi64(t0, t2), _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
}

// Halves h (0: bytes 0..15, 1: bytes 16..31) of blocks 2k and 2k + 1 of 8
// blocks of 32 bytes at p, as one vector.
LLM_ALWAYS_INLINE __m256i block_halves(const int8_t *p, int k, int h) {
  return _mm256_set_m128i(load128(p + 64 * k + 32 + 16 * h), load128(p + 64 * k + 16 * h));
}

// 8 blocks of 32 bytes in element order (block j at p + 32 j) to the
// octet-interleaved form: out[v] = elements 4v..4v+3 of every block.
LLM_ALWAYS_INLINE void interleave_octet(const int8_t *p, __m256i out[8]) {
  const Quad lo = transpose_units(block_halves(p, 0, 0), block_halves(p, 1, 0), block_halves(p, 2, 0),
                                  block_halves(p, 3, 0));
  const Quad hi = transpose_units(block_halves(p, 0, 1), block_halves(p, 1, 1), block_halves(p, 2, 1),
                                  block_halves(p, 3, 1));
  out[0] = lo.v0, out[1] = lo.v1, out[2] = lo.v2, out[3] = lo.v3;
  out[4] = hi.v0, out[5] = hi.v1, out[6] = hi.v2, out[7] = hi.v3;
}


inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}


// ---- group layouts: weight scales / zero points of an octet, in lane order ---------
//
// scales(): lane s = scale of block 8o + kOctetBlock[s], as float; zeros():
// the same for zero points. `s` / `z` point at the row's first scale / zero.

LLM_ALWAYS_INLINE uint64_t load_bytes(const void *p, size_t n) {
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  return v;
}

template <bool Signed>
LLM_ALWAYS_INLINE __m256 bytes_to_ps(uint64_t eight) {
  const __m128i v = _mm_cvtsi64_si128(static_cast<long long>(eight));
  return _mm256_cvtepi32_ps(Signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v));
}

// B = 1, 2 or 4 blocks per group: 8 / B consecutive groups per octet; one
// permute puts group kOctetBlock[s] / B into lane s.
template <int B>
struct GroupPow2 {
  static constexpr int kGroups = kOctet / B;
  LLM_ALWAYS_INLINE static __m256 to_lanes(__m256 v) {
    constexpr int b0 = 0 / B, b1 = 2 / B, b2 = 4 / B, b3 = 6 / B, b4 = 1 / B, b5 = 3 / B, b6 = 5 / B, b7 = 7 / B;
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(b0, b1, b2, b3, b4, b5, b6, b7));
  }
  LLM_ALWAYS_INLINE static __m256 scales(const uint16_t *s, int64_t o, int64_t) {
    const uint16_t *p = s + o * kGroups;
    if constexpr (kGroups == 8) return to_lanes(_mm256_cvtph_ps(load128(p)));
    return to_lanes(_mm256_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(load_bytes(p, 2 * kGroups)))));
  }
  template <bool Signed>
  LLM_ALWAYS_INLINE static __m256 zeros(const uint8_t *z, int64_t o, int64_t) {
    return to_lanes(bytes_to_ps<Signed>(load_bytes(z + o * kGroups, kGroups)));
  }
};

struct GroupWide {  // the group size is a multiple of 256: one group per octet
  LLM_ALWAYS_INLINE static __m256 scales(const uint16_t *s, int64_t o, int64_t group) {
    return _mm256_set1_ps(_cvtsh_ss(s[o * kOctetBytes / group]));
  }
  template <bool Signed>
  LLM_ALWAYS_INLINE static __m256 zeros(const uint8_t *z, int64_t o, int64_t group) {
    const uint8_t v = z[o * kOctetBytes / group];
    return _mm256_set1_ps(Signed ? static_cast<float>(static_cast<int8_t>(v)) : static_cast<float>(v));
  }
};

// Scales / zero points lane by lane: groups of other sizes (96, 160, ...)
// and the last, partial octet of a row (lanes of blocks >= nb are 0).
struct GroupAny {
  static int64_t block(int64_t o, int s) { return o * kOctet + kOctetBlock[s]; }
  static __m256 scales(const uint16_t *s, int64_t o, int64_t group, int64_t nb) {
    alignas(32) float v[kOctet];
    for (int l = 0; l < kOctet; ++l) {
      const int64_t b = block(o, l);
      v[l] = b < nb ? _cvtsh_ss(s[b * kActBlock / group]) : 0.0f;
    }
    return _mm256_load_ps(v);
  }
  template <bool Signed>
  static __m256 zeros(const uint8_t *z, int64_t o, int64_t group, int64_t nb) {
    alignas(32) float v[kOctet];
    for (int l = 0; l < kOctet; ++l) {
      const int64_t b = block(o, l);
      const uint8_t q = b < nb ? z[b * kActBlock / group] : 0;
      v[l] = Signed ? static_cast<float>(static_cast<int8_t>(q)) : static_cast<float>(q);
    }
    return _mm256_load_ps(v);
  }
  static __m256 scales(const uint16_t *s, int64_t o, int64_t group) { return scales(s, o, group, (o + 1) * kOctet); }
  template <bool Signed>
  static __m256 zeros(const uint8_t *z, int64_t o, int64_t group) {
    return zeros<Signed>(z, o, group, (o + 1) * kOctet);
  }
};

// ---- zero points: z * s per lane (applied as acc -= z * s * dsum) -------------------

struct ZeroNone {  // I8 symmetric
  static constexpr bool kApplies = false;
  static constexpr bool kEight = false;
  template <class G, class... Extra>
  LLM_ALWAYS_INLINE static __m256 zsw(__m256, const uint8_t *, int64_t, int64_t, int64_t, Extra...) {
    return _mm256_setzero_ps();
  }
};

struct ZeroEight {  // I4 symmetric: z = 8
  static constexpr bool kApplies = true;
  // The wide tile applies z = 8 to the integer sums (the activations' zsum).
  static constexpr bool kEight = true;
  template <class G, class... Extra>
  LLM_ALWAYS_INLINE static __m256 zsw(__m256 sw, const uint8_t *, int64_t, int64_t, int64_t, Extra...) {
    return _mm256_mul_ps(sw, _mm256_set1_ps(8.0f));
  }
};

template <bool Signed>
struct ZeroGroup {  // stored zero points: int8 for I8, uint8 for I4
  static constexpr bool kApplies = true;
  static constexpr bool kEight = false;
  template <class G, class... Extra>
  LLM_ALWAYS_INLINE static __m256 zsw(__m256 sw, const uint8_t *zeros, int64_t offset, int64_t o, int64_t group,
                                      Extra... nb) {
    return _mm256_mul_ps(sw, G::template zeros<Signed>(zeros + offset, o, group, nb...));
  }
};

// ---- the register tile ---------------------------------------------------------------

// Octets [o0, o1) of one k-panel; `tail` adds the partial octet o1 (the last
// panel, when nb is not a multiple of 8).
struct Panel {
  int64_t o0, o1;
  bool tail;
};

// Policies with 512-bit vectors (F::kWide) take the wide tile.
template <class F, class = void>
struct IsWide : std::false_type {};
template <class F>
struct IsWide<F, std::void_t<decltype(F::kWide)>> : std::bool_constant<F::kWide> {};
// Decode (one token) keeps the 8-lane tile on every policy: it is bound by
// memory, and its four independent row streams measured faster there than
// two row pairs.
template <class F, int T>
constexpr bool kUsesWideTile = IsWide<F>::value && T > 1;

// The activations of a token tile over one panel, packed token-interleaved
// so that one pointer (and constant offsets) reaches every token: for octet
// o of the panel (counted from o0), step v (of F::kSteps) and token t, the
// U = kOctetBytes / kSteps bytes sit at q + ((o - o0) * kSteps + v) * T * U
// + t * U, and the lane-ordered dp / dsum / zsum values at dp / dsum / zsum
// + ((o - o0) * T + t) * kLanes. kLanes is 8, or 16 for the wide tile, which
// wants each token's 8 values in both halves of a 512-bit vector: packing
// writes them twice (one plain load then, instead of a broadcast, which
// would take a shuffle pipe from the dot products). Per-token pointers (a
// row stride apart) would take more registers than there are, and strides
// that are multiples of 4 KiB make the tile's loads collide in L1. With one
// token this is the scratch layout itself, so nothing is copied (kLanes 8).
template <class F, int T>
struct TokenRows {
  static constexpr int64_t kUnit = kOctetBytes / F::kSteps;
  static constexpr bool kDup = kUsesWideTile<F, T>;
  static constexpr int64_t kLanes = kDup ? 2 * kOctet : kOctet;
  const int8_t *q;
  const float *dp;
  const float *dsum;
  const int32_t *zsum;
  int64_t o0;
  LLM_ALWAYS_INLINE const int8_t *xq(int64_t o, int v, int t) const {
    return q + ((o - o0) * F::kSteps + v) * (T * kUnit) + t * kUnit;
  }
  LLM_ALWAYS_INLINE int64_t lanes(int64_t o, int t) const { return ((o - o0) * T + t) * kLanes; }
  LLM_ALWAYS_INLINE const float *xdp(int64_t o, int t) const { return dp + lanes(o, t); }
  LLM_ALWAYS_INLINE const float *xdsum(int64_t o, int t) const { return dsum + lanes(o, t); }
  LLM_ALWAYS_INLINE const int32_t *xzsum(int64_t o, int t) const { return zsum + lanes(o, t); }
};

// Largest token tile of any x86 policy, and the packing buffer of a token
// tile: a panel of activations plus the partial octet past it, and their
// dp / dsum.
// (A panel holds at most kPanelBytes of a tile's activations, or one octet
// of every token, so (panel octets + 1) * T <= kPackOctetTokens.)
constexpr int kMaxTileTokens = 8;
constexpr int64_t kPackOctetTokens = kPanelBytes / kOctetBytes + kMaxTileTokens;
struct PackBuffer {
  alignas(64) int8_t q[kPackOctetTokens * kOctetBytes];
  alignas(64) float dp[kPackOctetTokens * 2 * kOctet];
  alignas(64) float dsum[kPackOctetTokens * 2 * kOctet];
  alignas(64) int32_t zsum[kPackOctetTokens * 2 * kOctet];
};

// Tokens t0.. t0 + T - 1 over octets [o0, o_end) of the panel: dsum and
// zsum only where the tile reads them (zero points in float, or z = 8 in the
// integer sums of the wide tile).
template <class F, class Z, int T>
LLM_ALWAYS_INLINE TokenRows<F, T> pack_tokens(const Acts &x, int64_t t0, int64_t o0, int64_t o_end, PackBuffer &buf) {
  using Rows = TokenRows<F, T>;
  constexpr int64_t U = Rows::kUnit;
  if constexpr (T == 1) {
    const int64_t lanes = t0 * x.nb8 + o0 * kOctet;
    return {x.q + t0 * x.q_row + o0 * kOctetBytes, x.dp + lanes, x.dsum + lanes, x.zsum + lanes, o0};
  } else {
    const Rows rows{buf.q, buf.dp, buf.dsum, buf.zsum, o0};
    for (int64_t o = o0; o < o_end; ++o)
      for (int t = 0; t < T; ++t) {
        const int8_t *src = x.q + (t0 + t) * x.q_row + o * kOctetBytes;
        int8_t *dst = buf.q + (o - o0) * F::kSteps * T * U + t * U;
        for (int v = 0; v < F::kSteps; ++v) std::memcpy(dst + v * T * U, src + v * U, U);
        constexpr bool kIntZero = Rows::kDup && Z::kEight;
        const int64_t from = (t0 + t) * x.nb8 + o * kOctet, to = rows.lanes(o, t);
        for (int64_t h = 0; h < Rows::kLanes; h += kOctet) {
          std::memcpy(buf.dp + to + h, x.dp + from, kOctet * sizeof(float));
          if constexpr (Z::kApplies && !kIntZero)
            std::memcpy(buf.dsum + to + h, x.dsum + from, kOctet * sizeof(float));
          if constexpr (kIntZero) std::memcpy(buf.zsum + to + h, x.zsum + from, kOctet * sizeof(int32_t));
        }
      }
    return rows;
  }
}

// One decoded weight octet (scales sw, zero-point terms zsw, both in lane
// order) against the T tokens: acc[t] += (q.x) * dp * sw - zsw * dsum.
// Loop order: each decoded weight vector is loaded once and used for all T
// tokens; per token only the integer sum and the float accumulator stay in
// registers (the decoded octet itself lives in L1).
template <class F, class Z, int T, int T0 = 0, int TN = T>
LLM_ALWAYS_INLINE void octet_tokens(const typename F::Octet &w, __m256 sw, __m256 zsw, const TokenRows<F, T> &x,
                                    int64_t o, __m256 *acc) {
  if constexpr (TN > kHalfTile) {
    // Tiles of more than kHalfTile tokens go in two halves: the int16 sums
    // of all tokens and the finishing work would not fit in the registers
    // together (the decoded octet is read twice, from L1).
    octet_tokens<F, Z, T, T0, TN / 2>(w, sw, zsw, x, o, acc);
    octet_tokens<F, Z, T, T0 + TN / 2, TN - TN / 2>(w, sw, zsw, x, o, acc);
  } else {
    typename F::Acc s[TN];
#pragma GCC unroll 8
    for (int t = 0; t < TN; ++t) s[t] = F::zero();
#pragma GCC unroll 8
    for (int v = 0; v < F::kSteps; ++v) {
      const typename F::Lane wv = F::lane(w, v);
#pragma GCC unroll 8
      for (int t = 0; t < TN; ++t) {
        s[t] = F::step(s[t], wv, x.xq(o, v, T0 + t));
        keep_chain(s[t]);
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < TN; ++t) {
      const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(x.xdp(o, T0 + t)), sw);
      acc[T0 + t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(F::finish(s[t])), scale, acc[T0 + t]);
      if constexpr (Z::kApplies)
        acc[T0 + t] = _mm256_fnmadd_ps(zsw, _mm256_loadu_ps(x.xdsum(o, T0 + t)), acc[T0 + t]);
    }
  }
}

// Bytes of weights per octet of a row.
template <class F>
constexpr int64_t octet_weight_bytes() {
  return F::kOctetWeightBytes;
}

template <class F, class G, class Z, int T>
LLM_ALWAYS_INLINE void octet_step(const QMatmulArgs &a, int64_t row, int64_t o, const TokenRows<F, T> &x,
                                  __m256 *acc) {
  typename F::Octet w;
  F::decode(a.q + row * a.row_bytes + o * octet_weight_bytes<F>(), w);
  const __m256 sw = G::scales(a.scales + row * a.groups, o, a.group);
  const __m256 zsw = Z::template zsw<G>(sw, a.zeros, row * a.groups, o, a.group);
  octet_tokens<F, Z, T>(w, sw, zsw, x, o, acc);
}

// The partial octet o at the end of a row: its weight bytes are copied into
// a zero-padded buffer (never reading past the row); lanes of missing blocks
// get zero scales, and their activations are zero anyway.
template <class F>
void copy_tail_octet(const QMatmulArgs &a, int64_t row, int64_t o, uint8_t *pad) {
  constexpr int64_t kBytes = octet_weight_bytes<F>();
  const int64_t valid = (a.x.nb - o * kOctet) * (kBytes / kOctet);
  std::memcpy(pad, a.q + row * a.row_bytes + o * kBytes, static_cast<size_t>(valid));
}

template <class F, class Z, int T>
void tail_step(const QMatmulArgs &a, int64_t row, int64_t o, const TokenRows<F, T> &x, __m256 *acc) {
  alignas(32) uint8_t pad[octet_weight_bytes<F>()] = {};
  copy_tail_octet<F>(a, row, o, pad);
  typename F::Octet w;
  F::decode(pad, w);
  const __m256 sw = GroupAny::scales(a.scales + row * a.groups, o, a.group, a.x.nb);
  const __m256 zsw = Z::template zsw<GroupAny>(sw, a.zeros, row * a.groups, o, a.group, a.x.nb);
  octet_tokens<F, Z, T>(w, sw, zsw, x, o, acc);
}

// Tiles of several rows read them side by side, octet by octet: several
// short runs (1-6 KiB a row) at once, which the hardware prefetchers do not
// follow on their own. So those tiles prefetch the same octet of the row
// kPrefetchRows further on. (Decode, one token, reads one row at a time
// instead: a single sequential stream per thread, 25-40 % faster from
// memory than four rows side by side with this prefetch.)
constexpr int64_t kPrefetchRows = 8;

// Decode's single stream is prefetched this far ahead into L2 (prefetcht1):
// the hardware prefetchers alone keep too few lines in flight while the
// core also computes (int4 decode reached 83-90 % of the plain read
// bandwidth without, 95-100 % with; 2 KiB ahead was too short, 16 KiB no
// better). The stream runs on into the next rows of the matrix; nothing
// past the matrix is prefetched.
constexpr int64_t kDecodePrefetchBytes = 8192;

template <class F>
LLM_ALWAYS_INLINE void prefetch_ahead(const QMatmulArgs &a, int64_t row, int64_t o) {
  const int64_t at = row * a.row_bytes + o * octet_weight_bytes<F>() + kDecodePrefetchBytes;
  const int64_t end = std::min(at + octet_weight_bytes<F>(), a.rows * a.row_bytes);
  for (int64_t b = at; b < end; b += 64) _mm_prefetch(reinterpret_cast<const char *>(a.q + b), _MM_HINT_T1);
}

template <class F>
LLM_ALWAYS_INLINE void prefetch_octet(const QMatmulArgs &a, int64_t row, int64_t o) {
  if (row >= a.rows) return;
  const auto line = [](const void *p) { _mm_prefetch(static_cast<const char *>(p), _MM_HINT_T0); };
  const uint8_t *w = a.q + row * a.row_bytes + o * octet_weight_bytes<F>();
  for (int64_t b = 0; b < octet_weight_bytes<F>(); b += 64) line(w + b);
  const int64_t g = row * a.groups + o * kOctetBytes / a.group;
  line(a.scales + g);
  if (a.zeros) line(a.zeros + g);
}

// out[t0 + t][j + r] for r < R, t < T over one panel.
template <class F, class G, class Z, int R, int T>
void tile(const QMatmulArgs &a, int64_t j, int64_t t0, const Panel &p, const TokenRows<F, T> &x) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t o = p.o0; o < p.o1; ++o) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      if constexpr (R > 1) prefetch_octet<F>(a, j + r + kPrefetchRows, o);
      if constexpr (R == 1 && T == 1) prefetch_ahead<F>(a, j, o);
      octet_step<F, G, Z, T>(a, j + r, o, x, acc[r]);
    }
  }
  if (p.tail)
    for (int r = 0; r < R; ++r) tail_step<F, Z, T>(a, j + r, p.o1, x, acc[r]);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      const float s = hsum_ps(acc[r][t]);
      float *o = a.out + (t0 + t) * a.ldo + j + r;
      // The first panel starts from the bias; later panels accumulate.
      *o = p.o0 > 0 ? *o + s : (a.bias ? a.bias[j + r] + s : s);
    }
}

#if defined(__AVX512F__)
// ---- the wide register tile (AVX-512 policies) -------------------------------------
//
// A 512-bit activation vector holds units 2v and 2v + 1 of an octet (quant_
// avx512_impl.h), so a plain 512-bit integer sum would hold every block
// twice (even units in the low half, odd units in the high half) and need
// folding before the float work, one per (row, token, octet). On the
// AVX-512 CPU measured (Zen 5) vpdpbusd and the float multiplies and FMAs
// share the same two pipes, so that float work took a third of them.
// The wide tile therefore takes rows in pairs and puts one row in each
// half: with the weight vectors
//     a[v] = [row 0 unit 2v | row 1 unit 2v + 1],
//     b[v] = [row 1 unit 2v | row 0 unit 2v + 1]
// the sums A = [row 0 even units | row 1 odd units] and B = [row 1 even |
// row 0 odd] give A + swap_halves(B) = [row 0 | row 1], every block of both
// rows complete. One convert, one multiply (activation scales times the two
// rows' weight scales) and one FMA then finish 16 blocks: two rows at once.
// The accumulators keep the two rows in their halves until the end of the
// panel.
LLM_ALWAYS_INLINE __m512 join_ps(__m256 lo, __m256 hi) {
  return _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}
LLM_ALWAYS_INLINE __m512i swap_halves(__m512i v) { return _mm512_shuffle_i64x2(v, v, 0x4E); }

// Weight pair p of the tile, decoded, with its scales (sw) and zero-point
// terms (zsw), row 0 in the low half and row 1 in the high half.
template <class F>
struct WidePair {
  typename F::Octet a, b;
  __m512 sw, zsw;
};

// Decodes octet o of rows r0 and r1 (their bytes at p0 / p1, scales and
// zero points through G with `extra` = nb for the partial octet).
template <class F, class G, class Z, class... Extra>
LLM_ALWAYS_INLINE void decode_pair(const QMatmulArgs &a, int64_t r0, int64_t r1, const uint8_t *p0, const uint8_t *p1,
                                   int64_t o, WidePair<F> &w, Extra... extra) {
  F::decode_pair(p0, p1, w.a, w.b);
  const __m256 s0 = G::scales(a.scales + r0 * a.groups, o, a.group, extra...);
  const __m256 s1 = G::scales(a.scales + r1 * a.groups, o, a.group, extra...);
  w.sw = join_ps(s0, s1);
  if constexpr (Z::kApplies && !Z::kEight)
    w.zsw = join_ps(Z::template zsw<G>(s0, a.zeros, r0 * a.groups, o, a.group, extra...),
                    Z::template zsw<G>(s1, a.zeros, r1 * a.groups, o, a.group, extra...));
}

// The P decoded pairs against the T tokens: acc[p][t] += (q.x) * dp * sw -
// zsw * dsum, two rows per vector. Symmetric int4 (z = 8) adds -8 * sum to
// the integer sums instead (zsum; exact, and no float work).
template <class F, class Z, int P, int T>
LLM_ALWAYS_INLINE void wide_octet(const WidePair<F> *w, const TokenRows<F, T> &x, int64_t o, __m512 (*acc)[T]) {
  static_assert(TokenRows<F, T>::kDup, "the wide tile reads each token's lane values twice over (16 lanes)");
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) {
    // All the tile's integer sums first, then their float work: written
    // token by token, each token's float work would wait for its sums at
    // the head of the queue while the next token's independent products
    // queue behind it.
    __m512i s[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      typename F::Acc sa = F::zero(), sb = F::zero();
#pragma GCC unroll 4
      for (int v = 0; v < F::kSteps; ++v) {
        // One load for both products: left to itself the compiler folds the
        // load into each of them, and loads then limit the tile.
        __m512i xv = _mm512_loadu_si512(x.xq(o, v, t));
        __asm__("" : "+v"(xv));
        sa = F::step(sa, F::lane(w[p].a, v), xv);
        sb = F::step(sb, F::lane(w[p].b, v), xv);
      }
      s[t] = _mm512_add_epi32(F::finish512(sa), swap_halves(F::finish512(sb)));
      if constexpr (Z::kEight) s[t] = _mm512_add_epi32(s[t], _mm512_loadu_si512(x.xzsum(o, t)));
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 dp = _mm512_loadu_ps(x.xdp(o, t));
      acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(dp, w[p].sw), acc[p][t]);
      if constexpr (Z::kApplies && !Z::kEight)
        acc[p][t] = _mm512_fnmadd_ps(w[p].zsw, _mm512_loadu_ps(x.xdsum(o, t)), acc[p][t]);
    }
  }
}

// The decoded pair of rows j + 2q, j + 2q + 1 (of the range chunk starting at
// row jc) at octet o of panel p, in the work area (QMatmulArgs::work).
template <class F>
LLM_ALWAYS_INLINE WidePair<F> *work_slot(const QMatmulArgs &a, int64_t jc, int64_t j, int q, const Panel &p,
                                         int64_t o) {
  static_assert(sizeof(WidePair<F>) <= kWideWorkSlotBytes, "a decoded pair must fit its slot");
  static_assert(kPanelBytes / (F::kMaxT * kOctetBytes) + 1 <= kWideWorkOctets,
                "a prompt's panel and its partial octet must fit the slots");
  const int64_t pair = (j - jc) / 2 + q;
  return reinterpret_cast<WidePair<F> *>(a.work + (pair * kWideWorkOctets + (o - p.o0)) * kWideWorkSlotBytes);
}

// out[t0 + t][j + r] for r < R, t < T over one panel (the wide tile): R / 2
// row pairs; R = 1 runs the row as a pair with itself and keeps one half.
// With a work area, a product of more tokens than one tile (a prompt) keeps
// the pairs its first token tile decodes there, and the panel's later token
// tiles read them back instead of decoding the same octets again (decoding
// took about a fifth of a prompt's tile; the slots stay in L2).
template <class F, class G, class Z, int R, int T>
void tile_wide(const QMatmulArgs &a, int64_t jc, int64_t j, int64_t t0, const Panel &p, const TokenRows<F, T> &x) {
  constexpr int P = (R + 1) / 2;
  const auto row_of = [&](int i) { return j + std::min(i, R - 1); };  // row i of the tile (i < 2P)
  __m512 acc[P][T];
  for (int q = 0; q < P; ++q)
    for (int t = 0; t < T; ++t) acc[q][t] = _mm512_setzero_ps();
  WidePair<F> w[P];
  constexpr int64_t kBytes = octet_weight_bytes<F>();
  // The first token tile of a panel reads the weights from memory (later
  // ones find them in L2): it prefetches the rows kPrefetchRows ahead, as
  // the multi-row tiles do. That is every tile of a batch of decoding
  // sessions.
  const bool from_memory = t0 == 0;
  const bool keep = a.work && a.n > F::kBatchT;  // decoded pairs go to / come from the work area
  for (int64_t o = p.o0; o < p.o1; ++o) {
#pragma GCC unroll 4
    for (int q = 0; q < P; ++q) {
      if (keep && !from_memory) {
        w[q] = *work_slot<F>(a, jc, j, q, p, o);
        continue;
      }
      const int64_t r0 = row_of(2 * q), r1 = row_of(2 * q + 1);
      if (from_memory) {
        prefetch_octet<F>(a, r0 + kPrefetchRows, o);
        if (R > 1) prefetch_octet<F>(a, r1 + kPrefetchRows, o);
      }
      decode_pair<F, G, Z>(a, r0, r1, a.q + r0 * a.row_bytes + o * kBytes, a.q + r1 * a.row_bytes + o * kBytes, o,
                           w[q]);
      if (keep) *work_slot<F>(a, jc, j, q, p, o) = w[q];
    }
    wide_octet<F, Z, P, T>(w, x, o, acc);
  }
  if (p.tail) {
    // The partial octet: weight bytes copied into zero-padded buffers (no
    // read past a row), zero scales for the missing blocks.
    for (int q = 0; q < P; ++q) {
      if (keep && !from_memory) {
        w[q] = *work_slot<F>(a, jc, j, q, p, p.o1);
        continue;
      }
      const int64_t r0 = row_of(2 * q), r1 = row_of(2 * q + 1);
      alignas(64) uint8_t pad0[kBytes] = {}, pad1[kBytes] = {};
      copy_tail_octet<F>(a, r0, p.o1, pad0);
      copy_tail_octet<F>(a, r1, p.o1, pad1);
      decode_pair<F, GroupAny, Z>(a, r0, r1, pad0, pad1, p.o1, w[q], a.x.nb);
      if (keep) *work_slot<F>(a, jc, j, q, p, p.o1) = w[q];
    }
    wide_octet<F, Z, P, T>(w, x, p.o1, acc);
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) {
      const __m512 v = acc[i / 2][t];
      const __m256 half = i % 2 == 0 ? _mm512_castps512_ps256(v)
                                     : _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
      const float s = hsum_ps(half);
      float *out = a.out + (t0 + t) * a.ldo + j + i;
      *out = p.o0 > 0 ? *out + s : (a.bias ? a.bias[j + i] + s : s);
    }
}
#endif

// Rows per tile for a token tile of T: decode reads one row at a time (a
// sequential stream, see kPrefetchRows); with more tokens, two rows share
// each token's activation loads until the accumulators take the registers
// (16 on AVX2; the wide tile, with 32, keeps 2 rows up to 8 tokens).
template <class F, int T>
constexpr int rows_for_tokens() {
  if constexpr (kUsesWideTile<F, T>) return 2;
  return T == 2 ? 2 : 1;
}

// Rows j.. of the range chunk starting at row jc.
template <class F, class G, class Z, int R, int T>
LLM_ALWAYS_INLINE void any_tile(const QMatmulArgs &a, int64_t jc, int64_t j, int64_t t0, const Panel &p,
                                const TokenRows<F, T> &x) {
#if defined(__AVX512F__)
  if constexpr (kUsesWideTile<F, T>) {
    tile_wide<F, G, Z, R, T>(a, jc, j, t0, p, x);
    return;
  }
#endif
  if constexpr (!kUsesWideTile<F, T>) {
    (void)jc;  // only the wide tile keeps decoded rows
    tile<F, G, Z, R, T>(a, j, t0, p, x);
  }
}

// The tokens' activations over the panel are packed once (pack_tokens) and
// reused for every row of the task.
template <class F, class G, class Z, int T>
void token_tile(const QMatmulArgs &a, int64_t j0, int64_t j1, int64_t t0, const Panel &p, PackBuffer &buf) {
  static_assert(T <= kMaxTileTokens, "token tile larger than the packing buffer");
  constexpr int R = rows_for_tokens<F, T>();
  const TokenRows<F, T> x = pack_tokens<F, Z, T>(a.x, t0, p.o0, p.o1 + (p.tail ? 1 : 0), buf);
  int64_t j = j0;
  for (; j + R <= j1; j += R) any_tile<F, G, Z, R, T>(a, j0, j, t0, p, x);
  if constexpr (R > 1) {
    for (; j < j1; ++j) any_tile<F, G, Z, 1, T>(a, j0, j, t0, p, x);
  }
}

// The last `left` (<= T) tokens, through the tile made for that many.
template <class F, class G, class Z, int T>
void token_rest(const QMatmulArgs &a, int64_t j0, int64_t j1, int64_t t0, const Panel &p, int64_t left,
                PackBuffer &buf) {
  if constexpr (T > 0) {
    if (left == T) return token_tile<F, G, Z, T>(a, j0, j1, t0, p, buf);
    token_rest<F, G, Z, T - 1>(a, j0, j1, t0, p, left, buf);
  }
}

// Batches of a few tokens (n <= F::kBatchT: decode of several sessions)
// run as one token tile of n, so that each weight octet is decoded once per
// call; larger n goes in tiles of F::kMaxT and one tile of the rest.
template <class F, class G, class Z>
void rows_impl(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  if (a.work && j1 - j0 > kWideWorkRows) {  // the work area holds one chunk's rows
    for (int64_t j = j0; j < j1; j += kWideWorkRows) rows_impl<F, G, Z>(a, j, std::min(j1, j + kWideWorkRows));
    return;
  }
  constexpr int kT = F::kMaxT;
  const int64_t octets = a.x.nb / kOctet;
  const bool has_tail = a.x.nb % kOctet != 0;
  const bool one_tile = a.n <= F::kBatchT;
  const int64_t tile_tokens = one_tile ? a.n : std::min<int64_t>(a.n, kT);
  const int64_t panel_octets = std::max<int64_t>(1, kPanelBytes / (tile_tokens * kOctetBytes));
  PackBuffer buf;
  for (int64_t o0 = 0;; o0 += panel_octets) {
    const int64_t o1 = std::min(octets, o0 + panel_octets);
    const Panel p{o0, o1, o1 == octets && has_tail};
    if (one_tile) {
      token_rest<F, G, Z, F::kBatchT>(a, j0, j1, 0, p, a.n, buf);
    } else {
      int64_t t0 = 0;
      for (; t0 + kT <= a.n; t0 += kT) token_tile<F, G, Z, kT>(a, j0, j1, t0, p, buf);
      token_rest<F, G, Z, kT - 1>(a, j0, j1, t0, p, a.n - t0, buf);
    }
    if (o1 == octets) break;
  }
}

// Group sizes of 32, 64 and 128 (every group size the converter offers)
// have their own scale layouts; kAllLayouts adds the layouts of group
// sizes that are multiples of 256 and of any other multiple of 32. Returns
// false, having done nothing, for a layout not compiled in.
template <class F, class Z, bool kAllLayouts>
bool pick_group(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  const int64_t blocks_per_group = a.group / kActBlock;
  if (blocks_per_group == 1) return rows_impl<F, GroupPow2<1>, Z>(a, j0, j1), true;
  if (blocks_per_group == 2) return rows_impl<F, GroupPow2<2>, Z>(a, j0, j1), true;
  if (blocks_per_group == 4) return rows_impl<F, GroupPow2<4>, Z>(a, j0, j1), true;
  if constexpr (kAllLayouts) {
    if (blocks_per_group % kOctet == 0) return rows_impl<F, GroupWide, Z>(a, j0, j1), true;
    return rows_impl<F, GroupAny, Z>(a, j0, j1), true;
  }
  return false;
}

// matmul_q body for the format policies I8F / I4F (one per instruction set).
// With kAllLayouts false, returns false for the group sizes it leaves out
// (the AVX-512 files hand those to the AVX2 body: each instantiated layout
// costs about 80 KB of code, and those sizes are rare).
template <class I8F, class I4F, bool kAllLayouts = true>
bool rows_dispatch(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  if (a.dtype == DType::I8) {
    if (a.zeros) return pick_group<I8F, ZeroGroup<true>, kAllLayouts>(a, j0, j1);
    return pick_group<I8F, ZeroNone, kAllLayouts>(a, j0, j1);
  }
  if (a.zeros) return pick_group<I4F, ZeroGroup<false>, kAllLayouts>(a, j0, j1);
  return pick_group<I4F, ZeroEight, kAllLayouts>(a, j0, j1);
}

}  // namespace

}  // namespace llm::cpu::detail
