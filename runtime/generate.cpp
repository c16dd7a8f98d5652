#include "runtime/generate.h"

#include <algorithm>
#include <vector>

#include "format/error.h"

namespace llm {
namespace {

// Whether every token in the context is a special token (so the next piece
// starts the visible text and gets start-of-text decoding, e.g. the leading
// space of a SentencePiece word is dropped).
bool only_special_tokens(const Session &s) {
  const Tokenizer &tok = s.model().tokenizer();
  for (int64_t i = 0; i < s.n_tokens(); ++i)
    if (!tok.is_special(s.tokens()[i])) return false;
  return true;
}

}  // namespace

llm_stop_reason generate(Session &session, std::string_view prompt, const GenerateOptions &options,
                         llm_stream_fn on_piece, void *user_data) {
  const Model &model = session.model();
  const Tokenizer &tokenizer = model.tokenizer();
  TextStream &stream = session.stream();
  session.stop_reason = LLM_STOP_NONE;

  if (!stream.reset(options.stops, options.n_stops))
    fail_argument("stop strings must be valid UTF-8, at most " + std::to_string(TextStream::kMaxStopStrings) +
                  " of them, each at most " + std::to_string(TextStream::kMaxStopLength) + " bytes");

  // Prompt: special tokens (BOS) are added only at the start of a context.
  if (!prompt.empty() || session.n_tokens() == 0) {
    bool add_special = options.add_special && session.n_tokens() == 0;
    std::vector<int32_t> ids = tokenizer.encode(prompt, add_special, options.parse_special);
    if (ids.empty() && session.n_tokens() == 0)
      fail_argument("nothing to generate from: the prompt is empty and the session holds no tokens");
    session.eval(ids.data(), ids.size());
  }
  // After a truncation or restore the last token's logits are recomputed.
  if (!session.ensure_logits())
    fail_argument("the session has no logits to sample from (evaluate tokens first)");

  session.sampler().seed(options.seed);
  session.sampler_seeded = true;
  bool at_text_start = only_special_tokens(session);
  const SamplerParams &sp = options.sampler;
  const char *emit = nullptr;
  size_t emit_len = 0;
  llm_stop_reason reason = LLM_STOP_MAX_TOKENS;

  for (int64_t produced = 0; options.max_tokens <= 0 || produced < options.max_tokens; ++produced) {
    if (session.cancelled()) fail(LLM_ERR_CANCELLED, "generation cancelled");
    // The sampled token must fit (under LLM_CONTEXT_SHIFT, eval shifts).
    if (!session.can_append(1)) {
      reason = LLM_STOP_CONTEXT_FULL;
      break;
    }
    const int32_t token = session.sample(sp);
    if (!options.ignore_eos && model.is_eog(token)) {
      reason = LLM_STOP_EOS;
      break;
    }
    size_t len = tokenizer.token_to_piece(token, at_text_start, session.piece_buffer(),
                                          session.piece_capacity());
    len = std::min(len, session.piece_capacity());
    if (!tokenizer.is_special(token)) at_text_start = false;
    bool hit_stop = stream.push(session.piece_buffer(), len, &emit, &emit_len);
    int callback_stop = on_piece ? on_piece(emit, emit_len, token, user_data) : 0;
    // The delivered token joins the context, so a later turn continues after it.
    session.eval(&token, 1, /*cancellable=*/false);
    if (hit_stop) {
      session.stop_reason = LLM_STOP_STRING;
      return LLM_STOP_STRING;
    }
    if (callback_stop) {
      session.stop_reason = LLM_STOP_CALLBACK;
      return LLM_STOP_CALLBACK;
    }
  }
  stream.flush(&emit, &emit_len);
  if (emit_len > 0 && on_piece) on_piece(emit, emit_len, -1, user_data);
  session.stop_reason = reason;
  return reason;
}

}  // namespace llm
