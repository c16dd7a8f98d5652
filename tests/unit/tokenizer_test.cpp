// Tokenizer tests: the runtime tokenizer built from tokenizer.json files must
// reproduce Hugging Face `tokenizers` (ids, ids with special tokens, decoded
// text) on the reference cases in $LLM_SHARED_DIR, plus synthetic pipelines
// whose expected ids were produced by `tokenizers` 0.23.2.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "converter/hf_tokenizer.h"
#include "format/error.h"
#include "runtime/tokenizer.h"
#include "tests/common/npy.h"

namespace {

using json = nlohmann::json;
using Ids = std::vector<int32_t>;

std::string shared_path(const std::string &relative) { return std::string(LLM_SHARED_DIR) + "/" + relative; }

bool file_exists(const std::string &path) { return std::ifstream(path).good(); }

std::string read_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Parsing a 3.5 MB tokenizer.json takes a moment: build each tokenizer once.
const llm::Tokenizer &shared_tokenizer(const std::string &path) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<llm::Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto &slot = cache[path];
  if (!slot) slot = std::make_unique<llm::Tokenizer>(llm::parse_hf_tokenizer(read_file(path)));
  return *slot;
}

// Printable form of a text for failure messages.
std::string printable(const std::string &s) { return json(s).dump(-1, ' ', true, json::error_handler_t::replace); }

std::string ids_str(const Ids &ids) { return json(ids).dump(); }

Ids to_ids(const json &j) { return j.get<Ids>(); }

std::string decode(const llm::Tokenizer &tok, const Ids &ids) { return tok.decode(ids.data(), ids.size()); }

// ---------------------------------------------------------------------------
// Reference cases of tokenizers/{family}/cases.json
// ---------------------------------------------------------------------------

class ReferenceCases : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceCases, MatchHuggingFace) {
  std::string dir = shared_path("tokenizers/" + GetParam());
  if (!file_exists(dir + "/tokenizer.json") || !file_exists(dir + "/cases.json"))
    GTEST_SKIP() << "reference tokenizer " << dir << " not found (LLM_SHARED_DIR=" << LLM_SHARED_DIR << ")";
  const llm::Tokenizer &tok = shared_tokenizer(dir + "/tokenizer.json");
  json cases = json::parse(read_file(dir + "/cases.json"))["cases"];
  size_t passed = 0;
  for (const json &c : cases) {
    std::string text = c["text"].get<std::string>();
    Ids ids = tok.encode(text, false), with_special = tok.encode(text, true);
    std::string decoded = decode(tok, to_ids(c["ids"]));
    bool ok = true;
    if (ids != to_ids(c["ids"])) {
      ADD_FAILURE() << GetParam() << ": ids differ for " << printable(text) << "\n  expected " << c["ids"].dump()
                    << "\n  got      " << ids_str(ids);
      ok = false;
    }
    if (with_special != to_ids(c["ids_with_special"])) {
      ADD_FAILURE() << GetParam() << ": ids with special tokens differ for " << printable(text) << "\n  expected "
                    << c["ids_with_special"].dump() << "\n  got      " << ids_str(with_special);
      ok = false;
    }
    if (decoded != c["decoded"].get<std::string>()) {
      ADD_FAILURE() << GetParam() << ": decoded text differs for " << printable(text) << "\n  expected "
                    << printable(c["decoded"].get<std::string>()) << "\n  got      " << printable(decoded);
      ok = false;
    }
    // Where HF round-trips the text, so must we.
    if (c["decoded"] == c["text"] && decode(tok, ids) != text) {
      ADD_FAILURE() << GetParam() << ": decode(encode(x)) != x for " << printable(text);
      ok = false;
    }
    passed += ok;
  }
  std::printf("[ cases    ] %s: %zu/%zu cases match\n", GetParam().c_str(), passed, cases.size());
  EXPECT_EQ(passed, cases.size());
}

std::string param_name(const ::testing::TestParamInfo<std::string> &info) {
  std::string name = info.param;
  for (char &c : name)
    if (c == '-') c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Families, ReferenceCases,
                         ::testing::Values("llama2", "gpt2", "llama3-style", "qwen2-style"), param_name);

// ---------------------------------------------------------------------------
// Model checkpoints: prompts of reference.json and the evaluation texts
// ---------------------------------------------------------------------------

class ModelPrompts : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelPrompts, MatchReferenceInputIds) {
  std::string dir = shared_path("models/" + GetParam());
  if (!file_exists(dir + "/tokenizer.json") || !file_exists(dir + "/reference/reference.json"))
    GTEST_SKIP() << "model " << dir << " not found (LLM_SHARED_DIR=" << LLM_SHARED_DIR << ")";
  const llm::Tokenizer &tok = shared_tokenizer(dir + "/tokenizer.json");
  json ref = json::parse(read_file(dir + "/reference/reference.json"));
  ASSERT_FALSE(ref["cases"].empty());
  for (const json &c : ref["cases"]) {
    std::string prompt = c["prompt"].get<std::string>();
    EXPECT_EQ(ids_str(tok.encode(prompt, true)), c["input_ids"].dump()) << "prompt " << printable(prompt);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ModelPrompts,
                         ::testing::Values("tiny-llama-code", "tiny-random-llama3", "tiny-random-mistral-swa"),
                         param_name);

class EvalTexts : public ::testing::TestWithParam<std::string> {};

TEST_P(EvalTexts, FirstIdsMatchReference) {
  std::string dir = shared_path("models/tiny-llama-code");
  std::string text_path = dir + "/reference/" + GetParam() + ".txt";
  std::string ids_path = dir + "/reference/" + (GetParam() == "eval_code" ? "code_eval" : "brown_eval") + "_ids.npy";
  if (!file_exists(dir + "/tokenizer.json") || !file_exists(text_path) || !file_exists(ids_path))
    GTEST_SKIP() << "evaluation data " << text_path << " not found (LLM_SHARED_DIR=" << LLM_SHARED_DIR << ")";
  const llm::Tokenizer &tok = shared_tokenizer(dir + "/tokenizer.json");
  std::string text = read_file(text_path);
  auto start = std::chrono::steady_clock::now();
  Ids ids = tok.encode(text, true);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ speed    ] %s: %zu bytes -> %zu ids in %.1f ms (%.1f MB/s)\n", GetParam().c_str(), text.size(),
              ids.size(), ms, text.size() / ms / 1000.0);
#if defined(__has_feature)  // clang's spelling of __SANITIZE_ADDRESS__
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LLM_TEST_SANITIZED 1
#endif
#endif
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(LLM_TEST_SANITIZED)
  // Unoptimized and sanitized builds are exempt, and so are runs under an
  // emulator (scripts/test_aarch64.sh sets LLM_TEST_EMULATED for qemu).
  if (std::getenv("LLM_TEST_EMULATED") == nullptr)
    EXPECT_LT(ms, 1000.0) << "encoding 400 KB should take well under a second";
#endif

  std::vector<int64_t> expected = llm::test::load_npy(ids_path).ints();
  ASSERT_GE(ids.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_EQ(ids[i], expected[i]) << "first mismatch at position " << i;
}

INSTANTIATE_TEST_SUITE_P(TinyLlamaCode, EvalTexts, ::testing::Values("eval_code", "brown_eval"), param_name);

// ---------------------------------------------------------------------------
// Behaviour on the shared tokenizers beyond the reference cases
// ---------------------------------------------------------------------------

// Returns the shared tokenizer of a family, or nullptr (the caller skips).
const llm::Tokenizer *family_tokenizer(const std::string &family) {
  std::string path = shared_path("tokenizers/" + family + "/tokenizer.json");
  return file_exists(path) ? &shared_tokenizer(path) : nullptr;
}

#define REQUIRE_FAMILY(var, family)                                                                   \
  const llm::Tokenizer *var = family_tokenizer(family);                                               \
  if (var == nullptr) GTEST_SKIP() << "tokenizers/" << family << " not found (LLM_SHARED_DIR=" << LLM_SHARED_DIR << ")"

// Expected ids from HF with encode_special_tokens=True.
TEST(TokenizerBehaviour, ParseSpecialFalseTreatsSpecialTokensAsText) {
  REQUIRE_FAMILY(llama, "llama2");
  EXPECT_EQ(llama->encode("<s>hello</s>", false, true), (Ids{1, 22172, 2}));
  EXPECT_EQ(llama->encode("<s>hello</s>", false, false), (Ids{529, 29879, 29958, 12199, 829, 29879, 29958}));
  EXPECT_EQ(llama->encode("<s>hello</s>", true, false), (Ids{1, 529, 29879, 29958, 12199, 829, 29879, 29958}));
  REQUIRE_FAMILY(gpt2, "gpt2");
  EXPECT_EQ(gpt2->encode("<|endoftext|> in text", false, false), (Ids{27, 91, 437, 1659, 5239, 91, 29, 287, 2420}));
}

TEST(TokenizerBehaviour, InvalidUtf8IsReadAsReplacementCharacters) {
  REQUIRE_FAMILY(llama, "llama2");
  // HF sees the lossy-decoded text: one U+FFFD per maximal invalid sequence.
  Ids expected{29871, 26308, 25638, 29871, 30140};
  EXPECT_EQ(llama->encode("\xff\xfe abc \xe2\x82", false), expected);
  EXPECT_EQ(llama->encode("\xef\xbf\xbd\xef\xbf\xbd abc \xef\xbf\xbd", false), expected);
}

TEST(TokenizerBehaviour, NulBytesAreEncoded) {
  REQUIRE_FAMILY(llama, "llama2");
  std::string text("a\0b", 3);
  Ids ids = llama->encode(text, false);
  EXPECT_EQ(decode(*llama, ids), text);
}

TEST(TokenizerBehaviour, TokenToPieceGivesRawBytes) {
  REQUIRE_FAMILY(llama, "llama2");
  char buf[64];
  ASSERT_EQ(llama->token_to_piece(229, false, buf, sizeof buf), 1u);  // <0xE2>
  EXPECT_EQ(static_cast<unsigned char>(buf[0]), 0xE2);
  ASSERT_EQ(llama->token_to_piece(22172, false, buf, sizeof buf), 6u);  // ▁hello
  EXPECT_EQ(std::string(buf, 6), " hello");
  ASSERT_EQ(llama->token_to_piece(22172, true, buf, sizeof buf), 5u);  // Strip removes the leading space
  EXPECT_EQ(std::string(buf, 5), "hello");
  // A buffer that is too small gets a prefix; the full length is returned.
  char small[2] = {0, 0};
  EXPECT_EQ(llama->token_to_piece(22172, false, small, 2), 6u);
  EXPECT_EQ(std::string(small, 2), " h");
  EXPECT_EQ(llama->token_to_piece(22172, false, nullptr, 0), 6u);
  EXPECT_TRUE(llama->is_special(1));
  EXPECT_FALSE(llama->is_special(22172));

  REQUIRE_FAMILY(gpt2, "gpt2");
  ASSERT_EQ(gpt2->token_to_piece(158, false, buf, sizeof buf), 1u);  // "â" is byte 0xE2
  EXPECT_EQ(static_cast<unsigned char>(buf[0]), 0xE2);
  ASSERT_EQ(gpt2->token_to_piece(995, true, buf, sizeof buf), 6u);  // "Ġworld"
  EXPECT_EQ(std::string(buf, 6), " world");
}

// Streaming: the pieces of a text's tokens concatenate to its decoded text.
TEST(TokenizerBehaviour, PiecesConcatenateToDecodedText) {
  if (family_tokenizer("llama2") == nullptr)
    GTEST_SKIP() << "tokenizers/ not found (LLM_SHARED_DIR=" << LLM_SHARED_DIR << ")";
  for (const char *family : {"llama2", "gpt2", "llama3-style", "qwen2-style"}) {
    const llm::Tokenizer *tok = family_tokenizer(family);
    if (tok == nullptr) continue;
    json cases = json::parse(read_file(shared_path(std::string("tokenizers/") + family + "/cases.json")))["cases"];
    std::vector<char> buf(tok->max_piece_bytes());
    for (const json &c : cases) {
      std::string decoded = c["decoded"].get<std::string>();
      if (decoded.find("\xEF\xBF\xBD") != std::string::npos) continue;  // lossy repair happens only in decode
      Ids ids = to_ids(c["ids"]);
      std::string joined;
      for (size_t i = 0; i < ids.size(); ++i) {
        size_t n = tok->token_to_piece(ids[i], i == 0, buf.data(), buf.size());
        ASSERT_LE(n, tok->max_piece_bytes());
        joined.append(buf.data(), n);
      }
      EXPECT_EQ(joined, decoded) << family << ": " << printable(c["text"].get<std::string>());
    }
  }
}

TEST(TokenizerBehaviour, DecodeRejectsIdsOutsideTheVocabulary) {
  REQUIRE_FAMILY(llama, "llama2");
  Ids ids{1, 32000};
  try {
    decode(*llama, ids);
    FAIL() << "expected llm::Error";
  } catch (const llm::Error &e) {
    EXPECT_EQ(e.status(), LLM_ERR_INVALID_TOKEN);
  }
}

TEST(TokenizerBehaviour, EncodeIsThreadSafe) {
  REQUIRE_FAMILY(gpt2, "gpt2");
  REQUIRE_FAMILY(llama, "llama2");
  std::vector<std::string> texts = {"Hello world, 12345!", "  spaces\n\nand lines  ", "émoji 😀 <|endoftext|>",
                                    std::string(2000, 'a') + " tail", "<s> literal </s>"};
  std::vector<Ids> expected_gpt2, expected_llama;
  for (const std::string &t : texts) {
    expected_gpt2.push_back(gpt2->encode(t, true));
    expected_llama.push_back(llama->encode(t, true));
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int round = 0; round < 50; ++round)
        for (size_t i = 0; i < texts.size(); ++i) {
          if (gpt2->encode(texts[i], true) != expected_gpt2[i]) ++mismatches;
          if (llama->encode(texts[i], true) != expected_llama[i]) ++mismatches;
        }
    });
  for (std::thread &th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---------------------------------------------------------------------------
// Synthetic pipelines (no external files): every normalizer, pre-tokenizer,
// BPE option, decoder and post-processor the runtime supports.
// ---------------------------------------------------------------------------

struct SyntheticCase {
  const char *text;
  Ids ids, ids_with_special;
  const char *decoded;
};

struct SyntheticConfig {
  const char *name;
  const char *overrides;  // tokenizer.json fields replacing the defaults below
  std::vector<SyntheticCase> cases;
};

// The base BPE model of the synthetic configurations (the generator of the
// expectations built the same one): <unk>, <s>, </s>, the 256 byte tokens,
// single characters, then the merge results, plus "bca", which no merge
// produces.
json synthetic_model(const json &options) {
  const std::string chars =
      " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-_[]<>/\u2581\u0120\u010a";
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"\u2581", "h"}, {"he", "ll"}, {"hell", "o"}, {"a", "b"}, {"ab", "c"},
      {"b", "c"}, {"\u2581", "a"}, {"1", "2"}, {"o", "r"}, {"w", "or"}, {"wor", "l"}, {"worl", "d"},
      {"\u2581", "world"}, {"\u0120", "h"}, {"\u0120h", "ello"}, {"e", "l"}, {"el", "l"}, {"ell", "o"},
      {"\u2581", "hello"}, {"\u0120", "world"}};
  json vocab = json::object();
  auto add = [&](const std::string &token) {
    if (!vocab.contains(token)) vocab[token] = vocab.size();
  };
  for (const char *special : {"<unk>", "<s>", "</s>"}) add(special);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    add(name);
  }
  for (size_t i = 0; i < chars.size();) {
    unsigned char lead = static_cast<unsigned char>(chars[i]);
    size_t len = lead < 0x80 ? 1 : (lead < 0xE0 ? 2 : 3);  // the list holds 1-3 byte characters only
    add(chars.substr(i, len));
    i += len;
  }
  json merge_list = json::array();
  for (const auto &[a, b] : merges) {
    add(a + b);
    merge_list.push_back({a, b});
  }
  add("bca");
  json model = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", merge_list}};
  model.update(options);
  return model;
}

std::string synthetic_tokenizer_json(const char *overrides_text) {
  json overrides = json::parse(overrides_text);
  json doc = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", json::array()},
              {"normalizer", nullptr}, {"pre_tokenizer", nullptr}, {"post_processor", nullptr},
              {"decoder", nullptr}};
  doc["model"] = overrides.contains("model") ? overrides["model"]
                                             : synthetic_model(overrides.value("model_options", json::object()));
  overrides.erase("model");
  overrides.erase("model_options");
  doc.update(overrides);
  return doc.dump();
}

// Generated with Hugging Face tokenizers 0.23.2.
const SyntheticConfig kSyntheticConfigs[] = {
    {"metaspace_first",
     R"json({"model_options": {"byte_fallback": true, "fuse_unk": true}, "added_tokens": [{"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}, {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}], "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": true}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}], "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}, "decoder": {"type": "Sequence", "decoders": [{"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": true}, {"type": "ByteFallback"}, {"type": "Fuse"}]}})json",
     {
         {"hello world", {357, 351}, {1, 357, 351, 2}, "hello world"},
         {" hello", {357}, {1, 357, 2}, "hello"},
         {"<s>hello  abc</s>", {1, 341, 334, 334, 343, 2}, {1, 1, 341, 334, 334, 343, 2, 2}, "<s>hello  abc</s>"},
         {"abc<s> hello", {334, 343, 1, 357}, {1, 334, 343, 1, 357, 2}, "abc<s> hello"},
         {"h\303\251llo w\303\266rld", {339, 198, 172, 338, 274, 334, 282, 198, 185, 277, 271, 263}, {1, 339, 198, 172, 338, 274, 334, 282, 198, 185, 277, 271, 263, 2}, "h\303\251llo w\303\266rld"},
         {"", {}, {1, 2}, ""},
         {"a\303\251\342\202\254\360\237\230\200", {345, 198, 172, 229, 133, 175, 243, 162, 155, 131}, {1, 345, 198, 172, 229, 133, 175, 243, 162, 155, 131, 2}, "a\303\251\342\202\254\360\237\230\200"},
         {"<s>", {1}, {1, 1, 2}, "<s>"},
         {"hello\342\226\201world", {357, 351}, {1, 357, 351, 2}, "hello world"},
     }},
    {"metaspace_always_nosplit_fused",
     R"json({"model_options": {"byte_fallback": true}, "added_tokens": [{"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}], "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": false}, "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true}]}})json",
     {
         {"hello world", {357, 351}, {357, 351}, "helloworld"},
         {"<s>hello world", {1, 357, 351}, {1, 357, 351}, "<s>helloworld"},
         {"abc \303\251", {334, 343, 334, 198, 172}, {334, 343, 334, 198, 172}, "abc\303\251"},
     }},
    {"metaspace_never",
     R"json({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never", "split": true}, "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never", "split": true}})json",
     {
         {"hello world", {341, 351}, {341, 351}, "hello world"},
         {" abc", {334, 343}, {334, 343}, " abc"},
     }},
    {"legacy_metaspace",
     R"json({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": true}, "decoder": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": true}})json",
     {
         {"hello  world", {357, 334, 351}, {357, 334, 351}, "hello  world"},
     }},
    {"split_Removed",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[0-9]+"}, "behavior": "Removed", "invert": false}})json",
     {
         {"ab12cd345e", {342, 262, 263, 264}, {342, 262, 263, 264}, "ab c d e"},
         {"12ab", {342}, {342}, "ab"},
         {"a1b22", {260, 261}, {260, 261}, "a b"},
         {"9", {}, {}, ""},
     }},
    {"split_Isolated",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[0-9]+"}, "behavior": "Isolated", "invert": false}})json",
     {
         {"ab12cd345e", {342, 346, 262, 263, 315, 316, 317, 264}, {342, 346, 262, 263, 315, 316, 317, 264}, "ab 12 c d 3 4 5 e"},
         {"12ab", {346, 342}, {346, 342}, "12 ab"},
         {"a1b22", {260, 313, 261, 314, 314}, {260, 313, 261, 314, 314}, "a 1 b 2 2"},
         {"9", {321}, {321}, "9"},
     }},
    {"split_MergedWithPrevious",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[0-9]+"}, "behavior": "MergedWithPrevious", "invert": false}})json",
     {
         {"ab12cd345e", {342, 346, 262, 263, 315, 316, 317, 264}, {342, 346, 262, 263, 315, 316, 317, 264}, "ab 12 c d 3 4 5 e"},
         {"12ab", {346, 342}, {346, 342}, "12 ab"},
         {"a1b22", {260, 313, 261, 314, 314}, {260, 313, 261, 314, 314}, "a 1 b 2 2"},
         {"9", {321}, {321}, "9"},
     }},
    {"split_MergedWithNext",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[0-9]+"}, "behavior": "MergedWithNext", "invert": false}})json",
     {
         {"ab12cd345e", {342, 346, 262, 263, 315, 316, 317, 264}, {342, 346, 262, 263, 315, 316, 317, 264}, "ab 12 c d 3 4 5 e"},
         {"12ab", {346, 342}, {346, 342}, "12 ab"},
         {"a1b22", {260, 313, 261, 314, 314}, {260, 313, 261, 314, 314}, "a 1 b 2 2"},
         {"9", {321}, {321}, "9"},
     }},
    {"split_Contiguous",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[0-9]+"}, "behavior": "Contiguous", "invert": false}})json",
     {
         {"ab12cd345e", {342, 346, 262, 263, 315, 316, 317, 264}, {342, 346, 262, 263, 315, 316, 317, 264}, "ab 12 c d 3 4 5 e"},
         {"12ab", {346, 342}, {346, 342}, "12 ab"},
         {"a1b22", {260, 313, 261, 314, 314}, {260, 313, 261, 314, 314}, "a 1 b 2 2"},
         {"9", {321}, {321}, "9"},
     }},
    {"split_invert",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[0-9]+"}, "behavior": "MergedWithPrevious", "invert": true}})json",
     {
         {"ab12cd345e", {342, 346, 262, 263, 315, 316, 317, 264}, {342, 346, 262, 263, 315, 316, 317, 264}, "ab 12 c d 3 4 5 e"},
         {"12ab", {346, 342}, {346, 342}, "12 ab"},
     }},
    {"split_string",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"String": "-"}, "behavior": "Removed", "invert": false}})json",
     {
         {"a-b--c", {260, 261, 262}, {260, 261, 262}, "a b c"},
         {"-abc-", {343}, {343}, "abc"},
     }},
    {"split_anchor",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "^ab|c$"}, "behavior": "Isolated", "invert": false}})json",
     {
         {"abcab\012abc\012c", {342, 262, 342, 0, 342, 262, 0, 262}, {342, 262, 342, 0, 342, 262, 0, 262}, "ab c ab <unk> ab c <unk> c"},
     }},
    {"split_empty_matches",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "x*"}, "behavior": "Isolated", "invert": false}})json",
     {
         {"abxxc", {260, 261, 283, 283, 262}, {260, 261, 283, 283, 262}, "a b x x c"},
         {"xx", {283, 283}, {283, 283}, "x x"},
     }},
    {"split_word_class",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+|[^\\w\\s]+"}, "behavior": "Isolated", "invert": false}})json",
     {
         {"ab_c\303\251\314\201 \342\205\247x-!", {342, 328, 262, 0, 0, 259, 0, 283, 327, 324}, {342, 328, 262, 0, 0, 259, 0, 283, 327, 324}, "ab _ c <unk> <unk>   <unk> x - !"},
         {"a\331\243b", {260, 0, 261}, {260, 0, 261}, "a <unk> b"},
     }},
    {"digits_individual",
     R"json({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}, {"type": "Digits", "individual_digits": true}]}})json",
     {
         {"abc 12345 x9y", {343, 313, 314, 315, 316, 317, 283, 321, 284}, {343, 313, 314, 315, 316, 317, 283, 321, 284}, "abc 1 2 3 4 5 x 9 y"},
         {"\331\243\302\262", {0, 0}, {0, 0}, "<unk> <unk>"},
     }},
    {"digits_grouped",
     R"json({"pre_tokenizer": {"type": "Digits", "individual_digits": false}})json",
     {
         {"abc 12345 x9y", {343, 259, 346, 315, 316, 317, 259, 283, 321, 284}, {343, 259, 346, 315, 316, 317, 259, 283, 321, 284}, "abc   12 3 4 5   x 9 y"},
         {"1a2", {313, 260, 314}, {313, 260, 314}, "1 a 2"},
     }},
    {"normalizers",
     R"json({"normalizer": {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": true, "strip_right": true}, {"type": "Lowercase"}, {"type": "NFKC"}, {"type": "Replace", "pattern": {"String": "ll"}, "content": "l"}, {"type": "Prepend", "prepend": "\u2581"}]}})json",
     {
         {"  HeLLo \357\254\201  ", {334, 337, 271, 274, 259, 265, 268}, {334, 337, 271, 274, 259, 265, 268}, "\342\226\201 he l o   f i"},
         {"\303\205B", {334, 0, 261}, {334, 0, 261}, "\342\226\201 <unk> b"},
         {"\304\260", {334, 268, 0}, {334, 268, 0}, "\342\226\201 i <unk>"},
         {"   ", {}, {}, ""},
         {"\342\205\247", {334, 281, 268, 268, 268}, {334, 281, 268, 268, 268}, "\342\226\201 v i i i"},
     }},
    {"nfd_lowercase",
     R"json({"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}]}, "model_options": {"byte_fallback": true}})json",
     {
         {"\303\211a", {264, 207, 132, 260}, {264, 207, 132, 260}, "e <0xCC> <0x81> a"},
         {"\307\205", {202, 137}, {202, 137}, "<0xC7> <0x86>"},
     }},
    {"nfkd_strip_left",
     R"json({"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Strip", "strip_left": true, "strip_right": false}]}})json",
     {
         {"  \357\254\201 x ", {265, 268, 259, 283, 259}, {265, 268, 259, 283, 259}, "f i   x  "},
         {"\302\240\342\200\203a", {260}, {260}, "a"},
     }},
    {"added_options",
     R"json({"normalizer": {"type": "Lowercase"}, "added_tokens": [{"id": 300, "content": "[x]", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": false}, {"id": 301, "content": "[y]", "single_word": false, "lstrip": false, "rstrip": true, "normalized": false, "special": false}, {"id": 302, "content": "ab", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false}, {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}, {"id": 303, "content": "HE", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}], "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}})json",
     {
         {"a [x] b", {260, 360, 261}, {260, 360, 261}, "a [x] b"},
         {"a [y]  b", {260, 361, 261}, {260, 361, 261}, "a [y] b"},
         {"a[y]  [x]b", {260, 361, 360, 261}, {260, 361, 360, 261}, "a [y] [x] b"},
         {"ab abc xab ab", {342, 343, 283, 342, 342}, {342, 343, 283, 342, 342}, "ab abc x ab ab"},
         {"HE he He", {362, 362, 362}, {362, 362, 362}, "he he he"},
         {"<s>ab", {1, 342}, {1, 342}, "<s> ab"},
         {" [x][y] ", {360, 361}, {360, 361}, "[x] [y]"},
         {"\303\251ab_ab", {0, 342, 328, 342}, {0, 342, 328, 342}, "<unk> ab _ ab"},
     }},
    {"normalized_added_prepend",
     R"json({"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"}, {"type": "Lowercase"}]}, "added_tokens": [{"id": 400, "content": "<X>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}, {"id": 401, "content": "<Y>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true}]})json",
     {
         {"a<X>b", {345, 331, 283, 332, 261}, {345, 331, 283, 332, 261}, "\342\226\201a < x > b"},
         {"<X>", {360}, {360}, "\342\226\201<x>"},
         {"a <x>", {345, 259, 331, 283, 332}, {345, 259, 331, 283, 332}, "\342\226\201a   < x >"},
         {"<Y>c", {361, 262}, {361, 262}, "\342\226\201<y> c"},
         {"<y>", {361}, {361}, "\342\226\201<y>"},
     }},
    {"unk_fused",
     R"json({"model_options": {"fuse_unk": true}})json",
     {
         {"a\303\251\342\202\254b", {260, 0, 261}, {260, 0, 261}, "a <unk> b"},
         {"\303\251\303\251\303\251", {0}, {0}, "<unk>"},
     }},
    {"unk_not_fused",
     R"json({"model_options": {"fuse_unk": false}})json",
     {
         {"a\303\251\342\202\254b", {260, 0, 0, 261}, {260, 0, 0, 261}, "a <unk> <unk> b"},
         {"\303\251\303\251\303\251", {0, 0, 0}, {0, 0, 0}, "<unk> <unk> <unk>"},
     }},
    {"no_unk",
     R"json({"model_options": {"unk_token": null}})json",
     {
         {"a\303\251b", {342}, {342}, "ab"},
     }},
    {"ignore_merges",
     R"json({"model_options": {"ignore_merges": true}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}})json",
     {
         {"bca abc hello", {359, 343, 341}, {359, 343, 341}, "bca abc hello"},
     }},
    {"merges_by_rank",
     R"json({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}})json",
     {
         {"bca abc hello", {344, 260, 343, 341}, {344, 260, 343, 341}, "bc a abc hello"},
     }},
    {"subword_prefix",
     R"json({"model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": "##", "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": {"<unk>": 0, "a": 1, "##b": 2, "##c": 3, "ab": 4, "abc": 5, "b": 6, "c": 7, "##a": 8}, "merges": [["a", "##b"], ["ab", "##c"]]}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}})json",
     {
         {"abc cab ab c", {5, 7, 8, 2, 4, 7}, {5, 7, 8, 2, 4, 7}, "abc c ##a ##b ab c"},
         {"abd", {4, 0}, {4, 0}, "ab <unk>"},
     }},
    {"word_suffix",
     R"json({"model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null, "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "a</w>": 4, "b</w>": 5, "c</w>": 6, "ab</w>": 7, "ab": 8}, "merges": ["a b</w>", "a b"]}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}})json",
     {
         {"ab abab ba c", {7, 8, 7, 2, 4, 6}, {7, 8, 7, 2, 4, 6}, "ab</w> ab ab</w> b a</w> c</w>"},
     }},
    {"byte_level_prefix_space",
     R"json({"added_tokens": [{"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}], "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}})json",
     {
         {"hello world", {335, 341, 358}, {335, 341, 358}, " hello world"},
         {"<s>hello", {1, 335, 341}, {1, 335, 341}, "<s> hello"},
         {"a\012b  c", {335, 260, 336, 261, 335, 335, 262}, {335, 260, 336, 261, 335, 335, 262}, " a\012b  c"},
         {" hello", {335, 341}, {335, 341}, " hello"},
     }},
    {"byte_level_no_regex",
     R"json({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}})json",
     {
         {"hello world", {341, 358}, {341, 358}, "hello world"},
         {"ab c", {342, 335, 262}, {342, 335, 262}, "ab c"},
     }},
    {"strip_replace_decoders",
     R"json({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true}, "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "Strip", "content": "d", "start": 0, "stop": 1}]}})json",
     {
         {"hello world", {357, 351}, {357, 351}, " hello worl"},
         {"abc dd", {334, 343, 334, 263, 263}, {334, 343, 334, 263, 263}, " abc "},
         {"ddd", {334, 263, 263, 263}, {334, 263, 263, 263}, " "},
     }},
    {"strip_after_fuse",
     R"json({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true}, "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 3, "stop": 2}]}})json",
     {
         {"  hello world  ", {334, 357, 351, 334, 334}, {334, 357, 351, 334, 334}, "hello world"},
         {"abc", {334, 343}, {334, 343}, "abc"},
     }},
    {"roberta",
     R"json({"added_tokens": [{"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}, {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}], "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1], "trim_offsets": true, "add_prefix_space": true}})json",
     {
         {"abc", {343}, {1, 343, 2}, "abc"},
     }},
    {"bert_sequence",
     R"json({"added_tokens": [{"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}, {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}], "post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}, {"type": "BertProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]}]}})json",
     {
         {"abc", {343}, {1, 343, 2}, "abc"},
     }},
    {"empty_decoder_sequence",
     R"json({"decoder": {"type": "Sequence", "decoders": []}})json",
     {
         {"ab c", {342, 259, 262}, {342, 259, 262}, "ab c"},
     }},
};

TEST(SyntheticPipelines, MatchHuggingFace) {
  size_t total = 0, passed = 0;
  for (const SyntheticConfig &config : kSyntheticConfigs) {
    SCOPED_TRACE(config.name);
    std::unique_ptr<llm::Tokenizer> tok;
    try {
      tok = std::make_unique<llm::Tokenizer>(llm::parse_hf_tokenizer(synthetic_tokenizer_json(config.overrides)));
    } catch (const llm::Error &e) {
      ADD_FAILURE() << config.name << ": " << e.what();
      continue;
    }
    for (const SyntheticCase &c : config.cases) {
      ++total;
      Ids ids = tok->encode(c.text, false), with_special = tok->encode(c.text, true);
      std::string decoded = decode(*tok, c.ids);
      EXPECT_EQ(ids_str(ids), ids_str(c.ids)) << config.name << ": " << printable(c.text);
      EXPECT_EQ(ids_str(with_special), ids_str(c.ids_with_special)) << config.name << ": " << printable(c.text);
      EXPECT_EQ(printable(decoded), printable(c.decoded)) << config.name << ": " << printable(c.text);
      passed += ids == c.ids && with_special == c.ids_with_special && decoded == c.decoded;
    }
  }
  std::printf("[ cases    ] synthetic pipelines: %zu/%zu cases match\n", passed, total);
}

// Random bytes (invalid UTF-8, NULs, special-token strings) through every
// shared and synthetic pipeline: no crash, and decoding yields valid UTF-8.
TEST(TokenizerBehaviour, ArbitraryBytesNeverCrash) {
  std::vector<std::unique_ptr<llm::Tokenizer>> owned;
  std::vector<const llm::Tokenizer *> tokenizers;
  for (const char *family : {"llama2", "gpt2", "llama3-style", "qwen2-style"})
    if (const llm::Tokenizer *tok = family_tokenizer(family)) tokenizers.push_back(tok);
  for (const SyntheticConfig &config : kSyntheticConfigs) {
    owned.push_back(
        std::make_unique<llm::Tokenizer>(llm::parse_hf_tokenizer(synthetic_tokenizer_json(config.overrides))));
    tokenizers.push_back(owned.back().get());
  }
  std::mt19937 rng(1234);
  for (const llm::Tokenizer *tok : tokenizers) {
    for (int round = 0; round < 100; ++round) {
      std::string bytes(rng() % 64, '\0');
      for (char &c : bytes) c = static_cast<char>(rng() % 256);
      if (round % 3 == 0) bytes += std::string("\0<s>\0 [x]", 10);
      for (bool parse_special : {true, false}) {
        Ids ids = tok->encode(bytes, true, parse_special);
        for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size());
        std::string text = decode(*tok, ids);
        EXPECT_NO_THROW((void)json(text).dump()) << "decode must produce valid UTF-8";
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Malformed or unsupported tokenizer.json input
// ---------------------------------------------------------------------------

// Expects parse + construction to fail with `status` and a message holding
// `needle`.
void expect_rejected(const std::string &text, llm_status status, const std::string &needle) {
  try {
    llm::Tokenizer tok(llm::parse_hf_tokenizer(text));
    ADD_FAILURE() << "accepted: " << text.substr(0, 200);
  } catch (const llm::Error &e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

std::string with_overrides(const std::string &overrides) { return synthetic_tokenizer_json(overrides.c_str()); }

TEST(MalformedTokenizerJson, InvalidJson) {
  expect_rejected("{\"model\": {", LLM_ERR_FORMAT, "invalid JSON");
  expect_rejected("[1, 2]", LLM_ERR_FORMAT, "top level");
  expect_rejected("{}", LLM_ERR_FORMAT, "lacks \"model\"");
}

TEST(MalformedTokenizerJson, UnsupportedModelType) {
  expect_rejected(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})", LLM_ERR_UNSUPPORTED, "WordPiece");
  expect_rejected(R"({"model": {"type": "Unigram", "vocab": []}})", LLM_ERR_UNSUPPORTED, "Unigram");
  expect_rejected(with_overrides(R"({"model_options": {"dropout": 0.1}})"), LLM_ERR_UNSUPPORTED, "dropout");
}

TEST(MalformedTokenizerJson, BadVocabularyOrMerges) {
  expect_rejected(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "c"]]}})", LLM_ERR_FORMAT,
                  "\"c\", which is not in the vocabulary");
  expect_rejected(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})", LLM_ERR_FORMAT,
                  "\"ab\", which is not in the vocabulary");
  expect_rejected(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})", LLM_ERR_FORMAT,
                  "gives id 0 to both");
  expect_rejected(R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})", LLM_ERR_FORMAT, "outside");
  expect_rejected(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}})",
                  LLM_ERR_FORMAT, "unk_token");
  expect_rejected(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}})", LLM_ERR_FORMAT, "merges[0]");
}

TEST(MalformedTokenizerJson, UnsupportedComponents) {
  expect_rejected(with_overrides(R"({"normalizer": {"type": "BertNormalizer"}})"), LLM_ERR_UNSUPPORTED,
                  "BertNormalizer");
  expect_rejected(with_overrides(R"({"normalizer": {"type": "Replace", "pattern": {"Regex": "a+"}, "content": "b"}})"),
                  LLM_ERR_UNSUPPORTED, "regular expression");
  expect_rejected(with_overrides(R"({"pre_tokenizer": {"type": "Whitespace"}})"), LLM_ERR_UNSUPPORTED, "Whitespace");
  expect_rejected(with_overrides(R"({"decoder": {"type": "WordPiece", "prefix": "##"}})"), LLM_ERR_UNSUPPORTED,
                  "WordPiece");
  expect_rejected(with_overrides(R"({"post_processor": {"type": "Weird"}})"), LLM_ERR_UNSUPPORTED, "Weird");
}

TEST(MalformedTokenizerJson, BadComponents) {
  expect_rejected(with_overrides(R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"},
                                     "behavior": "Isolated", "invert": false}})"),
                  LLM_ERR_FORMAT, "invalid regex");
  expect_rejected(with_overrides(R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"},
                                     "behavior": "Sideways", "invert": false}})"),
                  LLM_ERR_FORMAT, "Sideways");
  expect_rejected(with_overrides(R"({"post_processor": {"type": "TemplateProcessing",
                                     "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                                {"Sequence": {"id": "A", "type_id": 0}}],
                                     "special_tokens": {}}})"),
                  LLM_ERR_FORMAT, "<bos>");
  // HF gives a new added token the model's vocabulary size (3) as id, which
  // this model's sparse ids already use.
  expect_rejected(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 3}, "merges": []},
                      "added_tokens": [{"id": 4, "content": "<x>"}]})",
                  LLM_ERR_FORMAT, "which the model gives to \"c\"");
  expect_rejected(with_overrides(R"({"normalizer": {"type": "Prepend", "prepend": 3}})"), LLM_ERR_FORMAT,
                  "must be a string");
}

TEST(TokenizerSpecValidation, RejectsInconsistentSpecs) {
  llm::TokenizerSpec spec;
  spec.vocab = {"a", "b", "ab"};
  spec.merges = {{0, 1, 7}};
  EXPECT_THROW(llm::Tokenizer{spec}, llm::Error);
  spec.merges = {{0, 1, 2}};
  EXPECT_NO_THROW(llm::Tokenizer{spec});
  llm::PreTokenizerSpec split;
  split.kind = llm::PreTokenizerSpec::Split;
  split.pattern = "[unclosed";
  spec.pre_tokenizers = {split};
  try {
    llm::Tokenizer tok(spec);
    FAIL() << "expected llm::Error";
  } catch (const llm::Error &e) {
    EXPECT_EQ(e.status(), LLM_ERR_FORMAT);
    EXPECT_NE(std::string(e.what()).find("invalid regex"), std::string::npos) << e.what();
  }
  spec.pre_tokenizers.clear();
  spec.prefix_ids = {5};
  EXPECT_THROW(llm::Tokenizer{spec}, llm::Error);
}

// Decoding ids of the vocabulary never fails: Replace decoders that could
// lengthen text more than 64 times in all are refused when the tokenizer is
// built (a fuzzing finding: 12 steps of a -> aa passed the per-token check,
// 4096 bytes for "a", and then decoding 11 bytes of "a" tokens failed).
TEST(TokenizerSpecValidation, DecoderChainsThatCouldOutgrowTheLimitAreRefused) {
  llm::TokenizerSpec spec;
  spec.vocab = {"a", "b", "ab"};
  spec.merges = {{0, 1, 2}};
  llm::DecoderSpec twice;
  twice.kind = llm::DecoderSpec::Replace;
  twice.pattern = "a";
  twice.content = "aa";
  spec.decoders.assign(6, twice);  // 64 times: allowed
  {
    const llm::Tokenizer tok(spec);
    const std::vector<int32_t> ids(200, 0);
    EXPECT_EQ(tok.decode(ids.data(), ids.size()), std::string(200 * 64, 'a'));
  }
  spec.decoders.assign(7, twice);  // 128 times
  try {
    llm::Tokenizer tok(spec);
    FAIL() << "expected llm::Error";
  } catch (const llm::Error &e) {
    EXPECT_EQ(e.status(), LLM_ERR_FORMAT);
    EXPECT_NE(std::string(e.what()).find("Replace decoders can lengthen text 128 times; at most 64"),
              std::string::npos)
        << e.what();
  }
  llm::DecoderSpec shorter = twice;  // "aa" -> "a" halves, but never shrinks the bound below 1 a step
  shorter.pattern = "aa";
  shorter.content = "a";
  spec.decoders.push_back(shorter);
  EXPECT_THROW(llm::Tokenizer{spec}, llm::Error);
}

}  // namespace
