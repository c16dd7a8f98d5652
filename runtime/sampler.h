// Token sampling from a logits vector: repetition penalty, temperature,
// top-k, top-p, min-p, then a draw from a seeded generator. Works in buffers
// the caller reserves once (the session arena); sampling never allocates.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llm {

struct SamplerParams {
  float temperature = 0.8f;   // <= 0: greedy (argmax after penalties)
  int32_t top_k = 40;         // <= 0: off
  float top_p = 0.95f;        // >= 1: off
  float min_p = 0.05f;        // <= 0: off; keep p >= min_p * p_max
  float repeat_penalty = 1.0f;// 1: off; llama.cpp / CTRL rule (divide positive logits, multiply negative)
  int32_t repeat_last_n = 64; // how many recent tokens the penalty looks at
};

// Deterministic generator (xoshiro256**), identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1), 53 random bits
 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  // ids/probs: caller-owned buffers of at least vocab_size elements.
  Sampler(int32_t vocab_size, int32_t *ids, float *probs)
      : vocab_size_(vocab_size), ids_(ids), probs_(probs) {}

  static size_t scratch_bytes(int32_t vocab_size) {
    return static_cast<size_t>(vocab_size) * (sizeof(int32_t) + sizeof(float));
  }

  void seed(uint64_t seed) { rng_.seed_with(seed); }

  // Samples one token. `history` holds the most recent tokens of the context
  // (oldest first); only its last repeat_last_n entries are used. logits are
  // not modified. Filters apply in the order: penalty, top-k, temperature
  // softmax, top-p, min-p; then one draw. Ties in greedy mode pick the lowest
  // id; greedy mode does not advance the generator.
  int32_t sample(const float *logits, const SamplerParams &params,
                 const int32_t *history, size_t n_history);

  // How many of the best logits (before the penalty) sample_candidates needs
  // to draw exactly what sample() draws from the whole row, or 0 where it
  // needs the whole row (no top-k, or a penalty below 1, which can lift a
  // token from anywhere). n_history as for sample().
  size_t candidates_needed(const SamplerParams &params, size_t n_history) const;
  // sample() given only the candidates_needed() best logits of the row (ids
  // and their logits, in any order): the same token, and the same state of
  // the generator after it.
  int32_t sample_candidates(const int32_t *ids, const float *logits, size_t n, const SamplerParams &params,
                            const int32_t *history, size_t n_history);

 private:
  // Stages of sample() after the penalty; each leaves the kept candidates in
  // ids_[0, n) with their unnormalised weights in probs_[id] and returns n.
  size_t keep_top_k(size_t k, const SamplerParams &params);
  size_t weigh_top_k(size_t k, const SamplerParams &params);
  size_t keep_full(size_t n_vocab, const SamplerParams &params);
  int32_t draw(size_t n);

  int32_t vocab_size_;
  int32_t *ids_;
  float *probs_;
  Rng rng_;
};

}  // namespace llm
