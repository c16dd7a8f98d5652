// Turns the byte pieces of generated tokens into the text delivered to a
// streaming callback: only complete, valid UTF-8 is emitted (a character split
// across tokens is held back until complete; invalid bytes become U+FFFD), and
// text that might be the start of a stop string is held back until it is
// known not to be one. Fixed capacity chosen at construction: pushing never
// allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace llm {

class TextStream {
 public:
  static constexpr size_t kMaxStopStrings = 8;
  static constexpr size_t kMaxStopLength = 256;  // bytes per stop string

  // max_piece_bytes: the longest piece a single token can produce.
  explicit TextStream(size_t max_piece_bytes);

  // Starts a new generation. Stop strings longer than kMaxStopLength or more
  // than kMaxStopStrings are rejected (returns false), as are ones that are
  // not valid UTF-8; the generation then runs without stop strings. Empty
  // stop strings are ignored. Copies the strings.
  bool reset(const std::string_view *stops, size_t n_stops);

  // Appends a piece. Text that became safe to deliver is written to
  // `emit`/`emit_len` (a view into internal storage valid until the next call).
  // Returns true when a stop string has been completed: `emit` then holds the
  // text before the stop string, and everything after it is dropped; later
  // calls deliver nothing (push keeps returning true) until reset(). When
  // several stop strings match, the one completed first wins. A piece longer
  // than max_piece_bytes is decoded as far as the fixed buffer allows; the
  // rest of it is dropped and marked by one U+FFFD.
  bool push(const char *piece, size_t len, const char **emit, size_t *emit_len);

  // Ends the generation: delivers what is held back (an incomplete UTF-8 tail
  // becomes U+FFFD). The stream is then empty, with the same stop strings.
  void flush(const char **emit, size_t *emit_len);

 private:
  void compact();
  void decode_byte(unsigned char b);
  void start_sequence(unsigned char b);
  void append(const char *bytes, size_t n);
  void append_replacement();
  void clear_sequence();
  bool find_stop(size_t *stop_begin) const;
  size_t stop_prefix_suffix() const;

  // Validated text: buf_[0, delivered_) was handed out by the last call (and
  // must stay put until the next one); buf_[delivered_, buf_len_) is held
  // back because it may begin a stop string. Capacity fixed in the
  // constructor.
  std::vector<char> buf_;
  size_t buf_len_ = 0;
  size_t delivered_ = 0;
  bool stopped_ = false;

  // UTF-8 decoder state: the incomplete sequence so far and the range the
  // next byte must fall in for it to stay valid.
  unsigned char seq_[4] = {};
  size_t seq_len_ = 0;
  size_t seq_need_ = 0;
  unsigned char lower_ = 0x80;
  unsigned char upper_ = 0xBF;

  char stops_[kMaxStopStrings][kMaxStopLength];
  size_t stop_len_[kMaxStopStrings] = {};
  size_t n_stops_ = 0;
};

}  // namespace llm
