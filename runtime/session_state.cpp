// Session state: everything needed to continue a session later, in one
// versioned, checksummed byte string (see llm_session_save).
//
// Layout (little-endian):
//   StateHeader (72 bytes)
//   tokens      n_tokens x int32
//   logits      vocab x float32, when has_logits
//   KV rows     for each layer, for K then V, for each KV head: the rows of
//               positions 0 .. n_tokens-1 in the cache's row format
// The checksum (XXH3-64) covers everything after the header.
#include <cstring>
#include <string>

#include <xxhash.h>

#include "format/error.h"
#include "runtime/session.h"

namespace llm {
namespace {

constexpr char kStateMagic[4] = {'L', 'L', 'M', 'S'};
constexpr uint32_t kStateVersion = 1;

struct StateHeader {
  char magic[4];
  uint32_t version;
  uint64_t model_id;      // XXH3-64 of the model file's header (which covers its metadata)
  uint32_t kv_type;       // cpu::KvType
  uint32_t n_layers, n_kv_heads, head_dim;
  uint32_t vocab;
  uint32_t has_logits;
  uint64_t n_tokens;
  uint64_t payload_bytes;
  uint64_t checksum;
  uint64_t reserved;
};
static_assert(sizeof(StateHeader) == 72, "StateHeader must be 72 bytes");

uint64_t model_id(const Model &model) { return XXH3_64bits(model.file().data_at(0), 64); }

uint64_t payload_bytes(const KvGeometry &g, uint64_t n_tokens, uint64_t vocab, bool logits) {
  return n_tokens * sizeof(int32_t) + (logits ? vocab * sizeof(float) : 0) +
         2ull * g.n_layers * g.n_kv_heads * n_tokens * g.row_bytes();
}

// The cache rows of a state, [layer][kind][head][position], move one page
// at a time: within a page the (layer, kind, head) runs of up to 16 rows lie
// head_stride apart (runtime/kv_cache.h), so a page is one strided copy.
// Calls fn(pos, run) per page; the host rows of one (layer, kind, head) are
// n_tokens * row_bytes apart.
template <class Fn>
void for_each_page(int64_t n_tokens, Fn &&fn) {
  for (int64_t p = 0; p < n_tokens;) {
    const int64_t run = std::min(kPageTokens - p % kPageTokens, n_tokens - p);
    fn(p, run);
    p += run;
  }
}

}  // namespace

size_t Session::state_size() const {
  return sizeof(StateHeader) + payload_bytes(kv_->geometry(), static_cast<uint64_t>(n_past_),
                                             static_cast<uint64_t>(model_.hparams().vocab_size), logits() != nullptr);
}

void Session::save_state(uint8_t *out, size_t size) const {
  if (size < state_size()) fail(LLM_ERR_BUFFER_TOO_SMALL, "the state needs " + std::to_string(state_size()) + " bytes");
  const KvGeometry &g = kv_->geometry();
  const uint64_t vocab = model_.hparams().vocab_size;
  const float *last = logits();
  StateHeader hdr{};
  std::memcpy(hdr.magic, kStateMagic, 4);
  hdr.version = kStateVersion;
  hdr.model_id = model_id(model_);
  hdr.kv_type = static_cast<uint32_t>(g.type);
  hdr.n_layers = static_cast<uint32_t>(g.n_layers);
  hdr.n_kv_heads = static_cast<uint32_t>(g.n_kv_heads);
  hdr.head_dim = static_cast<uint32_t>(g.head_dim);
  hdr.vocab = static_cast<uint32_t>(vocab);
  hdr.has_logits = last != nullptr;
  hdr.n_tokens = static_cast<uint64_t>(n_past_);
  hdr.payload_bytes = payload_bytes(g, hdr.n_tokens, vocab, last != nullptr);

  uint8_t *p = out + sizeof(StateHeader);
  std::memcpy(p, tokens_, static_cast<size_t>(n_past_) * sizeof(int32_t));
  p += n_past_ * sizeof(int32_t);
  if (last) {
    std::memcpy(p, last, vocab * sizeof(float));
    p += vocab * sizeof(float);
  }
  const size_t row_bytes = g.row_bytes(), runs = static_cast<size_t>(2 * g.n_layers * g.n_kv_heads);
  const size_t host_pitch = static_cast<size_t>(n_past_) * row_bytes;
  for_each_page(n_past_, [&](int64_t pos, int64_t run) {
    backend_.to_host(p + pos * row_bytes, host_pitch, kv_->row(0, 0, 0, pos), g.head_stride(),
                     static_cast<size_t>(run) * row_bytes, runs);
  });
  hdr.checksum = XXH3_64bits(out + sizeof(StateHeader), hdr.payload_bytes);
  std::memcpy(out, &hdr, sizeof hdr);
}

void Session::restore_state(const uint8_t *data, size_t size) {
  if (!data) fail_argument("state is NULL");
  StateHeader hdr;
  if (size < sizeof hdr) fail(LLM_ERR_FORMAT, "session state truncated: " + std::to_string(size) + " bytes");
  std::memcpy(&hdr, data, sizeof hdr);
  if (std::memcmp(hdr.magic, kStateMagic, 4) != 0) fail(LLM_ERR_FORMAT, "not a libllm session state (bad magic)");
  if (hdr.version != kStateVersion)
    fail(LLM_ERR_FORMAT, "session state version " + std::to_string(hdr.version) + " is not supported (this library reads " +
                             std::to_string(kStateVersion) + ")");
  if (hdr.model_id != model_id(model_))
    fail_argument("the session state was saved from another model file");
  const KvGeometry &g = kv_->geometry();
  const uint64_t vocab = model_.hparams().vocab_size;
  if (hdr.n_layers != g.n_layers || hdr.n_kv_heads != g.n_kv_heads || hdr.head_dim != g.head_dim || hdr.vocab != vocab)
    fail(LLM_ERR_FORMAT, "session state geometry does not match the model");
  if (hdr.kv_type != static_cast<uint32_t>(g.type)) {
    const char *saved = hdr.kv_type <= static_cast<uint32_t>(KvType::Q4)
                            ? cpu::kv_type_name(static_cast<KvType>(hdr.kv_type)) : "unknown";
    fail_argument(std::string("the session state holds a ") + saved + " KV cache but this session's is " +
                  cpu::kv_type_name(g.type));
  }
  if (hdr.has_logits > 1) fail(LLM_ERR_FORMAT, "session state: bad logits flag");
  if (hdr.n_tokens > static_cast<uint64_t>(mem_.n_ctx))
    fail(LLM_ERR_CONTEXT_FULL, "the session state holds " + std::to_string(hdr.n_tokens) +
                                   " tokens but the session's context is " + std::to_string(mem_.n_ctx));
  const uint64_t expect = payload_bytes(g, hdr.n_tokens, vocab, hdr.has_logits != 0);
  if (hdr.payload_bytes != expect || size - sizeof hdr != expect)
    fail(LLM_ERR_FORMAT, "session state size " + std::to_string(size) + " does not match its header (expected " +
                             std::to_string(sizeof hdr + expect) + ")");
  const uint8_t *p = data + sizeof hdr;
  if (XXH3_64bits(p, expect) != hdr.checksum) fail(LLM_ERR_FORMAT, "session state checksum mismatch (corrupt)");
  const int32_t *toks = reinterpret_cast<const int32_t *>(p);
  for (uint64_t i = 0; i < hdr.n_tokens; ++i) {
    int32_t t;
    std::memcpy(&t, toks + i, sizeof t);
    if (t < 0 || static_cast<uint64_t>(t) >= vocab) fail(LLM_ERR_FORMAT, "session state holds an invalid token id");
  }

  // Valid: replace the context. Only truncate can fail (a shared page that
  // cannot be released into a full pool), and it changes nothing when it does.
  const int64_t n = static_cast<int64_t>(hdr.n_tokens);
  kv_->truncate(n_past_, 0);
  n_past_ = 0;
  set_host_logits(0);
  last_eval_n_ = 0;
  kv_->prepare_write(0, n);
  std::memcpy(tokens_, p, static_cast<size_t>(n) * sizeof(int32_t));
  p += n * sizeof(int32_t);
  if (hdr.has_logits) {
    std::memcpy(logits_, p, vocab * sizeof(float));
    p += vocab * sizeof(float);
  }
  const size_t row_bytes = g.row_bytes(), runs = static_cast<size_t>(2 * g.n_layers * g.n_kv_heads);
  const size_t host_pitch = static_cast<size_t>(n) * row_bytes;
  for_each_page(n, [&](int64_t pos, int64_t run) {
    backend_.from_host(kv_->row(0, 0, 0, pos), g.head_stride(), p + pos * row_bytes, host_pitch,
                       static_cast<size_t>(run) * row_bytes, runs);
  });
  n_past_ = n;
  set_host_logits(hdr.has_logits ? 1 : 0);
  last_eval_n_ = n_logits_valid_;
  sampler_seeded = false;
}

}  // namespace llm
