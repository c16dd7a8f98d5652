// TextStream: UTF-8 validation across piece boundaries, U+FFFD replacement as
// Python's decode(errors="replace") does it, stop strings, fixed capacity.
#include "runtime/text_stream.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace llm {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

// Reference decoder, written from the definition rather than as a state
// machine: at each position take the longest prefix of a well-formed sequence
// (Unicode table 3-7); a complete one is copied, an incomplete or empty one
// (the maximal subpart) becomes one U+FFFD.
std::string reference_decode(std::string_view s, bool *had_error = nullptr) {
  std::string out;
  if (had_error) *had_error = false;
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t need = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (b <= 0x7F) need = 1;
    else if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b == 0xE0) need = 3, lo = 0xA0;
    else if (b == 0xED) need = 3, hi = 0x9F;
    else if (b >= 0xE1 && b <= 0xEF) need = 3;
    else if (b == 0xF0) need = 4, lo = 0x90;
    else if (b == 0xF4) need = 4, hi = 0x8F;
    else if (b >= 0xF1 && b <= 0xF3) need = 4;
    size_t good = need == 0 ? 0 : 1;  // bytes of a well-formed prefix
    while (good > 0 && good < need && i + good < s.size()) {
      const auto c = static_cast<unsigned char>(s[i + good]);
      const unsigned l = good == 1 ? lo : 0x80, h = good == 1 ? hi : 0xBF;
      if (c < l || c > h) break;
      ++good;
    }
    if (need > 0 && good == need) {
      out.append(s.substr(i, need));
    } else {
      out += kFffd;
      if (had_error) *had_error = true;
    }
    i += good > 0 ? good : 1;
  }
  return out;
}

bool is_valid_utf8(std::string_view s) {
  bool error = false;
  reference_decode(s, &error);
  return !error;
}

// Feeds pieces, checks every emitted view is valid UTF-8 on its own, and
// collects the output.
struct Feeder {
  explicit Feeder(size_t max_piece = 64) : stream(max_piece) {}

  bool set_stops(std::vector<std::string_view> stops) {
    return stream.reset(stops.data(), stops.size());
  }
  // Returns what this push emitted.
  std::string push(std::string_view piece) {
    const char *p = nullptr;
    size_t n = 0;
    stopped = stream.push(piece.data(), piece.size(), &p, &n);
    return take(p, n);
  }
  std::string flush() {
    const char *p = nullptr;
    size_t n = 0;
    stream.flush(&p, &n);
    return take(p, n);
  }
  std::string take(const char *p, size_t n) {
    std::string s(p, n);
    EXPECT_TRUE(is_valid_utf8(s)) << "emitted invalid UTF-8";
    out += s;
    return s;
  }

  TextStream stream;
  std::string out;
  bool stopped = false;
};

TEST(TextStream, ReferenceDecoderMatchesPython) {
  // Expected values from CPython's bytes.decode("utf-8", "replace").
  EXPECT_EQ(reference_decode("\xF1\x80\x80\xE1\x80\xC2" "A"), kFffd + kFffd + kFffd + "A");
  EXPECT_EQ(reference_decode("\xE2\x82\xE2\x82\xAC"), kFffd + "\xE2\x82\xAC");
}

TEST(TextStream, AsciiPassesThrough) {
  Feeder f;
  EXPECT_EQ(f.push("Hello"), "Hello");
  EXPECT_FALSE(f.stopped);
  EXPECT_EQ(f.push(", world"), ", world");
  EXPECT_EQ(f.push(""), "");
  EXPECT_EQ(f.flush(), "");
  EXPECT_EQ(f.out, "Hello, world");
}

TEST(TextStream, EmojiSplitOverFourPiecesIsEmittedOnceComplete) {
  Feeder f;
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600
  EXPECT_EQ(f.push("a" + emoji.substr(0, 1)), "a");
  EXPECT_EQ(f.push(emoji.substr(1, 1)), "");
  EXPECT_EQ(f.push(emoji.substr(2, 1)), "");
  EXPECT_EQ(f.push(emoji.substr(3, 1) + "b"), emoji + "b");
  EXPECT_EQ(f.flush(), "");
}

// Each case is decoded whole and byte by byte; both must give what CPython's
// decode(errors="replace") gives.
TEST(TextStream, InvalidBytesBecomeReplacementPerMaximalSubpart) {
  const std::string r = kFffd;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a\xFF" "b", "a" + r + "b"},
      {"\xC0\xAF", r + r},                         // overlong
      {"\xED\xA0\x80", r + r + r},                 // surrogate
      {"\xF4\x90\x80\x80", r + r + r + r},         // above U+10FFFF
      {"\xE1\x80" "A", r + "A"},                   // truncated sequence
      {"\x80\x80", r + r},                         // stray continuation bytes
      {"\xF0\x80\x80", r + r + r},                 // overlong 4-byte
      {"\xE0\x9F\x80", r + r + r},                 // overlong 3-byte
      {"\xF8\x88\x80\x80\x80", r + r + r + r + r}, // invalid lead byte
      {"\xC2\xE2\x82\xAC", r + "\xE2\x82\xAC"},    // broken by a new lead
      {"\xE2\x82\xE2\x82\xAC", r + "\xE2\x82\xAC"},
      {"\xF0\x9F\x98", r},                         // incomplete at the end
  };
  for (const auto &c : cases) {
    Feeder whole;
    whole.push(c.first);
    whole.flush();
    EXPECT_EQ(whole.out, c.second);
    Feeder bytes;
    for (char ch : c.first) bytes.push(std::string(1, ch));
    bytes.flush();
    EXPECT_EQ(bytes.out, c.second);
    EXPECT_EQ(reference_decode(c.first), c.second);
  }
}

TEST(TextStream, IncompleteTailBecomesReplacementAtFlush) {
  Feeder f;
  EXPECT_EQ(f.push("ok\xE2\x82"), "ok");
  EXPECT_EQ(f.flush(), kFffd);
  // The stream is empty again afterwards.
  EXPECT_EQ(f.push("x"), "x");
}

TEST(TextStream, StopStringAcrossPiecesStopsAndIsNotEmitted) {
  Feeder f;
  ASSERT_TRUE(f.set_stops({"</s>"}));
  EXPECT_EQ(f.push("Hi <"), "Hi ");
  EXPECT_FALSE(f.stopped);
  EXPECT_EQ(f.push("/"), "");
  EXPECT_FALSE(f.stopped);
  EXPECT_EQ(f.push("s>tail"), "");
  EXPECT_TRUE(f.stopped);
  // Nothing after the stop, even on later calls.
  EXPECT_EQ(f.push("more"), "");
  EXPECT_TRUE(f.stopped);
  EXPECT_EQ(f.flush(), "");
  EXPECT_EQ(f.out, "Hi ");
}

TEST(TextStream, StopInsideOnePieceEmitsTextBeforeIt) {
  Feeder f;
  ASSERT_TRUE(f.set_stops({"\n\n"}));
  EXPECT_EQ(f.push("one\n"), "one");
  EXPECT_EQ(f.push("two\n\nthree"), "\ntwo");
  EXPECT_TRUE(f.stopped);
}

TEST(TextStream, PartialStopPrefixThatDoesNotMatchIsEmittedLater) {
  Feeder f;
  ASSERT_TRUE(f.set_stops({"<|end|>"}));
  EXPECT_EQ(f.push("a<|e"), "a");
  EXPECT_EQ(f.push("n"), "");
  EXPECT_EQ(f.push("x"), "<|enx");
  EXPECT_FALSE(f.stopped);
  // A held prefix that is then followed by the start of a new candidate.
  EXPECT_EQ(f.push("<<|"), "<");
  EXPECT_EQ(f.flush(), "<|");
  EXPECT_EQ(f.out, "a<|enx<<|");
}

TEST(TextStream, StopStringWithMultiByteCharacters) {
  Feeder f;
  ASSERT_TRUE(f.set_stops({"\xC3\xA9t\xC3\xA9"}));  // "été"
  EXPECT_EQ(f.push("l'\xC3"), "l'");
  EXPECT_EQ(f.push("\xA9t\xC3"), "");
  EXPECT_EQ(f.push("\xA9!"), "");
  EXPECT_TRUE(f.stopped);
  EXPECT_EQ(f.out, "l'");
}

TEST(TextStream, MultipleStopStringsFirstCompletedWins) {
  {
    Feeder f;
    ASSERT_TRUE(f.set_stops({"END", "###"}));
    EXPECT_EQ(f.push("x ## y #"), "x ## y ");
    EXPECT_EQ(f.push("##"), "");
    EXPECT_TRUE(f.stopped);
    EXPECT_EQ(f.out, "x ## y ");
  }
  {
    // "b" completes before "abc" would: same result whether the text comes
    // byte by byte or at once.
    Feeder at_once, by_byte;
    ASSERT_TRUE(at_once.set_stops({"abc", "b"}));
    ASSERT_TRUE(by_byte.set_stops({"abc", "b"}));
    at_once.push("xabc");
    for (char c : std::string("xabc")) by_byte.push(std::string(1, c));
    EXPECT_TRUE(at_once.stopped);
    EXPECT_TRUE(by_byte.stopped);
    EXPECT_EQ(at_once.out, "xa");
    EXPECT_EQ(by_byte.out, "xa");
  }
  {
    // Two completing together: the longer one (starting earlier) wins.
    Feeder f;
    ASSERT_TRUE(f.set_stops({"bc", "abc"}));
    f.push("xabc");
    EXPECT_EQ(f.out, "x");
  }
}

TEST(TextStream, FlushDeliversHeldStopPrefix) {
  Feeder f;
  ASSERT_TRUE(f.set_stops({"<|im_end|>"}));
  EXPECT_EQ(f.push("ab<|im"), "ab");
  EXPECT_EQ(f.flush(), "<|im");
  EXPECT_FALSE(f.stopped);
}

TEST(TextStream, ResetStartsANewGeneration) {
  Feeder f;
  ASSERT_TRUE(f.set_stops({"STOP"}));
  f.push("aSTOP");
  EXPECT_TRUE(f.stopped);
  ASSERT_TRUE(f.set_stops({}));
  EXPECT_EQ(f.push("STOP\xE2"), "STOP");
  EXPECT_FALSE(f.stopped);
  ASSERT_TRUE(f.set_stops({}));  // drops the incomplete tail too
  EXPECT_EQ(f.push("\x82\xAC"), kFffd + kFffd);
}

TEST(TextStream, RejectsBadStopStrings) {
  TextStream s(16);
  const std::string longest(TextStream::kMaxStopLength, 'x');
  const std::string too_long(TextStream::kMaxStopLength + 1, 'x');
  std::string_view one[1] = {longest};
  EXPECT_TRUE(s.reset(one, 1));
  one[0] = too_long;
  EXPECT_FALSE(s.reset(one, 1));
  one[0] = "\xC3";  // not valid UTF-8
  EXPECT_FALSE(s.reset(one, 1));
  std::vector<std::string_view> many(TextStream::kMaxStopStrings, "a");
  EXPECT_TRUE(s.reset(many.data(), many.size()));
  many.push_back("b");
  EXPECT_FALSE(s.reset(many.data(), many.size()));
  // After a rejection the stream runs without stop strings.
  const char *p = nullptr;
  size_t n = 0;
  EXPECT_FALSE(s.push("a", 1, &p, &n));
  EXPECT_EQ(std::string(p, n), "a");
}

TEST(TextStream, EmptyStopStringsAreIgnored) {
  Feeder f;
  ASSERT_TRUE(f.set_stops({"", "END", ""}));
  EXPECT_EQ(f.push("abc"), "abc");
  EXPECT_FALSE(f.stopped);
  EXPECT_EQ(f.push("xEND"), "x");
  EXPECT_TRUE(f.stopped);
}

TEST(TextStream, LongestStopStringIsHeldAndMatched) {
  Feeder f(8);
  const std::string stop(TextStream::kMaxStopLength, 'z');
  ASSERT_TRUE(f.set_stops({stop}));
  f.push("a");
  for (size_t i = 0; i + 1 < stop.size(); ++i) f.push("z");
  EXPECT_FALSE(f.stopped);
  EXPECT_EQ(f.out, "a");
  f.push("zq");
  EXPECT_TRUE(f.stopped);
  EXPECT_EQ(f.out, "a");
}

TEST(TextStream, OversizePieceIsCutInsteadOfOverflowing) {
  for (const char fill : {'a', '\xFF', '\xE2'}) {
    Feeder f(4);
    const std::string huge(100000, fill);
    const std::string got = f.push(huge);
    EXPECT_GT(got.size(), 4u);
    EXPECT_LT(got.size(), 4096u);
    EXPECT_EQ(got.substr(got.size() - kFffd.size()), kFffd);  // the cut marker
    // The stream carries on normally.
    EXPECT_EQ(f.push("ok"), "ok");
    EXPECT_EQ(f.flush(), "");
  }
}

// Random byte soup, cut into random pieces, against random stop strings:
// every emitted view is valid UTF-8 (checked in Feeder) and the whole output
// equals the reference decoding cut at the first completed stop string.
std::string expected_output(const std::string &bytes, const std::vector<std::string> &stops) {
  const std::string text = reference_decode(bytes);
  size_t best_end = std::string::npos, best_begin = 0;
  for (const auto &s : stops) {
    const size_t pos = text.find(s);
    if (pos == std::string::npos) continue;
    if (pos + s.size() < best_end || (pos + s.size() == best_end && pos < best_begin)) {
      best_end = pos + s.size();
      best_begin = pos;
    }
  }
  return best_end == std::string::npos ? text : text.substr(0, best_begin);
}

TEST(TextStream, FuzzMatchesReferenceAndStaysValid) {
  std::mt19937 gen(1234);
  // Fragments that make stop matches and split characters likely.
  const std::vector<std::string> atoms = {"a", "b", "<", "/", "\xC3\xA9", "\xE2\x82\xAC",
                                          "\xF0\x9F\x98\x80", kFffd};
  auto random_text = [&](size_t atoms_n) {
    std::string s;
    for (size_t i = 0; i < atoms_n; ++i) s += atoms[gen() % atoms.size()];
    return s;
  };
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<std::string> stops;
    const size_t n_stops = gen() % 4;
    for (size_t i = 0; i < n_stops; ++i) stops.push_back(random_text(1 + gen() % 3));
    std::string bytes;
    const size_t n_bytes = gen() % 200;
    while (bytes.size() < n_bytes) {
      if (gen() % 3 == 0)
        bytes += static_cast<char>(gen() % 256);
      else
        bytes += random_text(1);
    }
    const size_t max_piece = 1 + gen() % 12;
    Feeder f(max_piece);
    std::vector<std::string_view> views(stops.begin(), stops.end());
    ASSERT_TRUE(f.stream.reset(views.data(), views.size()));
    for (size_t at = 0; at < bytes.size() && !f.stopped;) {
      const size_t len = std::min(bytes.size() - at, static_cast<size_t>(gen() % (max_piece + 1)));
      f.push(std::string_view(bytes).substr(at, len));
      at += len;
    }
    if (!f.stopped) f.flush();
    ASSERT_EQ(f.out, expected_output(bytes, stops)) << "iteration " << iter;
    for (const auto &s : stops) ASSERT_EQ(f.out.find(s), std::string::npos);
  }
}

// Pieces far over max_piece_bytes get cut, so only validity and memory safety
// are checked here (the sanitizer build catches any out-of-bounds write).
TEST(TextStream, FuzzOversizePiecesStayValid) {
  std::mt19937 gen(99);
  for (int iter = 0; iter < 300; ++iter) {
    Feeder f(1 + gen() % 8);
    ASSERT_TRUE(f.set_stops({"\xE2\x82\xAC\xE2\x82\xAC"}));
    for (int piece = 0; piece < 20 && !f.stopped; ++piece) {
      std::string bytes(gen() % 3000, '\0');
      const char euro_and_a[] = "\xE2\x82\xAC" "a";
      for (char &c : bytes) c = gen() % 4 == 0 ? static_cast<char>(gen() % 256) : euro_and_a[gen() % 4];
      f.push(bytes);
    }
    f.flush();
  }
}

}  // namespace
}  // namespace llm
