// The fuzz entry points (see fuzz_targets.h). Built into every fuzzer and into
// tests/regression, so a saved crash replays through exactly this code.
#include "fuzz/fuzz_targets.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "converter/hf_config.h"
#include "converter/hf_tokenizer.h"
#include "converter/safetensors.h"
#include "runtime/chat_template.h"
#include "format/error.h"
#include "format/model_file.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/tokenizer.h"
#include "tests/common/synthetic_model.h"

namespace llm::fuzz {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// ---- helpers ------------------------------------------------------------------

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += len;
  }
  return true;
}

std::string printable(std::string_view s, size_t max = 200) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

// LLM_FUZZ_VERBOSE=1: print the llm::Error each input ends with (to see how
// far seeds and saved inputs get).
void note(const char *target, const Error &e) {
  static const bool verbose = std::getenv("LLM_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "llm fuzz %s: %s: %s\n", target, llm_status_string(e.status()), e.what());
}

// A file whose contents are replaced on every run: a memfd, named by its
// /proc/self/fd path (or, where memfd_create or /proc is missing, a temporary
// file). Reused so that a fuzzing process does not churn the file system.
class ScratchFile {
 public:
  ScratchFile() {
#ifdef MFD_CLOEXEC
    fd_ = ::memfd_create("llm-fuzz", MFD_CLOEXEC);
    if (fd_ >= 0) {
      path_ = "/proc/self/fd/" + std::to_string(fd_);
      struct stat st;
      if (::stat(path_.c_str(), &st) == 0) return;
      ::close(fd_);
      fd_ = -1;
    }
#endif
    std::string tmpl = (fs::temp_directory_path() / "llm-fuzz-XXXXXX").string();
    fd_ = ::mkstemp(tmpl.data());
    if (fd_ < 0) {
      std::perror("llm fuzz: cannot create a scratch file");
      std::abort();
    }
    path_ = tmpl;
    unlink_ = true;
  }
  ~ScratchFile() {
    if (fd_ >= 0) ::close(fd_);
    if (unlink_) ::unlink(path_.c_str());
  }

  // Replaces the contents; returns a path that opens them.
  const std::string &write(const uint8_t *data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) fatal("ftruncate");
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) fatal("pwrite");
      done += static_cast<size_t>(n);
    }
    return path_;
  }

  static ScratchFile &get() {
    static ScratchFile file;
    return file;
  }

 private:
  [[noreturn]] static void fatal(const char *what) {
    std::perror(what);
    std::abort();
  }
  int fd_ = -1;
  std::string path_;
  bool unlink_ = false;
};

// A temporary folder, removed at exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "llm-fuzz-dir-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      std::perror("llm fuzz: cannot create a scratch folder");
      std::abort();
    }
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string &path() const { return path_; }
  static ScratchDir &get() {
    static ScratchDir dir;
    return dir;
  }

 private:
  std::string path_;
};

// ---- tokenizers -------------------------------------------------------------

// Exercises a built tokenizer on `text`, checking what tokenizer.h promises:
// ids inside the vocabulary, decoded text valid UTF-8, and (check_special:
// for the embedded tokenizers, whose merges never build a special token's
// text) no special token but <unk> from text when parse_special is off.
void check_encode(const char *target, const Tokenizer &tok, std::string_view text, bool add_special,
                  bool parse_special, bool check_special) {
  const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
  const int32_t vocab = tok.vocab_size();
  const int32_t unk = tok.spec().unk_id;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab)
      invariant_failed(target, "encode(\"" + printable(text) + "\") gave id " + std::to_string(id) +
                                   " outside the vocabulary of " + std::to_string(vocab));
    if (check_special && !add_special && !parse_special && tok.is_special(id) && id != unk)
      invariant_failed(target, "encode(\"" + printable(text) + "\", parse_special=false) gave special id " +
                                   std::to_string(id));
  }
  const std::string decoded = tok.decode(ids.data(), ids.size());
  if (!valid_utf8(decoded))
    invariant_failed(target, "decode(encode(\"" + printable(text) + "\")) is not valid UTF-8: \"" +
                                 printable(decoded) + "\"");
}

void check_ids(const char *target, const Tokenizer &tok, const std::vector<int32_t> &ids) {
  const int32_t vocab = tok.vocab_size();
  bool in_range = true;
  for (int32_t id : ids) in_range = in_range && id >= 0 && id < vocab;
  try {
    const std::string decoded = tok.decode(ids.data(), ids.size());
    if (!in_range) invariant_failed(target, "decode accepted an id outside the vocabulary");
    if (!valid_utf8(decoded)) {
      std::string list;
      for (int32_t id : ids) list += std::to_string(id) + " ";
      invariant_failed(target, "decode(" + list + ") is not valid UTF-8: \"" + printable(decoded) + "\"");
    }
  } catch (const Error &e) {
    if (in_range) invariant_failed(target, std::string("decode of ids inside the vocabulary threw: ") + e.what());
    if (e.status() != LLM_ERR_INVALID_TOKEN)
      invariant_failed(target, std::string("decode of a bad id: wrong status, ") + e.what());
  }
  const size_t max_piece = tok.max_piece_bytes();
  char buf[16];
  for (size_t i = 0; i < ids.size(); ++i) {
    const size_t cap = ids[i] & 1 ? sizeof buf : static_cast<size_t>(ids[i] & 7);
    const size_t len = tok.token_to_piece(ids[i], i == 0, buf, cap);
    if (len > max_piece)
      invariant_failed(target, "token_to_piece(" + std::to_string(ids[i]) + ") = " + std::to_string(len) +
                                   " bytes > max_piece_bytes() " + std::to_string(max_piece));
    (void)tok.is_special(ids[i]);
  }
}

// A fixed workout for a tokenizer built from fuzzed input (JSON or model file).
void exercise_tokenizer(const char *target, const Tokenizer &tok, bool check_utf8) {
  static const char kMixed[] = "<s> </s><unk><|endoftext|> \xe2\x96\x81 caf\xc3\xa9 \xff\xfe\x00 \xf0\x9f\x98\x80";
  static const std::string_view kTexts[] = {
      "Hello world! def f(x):\n\treturn x  + 12345",
      std::string_view(kMixed, sizeof kMixed - 1),
      "",
  };
  for (std::string_view text : kTexts)
    for (int flags = 0; flags < 4; ++flags) {
      if (check_utf8) {
        check_encode(target, tok, text, flags & 1, flags & 2, false);
      } else {
        const std::vector<int32_t> ids = tok.encode(text, flags & 1, flags & 2);
        for (int32_t id : ids)
          if (id < 0 || id >= tok.vocab_size()) invariant_failed(target, "encode gave an id outside the vocabulary");
        (void)tok.decode(ids.data(), ids.size());
      }
    }
  const int32_t vocab = tok.vocab_size();
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < vocab && id < 512; ++id) ids.push_back(id);
  for (int32_t id = std::max(512, vocab - 64); id < vocab; ++id) ids.push_back(id);
  if (check_utf8) {
    check_ids(target, tok, ids);
  } else {
    (void)tok.decode(ids.data(), ids.size());
  }
  char buf[8];
  for (int32_t id : {-1, vocab, INT32_MIN, INT32_MAX}) {
    if (tok.token_to_piece(id, true, buf, sizeof buf) != 0)
      invariant_failed(target, "token_to_piece of an invalid id returned bytes");
    try {
      (void)tok.decode(&id, 1);
      invariant_failed(target, "decode accepted invalid id " + std::to_string(id));
    } catch (const Error &e) {
      if (e.status() != LLM_ERR_INVALID_TOKEN) invariant_failed(target, std::string("decode: ") + e.what());
    }
  }
}

// Splits a word into its UTF-8 characters.
std::vector<std::string> chars_of(const std::string &word) {
  std::vector<std::string> out;
  for (size_t i = 0; i < word.size();) {
    const unsigned char c = static_cast<unsigned char>(word[i]);
    const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    out.push_back(word.substr(i, len));
    i += len;
  }
  return out;
}

// A BPE vocabulary: `alphabet` single characters, then every word of `words`
// built left to right by merges.
struct BpeBuilder {
  json vocab = json::object();
  json merges = json::array();
  std::set<std::pair<std::string, std::string>> seen;

  void add(const std::string &token) {
    if (!vocab.contains(token)) vocab[token] = vocab.size();
  }
  void add_word(const std::string &word) {
    const std::vector<std::string> cs = chars_of(word);
    for (const std::string &c : cs) add(c);
    std::string piece = cs[0];
    for (size_t i = 1; i < cs.size(); ++i) {
      if (seen.insert({piece, cs[i]}).second) merges.push_back({piece, cs[i]});
      piece += cs[i];
      add(piece);
    }
  }
};

json added_token(int id, const std::string &content, bool special, bool lstrip = false, bool rstrip = false,
                 bool normalized = false, bool single_word = false) {
  return {{"id", id},          {"content", content},       {"single_word", single_word},
          {"lstrip", lstrip},  {"rstrip", rstrip},         {"normalized", normalized},
          {"special", special}};
}

json template_processing(const std::string &bos, int bos_id) {
  return {{"type", "TemplateProcessing"},
          {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
          {"pair", json::array()},
          {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}}};
}

json bpe_model(const BpeBuilder &b, json unk, bool byte_fallback, bool fuse_unk) {
  return {{"type", "BPE"},       {"dropout", nullptr},       {"unk_token", unk},
          {"continuing_subword_prefix", nullptr},            {"end_of_word_suffix", nullptr},
          {"fuse_unk", fuse_unk}, {"byte_fallback", byte_fallback}, {"ignore_merges", false},
          {"vocab", b.vocab},    {"merges", b.merges}};
}

const char *const kWords[] = {"the", "def", "return", "self", "print", "import", "hello", "world", "ing",
                              "in",  "is",  "er",     "if",   "for",   "0000",   "caf\xc3\xa9"};
const char kAscii[] =
    " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"()[]{}<>=+-*/_#@$%&|\\~`^";

// Llama 2 / SentencePiece style: Prepend + Replace normalizers, BPE with
// byte fallback, Replace / ByteFallback / Fuse / Strip decoders, BOS added.
std::string llama2_style() {
  BpeBuilder b;
  for (const char *s : {"<unk>", "<s>", "</s>"}) b.add(s);
  for (int i = 0; i < 256; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", i);
    b.add(name);
  }
  b.add("\xe2\x96\x81");
  for (const char *c = kAscii + 1; *c; ++c) b.add(std::string(1, *c));
  for (const char *w : kWords) {
    b.add_word(std::string("\xe2\x96\x81") + w);
    b.add_word(w);
  }
  b.add_word("\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81");
  json doc = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {added_token(0, "<unk>", true), added_token(1, "<s>", true), added_token(2, "</s>", true)}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", template_processing("<s>", 1)},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model", bpe_model(b, "<unk>", true, true)}};
  return doc.dump();
}

// GPT-2's byte-to-character map.
std::vector<std::string> byte_level_alphabet() {
  std::vector<std::string> out(256);
  int next = 256;
  for (int byte = 0; byte < 256; ++byte) {
    const bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174);
    const uint32_t cp = printable ? static_cast<uint32_t>(byte) : static_cast<uint32_t>(next++);
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    out[static_cast<size_t>(byte)] = s;
  }
  return out;
}

BpeBuilder byte_level_bpe() {
  BpeBuilder b;
  const std::vector<std::string> alphabet = byte_level_alphabet();
  for (const std::string &c : alphabet) b.add(c);
  const std::string space = alphabet[' '], newline = alphabet['\n'];
  for (const char *w : kWords) {
    std::string word;
    for (const char *p = w; *p; ++p) word += alphabet[static_cast<unsigned char>(*p)];
    b.add_word(space + word);
    b.add_word(word);
  }
  b.add_word(space + space + space + space);
  b.add_word(newline + newline);
  return b;
}

// GPT-2: ByteLevel pre-tokenizer (with its regex), post-processor and decoder.
std::string gpt2_style() {
  BpeBuilder b = byte_level_bpe();
  const int eot = static_cast<int>(b.vocab.size());
  b.add("<|endoftext|>");
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  json doc = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", {added_token(eot, "<|endoftext|>", true, false, false, true)}},
              {"normalizer", nullptr},
              {"pre_tokenizer", byte_level},
              {"post_processor", byte_level},
              {"decoder", byte_level},
              {"model", bpe_model(b, nullptr, false, false)}};
  return doc.dump();
}

// Llama 3 style: NFC, the Llama 3 split regex, ByteLevel without its regex,
// a BOS template and added tokens with strip / single-word options.
std::string llama3_style() {
  BpeBuilder b = byte_level_bpe();
  const int bos = static_cast<int>(b.vocab.size());
  const int eot = bos + 1, tool = bos + 2, word = bos + 3, norm = bos + 4;
  for (const char *t : {"<|begin_of_text|>", "<|eot_id|>", "<tool>", "abc", "Hi"}) b.add(t);
  json doc = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {added_token(bos, "<|begin_of_text|>", true), added_token(eot, "<|eot_id|>", true),
        added_token(tool, "<tool>", false, true, true), added_token(word, "abc", false, false, false, false, true),
        added_token(norm, "Hi", false, false, false, true)}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern",
            {{"Regex",
              "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor", template_processing("<|begin_of_text|>", bos)},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", bpe_model(b, nullptr, false, false)}};
  return doc.dump();
}

// Metaspace (prepend "first") with individual digits, NFKC and lowercase, an
// <unk> without byte fallback, and Metaspace / Fuse / Strip decoders.
std::string metaspace_style() {
  BpeBuilder b;
  for (const char *s : {"<unk>", "<s>", "</s>"}) b.add(s);
  b.add("\xe2\x96\x81");
  for (const char *c = kAscii + 1; *c; ++c) b.add(std::string(1, *c));
  for (const char *w : kWords) b.add_word(std::string("\xe2\x96\x81") + w);
  json doc = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {added_token(0, "<unk>", true), added_token(1, "<s>", true), added_token(2, "</s>", true)}},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "NFKC"}}, {{"type", "Lowercase"}}}}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}, {"prepend_scheme", "first"}, {"split", true}},
          {{"type", "Digits"}, {"individual_digits", true}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
        {"pair", json::array()},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}},
          {"</s>", {{"id", "</s>"}, {"ids", {2}}, {"tokens", {"</s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}, {"prepend_scheme", "first"}, {"split", true}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", "x"}, {"start", 0}, {"stop", 1}}}}}},
      {"model", bpe_model(b, "<unk>", false, true)}};
  return doc.dump();
}

const std::vector<std::unique_ptr<Tokenizer>> &embedded_tokenizers() {
  static const std::vector<std::unique_ptr<Tokenizer>> tokenizers = [] {
    std::vector<std::unique_ptr<Tokenizer>> out;
    for (const auto &[name, text] : embedded_tokenizer_jsons()) {
      try {
        out.push_back(std::make_unique<Tokenizer>(parse_hf_tokenizer(text)));
      } catch (const Error &e) {
        invariant_failed("tokenizer", "embedded tokenizer " + name + " is rejected: " + e.what());
      }
    }
    return out;
  }();
  return tokenizers;
}

// ---- model files --------------------------------------------------------------

// Rewrites file_size, the metadata size (when the metadata ran to the end of
// the file), and the metadata and header checksums to match the bytes.
// Returns false if nothing changed or the bytes are no model file header.
bool repair_model_header(std::vector<uint8_t> &b) {
  if (b.size() < sizeof(FileHeader)) return false;
  FileHeader h;
  std::memcpy(&h, b.data(), sizeof h);
  if (std::memcmp(h.magic, kFileMagic, 4) != 0) return false;
  const uint64_t size = b.size();
  if (h.metadata_offset <= h.file_size && h.metadata_size == h.file_size - h.metadata_offset &&
      h.metadata_offset <= size)
    h.metadata_size = size - h.metadata_offset;
  h.file_size = size;
  if (h.metadata_offset <= size && h.metadata_size <= size - h.metadata_offset)
    h.metadata_checksum = XXH3_64bits(b.data() + h.metadata_offset, h.metadata_size);
  h.header_checksum = XXH3_64bits(&h, offsetof(FileHeader, header_checksum));
  if (std::memcmp(&h, b.data(), sizeof h) == 0) return false;
  std::memcpy(b.data(), &h, sizeof h);
  return true;
}

volatile uint8_t g_sink;

// Touches the first and last byte of every segment the file claims is valid
// (AddressSanitizer checks that they lie inside the buffer).
void touch_segments(const ModelFile &f) {
  for (const TensorInfo &t : f.tensors()) {
    if (t.offset > f.size() || t.size > f.size() - t.offset)
      invariant_failed("model_load", "tensor " + t.name + " lies outside the file");
    if (t.size) g_sink = f.data(t)[0] ^ f.data(t)[t.size - 1];
    if (t.quant.scales_size) g_sink = f.data_at(t.quant.scales_offset)[t.quant.scales_size - 1];
    if (t.quant.zeros_size) g_sink = f.data_at(t.quant.zeros_offset)[t.quant.zeros_size - 1];
  }
}

void load_and_run(const uint8_t *data, size_t size, ModelFile::Verify verify) {
  const std::string &path = ScratchFile::get().write(data, size);
  ModelOptions options;
  options.n_threads = 1;
  options.verify = verify;
  std::unique_ptr<Model> model = Model::load(path, options);
  exercise_tokenizer("model_load", model->tokenizer(), false);
  (void)model->is_eog(0);
  if (model->vocab_only()) {
    if (std::getenv("LLM_FUZZ_VERBOSE")) std::fprintf(stderr, "llm fuzz model_load: vocab-only model loaded\n");
    return;
  }
  SessionOptions so;
  so.n_ctx = 8;
  so.n_batch = 4;
  so.memory_limit = uint64_t{256} << 20;
  Session session(*model, so);
  const int32_t vocab = static_cast<int32_t>(model->hparams().vocab_size);
  const int32_t tokens[3] = {std::max(0, model->meta().generation.bos_id), vocab - 1, vocab / 2};
  session.eval(tokens, 3);
  if (!session.logits()) invariant_failed("model_load", "no logits after eval");
  g_sink = static_cast<uint8_t>(session.logits()[vocab - 1] > 0);
  session.eval(tokens, 1);
  if (std::getenv("LLM_FUZZ_VERBOSE")) std::fprintf(stderr, "llm fuzz model_load: loaded and evaluated\n");
}

void parse_model(const uint8_t *data, size_t size, ModelFile::Verify verify) {
  std::unique_ptr<ModelFile> f = ModelFile::from_memory(data, size, verify);
  touch_segments(*f);
  Tokenizer tok(f->tokenizer());
  exercise_tokenizer("model_load", tok, false);
  if (verify == ModelFile::Verify::None) {
    try {
      f->verify_checksums();
    } catch (const Error &) {
    }
  }
  f.reset();
  load_and_run(data, size, verify);
}

}  // namespace

[[noreturn]] void invariant_failed(const char *target, const std::string &what) {
  std::fprintf(stderr, "\n==== llm fuzz %s: invariant broken: %s\n", target, what.c_str());
  std::fflush(stderr);
  std::abort();
}

const std::vector<std::pair<std::string, std::string>> &embedded_tokenizer_jsons() {
  static const std::vector<std::pair<std::string, std::string>> jsons = {
      {"llama2_style", llama2_style()},
      {"gpt2_style", gpt2_style()},
      {"llama3_style", llama3_style()},
      {"metaspace_style", metaspace_style()},
  };
  return jsons;
}

// ---- entry points -------------------------------------------------------------

void model_load(const uint8_t *data, size_t size) {
  try {
    parse_model(data, size, ModelFile::Verify::Full);
    return;  // valid as given: the repaired copy would be the same bytes
  } catch (const Error &e) {
    note("model_load", e);
  }
  std::vector<uint8_t> repaired(data, data + size);
  if (!repair_model_header(repaired)) return;
  try {
    parse_model(repaired.data(), repaired.size(), ModelFile::Verify::None);
  } catch (const Error &e) {
    note("model_load (repaired)", e);
  }
}

void tokenizer(const uint8_t *data, size_t size) {
  if (size == 0) return;
  const uint8_t flags = data[0];
  const bool add_special = flags & 1, parse_special = flags & 2, ids_mode = flags & 4;
  const std::string_view text(reinterpret_cast<const char *>(data + 1), size - 1);
  for (const std::unique_ptr<Tokenizer> &tok : embedded_tokenizers()) {
    if (!ids_mode) {
      try {  // encode may refuse input (e.g. a regex match limit) with llm::Error
        check_encode("tokenizer", *tok, text, add_special, parse_special, true);
      } catch (const Error &e) {
        note("tokenizer", e);
      }
      continue;
    }
    // Ids spread over [-1, vocab] (bit 3: raw 16-bit values, mostly invalid).
    const int32_t vocab = tok->vocab_size();
    std::vector<int32_t> ids;
    for (size_t i = 1; i + 1 < size; i += 2) {
      const uint16_t v = static_cast<uint16_t>(data[i] | (data[i + 1] << 8));
      ids.push_back(flags & 8 ? static_cast<int16_t>(v) : static_cast<int32_t>(v % (vocab + 2)) - 1);
    }
    check_ids("tokenizer", *tok, ids);
  }
}

void tokenizer_json(const uint8_t *data, size_t size) {
  const std::string text(reinterpret_cast<const char *>(data), size);
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = std::make_unique<Tokenizer>(parse_hf_tokenizer(text));
  } catch (const Error &e) {
    note("tokenizer_json", e);
    return;
  }
  try {
    exercise_tokenizer("tokenizer_json", *tok, true);
  } catch (const Error &e) {
    note("tokenizer_json (encode)", e);
    return;
  }
  if (std::getenv("LLM_FUZZ_VERBOSE")) std::fprintf(stderr, "llm fuzz tokenizer_json: accepted\n");
}

void safetensors(const uint8_t *data, size_t size) {
  const std::string &path = ScratchFile::get().write(data, size);
  try {
    const convert::Checkpoint ckpt = convert::Checkpoint::open(path);
    constexpr uint64_t kChunk = 1024;
    static float buf[kChunk];
    for (const std::string &name : ckpt.names()) {
      const convert::SrcTensor &t = ckpt.get(name);
      if (t.data != nullptr && t.size > 0) g_sink = t.data[0] ^ t.data[t.size - 1];
      try {
        for (uint64_t first = 0; first < t.numel; first += kChunk)
          ckpt.read_f32(t, first, std::min(kChunk, t.numel - first), buf);
      } catch (const Error &e) {
        if (e.status() != LLM_ERR_UNSUPPORTED) throw;
      }
      try {
        ckpt.read_f32(t, t.numel, 1, buf);
        invariant_failed("safetensors", "read_f32 past the end of " + name + " was accepted");
      } catch (const Error &) {
      }
      ckpt.release(t);
      ckpt.release(t, t.numel / 2, kChunk);
    }
    if (std::getenv("LLM_FUZZ_VERBOSE")) std::fprintf(stderr, "llm fuzz safetensors: %zu tensors\n", ckpt.size());
    if (!ckpt.has("\x01missing")) {
      try {
        (void)ckpt.get("\x01missing");
        invariant_failed("safetensors", "get() of a missing tensor returned");
      } catch (const Error &) {
      }
    }
  } catch (const Error &e) {
    note("safetensors", e);
  }
}

void hf_config(const uint8_t *data, size_t size) {
  static const char *const kFiles[] = {"config.json", "generation_config.json", "tokenizer_config.json",
                                       "chat_template.jinja"};
  const std::string &dir = ScratchDir::get().path();
  const std::string_view input(reinterpret_cast<const char *>(data), size);
  const std::string_view sep(kHfConfigSeparator);
  size_t begin = 0;
  for (size_t i = 0; i < 4; ++i) {
    const std::string file = dir + "/" + kFiles[i];
    if (begin == std::string_view::npos) {
      ::unlink(file.c_str());
      continue;
    }
    const size_t end = i == 3 ? std::string_view::npos : input.find(sep, begin);
    const std::string_view part = input.substr(begin, end == std::string_view::npos ? end : end - begin);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(part.data(), static_cast<std::streamsize>(part.size()));
    out.close();
    if (!out) invariant_failed("hf_config", "cannot write " + file);
    begin = end == std::string_view::npos ? end : end + sep.size();
  }
  try {
    const convert::HfModelConfig cfg = convert::read_hf_config(dir);
    const int64_t vocab = cfg.hparams.vocab_size;
    const GenerationConfig &g = cfg.generation;
    auto in_vocab = [&](int64_t id) { return id >= 0 && id < vocab; };
    if (g.bos_id != -1 && !in_vocab(g.bos_id))
      invariant_failed("hf_config", "bos id " + std::to_string(g.bos_id) + " outside the vocabulary");
    if (g.pad_id != -1 && !in_vocab(g.pad_id))
      invariant_failed("hf_config", "pad id " + std::to_string(g.pad_id) + " outside the vocabulary");
    for (int32_t id : g.eos_ids)
      if (!in_vocab(id)) invariant_failed("hf_config", "eos id " + std::to_string(id) + " outside the vocabulary");
    if (std::getenv("LLM_FUZZ_VERBOSE")) std::fprintf(stderr, "llm fuzz hf_config: accepted\n");
  } catch (const Error &e) {
    note("hf_config", e);
  }
}

void chat_template(const uint8_t *data, size_t size) {
  if (size == 0) return;
  const uint8_t flags = data[0];
  const std::string_view input(reinterpret_cast<const char *>(data + 1), size - 1);
  const std::string_view sep(kHfConfigSeparator);
  std::vector<std::string_view> parts;
  for (size_t begin = 0;;) {
    const size_t end = input.find(sep, begin);
    parts.push_back(input.substr(begin, end == std::string_view::npos ? end : end - begin));
    if (end == std::string_view::npos) break;
    begin = end + sep.size();
  }
  static const char *const kRoles[] = {"system", "user", "assistant", "tool"};
  std::vector<ChatMessage> messages;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string_view part = parts[i];
    if (part.empty()) {
      messages.push_back({"user", ""});
      continue;
    }
    const uint8_t selector = static_cast<uint8_t>(part[0]);
    part.remove_prefix(1);
    if (selector >= 0xF0) {
      const size_t nul = part.find('\0');
      const std::string_view role = part.substr(0, nul);
      const std::string_view content = nul == std::string_view::npos ? std::string_view() : part.substr(nul + 1);
      messages.push_back({std::string(role), std::string(content)});
    } else {
      messages.push_back({kRoles[selector % 4], std::string(part)});
    }
  }
  ChatTemplateOptions options;
  options.now = make_local_time(2024, 7, 26, 12, 0, 0);
  const bool no_special = flags & 2;
  const std::string bos = no_special ? "" : "<s>", eos = no_special ? "" : "</s>";
  size_t input_bytes = parts[0].size() + bos.size() + eos.size();
  for (const ChatMessage &m : messages) input_bytes += m.role.size() + m.content.size();
  try {
    const std::string out = render_chat_template(std::string(parts[0]), messages, flags & 1, bos, eos, options);
    // The renderer's own output cap (chat_template.cpp): 1 MiB plus 4 bytes
    // per input byte.
    if (out.size() > (size_t{1} << 20) + 4 * input_bytes)
      invariant_failed("chat_template", "output of " + std::to_string(out.size()) + " bytes exceeds the render limit");
    if (std::getenv("LLM_FUZZ_VERBOSE")) std::fprintf(stderr, "llm fuzz chat_template: rendered %zu bytes\n", out.size());
  } catch (const Error &e) {
    if (e.status() != LLM_ERR_UNSUPPORTED && e.status() != LLM_ERR_INVALID_ARGUMENT)
      invariant_failed("chat_template", std::string("undocumented status ") + llm_status_string(e.status()) + ": " +
                                            e.what());
    note("chat_template", e);
  }
}

namespace {

// The fixed model of session_state: written once to a scratch file.
const Model &state_model() {
  static std::unique_ptr<Model> model = [] {
    const std::string path = (fs::temp_directory_path() / ("llm-fuzz-state-" + std::to_string(::getpid()) + ".llm")).string();
    HParams h = test::tiny_hparams();
    h.hidden_size = 64;
    h.num_heads = 2;
    h.num_kv_heads = 1;
    h.head_dim = 32;
    h.intermediate_size = 96;
    h.max_context = 128;
    test::write_synthetic_model(path, h, DType::F32);
    ModelOptions o;
    o.n_threads = 1;
    std::unique_ptr<Model> m = Model::load(path, o);
    ::unlink(path.c_str());
    return m;
  }();
  return *model;
}

const KvType kStateKv[5] = {KvType::F32, KvType::F16, KvType::BF16, KvType::Q8, KvType::Q4};

SessionOptions state_session_options(int kv) {
  SessionOptions so;
  so.n_ctx = 64;
  so.n_batch = 8;
  so.kv_type = kStateKv[kv % 5];
  return so;
}

}  // namespace

std::vector<uint8_t> session_state_seed(int kv, int n_tokens) {
  Session s(state_model(), state_session_options(kv));
  std::vector<int32_t> t;
  for (int i = 0; i < n_tokens; ++i) t.push_back(3 + (i * 37) % 256);
  if (!t.empty()) s.eval(t.data(), t.size());
  std::vector<uint8_t> out(1 + s.state_size());
  out[0] = static_cast<uint8_t>(kv);
  s.save_state(out.data() + 1, out.size() - 1);
  return out;
}

void session_state(const uint8_t *data, size_t size) {
  if (size < 1) return;
  const int kv = data[0] & 7;
  std::vector<uint8_t> state(data + 1, data + size);
  constexpr size_t kHeader = 72, kChecksumAt = 56;  // runtime/session_state.cpp
  if ((data[0] & 8) && state.size() >= kHeader) {
    const uint64_t sum = XXH3_64bits(state.data() + kHeader, state.size() - kHeader);
    std::memcpy(state.data() + kChecksumAt, &sum, sizeof sum);
  }
  const Model &model = state_model();
  Session s(model, state_session_options(kv));
  try {
    s.restore_state(state.data(), state.size());
  } catch (const Error &e) {
    note("session_state", e);
    if (s.n_tokens() != 0) invariant_failed("session_state", "a refused state changed the session");
    return;
  }
  if (s.n_tokens() > s.n_ctx()) invariant_failed("session_state", "restored more tokens than the context");
  for (int64_t i = 0; i < s.n_tokens(); ++i)
    if (s.tokens()[i] < 0 || s.tokens()[i] >= model.hparams().vocab_size)
      invariant_failed("session_state", "restored an invalid token");
  try {
    if (s.n_tokens() > 0 && !s.ensure_logits()) invariant_failed("session_state", "no logits after restore");
    const int32_t t = 5;
    for (int i = 0; i < 3 && s.n_tokens() < s.n_ctx(); ++i) s.eval(&t, 1);
    if (s.logits()) g_sink = static_cast<uint8_t>(s.logits()[0] > 0);
  } catch (const Error &e) {
    note("session_state", e);
  }
}

const std::vector<Target> &targets() {
  static const std::vector<Target> all = {
      {"model_load", model_load}, {"tokenizer", tokenizer},   {"tokenizer_json", tokenizer_json},
      {"safetensors", safetensors}, {"hf_config", hf_config},   {"chat_template", chat_template},
      {"session_state", session_state},
  };
  return all;
}

Entry find_target(const std::string &name) {
  for (const Target &t : targets())
    if (name == t.name) return t.entry;
  return nullptr;
}

}  // namespace llm::fuzz
