// Tokenizer tests: the runtime tokenizer built from tokenizer.json files must
// reproduce Hugging Face `tokenizers` (ids, ids with special tokens, decoded
// text) on the reference cases in $LLM_SHARED_DIR, plus synthetic pipelines
// whose expected ids were produced by `tokenizers` 0.23.2.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
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
std::string quoted(const std::string &s) { return json(s).dump(-1, ' ', true, json::error_handler_t::replace); }

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
      ADD_FAILURE() << GetParam() << ": ids differ for " << quoted(text) << "\n  expected " << c["ids"].dump()
                    << "\n  got      " << ids_str(ids);
      ok = false;
    }
    if (with_special != to_ids(c["ids_with_special"])) {
      ADD_FAILURE() << GetParam() << ": ids with special tokens differ for " << quoted(text) << "\n  expected "
                    << c["ids_with_special"].dump() << "\n  got      " << ids_str(with_special);
      ok = false;
    }
    if (decoded != c["decoded"].get<std::string>()) {
      ADD_FAILURE() << GetParam() << ": decoded text differs for " << quoted(text) << "\n  expected "
                    << quoted(c["decoded"].get<std::string>()) << "\n  got      " << quoted(decoded);
      ok = false;
    }
    // Where HF round-trips the text, so must we.
    if (c["decoded"] == c["text"] && decode(tok, ids) != text) {
      ADD_FAILURE() << GetParam() << ": decode(encode(x)) != x for " << quoted(text);
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
    EXPECT_EQ(ids_str(tok.encode(prompt, true)), c["input_ids"].dump()) << "prompt " << quoted(prompt);
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
  EXPECT_LT(ms, 1000.0) << "encoding should take well under a second";

  std::vector<int64_t> expected = llm::test::load_npy(ids_path).ints();
  ASSERT_GE(ids.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_EQ(ids[i], expected[i]) << "first mismatch at position " << i;
}

INSTANTIATE_TEST_SUITE_P(TinyLlamaCode, EvalTexts, ::testing::Values("eval_code", "brown_eval"), param_name);

}  // namespace
