// Streaming generation on a session: evaluate a prompt, then sample, deliver
// text and evaluate each new token until a stop condition.
#pragma once

#include <cstdint>
#include <string_view>

#include "llm.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

namespace llm {

struct GenerateOptions {
  SamplerParams sampler;
  int64_t max_tokens = 256;  // <= 0: no limit
  uint64_t seed = 0;
  bool add_special = true;
  bool parse_special = true;
  bool ignore_eos = false;
  std::string_view stops[TextStream::kMaxStopStrings];
  size_t n_stops = 0;
};

// Returns the llm_stop_reason. Throws llm::Error on failure (the session then
// holds every token delivered before the failure).
llm_stop_reason generate(Session &session, std::string_view prompt, const GenerateOptions &options,
                         llm_stream_fn on_piece, void *user_data);

}  // namespace llm
