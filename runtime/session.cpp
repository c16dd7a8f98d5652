#include "runtime/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "format/error.h"
#include "runtime/host_memory.h"

namespace llm {
namespace {

uint64_t align64(uint64_t n) { return (n + 63) / 64 * 64; }

// Carves consecutive 64-byte-aligned pieces out of one block.
class Carver {
 public:
  explicit Carver(void *base) : base_(static_cast<char *>(base)) {}
  template <class T>
  T *take(uint64_t count) {
    T *p = base_ ? reinterpret_cast<T *>(base_ + used_) : nullptr;
    used_ += align64(count * sizeof(T));
    return p;
  }
  uint64_t used() const { return used_; }

 private:
  char *base_;
  uint64_t used_ = 0;
};

struct Dims {
  int64_t d, q_dim, kv_dim, ffn, vocab, half;
};

Dims dims_of(const HParams &h) {
  return Dims{h.hidden_size, int64_t{h.num_heads} * h.head_dim, int64_t{h.num_kv_heads} * h.head_dim,
              h.intermediate_size, h.vocab_size, h.head_dim / 2};
}

// One layout function serves both planning (base == nullptr) and carving, so
// the reported size and the reserved memory cannot disagree.
struct BackendBuffers {
  float *x, *xb, *q, *k, *v, *att, *gate, *up, *logits, *scratch;
  char *mm_scratch;
};
uint64_t layout_backend(void *base, const Dims &dm, const SessionMemory &m, size_t scratch_floats, size_t mm_scratch_bytes, BackendBuffers *out) {
  Carver c(base);
  BackendBuffers b;
  b.x = c.take<float>(m.n_batch * dm.d);
  b.xb = c.take<float>(m.n_batch * dm.d);
  b.q = c.take<float>(m.n_batch * dm.q_dim);
  b.k = c.take<float>(m.n_batch * dm.kv_dim);
  b.v = c.take<float>(m.n_batch * dm.kv_dim);
  b.att = c.take<float>(m.n_batch * dm.q_dim);
  b.gate = c.take<float>(m.n_batch * dm.ffn);
  b.up = c.take<float>(m.n_batch * dm.ffn);
  b.logits = c.take<float>(m.n_logits * dm.vocab);
  b.scratch = c.take<float>(scratch_floats);
  b.mm_scratch = c.take<char>(mm_scratch_bytes);
  if (out) *out = b;
  return c.used();
}

struct HostBuffers {
  float *logits, *cos, *sin, *probs;
  int32_t *tokens, *ids;
  char *piece, *segments, *step_segments;
};
uint64_t layout_host(void *base, const Dims &dm, const SessionMemory &m, size_t piece_cap,
                     HostBuffers *out) {
  Carver c(base);
  HostBuffers b;
  b.logits = c.take<float>(m.n_logits * dm.vocab);
  b.cos = c.take<float>(m.n_batch * dm.half);
  b.sin = c.take<float>(m.n_batch * dm.half);
  b.tokens = c.take<int32_t>(m.n_ctx);
  b.ids = c.take<int32_t>(dm.vocab);
  b.probs = c.take<float>(dm.vocab);
  b.piece = c.take<char>(piece_cap);
  b.segments = c.take<char>(static_cast<uint64_t>(m.n_batch) * sizeof(Session::Segment));
  b.step_segments = c.take<char>(static_cast<uint64_t>(m.n_batch) * sizeof(StepSegment));
  if (out) *out = b;
  return c.used();
}

// Matmul workspace for the widest input of any product (the MLP's down
// projection reads intermediate_size columns).
size_t matmul_scratch(const Model &model, const SessionMemory &m) {
  const HParams &h = model.hparams();
  const int64_t widest = std::max<int64_t>({int64_t{h.hidden_size}, int64_t{h.num_heads} * h.head_dim,
                                            int64_t{h.intermediate_size}});
  return model.backend().matmul_scratch_bytes(m.n_batch, widest);
}

size_t piece_bytes_for(const Model &model) { return model.tokenizer().max_piece_bytes() + 16; }

}  // namespace

KvGeometry kv_geometry(const Model &model, KvType t) {
  const HParams &h = model.hparams();
  if (!cpu::kv_type_fits(t, h.head_dim))
    fail(LLM_ERR_UNSUPPORTED, std::string("a KV cache of type ") + cpu::kv_type_name(t) +
                                  " cannot hold this model's heads of " + std::to_string(h.head_dim) +
                                  " values (int4 needs a multiple of 32; every type at most 512)");
  KvGeometry g;
  g.type = t;
  g.n_layers = h.num_layers;
  g.n_kv_heads = h.num_kv_heads;
  g.head_dim = h.head_dim;
  return g;
}

SessionMemory plan_session_memory(const Model &model, const SessionOptions &o) {
  if (model.vocab_only())
    fail(LLM_ERR_UNSUPPORTED, "the model file is vocab-only (no weights); sessions need weights");
  const HParams &h = model.hparams();
  if (o.n_ctx < 0 || o.n_batch < 0) fail_argument("n_ctx and n_batch must not be negative");
  if (o.n_keep < 0 || o.n_discard < 0) fail_argument("n_keep and n_discard must not be negative");
  SessionMemory m;
  m.n_ctx = o.n_ctx == 0 ? h.max_context : o.n_ctx;
  if (m.n_ctx > int64_t{h.max_context})
    fail_argument("n_ctx " + std::to_string(m.n_ctx) + " exceeds the model's context length " +
                  std::to_string(h.max_context));
  if (o.policy == ContextPolicy::Shift && o.n_keep >= m.n_ctx)
    fail_argument("n_keep " + std::to_string(o.n_keep) + " leaves nothing to shift in a context of " +
                  std::to_string(m.n_ctx));
  m.n_batch = o.n_batch == 0 ? std::min<int64_t>(512, m.n_ctx) : std::min<int64_t>(o.n_batch, m.n_ctx);
  m.n_logits = o.logits_all ? m.n_batch : 1;
  const Dims dm = dims_of(h);
  const KvGeometry g = o.pool ? o.pool->geometry() : kv_geometry(model, o.kv_type);
  if (o.pool && g != kv_geometry(model, g.type)) fail_argument("the KV pool was made for another model");
  const int64_t pages = pages_for(m.n_ctx);
  m.kv_bytes = o.pool ? 0 : static_cast<uint64_t>(pages) * g.page_bytes();
  m.backend_bytes = layout_backend(nullptr, dm, m, model.backend().attention_scratch_floats(m.n_ctx, m.n_batch, h.num_heads, h.num_kv_heads, h.head_dim),
                                   matmul_scratch(model, m), nullptr);
  m.activation_bytes = m.backend_bytes;
  m.host_bytes = layout_host(nullptr, dm, m, piece_bytes_for(model), nullptr);
  m.overhead_bytes = sizeof(Session) + sizeof(Sampler) + sizeof(KvSequence) +
                     TextStream::kMaxStopStrings * TextStream::kMaxStopLength +
                     8 * (piece_bytes_for(model) + TextStream::kMaxStopLength) +
                     static_cast<uint64_t>(pages) * sizeof(int32_t) +
                     (o.pool ? 0 : sizeof(KvPool) + static_cast<uint64_t>(pages) * 2 * sizeof(int32_t));
  return m;
}

Session::Session(const Model &model, const SessionOptions &options, const Session *prefix)
    : model_(model), opt_(options), mem_(plan_session_memory(model, options)), backend_(model.backend()) {
  if (options.memory_limit != 0 && mem_.total() > options.memory_limit)
    fail(LLM_ERR_OUT_OF_MEMORY,
         "session needs " + std::to_string(mem_.total()) + " bytes (KV cache " +
             std::to_string(mem_.kv_bytes) + ", activations " + std::to_string(mem_.activation_bytes) +
             ", host buffers " + std::to_string(mem_.host_bytes + mem_.overhead_bytes) +
             ") but memory_limit is " + std::to_string(options.memory_limit));
  if (prefix && prefix->n_past_ > mem_.n_ctx)
    fail(LLM_ERR_CONTEXT_FULL, "the source session holds " + std::to_string(prefix->n_past_) +
                                   " tokens but the new session's context is " + std::to_string(mem_.n_ctx));
  const HParams &h = model.hparams();
  const Dims dm = dims_of(h);
  // The pool and the sequence reserve their memory (or throw) first.
  std::shared_ptr<KvPool> pool = options.pool;
  if (!pool) pool = std::make_shared<KvPool>(backend_, kv_geometry(model, options.kv_type), pages_for(mem_.n_ctx));
  opt_.kv_type = pool->geometry().type;
  kv_ = std::make_unique<KvSequence>(pool, mem_.n_ctx, options.policy == ContextPolicy::Stop,
                                     prefix ? prefix->kv_.get() : nullptr, prefix ? prefix->n_past_ : 0);

  backend_.reserve_steps(mem_.n_batch, mem_.n_ctx);
  backend_block_ = backend_.alloc(mem_.backend_bytes);
  host_block_ = host_alloc(mem_.host_bytes, 64);
  if (!host_block_) {
    backend_.free(backend_block_);
    fail(LLM_ERR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(mem_.host_bytes) + " bytes of host memory");
  }
  BackendBuffers bb;
  layout_backend(backend_block_, dm, mem_, backend_.attention_scratch_floats(mem_.n_ctx, mem_.n_batch, h.num_heads, h.num_kv_heads, h.head_dim),
                 matmul_scratch(model, mem_), &bb);
  mm_scratch_ = bb.mm_scratch;
  auto act = [&](float *p, int64_t cols) { return Act{p, mem_.n_batch, cols, cols}; };
  x_ = act(bb.x, dm.d);
  xb_ = act(bb.xb, dm.d);
  q_ = act(bb.q, dm.q_dim);
  k_ = act(bb.k, dm.kv_dim);
  v_ = act(bb.v, dm.kv_dim);
  att_ = act(bb.att, dm.q_dim);
  gate_ = act(bb.gate, dm.ffn);
  up_ = act(bb.up, dm.ffn);
  logits_dev_ = Act{bb.logits, mem_.n_logits, dm.vocab, dm.vocab};
  att_scratch_ = bb.scratch;

  HostBuffers hb;
  piece_cap_ = piece_bytes_for(model);
  layout_host(host_block_, dm, mem_, piece_cap_, &hb);
  logits_ = hb.logits;
  rope_cos_ = hb.cos;
  rope_sin_ = hb.sin;
  tokens_ = hb.tokens;
  piece_buf_ = hb.piece;
  segments_ = reinterpret_cast<Segment *>(hb.segments);
  step_segments_ = reinterpret_cast<StepSegment *>(hb.step_segments);
  try {
    sampler_ = std::make_unique<Sampler>(static_cast<int32_t>(dm.vocab), hb.ids, hb.probs);
    stream_ = std::make_unique<TextStream>(piece_cap_);
  } catch (...) {
    backend_.free(backend_block_);
    host_free(host_block_);
    throw;
  }
  if (prefix) {
    std::memcpy(tokens_, prefix->tokens_, static_cast<size_t>(prefix->n_past_) * sizeof(int32_t));
    n_past_ = prefix->n_past_;
    if (const float *l = prefix->logits()) {
      std::memcpy(logits_, l, static_cast<size_t>(dm.vocab) * sizeof(float));
      set_host_logits(1);
      last_eval_n_ = 1;
    }
  }
}

Session::~Session() {
  backend_.free(backend_block_);
  host_free(host_block_);
}

void Session::reset() {
  kv_->truncate(n_past_, 0);
  n_past_ = 0;
  set_host_logits(0);
  last_eval_n_ = 0;
  sampler_seeded = false;
  stop_reason = 0;
}

void Session::truncate(int64_t n) {
  if (n < 0 || n > n_past_)
    fail_argument("cannot truncate to " + std::to_string(n) + " tokens: the session holds " +
                  std::to_string(n_past_));
  if (n == n_past_) return;
  kv_->truncate(n_past_, n);
  n_past_ = n;
  set_host_logits(0);
  last_eval_n_ = 0;
}

bool Session::ensure_logits() {
  if (has_logits()) return true;
  if (n_past_ == 0) return false;
  const int32_t last = tokens_[n_past_ - 1];
  truncate(n_past_ - 1);
  eval(&last, 1, /*cancellable=*/false);
  return true;
}

int64_t Session::keep_count() const {
  int64_t keep = std::min(opt_.n_keep, n_past_);
  const int32_t bos = model_.meta().generation.bos_id;
  if (keep == 0 && n_past_ > 0 && bos >= 0 && tokens_[0] == bos) keep = 1;
  return keep;
}

bool Session::can_append(int64_t n) const {
  const int64_t free = mem_.n_ctx - n_past_;
  if (n <= free) return true;
  if (opt_.policy != ContextPolicy::Shift) return false;
  return n <= mem_.n_ctx - keep_count();
}

void Session::shift(int64_t need) {
  const int64_t keep = keep_count();
  const int64_t movable = n_past_ - keep;
  if (need <= 0) return;
  if (movable < need || opt_.policy != ContextPolicy::Shift)
    fail(LLM_ERR_CONTEXT_FULL, "cannot make room for " + std::to_string(need) + " tokens: the context holds " +
                                   std::to_string(n_past_) + " of " + std::to_string(mem_.n_ctx) + ", " +
                                   std::to_string(keep) + " of them kept");
  int64_t discard = opt_.n_discard > 0 ? opt_.n_discard : movable / 2;
  discard = std::clamp<int64_t>(std::max(discard, need), 1, movable);
  const int64_t moved = movable - discard;
  // Rotation by -discard positions, in the RoPE tables' layout.
  const std::vector<double> &inv_freq = model_.rope_inv_freq();
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  const double delta = -static_cast<double>(discard) * model_.rope_position_scale();
  for (int64_t j = 0; j < half; ++j) {
    rope_cos_[j] = static_cast<float>(std::cos(delta * inv_freq[j]));
    rope_sin_[j] = static_cast<float>(std::sin(delta * inv_freq[j]));
  }
  if (moved > 0) backend_.kv_shift(*kv_, keep, keep + discard, moved, rope_cos_, rope_sin_);
  std::memmove(tokens_ + keep, tokens_ + keep + discard, static_cast<size_t>(moved) * sizeof(int32_t));
  kv_->truncate(n_past_, n_past_ - discard);
  n_past_ -= discard;
  ++n_shifts_;
}

const float *Session::host_logits() const {
  if (logits_pending_) {
    backend_.read(logits_dev_.slice_rows(0, n_logits_valid_), logits_);
    logits_pending_ = false;
  }
  return logits_;
}

const float *Session::logits() const {
  return n_logits_valid_ > 0 ? host_logits() + (n_logits_valid_ - 1) * model_.hparams().vocab_size : nullptr;
}

const float *Session::logits_at(int64_t i) const {
  if (mem_.n_logits == 1 || n_logits_valid_ == 0) return nullptr;
  if (i < 0) i += last_eval_n_;
  // Only the last chunk's rows are kept: they are the last n_logits_valid_ tokens.
  int64_t first_kept = last_eval_n_ - n_logits_valid_;
  if (i < first_kept || i >= last_eval_n_) return nullptr;
  return host_logits() + (i - first_kept) * model_.hparams().vocab_size;
}

int32_t Session::sample(const SamplerParams &params) {
  if (!has_logits()) fail_argument("no logits: evaluate tokens first");
  const int64_t n_history = std::min<int64_t>(n_past_, std::max(params.repeat_last_n, 0));
  const int32_t *history = tokens_ + n_past_ - n_history;
  const size_t n = sampler_->candidates_needed(params, static_cast<size_t>(n_history));
  if (logits_pending_ && n > 0 && n <= kMaxSampleCandidates) {
    int32_t ids[kMaxSampleCandidates];
    float values[kMaxSampleCandidates];
    const Act row = logits_dev_.slice_rows(n_logits_valid_ - 1, 1);
    if (backend_.top_candidates(row.data, row.cols, static_cast<int>(n), ids, values))
      return sampler_->sample_candidates(ids, values, n, params, history, static_cast<size_t>(n_history));
  }
  return sampler_->sample(logits(), params, history, static_cast<size_t>(n_history));
}

namespace {
void check_tokens(const int32_t *tokens, size_t n, int64_t vocab) {
  for (size_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab)
      fail(LLM_ERR_INVALID_TOKEN, "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                      " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}
}  // namespace

void Session::eval(const int32_t *tokens, size_t n, bool cancellable) {
  if (n == 0) return;
  if (!tokens) fail_argument("tokens is NULL");
  check_tokens(tokens, n, model_.hparams().vocab_size);
  if (static_cast<uint64_t>(n) > static_cast<uint64_t>(mem_.n_ctx - n_past_)) {
    if (opt_.policy == ContextPolicy::Shift && can_append(static_cast<int64_t>(n)))
      shift(static_cast<int64_t>(n) - (mem_.n_ctx - n_past_));
    else
      fail(LLM_ERR_CONTEXT_FULL, "cannot evaluate " + std::to_string(n) + " tokens: the context holds " +
                                     std::to_string(n_past_) + " of " + std::to_string(mem_.n_ctx));
  }
  set_host_logits(0);
  last_eval_n_ = static_cast<int64_t>(n);
  for (size_t done = 0; done < n;) {
    if (cancellable && cancelled()) fail(LLM_ERR_CANCELLED, "evaluation cancelled");
    int64_t chunk = std::min<int64_t>(mem_.n_batch, static_cast<int64_t>(n - done));
    bool last_chunk = done + chunk == n;
    kv_->prepare_write(n_past_, chunk);
    const Segment seg{this, 0, chunk, n_past_};
    forward(tokens + done, chunk, &seg, 1, mem_.n_logits > 1, cancellable);
    std::memcpy(tokens_ + n_past_, tokens + done, static_cast<size_t>(chunk) * sizeof(int32_t));
    n_past_ += chunk;
    done += chunk;
    if (last_chunk) {
      // The logits stay in backend memory until asked for (host_logits).
      n_logits_valid_ = mem_.n_logits > 1 ? chunk : 1;
      logits_pending_ = true;
    }
  }
}

void Session::decode_batch(Session *const *sessions, const int32_t *tokens, size_t n) {
  if (n == 0) return;
  if (!sessions || !tokens) fail_argument("sessions and tokens must not be NULL");
  Session &lead = *sessions[0];
  if (static_cast<int64_t>(n) > lead.mem_.n_batch)
    fail_argument("a batch of " + std::to_string(n) + " sessions exceeds the first session's n_batch (" +
                  std::to_string(lead.mem_.n_batch) + ")");
  for (size_t i = 0; i < n; ++i) {
    const Session *s = sessions[i];
    if (!s) fail_argument("sessions[" + std::to_string(i) + "] is NULL");
    if (&s->model_ != &lead.model_) fail_argument("every session of a batch must belong to one model");
    for (size_t j = 0; j < i; ++j)
      if (sessions[j] == s) fail_argument("session " + std::to_string(i) + " appears twice in the batch");
    if (!s->can_append(1))
      fail(LLM_ERR_CONTEXT_FULL, "session " + std::to_string(i) + " of the batch has a full context");
  }
  check_tokens(tokens, n, lead.model_.hparams().vocab_size);
  for (size_t i = 0; i < n; ++i) {
    Session &s = *sessions[i];
    if (s.n_past_ >= s.mem_.n_ctx) s.shift(1);
    s.kv_->prepare_write(s.n_past_, 1);
    lead.segments_[i] = Segment{&s, static_cast<int64_t>(i), 1, s.n_past_};
  }
  lead.forward(tokens, static_cast<int64_t>(n), lead.segments_, n, true, false);
  // Each session's logits are in its own backend buffer, as after an eval
  // (also when the step was a replay).
  for (size_t i = 0; i < n; ++i) {
    Session &s = *sessions[i];
    s.tokens_[s.n_past_] = tokens[i];
    ++s.n_past_;
    s.n_logits_valid_ = 1;
    s.logits_pending_ = true;
    s.last_eval_n_ = 1;
  }
}

void Session::compute_rope_tables(int64_t row0, int64_t pos0, int64_t n) {
  const std::vector<double> &inv_freq = model_.rope_inv_freq();
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  const double scale = model_.rope_position_scale();
  for (int64_t i = 0; i < n; ++i) {
    const double pos = static_cast<double>(pos0 + i) * scale;
    float *c = rope_cos_ + (row0 + i) * half, *s = rope_sin_ + (row0 + i) * half;
    for (int64_t j = 0; j < half; ++j) {
      const double angle = pos * inv_freq[j];
      c[j] = static_cast<float>(std::cos(angle));
      s[j] = static_cast<float>(std::sin(angle));
    }
  }
}

}  // namespace llm
