// A session: one conversation's context on a model. Everything it needs (KV
// cache, activations, logits, sampler and streaming buffers) is reserved when
// it is created, from one backend block and one host block; evaluating and
// generating allocate nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

#include "format/error.h"
#include "runtime/backend.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/text_stream.h"

namespace llm {

// Receives the inputs of the model's matrix products during evaluation, for
// tools such as the converter's calibration. Requires a host-memory backend.
class ActivationObserver {
 public:
  enum Site { AttnInput, AttnOutput, FfnInput, FfnDownInput, HeadInput };
  virtual ~ActivationObserver() = default;
  // rows x cols floats with row stride `stride`; layer is -1 for HeadInput.
  virtual void observe(int layer, Site site, const float *x, int64_t rows, int64_t cols, int64_t stride) = 0;
};

enum class ContextPolicy { Stop, Shift };

struct SessionOptions {
  int64_t n_ctx = 0;        // 0: model context length
  int64_t n_batch = 0;      // 0: min(512, n_ctx)
  bool logits_all = false;
  uint64_t memory_limit = 0;  // 0: none
  KvType kv_type = KvType::F16;
  ContextPolicy policy = ContextPolicy::Stop;
  int64_t n_keep = 0;       // Shift: positions never dropped (a leading BOS is always kept)
  int64_t n_discard = 0;    // Shift: positions dropped per shift; 0 = half of the shiftable ones
  std::shared_ptr<KvPool> pool;  // nullptr: the session reserves a pool of its own
};

// Sizes of everything a session reserves, computed from (model, options).
struct SessionMemory {
  int64_t n_ctx = 0, n_batch = 0, n_logits = 0;
  uint64_t kv_bytes = 0;           // the session's own KV pool (0 on a shared pool)
  uint64_t activation_bytes = 0;   // backend working buffers incl. attention scratch
  uint64_t backend_bytes = 0;      // activations (one backend block)
  uint64_t host_bytes = 0;         // logits, RoPE tables, token history, sampler, page table
  uint64_t overhead_bytes = 0;     // session object and stream buffers
  uint64_t total() const { return kv_bytes + backend_bytes + host_bytes + overhead_bytes; }
};

// KV geometry of a model with rows of type t; throws LLM_ERR_UNSUPPORTED when
// the model's head size cannot be stored in that type.
KvGeometry kv_geometry(const Model &model, KvType t);

SessionMemory plan_session_memory(const Model &model, const SessionOptions &options);

class Session {
 public:
  // Throws llm::Error(LLM_ERR_OUT_OF_MEMORY) when the plan exceeds
  // options.memory_limit or memory cannot be reserved. With `prefix`, the new
  // session starts holding prefix's context (tokens, KV and last logits);
  // KV pages are shared copy-on-write where possible (see KvSequence).
  Session(const Model &model, const SessionOptions &options, const Session *prefix = nullptr);
  ~Session();
  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

  const Model &model() const { return model_; }
  const SessionMemory &memory() const { return mem_; }
  const SessionOptions &options() const { return opt_; }
  int64_t n_ctx() const { return mem_.n_ctx; }
  int64_t n_tokens() const { return n_past_; }
  const int32_t *tokens() const { return tokens_; }
  const KvSequence &kv() const { return *kv_; }
  uint64_t n_shifts() const { return n_shifts_; }

  // Appends tokens and runs the model over them (see llm_session_eval).
  // cancellable=false ignores cancel() (used for tokens already delivered).
  // With the Shift policy, a full context is shifted to make room.
  void eval(const int32_t *tokens, size_t n, bool cancellable = true);
  // Logits of the last eval, in host memory. They stay in backend memory
  // until first asked for (the sampler may not need them there: sample).
  const float *logits() const;              // last position, or nullptr
  const float *logits_at(int64_t i) const;  // i-th token of the last eval
  bool has_logits() const { return n_logits_valid_ > 0; }
  // Draws the next token from the last position's logits (has_logits()),
  // penalising the last repeat_last_n tokens of the context. Where the
  // backend can select the sampler's candidates in its own memory, only
  // those are read (the draw is the same as from the whole row).
  int32_t sample(const SamplerParams &params);
  void reset();
  // Keeps the first n tokens (n <= n_tokens()); logits become unavailable
  // until the next eval (ensure_logits re-evaluates the last token).
  void truncate(int64_t n);
  // Makes logits() available again after truncate/restore, by re-evaluating
  // the last token when needed. False if the session is empty.
  bool ensure_logits();
  // Frees room for `need` more tokens under the Shift policy: drops the
  // oldest tokens after the kept ones and re-rotates the remaining keys.
  // Throws LLM_ERR_CONTEXT_FULL when that cannot make enough room.
  void shift(int64_t need);
  // Whether appending `n` tokens fits (after shifting, for the Shift policy).
  bool can_append(int64_t n) const;

  // Session state (see llm_session_save): size, write, read back.
  size_t state_size() const;
  void save_state(uint8_t *out, size_t size) const;
  void restore_state(const uint8_t *data, size_t size);

  // One token for each of n sessions in one forward pass over the weights
  // (see llm_decode_batch).
  static void decode_batch(Session *const *sessions, const int32_t *tokens, size_t n);

  void cancel() { cancel_.store(true, std::memory_order_relaxed); }
  void clear_cancel() { cancel_.store(false, std::memory_order_relaxed); }
  bool cancelled() const { return cancel_.load(std::memory_order_relaxed); }

  // Not owned; nullptr to stop observing. For sessions on the CPU backend
  // only: observers read activations as host memory.
  void set_observer(ActivationObserver *observer) {
    if (observer && std::strcmp(backend_.name(), "cpu") != 0)
      fail(LLM_ERR_UNSUPPORTED, "activation observers need a session on the CPU backend");
    observer_ = observer;
  }

  Sampler &sampler() { return *sampler_; }
  TextStream &stream() { return *stream_; }
  char *piece_buffer() { return piece_buf_; }
  size_t piece_capacity() const { return piece_cap_; }
  bool sampler_seeded = false;
  int stop_reason = 0;

  // Rows of one forward step that belong to one session.
  struct Segment {
    Session *session;
    int64_t row0, n, pos0;
  };

 private:
  int64_t keep_count() const;
  void forward(const int32_t *tokens, int64_t n, const Segment *segments, size_t n_segments,
               bool want_all_logits, bool cancellable);
  void compute_rope_tables(int64_t row0, int64_t pos0, int64_t n);
  void observe(int layer, ActivationObserver::Site site, const Act &a);

  const Model &model_;
  SessionOptions opt_;
  SessionMemory mem_;
  Backend &backend_;
  void *backend_block_ = nullptr;
  void *host_block_ = nullptr;

  // Backend buffers.
  Act x_, xb_, q_, k_, v_, att_, gate_, up_, logits_dev_;
  float *att_scratch_ = nullptr;
  void *mm_scratch_ = nullptr;     // matmul workspace (quantized activations)
  std::unique_ptr<KvSequence> kv_;
  // Host buffers.
  float *logits_ = nullptr;     // n_logits x vocab
  float *rope_cos_ = nullptr, *rope_sin_ = nullptr;  // n_batch x head_dim/2
  int32_t *tokens_ = nullptr;   // n_ctx
  Segment *segments_ = nullptr; // n_batch (decode_batch)
  StepSegment *step_segments_ = nullptr;  // n_batch
  char *piece_buf_ = nullptr;
  size_t piece_cap_ = 0;

  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<TextStream> stream_;
  int64_t n_past_ = 0;
  int64_t n_logits_valid_ = 0;  // rows of logits holding results of the last eval
  // Those rows are still only in logits_dev_ (logits() copies them).
  mutable bool logits_pending_ = false;
  void set_host_logits(int64_t rows) {
    n_logits_valid_ = rows;
    logits_pending_ = false;
  }
  const float *host_logits() const;
  int64_t last_eval_n_ = 0;     // tokens in the last eval call
  uint64_t n_shifts_ = 0;
  std::atomic<bool> cancel_{false};
  ActivationObserver *observer_ = nullptr;
};

}  // namespace llm
