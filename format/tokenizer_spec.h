// Plain C++ description of a tokenizer, mirroring the parts of a Hugging Face
// tokenizer.json that decide ids and decoded text. The converter fills it from
// tokenizer.json, the model file stores it (format/model_file.cpp), and the
// runtime tokenizer (runtime/tokenizer.h) is built from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llm {

struct NormalizerSpec {
  enum Kind : uint8_t { Prepend, Replace, NFC, NFKC, NFD, NFKD, Lowercase, Strip };
  Kind kind = Prepend;
  std::string pattern;  // Replace: literal pattern
  std::string content;  // Prepend / Replace: text inserted
  bool left = false;    // Strip
  bool right = false;   // Strip
};

struct PreTokenizerSpec {
  enum Kind : uint8_t { ByteLevel, Split, Metaspace, Digits };
  enum Behavior : uint8_t { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
  Kind kind = ByteLevel;
  std::string pattern;  // Split
  bool is_regex = true;
  Behavior behavior = Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  bool use_regex = true;          // ByteLevel: split with the GPT-2 pattern first
  std::string replacement;        // Metaspace (usually U+2581)
  uint8_t prepend_scheme = 0;     // Metaspace: 0 always, 1 first, 2 never
  bool split = true;              // Metaspace
  bool individual_digits = false; // Digits
};

struct DecoderSpec {
  enum Kind : uint8_t { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace };
  Kind kind = ByteLevel;
  std::string pattern;  // Replace
  std::string content;  // Replace / Strip (the character stripped)
  uint32_t start = 0;   // Strip: characters removed at the start
  uint32_t stop = 0;    // Strip: characters removed at the end
  std::string replacement;
  uint8_t prepend_scheme = 0;
  bool split = true;
};

struct AddedTokenSpec {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool single_word = false;
};

struct MergeSpec {
  int32_t left = 0;    // token ids
  int32_t right = 0;
  int32_t result = 0;  // id of the concatenation
};

struct TokenizerSpec {
  std::vector<std::string> vocab;   // index = id; "" for unused ids
  std::vector<MergeSpec> merges;    // rank = index
  std::vector<AddedTokenSpec> added_tokens;
  int32_t unk_id = -1;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  std::vector<NormalizerSpec> normalizers;      // applied in order
  std::vector<PreTokenizerSpec> pre_tokenizers; // applied in order
  std::vector<DecoderSpec> decoders;            // applied in order
  std::vector<int32_t> prefix_ids;  // post-processor, single sequence: before
  std::vector<int32_t> suffix_ids;  //   ... and after
};

}  // namespace llm
