// Token sampling. Every step that decides which token is drawn is defined so
// that the result does not depend on the platform: candidates are ordered by
// a strict total order (value descending, id ascending) before any prefix is
// taken or walked, sums run in a fixed order, and exp() is computed from basic
// IEEE operations instead of the C library (whose expf differs in the last
// bit between vendors). Bit-identical weights also need the compiler not to
// fuse a * b + c into FMAs (GCC does by default for C++ wherever FMA exists,
// e.g. -march=native or AArch64): build this file with -ffp-contract=off.
// Without it a weight can move by one ulp, which changes a draw only if the
// uniform number falls within that ulp of a boundary.
#include "runtime/sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

namespace llm {
namespace {

// ---------------------------------------------------------------------------
// Generator: xoshiro256** (Blackman & Vigna), state filled by splitmix64 so
// that any 64-bit seed, including 0, gives a well-mixed non-zero state.

uint64_t splitmix64(uint64_t &state) {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// ---------------------------------------------------------------------------
// exp(-d) for d >= 0 (d = +inf included; NaN gives 0), in float arithmetic.
// With x = -d: range reduction x = n ln2 + r with |r| <= ln2/2, a degree-7
// Taylor polynomial (truncation error ~5e-9, so a few float ulp in all) and
// an exact scaling by 2^n built from bits. No branches and no floating-point
// selects (which compilers will not vectorise under the default
// -ftrapping-math), so loops over the vocabulary vectorise, 4 lanes wide.
inline float exp_neg(float d) {
  // fabs: d may be -0 (a max of -0 against +0), and the clamp below relies on
  // the sign bit of x being set; NaN becomes one the clamp catches too.
  float x = -std::fabs(d);
  // Below -87 the result would be under FLT_MIN: such weights are set to 0
  // (keeping subnormals, and so flush-to-zero settings, out of the picture).
  // For negative floats the bit pattern read as a signed integer grows with
  // magnitude, so an integer comparison decides and an integer mask selects.
  constexpr float kFloor = -87.0f;
  int32_t xi, floor_i;
  std::memcpy(&xi, &x, sizeof xi);
  std::memcpy(&floor_i, &kFloor, sizeof floor_i);
  const uint32_t below = 0u - static_cast<uint32_t>(xi > floor_i);
  const uint32_t xb = (static_cast<uint32_t>(xi) & ~below) | (static_cast<uint32_t>(floor_i) & below);
  std::memcpy(&x, &xb, sizeof x);

  constexpr float kLog2e = 1.44269504f;
  constexpr float kLn2Hi = 0.693359375f;  // few mantissa bits: n * hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  // Adding 1.5 * 2^23 rounds x / ln2 to the nearest integer n and leaves n in
  // the low bits of the sum.
  constexpr float kShift = 12582912.0f;
  const float shifted = x * kLog2e + kShift;
  const float n = shifted - kShift;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n: the low 9 bits of (bits + 127) are n + 127 (n >= -126), which the
  // shift moves into the exponent field.
  uint32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float e = p * scale;
  uint32_t eb;
  std::memcpy(&eb, &e, sizeof eb);
  eb &= ~below;
  float result;
  std::memcpy(&result, &eb, sizeof result);
  return result;
}

// NaN would break the strict ordering the selection relies on, and +inf would
// turn the softmax into inf - inf; map them to the ends of the finite range.
// Selects, not branches, so the copy loop vectorises.
inline float sanitize(float v) {
  v = v == v ? v : -std::numeric_limits<float>::infinity();
  return v < FLT_MAX ? v : FLT_MAX;
}

// Sum of values[0, n) in a fixed order: four interleaved partial sums (to hide
// the latency of the additions) combined at the end.
double sum_all(const float *values, size_t n) {
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (size_t lane = 0; lane < 4; ++lane) part[lane] += values[i + lane];
  for (; i < n; ++i) part[0] += values[i];
  return (part[0] + part[1]) + (part[2] + part[3]);
}

// Largest of values[0, n) (n > 0; no NaN). Eight independent maxima so the
// loop is not one long dependency chain; max is exact, so the grouping does
// not change the result.
float max_value(const float *values, size_t n) {
  float part[8];
  for (float &m : part) m = values[0];
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t lane = 0; lane < 8; ++lane)
      part[lane] = values[i + lane] > part[lane] ? values[i + lane] : part[lane];
  for (; i < n; ++i) part[0] = values[i] > part[0] ? values[i] : part[0];
  float m = part[0];
  for (float p : part) m = p > m ? p : m;
  return m;
}

// Strict total order over token ids: higher value first, lower id on ties.
// The unique order it induces makes partial_sort results platform-independent.
struct ByValueDesc {
  const float *v;
  bool operator()(int32_t a, int32_t b) const {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  }
};

// Copies logits into `values` and applies the repetition penalty there. The
// penalised value is computed from the original logit, so a token repeated in
// the window is penalised once, as the CTRL rule asks, without any bookkeeping.
bool penalty_on(const SamplerParams &p, const int32_t *history) {
  return p.repeat_penalty != 1.0f && p.repeat_penalty > 0.0f && p.repeat_last_n != 0 && history != nullptr;
}

// The entries of history the penalty looks at: the last repeat_last_n (a
// negative window means the whole history given).
size_t penalty_window(const SamplerParams &p, size_t n_history) {
  return p.repeat_last_n < 0 ? n_history : std::min(n_history, static_cast<size_t>(p.repeat_last_n));
}

inline float penalised(float sanitized_logit, float penalty) {
  return sanitized_logit > 0.0f ? sanitized_logit / penalty : sanitized_logit * penalty;
}

void copy_with_penalty(const float *logits, int32_t n_vocab, const SamplerParams &p,
                       const int32_t *history, size_t n_history, float *values) {
  for (int32_t i = 0; i < n_vocab; ++i) values[i] = sanitize(logits[i]);
  if (!penalty_on(p, history)) return;
  for (size_t i = n_history - penalty_window(p, n_history); i < n_history; ++i) {
    const int32_t tok = history[i];
    if (tok < 0 || tok >= n_vocab) continue;
    values[tok] = penalised(sanitize(logits[tok]), p.repeat_penalty);
  }
}

// Lowest id among the maximal values.
int32_t argmax(const float *values, int32_t n) {
  const float m = max_value(values, static_cast<size_t>(n));
  int32_t i = 0;
  while (values[i] != m) ++i;
  return i;
}

// Replaces the values of ids[0, n) by their softmax weights exp((v - max) / T)
// (unnormalised: the best token weighs exactly 1) and returns their sum, taken
// in the order of ids.
double to_weights(const int32_t *ids, size_t n, float max, float temperature, float *values) {
  double total = 0.0;
  for (size_t j = 0; j < n; ++j) {
    float &v = values[ids[j]];
    v = exp_neg((max - v) / temperature);
    total += v;
  }
  return total;
}

// The same over the whole vocabulary, summed by sum_all. Two loops, so the
// first (the exps) vectorises.
double to_weights_all(size_t n, float max, float temperature, float *values) {
  for (size_t i = 0; i < n; ++i) values[i] = exp_neg((max - values[i]) / temperature);
  return sum_all(values, n);
}

// Counts the values[0, n) above (or at least) bound: loops the compiler
// vectorises, used to skip whole blocks of a scan. (32-bit counts: as wide as
// a float lane, so no widening in the loop.)
inline uint32_t count_above(const float *values, size_t n, float bound) {
  uint32_t count = 0;
  for (size_t j = 0; j < n; ++j) count += values[j] > bound;
  return count;
}

inline uint32_t count_at_least(const float *values, size_t n, float bound) {
  uint32_t count = 0;
  for (size_t j = 0; j < n; ++j) count += values[j] >= bound;
  return count;
}

// Writes the ids whose value is >= bound to ids, in id order; returns how
// many. Survivors are usually few, so blocks without any are skipped after a
// vectorised count.
size_t gather_at_least(const float *values, size_t n, float bound, int32_t *ids) {
  constexpr size_t kBlock = 32;
  size_t m = 0;
  for (size_t i = 0; i < n; i += kBlock) {
    const size_t end = std::min(n, i + kBlock);
    if (count_at_least(values + i, end - i, bound) == 0) continue;
    for (size_t j = i; j < end; ++j)
      if (values[j] >= bound) ids[m++] = static_cast<int32_t>(j);
  }
  return m;
}

// Leaves the k best ids (by ByValueDesc) in ids[0, k), best first. A heap of
// the k best so far keeps its worst at the front; a token enters only if its
// value beats that worst one, which after the first few thousand tokens is
// rare, so blocks of tokens are checked at once and mostly skipped.
void select_top_k(const float *values, size_t n, size_t k, int32_t *ids) {
  const ByValueDesc order{values};
  for (size_t i = 0; i < k; ++i) ids[i] = static_cast<int32_t>(i);
  std::make_heap(ids, ids + k, order);
  float worst = values[ids[0]];
  auto offer = [&](size_t i) {
    // Equal values lose: their id is higher than every id in the heap.
    if (!(values[i] > worst)) return;
    std::pop_heap(ids, ids + k, order);
    ids[k - 1] = static_cast<int32_t>(i);
    std::push_heap(ids, ids + k, order);
    worst = values[ids[0]];
  };
  constexpr size_t kBlock = 32;
  for (size_t i = k; i < n; i += kBlock) {
    const size_t end = std::min(n, i + kBlock);
    if (count_above(values + i, end - i, worst) == 0) continue;
    for (size_t j = i; j < end; ++j) offer(j);
  }
  std::sort_heap(ids, ids + k, order);
}

// Limits shared by top-p and min-p, in weight units.
struct Cutoffs {
  double mass;    // top-p: keep the shortest prefix whose weight reaches this
  float min_w;    // min-p: keep weights >= this
};

// The best candidate weighs exactly 1 (exp(0)), so min-p's bound is min_p
// itself, and comparisons against it are exact in float and double alike.
Cutoffs make_cutoffs(const SamplerParams &p, double total) {
  Cutoffs c;
  c.mass = p.top_p < 1.0f ? static_cast<double>(p.top_p) * total
                          : std::numeric_limits<double>::infinity();
  c.min_w = p.min_p > 0.0f ? p.min_p : 0.0f;
  return c;
}

// Walks the sorted candidates ids[0, n) and returns how many top-p and min-p
// keep together (both keep a prefix, so the result is the shorter one; at
// least one), or 0 when neither cutoff is reached inside these n.
size_t cut_sorted(const int32_t *ids, size_t n, const float *w, const Cutoffs &c) {
  double mass = 0.0;
  for (size_t j = 0; j < n; ++j) {
    const double wj = w[ids[j]];
    if (j > 0 && wj < c.min_w) return j;
    mass += wj;
    if (mass >= c.mass) return j + 1;
  }
  return 0;
}

// Sorts the candidates ids[0, m) best first only as far as the cutoffs need:
// growing prefixes are partially sorted until one contains the cut, so a
// top-p over a flat 150k vocabulary does not sort the whole of it unless the
// cut lies near the end. Returns the number kept.
size_t sort_and_cut(int32_t *ids, size_t m, const float *w, const Cutoffs &c) {
  const ByValueDesc order{w};
  for (size_t prefix = 256;; prefix *= 8) {
    if (prefix >= m) {
      std::sort(ids, ids + m, order);
      const size_t kept = cut_sorted(ids, m, w, c);
      return kept > 0 ? kept : m;
    }
    std::partial_sort(ids, ids + prefix, ids + m, order);
    const size_t kept = cut_sorted(ids, prefix, w, c);
    if (kept > 0) return kept;
  }
}

}  // namespace

// ---------------------------------------------------------------------------

void Rng::seed_with(uint64_t seed) {
  uint64_t state = seed;
  for (uint64_t &word : s_) word = splitmix64(state);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() {
  // The top 53 bits are the best of xoshiro256** and fill a double's mantissa.
  return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
}

// ---------------------------------------------------------------------------

int32_t Sampler::sample(const float *logits, const SamplerParams &params,
                        const int32_t *history, size_t n_history) {
  if (vocab_size_ <= 0) return -1;
  copy_with_penalty(logits, vocab_size_, params, history, n_history, probs_);
  if (!(params.temperature > 0.0f)) return argmax(probs_, vocab_size_);

  const size_t n_vocab = static_cast<size_t>(vocab_size_);
  const bool use_top_k = params.top_k > 0 && params.top_k < vocab_size_;
  const size_t n_kept = use_top_k ? keep_top_k(static_cast<size_t>(params.top_k), params)
                                  : keep_full(n_vocab, params);
  return draw(n_kept);
}

// Top-k path: only k candidates are ordered and weighed.
size_t Sampler::keep_top_k(size_t k, const SamplerParams &params) {
  select_top_k(probs_, static_cast<size_t>(vocab_size_), k, ids_);
  return weigh_top_k(k, params);
}

// ids_[0, k): the k best, best first, with their values in probs_.
size_t Sampler::weigh_top_k(size_t k, const SamplerParams &params) {
  const double total = to_weights(ids_, k, probs_[ids_[0]], params.temperature, probs_);
  if (!(total > 0.0)) return 1;  // every logit -inf: the first (lowest id) one
  const Cutoffs c = make_cutoffs(params, total);
  const size_t kept = cut_sorted(ids_, k, probs_, c);
  return kept > 0 ? kept : k;
}

// No top-k: the softmax spans the vocabulary (top-p needs its total), min-p
// then drops the tail without sorting, and only the survivors are ordered,
// and only when top-p needs an order.
size_t Sampler::keep_full(size_t n_vocab, const SamplerParams &params) {
  const float max = max_value(probs_, n_vocab);
  const double total = to_weights_all(n_vocab, max, params.temperature, probs_);
  if (!(total > 0.0)) {  // every logit -inf: all weights 0, take id 0 as greedy would
    ids_[0] = 0;
    return 1;
  }
  const Cutoffs c = make_cutoffs(params, total);
  size_t m = n_vocab;
  if (!(c.min_w > 0.0f)) {
    std::iota(ids_, ids_ + n_vocab, 0);
  } else {
    m = gather_at_least(probs_, n_vocab, c.min_w, ids_);
    if (m == 0) {  // min_p > 1 keeps nothing; at least the best token stays
      ids_[0] = argmax(probs_, vocab_size_);
      m = 1;
    }
  }
  // Without top-p, id order is as canonical as any for the draw.
  if (!(c.mass < std::numeric_limits<double>::infinity())) return m;
  return sort_and_cut(ids_, m, probs_, c);
}

// The penalty only lowers a logit when it is at least 1, so the best k after
// it are among the best k + (tokens in the window) before it: a token that
// ends among the best k has fewer than k others above it that the penalty
// did not touch, and at most the window's tokens above it that it did.
size_t Sampler::candidates_needed(const SamplerParams &params, size_t n_history) const {
  const size_t vocab = static_cast<size_t>(std::max<int32_t>(vocab_size_, 0));
  size_t k = 0;
  if (!(params.temperature > 0.0f))
    k = 1;
  else if (params.top_k > 0 && params.top_k < vocab_size_)
    k = static_cast<size_t>(params.top_k);
  if (k == 0) return 0;
  // A history pointer is all penalty_on() asks about the history itself.
  const int32_t any = 0;
  if (penalty_on(params, &any)) {
    if (params.repeat_penalty < 1.0f) return 0;
    k += penalty_window(params, n_history);
  }
  return std::min(k, vocab);
}

int32_t Sampler::sample_candidates(const int32_t *ids, const float *logits, size_t n, const SamplerParams &params,
                                   const int32_t *history, size_t n_history) {
  if (vocab_size_ <= 0 || n == 0) return -1;
  // probs_ holds values only at the candidates' ids.
  for (size_t j = 0; j < n; ++j) {
    ids_[j] = ids[j];
    probs_[ids[j]] = sanitize(logits[j]);
  }
  if (penalty_on(params, history)) {
    // Penalised once per token, from its logit, as copy_with_penalty does.
    std::sort(ids_, ids_ + n);
    for (size_t i = n_history - penalty_window(params, n_history); i < n_history; ++i) {
      const int32_t tok = history[i];
      const int32_t *at = std::lower_bound(ids_, ids_ + n, tok);
      if (at == ids_ + n || *at != tok) continue;  // not a candidate: it cannot be drawn
      const size_t j = static_cast<size_t>(std::find(ids, ids + n, tok) - ids);
      probs_[tok] = penalised(sanitize(logits[j]), params.repeat_penalty);
    }
  }
  std::sort(ids_, ids_ + n, ByValueDesc{probs_});
  if (!(params.temperature > 0.0f)) return ids_[0];
  const size_t k = std::min(n, static_cast<size_t>(params.top_k));
  return draw(weigh_top_k(k, params));
}

// One draw from the weights of ids_[0, n), walked in that order.
int32_t Sampler::draw(size_t n) {
  double total = 0.0;
  for (size_t j = 0; j < n; ++j) total += probs_[ids_[j]];
  const double target = rng_.uniform() * total;
  double mass = 0.0;
  int32_t last = ids_[0];
  for (size_t j = 0; j < n; ++j) {
    const float w = probs_[ids_[j]];
    if (!(w > 0.0f)) continue;
    mass += w;
    last = ids_[j];
    if (target < mass) return ids_[j];
  }
  // Only reached when rounding put target on the total, or all weights are 0.
  return last;
}

}  // namespace llm
