// Tokenizer reproducing Hugging Face `tokenizers` for BPE models: added-token
// splitting, normalizers, pre-tokenizers (ByteLevel, regex Split, Metaspace,
// Digits), BPE with merge ranks and byte fallback, post-processor ids, and
// the decoder chain. Built once from a TokenizerSpec; afterwards read-only and
// safe to use from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "format/tokenizer_spec.h"

namespace llm {

class Tokenizer {
 public:
  // Throws llm::Error(LLM_ERR_FORMAT) if the spec is inconsistent (merge ids
  // out of range, an invalid regex, ...).
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(const Tokenizer &) = delete;
  Tokenizer &operator=(const Tokenizer &) = delete;

  int32_t vocab_size() const;

  // Encode UTF-8 text (invalid UTF-8 must not crash; behave as HF does on the
  // lossy-decoded text, i.e. invalid bytes become U+FFFD). add_special: add the
  // post-processor's prefix/suffix ids. parse_special: recognise added-token
  // strings in the text (HF default true); false treats them as plain text.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special = true) const;

  // Decode like HF decode(ids, skip_special_tokens=False). Ids out of range
  // throw llm::Error(LLM_ERR_INVALID_TOKEN).
  std::string decode(const int32_t *ids, size_t n) const;

  // Bytes of one token as it renders in the middle of a text: the decoder
  // chain without start-of-text handling (Strip steps and Metaspace prefix
  // removal apply only when `first` is true, i.e. the token starts the text).
  // Writes up to `cap` bytes to buf and returns the piece's full length (which
  // never exceeds max_piece_bytes()). Never allocates.
  size_t token_to_piece(int32_t id, bool first, char *buf, size_t cap) const;
  size_t max_piece_bytes() const;

  // Whether the id is an added token marked special (e.g. <s>, </s>).
  bool is_special(int32_t id) const;

  const TokenizerSpec &spec() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llm
