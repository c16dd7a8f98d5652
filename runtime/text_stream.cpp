// Streaming UTF-8 validation and stop-string matching over token pieces.
//
// The decoder follows the Unicode recommendation for replacement (the
// "maximal subpart" practice, also used by the WHATWG encoding standard and
// Python's errors="replace"): a byte that cannot continue the current
// sequence ends it with one U+FFFD and is then decoded afresh. Because the
// allowed range of every next byte is checked as it arrives, a held-back tail
// is always a prefix of some valid character.
//
// Stop strings are matched on the validated text, at the earliest point where
// one completes (the earliest end; on a tie, the longer one). That is what a
// byte-at-a-time check would find, so the output does not depend on how the
// text is cut into pieces.
#include "runtime/text_stream.h"

#include <algorithm>
#include <cstring>

namespace llm {
namespace {

constexpr char kReplacement[3] = {'\xEF', '\xBF', '\xBD'};  // U+FFFD
// Most bytes one input byte can add: U+FFFD for the sequence it breaks plus
// U+FFFD for itself.
constexpr size_t kMaxGrowthPerByte = 2 * sizeof kReplacement;
// Room always kept free for one more U+FFFD (the flush of an incomplete tail,
// or the marker of a piece cut short).
constexpr size_t kReserve = sizeof kReplacement;
constexpr size_t kSlack = 16;

// Whole-string check for stop strings, by the same rules the decoder applies.
bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t need = 0;
    unsigned char lower = 0x80, upper = 0xBF;
    if (b < 0x80) need = 1;
    else if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
      need = 3;
      if (b == 0xE0) lower = 0xA0;  // overlong
      if (b == 0xED) upper = 0x9F;  // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 4;
      if (b == 0xF0) lower = 0x90;  // overlong
      if (b == 0xF4) upper = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (s.size() - i < need) return false;
    for (size_t j = 1; j < need; ++j) {
      const auto c = static_cast<unsigned char>(s[i + j]);
      if (c < lower || c > upper) return false;
      lower = 0x80;
      upper = 0xBF;
    }
    i += need;
  }
  return true;
}

}  // namespace

TextStream::TextStream(size_t max_piece_bytes)
    : buf_(3 * (max_piece_bytes + kMaxStopLength + kSlack)) {}

bool TextStream::reset(const std::string_view *stops, size_t n_stops) {
  buf_len_ = 0;
  delivered_ = 0;
  stopped_ = false;
  clear_sequence();
  n_stops_ = 0;
  if (n_stops > kMaxStopStrings) return false;
  // A stop string that is not valid UTF-8 could match inside a character of
  // the validated text and cut it.
  for (size_t i = 0; i < n_stops; ++i)
    if (stops[i].size() > kMaxStopLength || !is_valid_utf8(stops[i])) return false;
  for (size_t i = 0; i < n_stops; ++i) {
    if (stops[i].empty()) continue;  // would match everywhere: taken as no stop
    std::memcpy(stops_[n_stops_], stops[i].data(), stops[i].size());
    stop_len_[n_stops_] = stops[i].size();
    ++n_stops_;
  }
  return true;
}

bool TextStream::push(const char *piece, size_t len, const char **emit, size_t *emit_len) {
  *emit = buf_.data();
  *emit_len = 0;
  if (stopped_) return true;
  compact();
  for (size_t i = 0; i < len; ++i) {
    // A piece longer than max_piece_bytes can produce more text than one call
    // can hand out. Rather than write past the buffer, the rest of the piece
    // (with any incomplete character) is dropped and marked by one U+FFFD.
    if (buf_.size() - buf_len_ < kMaxGrowthPerByte + kReserve) {
      clear_sequence();
      append_replacement();
      break;
    }
    decode_byte(static_cast<unsigned char>(piece[i]));
  }
  size_t stop_begin = 0;
  if (find_stop(&stop_begin)) {
    *emit_len = stop_begin;
    stopped_ = true;
    clear_sequence();
    return true;
  }
  delivered_ = buf_len_ - stop_prefix_suffix();
  *emit_len = delivered_;
  return false;
}

void TextStream::flush(const char **emit, size_t *emit_len) {
  *emit = buf_.data();
  *emit_len = 0;
  if (stopped_) return;
  compact();
  if (seq_len_ > 0) {
    clear_sequence();
    append_replacement();
  }
  // The final U+FFFD may itself complete a stop string.
  size_t stop_begin = 0;
  if (find_stop(&stop_begin)) {
    *emit_len = stop_begin;
    stopped_ = true;
    return;
  }
  delivered_ = buf_len_;
  *emit_len = buf_len_;
}

// Drops the text delivered by the previous call; the held-back text moves to
// the front. Done at the start of a call, not the end, so that the view handed
// out stays valid in between.
void TextStream::compact() {
  const size_t held = buf_len_ - delivered_;
  std::memmove(buf_.data(), buf_.data() + delivered_, held);
  buf_len_ = held;
  delivered_ = 0;
}

void TextStream::decode_byte(unsigned char b) {
  if (seq_len_ == 0) {
    start_sequence(b);
    return;
  }
  if (b < lower_ || b > upper_) {
    // The sequence so far is a maximal invalid subpart; b starts afresh.
    clear_sequence();
    append_replacement();
    start_sequence(b);
    return;
  }
  seq_[seq_len_++] = b;
  lower_ = 0x80;
  upper_ = 0xBF;
  if (seq_len_ == seq_need_) {
    append(reinterpret_cast<const char *>(seq_), seq_len_);
    clear_sequence();
  }
}

// Lead bytes and the range their first continuation byte must fall in; the
// narrowed ranges exclude overlong forms, surrogates and code points above
// U+10FFFF, so these are rejected at the first byte that shows them.
void TextStream::start_sequence(unsigned char b) {
  if (b < 0x80) {
    const char c = static_cast<char>(b);
    append(&c, 1);
    return;
  }
  if (b >= 0xC2 && b <= 0xDF) {
    seq_need_ = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    seq_need_ = 3;
    if (b == 0xE0) lower_ = 0xA0;
    if (b == 0xED) upper_ = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    seq_need_ = 4;
    if (b == 0xF0) lower_ = 0x90;
    if (b == 0xF4) upper_ = 0x8F;
  } else {
    append_replacement();  // continuation byte without a lead, C0, C1, F5..FF
    return;
  }
  seq_[0] = b;
  seq_len_ = 1;
}

// Callers have checked the room (push) or rely on kReserve (flush, marker).
void TextStream::append(const char *bytes, size_t n) {
  std::memcpy(buf_.data() + buf_len_, bytes, n);
  buf_len_ += n;
}

void TextStream::append_replacement() { append(kReplacement, sizeof kReplacement); }

void TextStream::clear_sequence() {
  seq_len_ = 0;
  seq_need_ = 0;
  lower_ = 0x80;
  upper_ = 0xBF;
}

// Finds the stop string that completes first in buf_[0, buf_len_) (the text
// delivered by earlier calls is gone after compact()). A stop lying wholly in
// the held-back part cannot exist: it would have been found when it arrived.
bool TextStream::find_stop(size_t *stop_begin) const {
  const std::string_view text(buf_.data(), buf_len_);
  size_t best_end = std::string_view::npos;
  for (size_t i = 0; i < n_stops_; ++i) {
    const size_t pos = text.find(std::string_view(stops_[i], stop_len_[i]));
    if (pos == std::string_view::npos) continue;
    const size_t end = pos + stop_len_[i];
    if (end < best_end || (end == best_end && pos < *stop_begin)) {
      best_end = end;
      *stop_begin = pos;
    }
  }
  return best_end != std::string_view::npos;
}

// Length of the longest suffix of the text that is a proper prefix of some
// stop string: that much must wait for the next piece.
size_t TextStream::stop_prefix_suffix() const {
  size_t held = 0;
  for (size_t i = 0; i < n_stops_; ++i) {
    const size_t longest = std::min(buf_len_, stop_len_[i] - 1);
    for (size_t n = longest; n > held; --n) {
      if (std::memcmp(buf_.data() + buf_len_ - n, stops_[i], n) == 0) {
        held = n;
        break;
      }
    }
  }
  return held;
}

}  // namespace llm
