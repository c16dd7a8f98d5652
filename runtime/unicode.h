// UTF-8 and Unicode helpers for the tokenizer: decoding, lossy repair of
// invalid UTF-8, the character classes Hugging Face `tokenizers` uses (Rust's
// char::is_whitespace, char::is_numeric, the regex crate's \w), case mapping
// and the four normalization forms (through utf8proc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llm::unicode {

constexpr uint32_t kReplacementChar = 0xFFFD;

// Byte length of the UTF-8 sequence introduced by `lead` (1 for ASCII and for
// bytes that cannot start a sequence). Only meaningful on valid UTF-8.
inline size_t sequence_length(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point starting at s[i] of a valid UTF-8 string and moves i
// past it.
uint32_t next_code_point(std::string_view s, size_t &i);

void append_utf8(std::string &out, uint32_t cp);

bool is_valid_utf8(std::string_view s);

// Appends `bytes` to `out`, replacing every maximal invalid subsequence by
// U+FFFD: the Unicode-recommended practice that Python's bytes.decode(errors=
// "replace") and Rust's String::from_utf8_lossy both follow.
void append_lossy_utf8(std::string &out, std::string_view bytes);

// Rust char::is_whitespace (the White_Space property); also the regex crate's
// Unicode \s.
bool is_whitespace(uint32_t cp);
// Rust char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(uint32_t cp);
// The regex crate's Unicode \w: letters, marks, decimal digits, connector
// punctuation and the joiners (approximated through general categories).
bool is_word_char(uint32_t cp);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
// Normalizes valid UTF-8 (embedded NUL bytes allowed).
std::string normalize(std::string_view s, NormalForm form);

// Per-character full lowercase mapping, as Rust's char::to_lowercase applied to
// each character (no context-dependent final-sigma rule).
std::string lowercase(std::string_view s);

}  // namespace llm::unicode
