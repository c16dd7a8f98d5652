// Tokenizer reproducing Hugging Face `tokenizers` (v0.23) for BPE models.
//
// Encoding follows the library's pipeline step by step:
//   1. added tokens with normalized=false are cut out of the raw text;
//   2. every remaining segment is normalized on its own, and added tokens with
//      normalized=true are cut out of the normalized text;
//   3. the pre-tokenizers split each segment into pieces (ByteLevel also maps
//      bytes to its printable alphabet);
//   4. BPE turns each piece into ids;
//   5. the post-processor's prefix/suffix ids are added on request.
// Decoding runs the decoder chain over the token strings, as HF's
// decode(ids, skip_special_tokens=False) does.
//
// Where HF has quirks (an unknown token flushed after byte-fallback tokens,
// ByteFallback turning a whole invalid byte run into U+FFFDs, the Metaspace
// decoder dropping every replacement character of the first token), they are
// reproduced on purpose: ids and text must match the reference exactly.

#include "runtime/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <new>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "format/error.h"
#include "runtime/unicode.h"

namespace llm {

namespace {

using Range = std::pair<size_t, size_t>;  // [begin, end) byte offsets

// ---------------------------------------------------------------------------
// Regular expressions (PCRE2)
// ---------------------------------------------------------------------------

// The replacement for an Oniguruma escape whose Unicode meaning differs in
// PCRE2, or nullptr to keep the escape. `in_class`: inside [...].
const char *translate_escape(char c, bool in_class) {
  switch (c) {
    // Onig's \s is exactly White_Space; PCRE2's also takes U+180E.
    case 's': return "\\p{White_Space}";
    case 'S': return "\\P{White_Space}";
    // Onig's \w: letters, marks, decimal digits, connector punctuation;
    // PCRE2's: letters, all numbers, underscore.
    case 'w': return in_class ? "\\p{L}\\p{M}\\p{Nd}\\p{Pc}" : "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
    case 'W': return in_class ? nullptr : "[^\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
    // Onig's \h is a hexadecimal digit, PCRE2's a horizontal space.
    case 'h': return in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
    case 'H': return in_class ? nullptr : "[^0-9a-fA-F]";
    default: return nullptr;
  }
}

// Rewrites an Oniguruma (Ruby syntax) pattern, as HF compiles them, into a
// PCRE2 pattern with the same meaning.
std::string onig_to_pcre2(const std::string &pattern) {
  std::string out;
  int class_depth = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char e = pattern[++i];
      if ((e == 'W' || e == 'H') && class_depth > 0)
        fail(LLM_ERR_UNSUPPORTED, "tokenizer: \\" + std::string(1, e) + " inside a character class is not supported");
      const char *replacement = translate_escape(e, class_depth > 0);
      if (replacement != nullptr) {
        out += replacement;
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && class_depth > 0 && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      size_t close = pattern.find(":]", i + 2);  // a POSIX class such as [:alpha:]
      if (close != std::string::npos) {
        out.append(pattern, i, close + 2 - i);
        i = close + 1;
        continue;
      }
    }
    if (c == '[') {
      ++class_depth;
      out += c;
      if (class_depth == 1) {  // a ']' right after '[' or '[^' is a literal
        if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
        if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      }
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out += c;
  }
  return out;
}

// A compiled pattern. HF compiles its patterns with Oniguruma's Ruby syntax,
// where ^ and $ are line anchors, hence PCRE2_MULTILINE; escapes whose
// Unicode meaning differs are translated first. Read-only after
// construction, so one instance serves all threads (match data is per call).
class Regex {
 public:
  Regex(const std::string &pattern, bool literal) {
    uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE);
    std::string source = literal ? pattern : onig_to_pcre2(pattern);
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options, &error,
                          &offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      fail_format("tokenizer: invalid regex /" + pattern + "/ at offset " + std::to_string(offset) + ": " +
                  reinterpret_cast<const char *>(message));
    }
    // JIT is only a speed-up: if it is unavailable the interpreter runs instead.
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex &) = delete;
  Regex &operator=(const Regex &) = delete;

  // All matches in the order Oniguruma's find_iter (used by HF) yields them:
  // leftmost-first, continuing at the end of the previous match; an empty
  // match right where the previous match ended is skipped by advancing one
  // character.
  void find_all(std::string_view s, std::vector<Range> &out) const {
    out.clear();
    MatchData data(code_);
    size_t pos = 0;
    bool have_last = false;
    size_t last_end = 0;
    while (pos <= s.size()) {
      if (!match_at(s, pos, data.md)) break;
      const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(data.md);
      size_t begin = ov[0], end = ov[1];
      if (begin == end && have_last && end == last_end) {
        if (pos >= s.size()) break;
        pos += unicode::sequence_length(static_cast<unsigned char>(s[pos]));
        continue;
      }
      out.emplace_back(begin, end);
      pos = end;
      have_last = true;
      last_end = end;
    }
  }

 private:
  struct MatchData {
    explicit MatchData(const pcre2_code *code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
      if (md == nullptr) throw std::bad_alloc();
    }
    ~MatchData() { pcre2_match_data_free(md); }
    MatchData(const MatchData &) = delete;
    MatchData &operator=(const MatchData &) = delete;
    pcre2_match_data *md;
  };

  bool match_at(std::string_view s, size_t pos, pcre2_match_data *md) const {
    // The subject is valid UTF-8 (encode() repairs its input first).
    static const char kEmpty[1] = {0};
    auto subject = reinterpret_cast<PCRE2_SPTR>(s.empty() ? kEmpty : s.data());
    int rc = pcre2_match(code_, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // deep backtracking: the interpreter keeps its stack on the heap
      rc = pcre2_match(code_, subject, s.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      fail(LLM_ERR_UNSUPPORTED,
           std::string("tokenizer: regex matching failed on this input: ") + reinterpret_cast<const char *>(message));
    }
    return true;
  }

  pcre2_code *code_ = nullptr;
};

// The GPT-2 pre-tokenization pattern used by the ByteLevel pre-tokenizer.
const char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------------------------
// Small string helpers
// ---------------------------------------------------------------------------

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// ---------------------------------------------------------------------------
// Growth limits
// ---------------------------------------------------------------------------

// Normalizers, pre-tokenizers and decoders may lengthen text (ByteLevel turns
// a byte >= 0x80 into two, Replace may substitute a long string), so a chain
// of them read from a file can grow text exponentially with its length: 48
// ByteLevel steps would turn one byte into terabytes. Chains are therefore
// capped at kMaxChainSteps, and every intermediate text at kMaxGrowth times
// the input plus kGrowthSlack bytes. Real tokenizers stay far below both
// (their chains have at most 5 steps; NFKC's largest expansion, U+FDFA, is
// 11x, and ByteLevel doubles that at most).
constexpr size_t kMaxChainSteps = 16;
constexpr size_t kMaxGrowth = 64;
constexpr size_t kGrowthSlack = 4096;

size_t growth_limit(size_t input) {
  return input > (SIZE_MAX - kGrowthSlack) / kMaxGrowth ? SIZE_MAX : kMaxGrowth * input + kGrowthSlack;
}

[[noreturn]] void fail_growth(const char *chain, size_t input, size_t limit) {
  fail_format(std::string("tokenizer: the ") + chain + " expand " + std::to_string(input) +
              " bytes of text to more than " + std::to_string(limit) + " bytes (limit: " +
              std::to_string(kMaxGrowth) + " times the input plus " + std::to_string(kGrowthSlack) + ")");
}

// What a growing text is checked against: the input size it started from and
// the limit that follows from it.
struct Budget {
  const char *chain;
  size_t input;
  size_t limit;
  Budget(const char *c, size_t in) : chain(c), input(in), limit(growth_limit(in)) {}
  void check(size_t size) const {
    if (size > limit) fail_growth(chain, input, limit);
  }
};

// Non-overlapping left-to-right replacement (HF Replace with a String pattern).
// Fails (with `budget`) before the result grows past budget->limit.
std::string replace_all(std::string_view s, std::string_view pattern, std::string_view content,
                        const Budget *budget = nullptr) {
  std::string out;
  if (pattern.empty()) return std::string(s);
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(pattern, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.data() + pos, hit - pos);
    if (budget) budget->check(out.size() + content.size());
    out.append(content);
    pos = hit + pattern.size();
  }
  if (budget) budget->check(out.size() + (s.size() - pos));
  out.append(s.data() + pos, s.size() - pos);
  return out;
}

// Offset of the character that ends just before `pos`.
size_t previous_char_start(std::string_view s, size_t pos) {
  size_t i = pos;
  while (i > 0) {
    --i;
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) break;
  }
  return i;
}

uint32_t code_point_at(std::string_view s, size_t pos) { return unicode::next_code_point(s, pos); }

// Start of the whitespace run that ends at `pos` (HF: regex \s*$ on s[..pos]).
size_t whitespace_run_start(std::string_view s, size_t pos) {
  while (pos > 0) {
    size_t prev = previous_char_start(s, pos);
    if (!unicode::is_whitespace(code_point_at(s, prev))) break;
    pos = prev;
  }
  return pos;
}

// End of the whitespace run that starts at `pos` (HF: regex ^\s* on s[pos..]).
size_t whitespace_run_end(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t next = pos;
    if (!unicode::is_whitespace(unicode::next_code_point(s, next))) break;
    pos = next;
  }
  return pos;
}

// "<0xAB>" → 0xAB, as HF's ByteFallback decoder reads it (u8::from_str_radix
// on the two characters, which also accepts "+F").
bool parse_byte_token(std::string_view t, uint8_t &byte) {
  if (t.size() != 6 || !starts_with(t, "<0x") || t[5] != '>') return false;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  if (t[3] == '+' && lo >= 0) {
    byte = static_cast<uint8_t>(lo);
    return true;
  }
  if (hi < 0 || lo < 0) return false;
  byte = static_cast<uint8_t>(hi * 16 + lo);
  return true;
}

// ---------------------------------------------------------------------------
// GPT-2 byte-level alphabet
// ---------------------------------------------------------------------------

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
// other 68 bytes map to U+0100.. in byte order, so every byte is a visible
// character a BPE vocabulary can hold.
struct ByteLevelAlphabet {
  static constexpr uint32_t kMaxCodePoint = 256 + 68;
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, kMaxCodePoint> code_point_to_byte;

  ByteLevelAlphabet() {
    code_point_to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      uint32_t cp = printable ? b : next++;
      unicode::append_utf8(byte_to_utf8[b], cp);
      code_point_to_byte[cp] = static_cast<int16_t>(b);
    }
  }

  static const ByteLevelAlphabet &get() {
    static const ByteLevelAlphabet alphabet;
    return alphabet;
  }

  std::string encode(std::string_view s) const {
    std::string out;
    out.reserve(s.size() * 2);
    for (char c : s) out += byte_to_utf8[static_cast<unsigned char>(c)];
    return out;
  }

  // Raw bytes of a byte-level token, or false if some character is outside
  // the alphabet (HF then keeps the token's own UTF-8 bytes).
  bool decode(std::string_view token, std::string &bytes) const {
    bytes.clear();
    size_t i = 0;
    while (i < token.size()) {
      uint32_t cp = unicode::next_code_point(token, i);
      if (cp >= kMaxCodePoint || code_point_to_byte[cp] < 0) return false;
      bytes += static_cast<char>(code_point_to_byte[cp]);
    }
    return true;
  }

  void append_decoded(std::string_view token, std::string &out) const {
    std::string bytes;
    if (decode(token, bytes))
      out += bytes;
    else
      out.append(token);
  }
};

// ---------------------------------------------------------------------------
// Added tokens
// ---------------------------------------------------------------------------

// A piece of text between added tokens (id < 0) or an added token.
struct Segment {
  size_t begin, end;
  int32_t id;
};

struct AddedToken {
  int32_t id;
  std::string pattern;  // content, or its normalized form for normalized=true tokens
  bool special, lstrip, rstrip, single_word;
};

// Finds added tokens like HF's Aho-Corasick automaton in LeftmostLongest mode:
// at the leftmost position where any token matches, the longest one wins, and
// the scan resumes after it. Candidates are bucketed by first byte and tried
// longest first, which gives the same answer.
class AddedTokenMatcher {
 public:
  void add(AddedToken token) {
    if (token.pattern.empty()) return;  // HF ignores empty added tokens
    tokens_.push_back(std::move(token));
  }

  void finish() {
    for (auto &bucket : by_first_byte_) bucket.clear();
    for (uint32_t i = 0; i < tokens_.size(); ++i)
      by_first_byte_[static_cast<unsigned char>(tokens_[i].pattern[0])].push_back(i);
    for (auto &bucket : by_first_byte_)
      std::stable_sort(bucket.begin(), bucket.end(), [&](uint32_t a, uint32_t b) {
        return tokens_[a].pattern.size() > tokens_[b].pattern.size();
      });
  }

  // Splits `text` into non-empty text segments and added-token segments
  // (HF AddedVocabulary::find_matches). With parse_special=false, matches of
  // special tokens are dropped exactly where HF's encode_special_tokens drops
  // them; non-special added tokens are still recognised, as in HF.
  void split(std::string_view text, bool parse_special, std::vector<Segment> &out) const {
    out.clear();
    size_t start_offset = 0, pos = 0;
    while (pos < text.size()) {
      const AddedToken *token = longest_at(text, pos);
      if (token == nullptr) {
        ++pos;
        continue;
      }
      size_t start = pos, stop = pos + token->pattern.size();
      pos = stop;
      if (token->special && !parse_special) continue;
      if (token->single_word && !is_single_word(text, start, stop)) continue;
      if (token->lstrip) start = std::max(whitespace_run_start(text, start), start_offset);
      if (token->rstrip) stop = whitespace_run_end(text, stop);
      // A match can begin inside the whitespace an rstrip token swallowed; HF
      // emits it anyway (overlapping) and panics when lstrip then inverts the
      // range, which we clamp instead.
      start = std::min(start, stop);
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, token->id});
      start_offset = stop;
    }
    if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
  }

 private:
  const AddedToken *longest_at(std::string_view text, size_t pos) const {
    for (uint32_t i : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const std::string &p = tokens_[i].pattern;
      if (text.size() - pos >= p.size() && text.compare(pos, p.size(), p) == 0) return &tokens_[i];
    }
    return nullptr;
  }

  // HF single_word: no word character directly before or after the match.
  static bool is_single_word(std::string_view text, size_t start, size_t stop) {
    if (start > 0 && unicode::is_word_char(code_point_at(text, previous_char_start(text, start)))) return false;
    if (stop < text.size() && unicode::is_word_char(code_point_at(text, stop))) return false;
    return true;
  }

  std::vector<AddedToken> tokens_;
  std::array<std::vector<uint32_t>, 256> by_first_byte_;
};

// ---------------------------------------------------------------------------
// Normalizers
// ---------------------------------------------------------------------------

std::string strip_whitespace(std::string_view s, bool left, bool right) {
  size_t begin = left ? whitespace_run_end(s, 0) : 0;
  size_t end = right ? whitespace_run_start(s, s.size()) : s.size();
  if (end < begin) end = begin;
  return std::string(s.substr(begin, end - begin));
}

std::string normalize_once(const NormalizerSpec &n, std::string s, const Budget &budget) {
  switch (n.kind) {
    case NormalizerSpec::Prepend:
      budget.check(s.size() + n.content.size());
      return s.empty() ? s : n.content + s;  // HF skips empty strings
    case NormalizerSpec::Replace: return replace_all(s, n.pattern, n.content, &budget);
    case NormalizerSpec::NFC: return unicode::normalize(s, unicode::NormalForm::NFC);
    case NormalizerSpec::NFKC: return unicode::normalize(s, unicode::NormalForm::NFKC);
    case NormalizerSpec::NFD: return unicode::normalize(s, unicode::NormalForm::NFD);
    case NormalizerSpec::NFKD: return unicode::normalize(s, unicode::NormalForm::NFKD);
    case NormalizerSpec::Lowercase: return unicode::lowercase(s);
    case NormalizerSpec::Strip: return strip_whitespace(s, n.left, n.right);
  }
  return s;
}

std::string apply_normalizers(const std::vector<NormalizerSpec> &normalizers, std::string_view text) {
  const Budget budget("normalizers", text.size());
  std::string s(text);
  for (const NormalizerSpec &n : normalizers) {
    s = normalize_once(n, std::move(s), budget);
    budget.check(s.size());  // Unicode normalization grows text by a bounded factor per step
  }
  return s;
}

// ---------------------------------------------------------------------------
// Pre-tokenizers
// ---------------------------------------------------------------------------

// A pre-token. `at_start`: it begins at offset 0 of the original text, which
// the Metaspace "first" prepend scheme looks at.
struct Piece {
  std::string text;
  bool at_start;
};

// One stretch of a piece, either a pattern match or the gap before/after one.
struct Span {
  size_t begin, end;
  bool is_match;
};

// HF Pattern::find_matches: the matches with the gaps between them, covering
// the whole text; `invert` flips which is which (Split's invert option).
void cover_with_gaps(size_t length, const std::vector<Range> &matches, bool invert, std::vector<Span> &out) {
  out.clear();
  size_t prev = 0;
  for (const Range &m : matches) {
    if (prev < m.first) out.push_back({prev, m.first, invert});
    out.push_back({m.first, m.second, !invert});
    prev = m.second;
  }
  if (prev < length) out.push_back({prev, length, invert});
}

// Each character satisfying `pred` is a match of its own (HF's char patterns).
template <class Pred>
void match_chars(std::string_view s, Pred pred, std::vector<Range> &out) {
  out.clear();
  size_t i = 0;
  while (i < s.size()) {
    size_t begin = i;
    uint32_t cp = unicode::next_code_point(s, i);
    if (pred(cp)) out.emplace_back(begin, i);
  }
}

void match_literal(std::string_view s, std::string_view needle, std::vector<Range> &out) {
  out.clear();
  for (size_t pos = s.find(needle); pos != std::string_view::npos; pos = s.find(needle, pos + needle.size()))
    out.emplace_back(pos, pos + needle.size());
}

// HF NormalizedString::split: which stretches become pieces under each
// SplitDelimiterBehavior.
void apply_behavior(const std::vector<Span> &spans, PreTokenizerSpec::Behavior behavior, std::vector<Range> &out) {
  out.clear();
  bool previous_match = false;
  switch (behavior) {
    case PreTokenizerSpec::Isolated:
      for (const Span &s : spans) out.emplace_back(s.begin, s.end);
      break;
    case PreTokenizerSpec::Removed:
      for (const Span &s : spans)
        if (!s.is_match) out.emplace_back(s.begin, s.end);
      break;
    case PreTokenizerSpec::Contiguous:
      for (const Span &s : spans) {
        if (s.is_match == previous_match && !out.empty())
          out.back().second = s.end;
        else
          out.emplace_back(s.begin, s.end);
        previous_match = s.is_match;
      }
      break;
    case PreTokenizerSpec::MergedWithPrevious:
      for (const Span &s : spans) {
        if (s.is_match && !previous_match && !out.empty())
          out.back().second = s.end;
        else
          out.emplace_back(s.begin, s.end);
        previous_match = s.is_match;
      }
      break;
    case PreTokenizerSpec::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty())
          out.back().first = it->begin;
        else
          out.emplace_back(it->begin, it->end);
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
}

struct SplitScratch {
  std::vector<Range> matches;
  std::vector<Span> spans;
  std::vector<Range> kept;
};

// Replaces `piece` by its non-empty sub-pieces (HF drops empty splits).
void emit_sub_pieces(const Piece &piece, const std::vector<Range> &kept, std::vector<Piece> &out) {
  for (const Range &r : kept) {
    if (r.second <= r.first) continue;
    out.push_back({piece.text.substr(r.first, r.second - r.first), piece.at_start && r.first == 0});
  }
}

class PreTokenizerStep {
 public:
  explicit PreTokenizerStep(const PreTokenizerSpec &spec) : spec_(spec) {
    if (spec.kind == PreTokenizerSpec::Split) {
      if (spec.pattern.empty()) fail_format("tokenizer: Split pre-tokenizer with an empty pattern");
      regex_ = std::make_unique<Regex>(spec.pattern, !spec.is_regex);
    } else if (spec.kind == PreTokenizerSpec::ByteLevel && spec.use_regex) {
      regex_ = std::make_unique<Regex>(kGpt2Pattern, false);
    } else if (spec.kind == PreTokenizerSpec::Metaspace && spec.replacement.empty()) {
      fail_format("tokenizer: Metaspace pre-tokenizer with an empty replacement");
    }
  }

  // Replaces `pieces` by the pieces this step splits them into.
  void apply(std::vector<Piece> &pieces, std::vector<Piece> &next, SplitScratch &scratch,
             const Budget &budget) const {
    next.clear();
    for (Piece &piece : pieces) {
      switch (spec_.kind) {
        case PreTokenizerSpec::ByteLevel: split_byte_level(piece, next, scratch); break;
        case PreTokenizerSpec::Split: split_regex(piece, next, scratch); break;
        case PreTokenizerSpec::Metaspace: split_metaspace(piece, next, scratch, budget); break;
        case PreTokenizerSpec::Digits: split_digits(piece, next, scratch); break;
      }
    }
    size_t total = 0;
    if (spec_.kind == PreTokenizerSpec::ByteLevel) {
      const ByteLevelAlphabet &alphabet = ByteLevelAlphabet::get();
      for (Piece &p : next) {
        budget.check(total + 2 * p.text.size());  // each byte becomes at most 2
        p.text = alphabet.encode(p.text);
        total += p.text.size();
      }
    } else {
      for (const Piece &p : next) total += p.text.size();
      budget.check(total);
    }
    pieces.swap(next);
  }

 private:
  void split_byte_level(Piece &piece, std::vector<Piece> &out, SplitScratch &s) const {
    // HF prepends the space to every split it sees, not only the first one.
    if (spec_.add_prefix_space && !starts_with(piece.text, " ")) piece.text.insert(0, 1, ' ');
    if (!regex_) {
      out.push_back(std::move(piece));
      return;
    }
    regex_->find_all(piece.text, s.matches);
    cover_with_gaps(piece.text.size(), s.matches, false, s.spans);
    apply_behavior(s.spans, PreTokenizerSpec::Isolated, s.kept);
    emit_sub_pieces(piece, s.kept, out);
  }

  void split_regex(const Piece &piece, std::vector<Piece> &out, SplitScratch &s) const {
    regex_->find_all(piece.text, s.matches);
    cover_with_gaps(piece.text.size(), s.matches, spec_.invert, s.spans);
    apply_behavior(s.spans, spec_.behavior, s.kept);
    emit_sub_pieces(piece, s.kept, out);
  }

  void split_metaspace(Piece &piece, std::vector<Piece> &out, SplitScratch &s, const Budget &budget) const {
    const std::string &rep = spec_.replacement;
    piece.text = replace_all(piece.text, " ", rep, &budget);
    bool prepend = spec_.prepend_scheme == 0 || (spec_.prepend_scheme == 1 && piece.at_start);
    if (prepend && !starts_with(piece.text, rep)) piece.text.insert(0, rep);
    if (!spec_.split) {
      out.push_back(std::move(piece));
      return;
    }
    match_literal(piece.text, rep, s.matches);
    cover_with_gaps(piece.text.size(), s.matches, false, s.spans);
    apply_behavior(s.spans, PreTokenizerSpec::MergedWithNext, s.kept);
    emit_sub_pieces(piece, s.kept, out);
  }

  void split_digits(const Piece &piece, std::vector<Piece> &out, SplitScratch &s) const {
    match_chars(piece.text, unicode::is_numeric, s.matches);
    cover_with_gaps(piece.text.size(), s.matches, false, s.spans);
    apply_behavior(s.spans, spec_.individual_digits ? PreTokenizerSpec::Isolated : PreTokenizerSpec::Contiguous,
                   s.kept);
    emit_sub_pieces(piece, s.kept, out);
  }

  PreTokenizerSpec spec_;
  std::unique_ptr<Regex> regex_;
};

// ---------------------------------------------------------------------------
// BPE model
// ---------------------------------------------------------------------------

struct Symbol {
  int32_t id;
  int32_t prev, next;  // neighbours in the word, -1 at the ends
  bool alive;
};

struct MergeCandidate {
  int32_t rank;
  int32_t pos;     // index of the left symbol
  int32_t result;  // id the pair merges into
};

// Lowest rank first, then leftmost: the std heap functions pop the "largest".
struct MergeOrder {
  bool operator()(const MergeCandidate &a, const MergeCandidate &b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.pos > b.pos;
  }
};

struct BpeScratch {
  std::vector<Symbol> symbols;
  std::vector<int32_t> chunk_starts;  // first symbol of each independent chunk
  std::vector<MergeCandidate> heap;
  std::string key;
};

// Pieces shorter than this are merged in one go; cutting them buys nothing.
constexpr size_t kMinChunkedWordBytes = 256;

class BpeModel {
 public:
  void init(const TokenizerSpec &spec) {
    spec_ = &spec;
    vocab_.reserve(spec.vocab.size());
    for (size_t id = 0; id < spec.vocab.size(); ++id)
      if (!spec.vocab[id].empty()) vocab_.emplace(spec.vocab[id], static_cast<int32_t>(id));  // first id wins
    merges_.reserve(spec.merges.size());
    for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
      const MergeSpec &m = spec.merges[rank];
      // Like HF's HashMap built from the merge list, a repeated pair keeps
      // the rank of its last occurrence.
      merges_[pair_key(m.left, m.right)] = Merge{static_cast<int32_t>(rank), m.result};
    }
    for (int b = 0; b < 256; ++b) {
      static const char kHex[] = "0123456789ABCDEF";
      char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
      byte_ids_[b] = lookup(name);
    }
    init_chunking();
  }

  // Appends the ids of one pre-token (HF BPE::tokenize without dropout).
  void tokenize(std::string_view word, std::vector<int32_t> &out, BpeScratch &scratch) const {
    if (word.empty()) return;
    if (spec_->ignore_merges) {
      int32_t id = lookup(word);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    build_symbols(word, scratch);
    merge_chunks(scratch);
    for (const Symbol &s : scratch.symbols)
      if (s.alive) out.push_back(s.id);
  }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };

  // Long pieces (a whole paragraph when there is no pre-tokenizer) make one
  // merge queue too large for the cache. If no merge result contains the
  // character pair (a, b), no symbol can ever span a boundary between a and b:
  // the two sides never interact, and since HF's order (rank, then position)
  // restricted to one side is the same order, merging each side on its own
  // gives HF's result. That needs every symbol's string to be the text it
  // covers, so it is only enabled when each merge result is the plain
  // concatenation of its parts, byte-fallback and unknown tokens take part in
  // no merge, and there is no subword prefix/suffix.
  void init_chunking() {
    const TokenizerSpec &spec = *spec_;
    chunkable_ = spec.continuing_subword_prefix.empty() && spec.end_of_word_suffix.empty();
    std::vector<bool> stand_in(spec.vocab.size(), false);  // tokens that do not spell their own text
    if (spec.unk_id >= 0) stand_in[static_cast<size_t>(spec.unk_id)] = true;
    for (int32_t id : byte_ids_)
      if (id >= 0) stand_in[static_cast<size_t>(id)] = true;
    auto is_stand_in = [&](int32_t id) { return stand_in[static_cast<size_t>(id)]; };
    for (const MergeSpec &m : spec.merges) {
      if (!chunkable_) break;
      const std::string &left = spec.vocab[m.left], &right = spec.vocab[m.right], &result = spec.vocab[m.result];
      if (left.empty() || right.empty() || is_stand_in(m.left) || is_stand_in(m.right) ||
          result.size() != left.size() + right.size() ||
          result.compare(0, left.size(), left) != 0 || result.compare(left.size(), right.size(), right) != 0) {
        chunkable_ = false;
        break;
      }
      size_t i = 0;
      uint32_t prev = unicode::next_code_point(result, i);
      while (i < result.size()) {
        uint32_t cp = unicode::next_code_point(result, i);
        joined_pairs_.insert(code_point_pair(prev, cp));
        prev = cp;
      }
    }
    if (!chunkable_) joined_pairs_.clear();
  }

  static uint64_t code_point_pair(uint32_t a, uint32_t b) { return (static_cast<uint64_t>(a) << 32) | b; }

  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  int32_t lookup(std::string_view s) const {
    auto it = vocab_.find(s);
    return it == vocab_.end() ? -1 : it->second;
  }

  const Merge *find_merge(int32_t left, int32_t right) const {
    auto it = merges_.find(pair_key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  }

  static void push_symbol(BpeScratch &s, int32_t id) {
    int32_t index = static_cast<int32_t>(s.symbols.size());
    bool linked = index > 0 && s.chunk_starts.back() != index;
    if (linked) s.symbols.back().next = index;
    s.symbols.push_back({id, linked ? index - 1 : -1, -1, true});
  }

  // One symbol per character (with the subword prefix/suffix where the model
  // has them); characters outside the vocabulary become byte tokens or the
  // unknown token, as in HF's BPE::merge_word.
  void build_symbols(std::string_view word, BpeScratch &s) const {
    s.symbols.clear();
    s.chunk_starts.assign(1, 0);
    const bool chunked = chunkable_ && word.size() >= kMinChunkedWordBytes;
    const std::string &prefix = spec_->continuing_subword_prefix;
    const std::string &suffix = spec_->end_of_word_suffix;
    int32_t pending_unk = -1;   // an unknown token not yet emitted (fuse_unk grows it)
    int64_t previous_cp = -1;   // previous character if it was a vocabulary token
    size_t i = 0;
    while (i < word.size()) {
      size_t begin = i;
      i += std::min(unicode::sequence_length(static_cast<unsigned char>(word[i])), word.size() - i);
      std::string_view key = word.substr(begin, i - begin);
      if ((begin > 0 && !prefix.empty()) || (i == word.size() && !suffix.empty())) {
        s.key.assign(begin > 0 ? prefix : std::string());
        s.key.append(key);
        if (i == word.size()) s.key.append(suffix);
        key = s.key;
      }
      int32_t id = lookup(key);
      if (id >= 0) {
        if (pending_unk >= 0) push_symbol(s, pending_unk);
        pending_unk = -1;
        if (chunked) {
          size_t k = begin;
          uint32_t cp = unicode::next_code_point(word, k);
          if (previous_cp >= 0 && !joined_pairs_.count(code_point_pair(static_cast<uint32_t>(previous_cp), cp)))
            start_chunk(s);
          previous_cp = cp;
        }
        push_symbol(s, id);
        continue;
      }
      previous_cp = -1;
      // HF leaves a pending unknown token in place here, so it lands after
      // these byte tokens; reproduced as is.
      if (spec_->byte_fallback && push_byte_tokens(key, s)) continue;
      if (spec_->unk_id < 0) continue;  // no unknown token: HF drops the character
      if (pending_unk >= 0 && !spec_->fuse_unk) push_symbol(s, pending_unk);
      pending_unk = spec_->unk_id;
    }
    if (pending_unk >= 0) push_symbol(s, pending_unk);
  }

  // The next symbol starts a chunk that merges independently of the previous.
  static void start_chunk(BpeScratch &s) {
    if (s.symbols.empty()) return;
    s.chunk_starts.push_back(static_cast<int32_t>(s.symbols.size()));
  }

  bool push_byte_tokens(std::string_view key, BpeScratch &s) const {
    for (char c : key)
      if (byte_ids_[static_cast<unsigned char>(c)] < 0) return false;
    for (char c : key) push_symbol(s, byte_ids_[static_cast<unsigned char>(c)]);
    return true;
  }

  void push_candidate(BpeScratch &s, int32_t pos) const {
    const Symbol &left = s.symbols[pos];
    if (left.next < 0) return;
    const Merge *m = find_merge(left.id, s.symbols[left.next].id);
    if (m == nullptr) return;
    s.heap.push_back({m->rank, pos, m->result});
    std::push_heap(s.heap.begin(), s.heap.end(), MergeOrder());
  }

  // HF Word::merge_all on the symbols [begin, end): repeatedly apply the
  // lowest-ranked (then leftmost) merge; stale queue entries are recognised
  // by re-checking the pair.
  void merge_symbols(BpeScratch &s, int32_t begin, int32_t end) const {
    s.heap.clear();
    for (int32_t pos = begin; pos + 1 < end; ++pos) push_candidate(s, pos);
    while (!s.heap.empty()) {
      std::pop_heap(s.heap.begin(), s.heap.end(), MergeOrder());
      MergeCandidate top = s.heap.back();
      s.heap.pop_back();
      Symbol &left = s.symbols[top.pos];
      if (!left.alive || left.next < 0) continue;
      Symbol &right = s.symbols[left.next];
      const Merge *m = find_merge(left.id, right.id);
      if (m == nullptr || m->result != top.result) continue;
      left.id = top.result;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) s.symbols[right.next].prev = top.pos;
      if (left.prev >= 0) push_candidate(s, left.prev);
      push_candidate(s, top.pos);
    }
  }

  void merge_chunks(BpeScratch &s) const {
    const int32_t count = static_cast<int32_t>(s.symbols.size());
    for (size_t c = 0; c < s.chunk_starts.size(); ++c) {
      int32_t end = c + 1 < s.chunk_starts.size() ? s.chunk_starts[c + 1] : count;
      merge_symbols(s, s.chunk_starts[c], end);
    }
  }

  const TokenizerSpec *spec_ = nullptr;
  std::unordered_map<std::string_view, int32_t> vocab_;  // views into spec_->vocab
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};
  bool chunkable_ = false;
  std::unordered_set<uint64_t> joined_pairs_;  // character pairs inside merge results
};

// ---------------------------------------------------------------------------
// Decoders
// ---------------------------------------------------------------------------

using Tokens = std::vector<std::string>;

void decode_byte_level(Tokens &tokens) {
  const ByteLevelAlphabet &alphabet = ByteLevelAlphabet::get();
  std::string bytes;
  for (const std::string &t : tokens) alphabet.append_decoded(t, bytes);
  std::string text;
  unicode::append_lossy_utf8(text, bytes);  // HF: String::from_utf8_lossy over all bytes
  tokens.assign(1, std::move(text));
}

// HF ByteFallback: a run of <0xXX> tokens becomes its UTF-8 text if the whole
// run is valid, else one U+FFFD per byte.
void flush_byte_run(std::string &run, Tokens &out) {
  if (run.empty()) return;
  if (unicode::is_valid_utf8(run)) {
    out.push_back(run);
  } else {
    for (size_t i = 0; i < run.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
  }
  run.clear();
}

void decode_byte_fallback(Tokens &tokens) {
  Tokens out;
  std::string run;
  for (std::string &t : tokens) {
    uint8_t byte = 0;
    if (parse_byte_token(t, byte)) {
      run += static_cast<char>(byte);
      continue;
    }
    flush_byte_run(run, out);
    out.push_back(std::move(t));
  }
  flush_byte_run(run, out);
  tokens.swap(out);
}

void decode_fuse(Tokens &tokens) {
  std::string joined;
  for (const std::string &t : tokens) joined += t;
  tokens.assign(1, std::move(joined));
}

// HF Strip decoder on one token: drop up to `start` leading and `stop`
// trailing occurrences of the character `content`.
std::string strip_token(const std::string &token, const DecoderSpec &d) {
  std::vector<Range> chars;  // byte range of each character
  size_t i = 0;
  while (i < token.size()) {
    size_t begin = i;
    unicode::next_code_point(token, i);
    chars.emplace_back(begin, i);
  }
  auto is_content = [&](const Range &r) { return token.compare(r.first, r.second - r.first, d.content) == 0; };
  size_t start_cut = 0;
  while (start_cut < d.start && start_cut < chars.size() && is_content(chars[start_cut])) ++start_cut;
  size_t stop_cut = chars.size();
  for (uint32_t k = 0; k < d.stop && stop_cut > start_cut && is_content(chars[stop_cut - 1]); ++k) --stop_cut;
  if (stop_cut <= start_cut) return std::string();
  return token.substr(chars[start_cut].first, chars[stop_cut - 1].second - chars[start_cut].first);
}

// HF Metaspace decoder: the replacement becomes a space, except in the first
// token where every replacement character is dropped (unless prepend_scheme
// is "never").
std::string metaspace_token(const std::string &token, const DecoderSpec &d, bool first) {
  bool drop = first && d.prepend_scheme != 2;
  return replace_all(token, d.replacement, drop ? "" : " ");
}

void apply_decoder(const DecoderSpec &d, Tokens &tokens, const Budget &budget) {
  switch (d.kind) {
    case DecoderSpec::ByteLevel: decode_byte_level(tokens); break;
    case DecoderSpec::Replace: {
      size_t total = 0;
      for (const std::string &t : tokens) total += t.size();
      for (std::string &t : tokens) {
        const size_t before = t.size();
        t = replace_all(t, d.pattern, d.content, &budget);
        total = total - before + t.size();
        budget.check(total);
      }
      break;
    }
    case DecoderSpec::ByteFallback: decode_byte_fallback(tokens); break;
    case DecoderSpec::Fuse: decode_fuse(tokens); break;
    case DecoderSpec::Strip:
      for (std::string &t : tokens) t = strip_token(t, d);
      break;
    case DecoderSpec::Metaspace:
      for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = metaspace_token(tokens[i], d, i == 0);
      break;
  }
}

// The bytes one token contributes to a decoded text, for streaming. `first`:
// the token starts the text. Decoders that fuse everything into one token
// (Fuse, ByteLevel) make later per-token steps see the whole text as the
// first token, which is why `fused` widens what "first" means for them.
std::string render_piece(const std::string &token, const std::vector<DecoderSpec> &decoders, bool first) {
  if (token.empty()) return std::string();  // an unused id: decode() skips it too
  if (decoders.empty()) return first ? token : " " + token;  // HF joins with spaces without a decoder
  const Budget budget("decoders", token.size());
  std::string t = token;
  bool fused = false;
  for (const DecoderSpec &d : decoders) {
    switch (d.kind) {
      case DecoderSpec::ByteLevel: {
        std::string bytes;
        if (ByteLevelAlphabet::get().decode(t, bytes)) t = bytes;  // raw bytes, no lossy repair
        fused = true;
        break;
      }
      case DecoderSpec::Replace: t = replace_all(t, d.pattern, d.content, &budget); break;
      case DecoderSpec::ByteFallback: {
        uint8_t byte = 0;
        if (parse_byte_token(t, byte)) t.assign(1, static_cast<char>(byte));
        break;
      }
      case DecoderSpec::Fuse: fused = true; break;
      case DecoderSpec::Strip:
        if (first || !fused) t = strip_token(t, d);
        break;
      case DecoderSpec::Metaspace: t = metaspace_token(t, d, first || fused); break;
    }
  }
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

struct Tokenizer::Impl {
  TokenizerSpec spec;
  AddedTokenMatcher raw_added;         // normalized=false: matched on the input text
  AddedTokenMatcher normalized_added;  // normalized=true: matched on normalized segments
  std::vector<std::unique_ptr<PreTokenizerStep>> pre_tokenizers;
  BpeModel bpe;
  std::vector<std::string> token_text;  // what decoding renders for each id
  std::vector<bool> special;
  // token_to_piece table: piece of id i is piece_bytes[piece_offsets[2i + first]
  // .. piece_offsets[2i + first + 1]).
  std::vector<size_t> piece_offsets;
  std::string piece_bytes;
  size_t max_piece = 0;

  struct Scratch {
    std::vector<Segment> segments;  // of the input, around non-normalized added tokens
    std::vector<Segment> parts;     // of one normalized segment, around normalized added tokens
    std::vector<Piece> pieces, next_pieces;
    SplitScratch split;
    BpeScratch bpe;
  };

  explicit Impl(TokenizerSpec s) : spec(std::move(s)) {
    validate();
    setup_added_tokens();
    for (const PreTokenizerSpec &p : spec.pre_tokenizers)
      pre_tokenizers.push_back(std::make_unique<PreTokenizerStep>(p));
    bpe.init(spec);
    build_pieces();
  }

  void validate() const {
    const size_t n = spec.vocab.size();
    if (n == 0) fail_format("tokenizer: empty vocabulary");
    if (n > static_cast<size_t>(INT32_MAX)) fail_format("tokenizer: vocabulary too large");
    auto check = [&](int32_t id, const std::string &what) {
      if (id < 0 || static_cast<size_t>(id) >= n)
        fail_format("tokenizer: " + what + " has id " + std::to_string(id) + ", outside the vocabulary of " +
                    std::to_string(n) + " ids");
    };
    for (size_t i = 0; i < spec.merges.size(); ++i) {
      const MergeSpec &m = spec.merges[i];
      std::string what = "merge " + std::to_string(i);
      check(m.left, what);
      check(m.right, what);
      check(m.result, what);
    }
    for (const AddedTokenSpec &t : spec.added_tokens) check(t.id, "added token '" + t.content + "'");
    if (spec.unk_id != -1) check(spec.unk_id, "the unknown token");
    for (int32_t id : spec.prefix_ids) check(id, "a post-processor prefix token");
    for (int32_t id : spec.suffix_ids) check(id, "a post-processor suffix token");
    auto check_chain = [](size_t steps, const char *what) {
      if (steps > kMaxChainSteps)
        fail_format("tokenizer: " + std::to_string(steps) + " " + what + "; at most " +
                    std::to_string(kMaxChainSteps) + " are supported");
    };
    check_chain(spec.normalizers.size(), "normalizers");
    check_chain(spec.pre_tokenizers.size(), "pre-tokenizers");
    check_chain(spec.decoders.size(), "decoders");
    for (const NormalizerSpec &nm : spec.normalizers)
      if (nm.kind == NormalizerSpec::Replace && nm.pattern.empty())
        fail_format("tokenizer: Replace normalizer with an empty pattern");
    for (const DecoderSpec &d : spec.decoders) {
      if (d.kind == DecoderSpec::Metaspace && d.replacement.empty())
        fail_format("tokenizer: Metaspace decoder with an empty replacement");
      if (d.kind == DecoderSpec::Replace && d.pattern.empty())
        fail_format("tokenizer: Replace decoder with an empty pattern");
    }
    // Decoding ids of the vocabulary must never fail, so a decoder chain that
    // could outgrow the growth limit is refused here rather than when some
    // text is decoded. Of the decoders only Replace lengthens text (by at most
    // |content| / |pattern| per step, applied to each token on its own; the
    // others drop or substitute shorter text), so the product of those ratios
    // bounds the growth of any decoded text.
    double growth = 1.0;
    for (const DecoderSpec &d : spec.decoders)
      if (d.kind == DecoderSpec::Replace)
        growth *= std::max(1.0, static_cast<double>(d.content.size()) / static_cast<double>(d.pattern.size()));
    if (growth > static_cast<double>(kMaxGrowth)) {
      char factor[32];
      std::snprintf(factor, sizeof factor, "%.4g", growth);
      fail_format(std::string("tokenizer: the Replace decoders can lengthen text ") + factor +
                  " times; at most " + std::to_string(kMaxGrowth) + " is supported");
    }
  }

  void setup_added_tokens() {
    special.assign(spec.vocab.size(), false);
    token_text = spec.vocab;
    for (const AddedTokenSpec &t : spec.added_tokens) {
      const std::string &entry = spec.vocab[static_cast<size_t>(t.id)];
      if (!entry.empty() && entry != t.content)
        fail_format("tokenizer: added token '" + t.content + "' has id " + std::to_string(t.id) +
                    ", which the vocabulary assigns to '" + entry + "'");
      if (t.special) special[static_cast<size_t>(t.id)] = true;
      // HF matches normalized=true tokens in normalized text, so their
      // patterns are normalized the same way; it also decodes them to that
      // normalized form.
      std::string pattern = t.normalized ? apply_normalizers(spec.normalizers, t.content) : t.content;
      token_text[static_cast<size_t>(t.id)] = pattern;
      AddedToken token{t.id, std::move(pattern), t.special, t.lstrip, t.rstrip, t.single_word};
      (t.normalized ? normalized_added : raw_added).add(std::move(token));
    }
    raw_added.finish();
    normalized_added.finish();
  }

  void build_pieces() {
    piece_offsets.reserve(2 * spec.vocab.size() + 1);
    piece_offsets.push_back(0);
    for (const std::string &token : token_text) {
      for (bool first : {false, true}) {
        std::string piece = render_piece(token, spec.decoders, first);
        max_piece = std::max(max_piece, piece.size());
        piece_bytes += piece;
        piece_offsets.push_back(piece_bytes.size());
      }
    }
  }

  // Pre-tokenizes and BPE-encodes one normalized stretch of text.
  void encode_words(std::string_view text, bool at_start, std::vector<int32_t> &ids, Scratch &s) const {
    s.pieces.clear();
    s.pieces.push_back({std::string(text), at_start});
    const Budget budget("pre-tokenizers", text.size());
    for (const auto &step : pre_tokenizers) step->apply(s.pieces, s.next_pieces, s.split, budget);
    for (const Piece &p : s.pieces) bpe.tokenize(p.text, ids, s.bpe);
  }

  // A stretch of input between non-normalized added tokens: normalize it,
  // then cut out the normalized added tokens.
  void encode_segment(std::string_view raw, bool at_start, bool parse_special, std::vector<int32_t> &ids,
                      Scratch &s) const {
    std::string normalized = apply_normalizers(spec.normalizers, raw);
    normalized_added.split(normalized, parse_special, s.parts);
    for (const Segment &p : s.parts) {
      if (p.id >= 0)
        ids.push_back(p.id);
      else
        encode_words(std::string_view(normalized).substr(p.begin, p.end - p.begin), at_start && p.begin == 0, ids,
                     s);
    }
  }
};

Tokenizer::Tokenizer(TokenizerSpec spec) : impl_(std::make_unique<Impl>(std::move(spec))) {}
Tokenizer::~Tokenizer() = default;

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->spec.vocab.size()); }

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Impl &m = *impl_;
  std::string repaired;
  if (!unicode::is_valid_utf8(text)) {  // behave as HF on the lossy-decoded text
    unicode::append_lossy_utf8(repaired, text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  if (add_special) ids = m.spec.prefix_ids;
  Impl::Scratch scratch;
  m.raw_added.split(text, parse_special, scratch.segments);
  for (const Segment &seg : scratch.segments) {
    if (seg.id >= 0)
      ids.push_back(seg.id);
    else
      m.encode_segment(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, parse_special, ids, scratch);
  }
  if (add_special) ids.insert(ids.end(), m.spec.suffix_ids.begin(), m.spec.suffix_ids.end());
  return ids;
}

std::string Tokenizer::decode(const int32_t *ids, size_t n) const {
  const Impl &m = *impl_;
  Tokens tokens;
  tokens.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size())
      fail(LLM_ERR_INVALID_TOKEN, "decode: token id " + std::to_string(ids[i]) + " is outside the vocabulary of " +
                                      std::to_string(vocab_size()) + " ids");
    const std::string &t = m.token_text[static_cast<size_t>(ids[i])];
    if (!t.empty()) tokens.push_back(t);  // HF skips ids it has no token for
  }
  if (m.spec.decoders.empty()) {  // HF without a decoder: tokens joined by spaces
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  size_t input = 0;
  for (const std::string &t : tokens) input += t.size();
  const Budget budget("decoders", input);
  for (const DecoderSpec &d : m.spec.decoders) apply_decoder(d, tokens, budget);
  std::string out;
  for (const std::string &t : tokens) out += t;
  return out;
}

size_t Tokenizer::token_to_piece(int32_t id, bool first, char *buf, size_t cap) const {
  const Impl &m = *impl_;
  if (id < 0 || id >= vocab_size()) return 0;
  size_t slot = 2 * static_cast<size_t>(id) + (first ? 1 : 0);
  size_t begin = m.piece_offsets[slot], len = m.piece_offsets[slot + 1] - begin;
  if (buf != nullptr && cap > 0) std::memcpy(buf, m.piece_bytes.data() + begin, std::min(len, cap));
  return len;
}

size_t Tokenizer::max_piece_bytes() const { return impl_->max_piece; }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[static_cast<size_t>(id)];
}

const TokenizerSpec &Tokenizer::spec() const { return impl_->spec; }

}  // namespace llm
