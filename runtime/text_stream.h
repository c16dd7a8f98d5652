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
  // than kMaxStopStrings are rejected (returns false). Copies the strings.
  bool reset(const std::string_view *stops, size_t n_stops);

  // Appends a piece. Text that became safe to deliver is written to
  // `emit`/`emit_len` (a view into internal storage valid until the next call).
  // Returns true when a stop string has been completed: `emit` then holds the
  // text before the stop string, and everything after it is dropped.
  bool push(const char *piece, size_t len, const char **emit, size_t *emit_len);

  // Ends the generation: delivers what is held back (an incomplete UTF-8 tail
  // becomes U+FFFD).
  void flush(const char **emit, size_t *emit_len);

 private:
  // ... implementation-defined members with capacity fixed in the constructor
  std::vector<char> pending_;   // bytes not yet delivered
  size_t pending_len_ = 0;
  std::vector<char> out_;       // storage for the emitted view
  char stops_[kMaxStopStrings][kMaxStopLength];
  size_t stop_len_[kMaxStopStrings] = {};
  size_t n_stops_ = 0;
};

}  // namespace llm
