// Jinja lexer: template text to tokens, with jinja2's whitespace control under
// transformers' settings (trim_blocks=True, lstrip_blocks=True).
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "runtime/jinja_syntax.h"

namespace llm::jinja {
namespace {

[[noreturn]] void syntax_error(int line, const std::string &msg) {
  fail_template("syntax error on line " + std::to_string(line) + ": " + msg);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// jinja2 normalizes every newline sequence to \n and drops one trailing
// newline (keep_trailing_newline=False) before lexing.
std::string normalize_newlines(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Byte length of the Python whitespace character at s[i], or 0.
size_t space_at(std::string_view s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return py_isspace(c) ? 1 : 0;
  size_t n = c < 0xE0 ? 2 : (c < 0xF0 ? 3 : 4);
  if (i + n > s.size()) return 0;
  std::vector<uint32_t> cp = code_points(s.substr(i, n));
  return cp.size() == 1 && py_isspace(cp[0]) ? n : 0;
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      size_t tag = src_.find('{', pos_);
      while (tag != std::string_view::npos && !is_tag_start(tag)) tag = src_.find('{', tag + 1);
      if (tag == std::string_view::npos) {
        emit_data(src_.substr(pos_));
        break;
      }
      lex_tag(tag);
    }
    Token eof;
    eof.line = line_;
    out_.push_back(eof);
    return std::move(out_);
  }

 private:
  bool is_tag_start(size_t i) const {
    return i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#');
  }

  void emit_data(std::string_view text) {
    if (text.empty()) return;
    Token t;
    t.type = Tok::Data;
    t.text = std::string(text);
    t.line = line_;
    out_.push_back(std::move(t));
    count_lines(text);
  }

  void count_lines(std::string_view text) {
    for (char c : text)
      if (c == '\n') ++line_;
  }

  // The text before a tag, with `{%-` stripping and lstrip_blocks applied.
  std::string_view strip_before(std::string_view text, char sign, bool lstrip) const {
    if (sign == '-') {
      size_t end = text.size();
      while (end > 0) {
        size_t start = end - 1;  // back up to the start of the previous character
        while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80 && end - start < 4) --start;
        if (space_at(text, start) != end - start) break;
        end = start;
      }
      return text.substr(0, end);
    }
    if (sign == '+' || !lstrip) return text;
    size_t nl = text.rfind('\n');
    size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting_) return text;
    if (l_pos == text.size()) return text;
    for (size_t i = l_pos; i < text.size();) {
      size_t n = space_at(text, i);
      if (n == 0) return text;
      i += n;
    }
    return text.substr(0, l_pos);
  }

  // Skips whitespace after `-%}`, `-}}`, `-#}`; returns the last byte skipped.
  void skip_space() {
    while (pos_ < src_.size()) {
      size_t n = space_at(src_, pos_);
      if (n == 0) break;
      if (src_[pos_] == '\n') ++line_;
      pos_ += n;
    }
  }

  char sign_at(size_t i) const {
    return i < src_.size() && (src_[i] == '-' || src_[i] == '+') ? src_[i] : 0;
  }

  void lex_tag(size_t tag) {
    char kind = src_[tag + 1];
    char sign = sign_at(tag + 2);
    size_t raw_end = 0;
    bool raw = kind == '%' && match_raw_begin(tag + 2 + (sign ? 1 : 0), &raw_end);
    emit_data(strip_before(src_.substr(pos_, tag - pos_), sign, kind != '{'));
    pos_ = tag + 2 + (sign ? 1 : 0);
    if (raw) {
      count_lines(src_.substr(tag, raw_end - tag));
      pos_ = raw_end;
      lex_raw();
    } else if (kind == '#') {
      lex_comment();
    } else {
      lex_inside(kind == '{');
    }
  }

  // `{% raw %}` after the `{%` (and sign) at i; *end is just past it.
  bool match_raw_begin(size_t i, size_t *end) const {
    while (i < src_.size() && space_at(src_, i)) i += space_at(src_, i);
    if (src_.compare(i, 3, "raw") != 0) return false;
    i += 3;
    while (i < src_.size() && space_at(src_, i)) i += space_at(src_, i);
    if (src_.compare(i, 3, "-%}") == 0) {
      i += 3;
      while (i < src_.size() && space_at(src_, i)) i += space_at(src_, i);
    } else if (src_.compare(i, 2, "%}") == 0) {
      i += 2;
    } else {
      return false;
    }
    *end = i;
    return true;
  }

  void lex_raw() {
    line_starting_ = pos_ > 0 && src_[pos_ - 1] == '\n';
    for (size_t at = src_.find("{%", pos_); at != std::string_view::npos; at = src_.find("{%", at + 1)) {
      char sign = sign_at(at + 2);
      size_t i = at + 2 + (sign ? 1 : 0);
      while (i < src_.size() && space_at(src_, i)) i += space_at(src_, i);
      if (src_.compare(i, 6, "endraw") != 0) continue;
      i += 6;
      while (i < src_.size() && space_at(src_, i)) i += space_at(src_, i);
      if (src_.compare(i, 2, "%}") != 0 && src_.compare(i, 3, "-%}") != 0 && src_.compare(i, 3, "+%}") != 0)
        continue;
      emit_data(strip_before(src_.substr(pos_, at - pos_), sign, true));
      count_lines(src_.substr(at, i - at));
      pos_ = i;
      finish_tag('%');
      return;
    }
    syntax_error(line_, "missing end of raw directive");
  }

  void lex_comment() {
    size_t end = src_.find("#}", pos_);
    if (end == std::string_view::npos) syntax_error(line_, "missing end of comment tag");
    char sign = end > pos_ ? sign_at(end - 1) : 0;
    count_lines(src_.substr(pos_, end + 2 - pos_));
    pos_ = end + 2;
    if (sign == '-') {
      skip_space();
    } else if (sign != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;  // trim_blocks
      ++line_;
    }
    line_starting_ = src_[pos_ - 1] == '\n';
  }

  // Consumes the end of a block tag at pos_ ('%' variants) after its sign.
  void finish_tag(char kind) {
    char sign = 0;
    if (src_[pos_] == '-' || src_[pos_] == '+') sign = src_[pos_++];
    pos_ += 2;  // "%}" or "}}"
    if (sign == '-') {
      skip_space();
    } else if (kind == '%' && sign != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;  // trim_blocks
      ++line_;
    }
    line_starting_ = src_[pos_ - 1] == '\n';
  }

  bool at_tag_end(bool variable) const {
    std::string_view rest = src_.substr(pos_);
    if (variable) return rest.compare(0, 2, "}}") == 0 || rest.compare(0, 3, "-}}") == 0;
    return rest.compare(0, 2, "%}") == 0 || rest.compare(0, 3, "-%}") == 0 || rest.compare(0, 3, "+%}") == 0;
  }

  void push(Tok type, std::string text = {}) {
    Token t;
    t.type = type;
    t.text = std::move(text);
    t.line = line_;
    out_.push_back(std::move(t));
  }

  void lex_inside(bool variable) {
    push(variable ? Tok::VarBegin : Tok::BlockBegin);
    std::string brackets;  // open (, [, { awaiting their closing bracket
    while (true) {
      if (pos_ >= src_.size()) syntax_error(line_, std::string("unexpected end of template, expected '") +
                                                       (variable ? "}}" : "%}") + "'");
      if (brackets.empty() && at_tag_end(variable)) {
        push(variable ? Tok::VarEnd : Tok::BlockEnd);
        finish_tag(variable ? '}' : '%');
        return;
      }
      if (size_t n = space_at(src_, pos_)) {
        if (src_[pos_] == '\n') ++line_;
        pos_ += n;
      } else if (lex_number()) {
      } else if (is_name_start(src_[pos_])) {
        size_t start = pos_;
        while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
        push(Tok::Name, std::string(src_.substr(start, pos_ - start)));
      } else if (src_[pos_] == '\'' || src_[pos_] == '"') {
        lex_string();
      } else {
        lex_operator(brackets);
      }
    }
  }

  // Digits with single underscores between groups ((\d+_)*\d+); returns the end.
  size_t scan_digits(size_t i) const {
    if (i >= src_.size() || !is_digit(src_[i])) return std::string::npos;
    while (i < src_.size()) {
      if (is_digit(src_[i])) {
        ++i;
      } else if (src_[i] == '_' && i + 1 < src_.size() && is_digit(src_[i + 1])) {
        ++i;
      } else {
        break;
      }
    }
    return i;
  }

  static std::string without_underscores(std::string_view s) {
    std::string out;
    for (char c : s)
      if (c != '_') out += c;
    return out;
  }

  bool lex_number() {
    size_t int_end = scan_digits(pos_);
    if (int_end == std::string::npos) return false;
    if (!(pos_ > 0 && src_[pos_ - 1] == '.') && lex_float(int_end)) return true;
    return lex_integer();
  }

  bool lex_float(size_t i) {
    size_t end = std::string::npos;
    size_t frac = std::string::npos;
    if (i < src_.size() && src_[i] == '.') frac = scan_digits(i + 1);
    size_t after = frac != std::string::npos ? frac : i;
    if (after < src_.size() && (src_[after] == 'e' || src_[after] == 'E')) {
      size_t j = after + 1;
      if (j < src_.size() && (src_[j] == '+' || src_[j] == '-')) ++j;
      end = scan_digits(j);
    }
    if (end == std::string::npos) end = frac;
    if (end == std::string::npos) return false;
    std::string text = without_underscores(src_.substr(pos_, end - pos_));
    Token t;
    t.type = Tok::Float;
    t.float_value = std::strtod(text.c_str(), nullptr);
    t.line = line_;
    out_.push_back(t);
    pos_ = end;
    return true;
  }

  bool lex_integer() {
    int base = 10;
    size_t start = pos_;
    if (src_[pos_] == '0' && pos_ + 1 < src_.size()) {
      char p = static_cast<char>(src_[pos_ + 1] | 0x20);
      base = p == 'b' ? 2 : p == 'o' ? 8 : p == 'x' ? 16 : 10;
    }
    size_t i = pos_;
    if (base != 10) {
      i += 2;
      auto valid = [&](char c) {
        int d = is_digit(c) ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') ? (c | 0x20) - 'a' + 10 : 99;
        return d < base;
      };
      size_t digits_start = i;
      while (i < src_.size() && (valid(src_[i]) || (src_[i] == '_' && i + 1 < src_.size() && valid(src_[i + 1]))))
        ++i;
      if (i == digits_start) {  // "0x" alone: just the integer 0
        base = 10;
        i = pos_ + 1;
      }
    } else if (src_[pos_] == '0') {  // 0(_?0)*
      ++i;
      while (i < src_.size() && (src_[i] == '0' || (src_[i] == '_' && i + 1 < src_.size() && src_[i + 1] == '0')))
        ++i;
    } else {
      i = scan_digits(pos_);
    }
    std::string digits = without_underscores(src_.substr(start + (base != 10 ? 2 : 0), i - start - (base != 10 ? 2 : 0)));
    errno = 0;
    unsigned long long v = std::strtoull(digits.c_str(), nullptr, base);
    if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX))
      fail_unsupported("an integer literal beyond 64 bits");
    Token t;
    t.type = Tok::Int;
    t.int_value = static_cast<int64_t>(v);
    t.line = line_;
    out_.push_back(t);
    pos_ = i;
    return true;
  }

  static int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  }

  // Python's unicode-escape decoding, as jinja2 applies it to string literals.
  size_t decode_escape(size_t i, std::string &out) {
    char c = src_[i];
    switch (c) {
      case '\n': return i + 1;  // line continuation
      case '\\': case '\'': case '"': out += c; return i + 1;
      case 'a': out += '\a'; return i + 1;
      case 'b': out += '\b'; return i + 1;
      case 'f': out += '\f'; return i + 1;
      case 'n': out += '\n'; return i + 1;
      case 'r': out += '\r'; return i + 1;
      case 't': out += '\t'; return i + 1;
      case 'v': out += '\v'; return i + 1;
      case 'x': case 'u': case 'U': {
        size_t n = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (size_t k = 1; k <= n; ++k) {
          int d = i + k < src_.size() ? hex_value(src_[i + k]) : -1;
          if (d < 0) syntax_error(line_, std::string("truncated \\") + c + " escape");
          cp = cp * 16 + static_cast<uint32_t>(d);
        }
        if (cp > 0x10FFFF) syntax_error(line_, "illegal Unicode character");
        if (cp >= 0xD800 && cp <= 0xDFFF) fail_unsupported("a surrogate escape in a string literal");
        append_utf8(out, cp);
        return i + 1 + n;
      }
      case 'N': fail_unsupported("\\N{...} escapes");
      default: break;
    }
    if (c >= '0' && c <= '7') {
      uint32_t cp = 0;
      size_t k = i;
      while (k < i + 3 && k < src_.size() && src_[k] >= '0' && src_[k] <= '7') cp = cp * 8 + (src_[k++] - '0');
      append_utf8(out, cp);
      return k;
    }
    if (static_cast<unsigned char>(c) >= 0x80) fail_unsupported("a backslash before a non-ASCII character");
    out += '\\';  // unknown escapes keep their backslash
    out += c;
    return i + 1;
  }

  void lex_string() {
    char quote = src_[pos_];
    int start_line = line_;
    std::string value;
    size_t i = pos_ + 1;
    while (true) {
      if (i >= src_.size()) syntax_error(start_line, "unterminated string");
      char c = src_[i];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c == '\\' && i + 1 < src_.size()) {
        if (src_[i + 1] == '\n') ++line_;
        i = decode_escape(i + 1, value);
      } else {
        value += c;
        ++i;
      }
    }
    Token t;
    t.type = Tok::String;
    t.text = std::move(value);
    t.line = start_line;
    out_.push_back(std::move(t));
    pos_ = i + 1;
  }

  void lex_operator(std::string &brackets) {
    static const char *const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
                                       "]",  "(",  ")",  "{",  "}",  ">",  "<", "=", ".", ":", "|", ",", ";"};
    for (const char *op : kOps) {
      size_t n = std::strlen(op);
      if (src_.compare(pos_, n, op) != 0) continue;
      char c = op[0];
      if (n == 1 && (c == '(' || c == '[' || c == '{')) {
        brackets += c;
      } else if (n == 1 && (c == ')' || c == ']' || c == '}')) {
        char open = c == ')' ? '(' : c == ']' ? '[' : '{';
        if (brackets.empty() || brackets.back() != open) syntax_error(line_, std::string("unexpected '") + c + "'");
        brackets.pop_back();
      }
      push(Tok::Op, op);
      pos_ += n;
      return;
    }
    if (static_cast<unsigned char>(src_[pos_]) >= 0x80) fail_unsupported("non-ASCII identifiers");
    syntax_error(line_, std::string("unexpected char '") + src_[pos_] + "'");
  }

  std::string_view src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;  // the last token consumed ended a line
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
  std::string normalized = normalize_newlines(source);
  return Lexer(normalized).run();
}

}  // namespace llm::jinja
