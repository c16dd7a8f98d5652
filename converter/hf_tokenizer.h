// Reads a Hugging Face tokenizer.json (BPE models) into a TokenizerSpec.
#pragma once

#include <string>

#include "format/tokenizer_spec.h"

namespace llm {

// Parses the text of a tokenizer.json. Throws llm::Error with LLM_ERR_FORMAT
// for malformed input (invalid JSON, missing fields, a merge naming a token
// that is not in the vocabulary, ...) and LLM_ERR_UNSUPPORTED for valid input
// using a feature the runtime tokenizer does not implement (a WordPiece or
// Unigram model, BPE dropout, an unknown normalizer, pre-tokenizer, decoder
// or post-processor, a regex Replace). Nothing that would change ids or
// decoded text is silently dropped. The `truncation` and `padding` sections
// are not read: they are per-call encoding options, not part of tokenization.
TokenizerSpec parse_hf_tokenizer(const std::string &tokenizer_json_text);

}  // namespace llm
