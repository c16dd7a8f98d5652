// The converted reference checkpoints of ../shared against the outputs of
// Hugging Face transformers (fp32 math on the same bf16 weights): logits at
// every prompt position, 64-token greedy continuations, streamed text, and
// perplexity of the evaluation texts through the `llm perplexity` tool.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llm.h"
#include "tests/common/greedy.h"
#include "tests/common/handles.h"
#include "tests/common/npy.h"

namespace {

using nlohmann::json;

std::string shared_model_dir(const std::string &model) {
  return std::string(LLM_SHARED_DIR) + "/models/" + model;
}
std::string work_file(const std::string &name) { return std::string(LLM_WORK_DIR) + "/" + name; }
bool exists(const std::string &path) { return std::ifstream(path).good(); }

json load_json(const std::string &path) {
  std::ifstream f(path);
  return json::parse(f);
}

using llm_test::ModelPtr;
using llm_test::SessionPtr;

ModelPtr load(const std::string &path) {
  llm_model *m = nullptr;
  llm_status st = llm_model_load(path.c_str(), nullptr, &m);
  EXPECT_EQ(st, LLM_OK) << llm_last_error();
  return ModelPtr(m);
}

SessionPtr session(llm_model *m, int n_ctx, bool logits_all) {
  llm_session_params p;
  llm_session_params_init(&p);
  p.n_ctx = n_ctx;
  p.logits_all = logits_all;
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(m, &p, &s), LLM_OK) << llm_last_error();
  return SessionPtr(s);
}

std::vector<llm_token> tokenize(llm_model *m, const std::string &text) {
  std::vector<llm_token> ids(text.size() + 8);
  size_t n = 0;
  EXPECT_EQ(llm_tokenize(m, text.data(), text.size(), 1, ids.data(), ids.size(), &n), LLM_OK) << llm_last_error();
  ids.resize(n);
  return ids;
}

// Largest |ours - ref| over the compared rows, relative to max |ref|.
struct LogitError {
  double max_abs = 0, max_ref = 0;
  double relative() const { return max_abs / max_ref; }
};

// Evaluates every case of reference.json and compares logits at the listed
// positions (all positions when the case lists none).
LogitError compare_logits(const std::string &model_file, const std::string &ref_dir) {
  LogitError err;
  ModelPtr model = load(model_file);
  if (!model) return err;
  json ref = load_json(ref_dir + "/reference.json");
  for (const json &c : ref["cases"]) {
    std::vector<llm_token> ids = c["input_ids"].get<std::vector<llm_token>>();
    // The tokenizer must reproduce the reference ids from the prompt text.
    EXPECT_EQ(tokenize(model.get(), c["prompt"].get<std::string>()), ids) << c["prompt"];
    llm::test::NpyArray logits = llm::test::load_npy(ref_dir + "/" + c["logits_file"].get<std::string>());
    std::vector<int> positions;
    if (c.contains("logits_positions")) {
      positions = c["logits_positions"].get<std::vector<int>>();
    } else {
      for (size_t i = 0; i < ids.size(); ++i) positions.push_back(static_cast<int>(i));
    }
    const int64_t vocab = logits.shape[1];
    SessionPtr s = session(model.get(), 0, true);
    EXPECT_EQ(llm_session_eval(s.get(), ids.data(), ids.size()), LLM_OK) << llm_last_error();
    for (size_t r = 0; r < positions.size(); ++r) {
      const float *ours = llm_session_logits_at(s.get(), positions[r]);
      const float *want = logits.as<float>() + r * vocab;
      EXPECT_NE(ours, nullptr);
      if (!ours) continue;
      for (int64_t v = 0; v < vocab; ++v) {
        err.max_abs = std::max(err.max_abs, static_cast<double>(std::fabs(ours[v] - want[v])));
        err.max_ref = std::max(err.max_ref, static_cast<double>(std::fabs(want[v])));
      }
    }
  }
  return err;
}

#define REQUIRE_FILE(path)                                                                 \
  do {                                                                                     \
    if (!exists(path)) GTEST_SKIP() << path << " not found (../shared models absent?)"; \
  } while (0)

class TinyLlamaCode : public ::testing::TestWithParam<std::string> {
 protected:
  std::string model_file() const { return work_file("tiny-llama-code-" + GetParam() + ".llm"); }
  std::string ref_dir() const { return shared_model_dir("tiny-llama-code") + "/reference"; }
};

TEST_P(TinyLlamaCode, LogitsMatchReferenceAtEveryPosition) {
  REQUIRE_FILE(model_file());
  LogitError e = compare_logits(model_file(), ref_dir());
  std::printf("[ metric ] tiny-llama-code %s: max|dlogit| = %.3g, max|ref| = %.3g, relative %.3g\n",
              GetParam().c_str(), e.max_abs, e.max_ref, e.relative());
  EXPECT_GT(e.max_ref, 1.0);
  EXPECT_LE(e.relative(), 2e-3);
}

TEST_P(TinyLlamaCode, GreedyContinuationMatchesReference) {
  REQUIRE_FILE(model_file());
  ModelPtr model = load(model_file());
  json ref = load_json(ref_dir() + "/reference.json");
  for (const json &c : ref["cases"]) {
    const std::vector<llm_token> want = c["greedy_ids"].get<std::vector<llm_token>>();
    EXPECT_EQ(llm_test::greedy_continuation(model.get(), c["input_ids"].get<std::vector<llm_token>>(), want.size()),
              want)
        << "prompt: " << c["prompt"];
  }
}

// Text streamed by llm_generate is exactly the decoded continuation.
struct Collected {
  std::string text;
  std::vector<llm_token> tokens;
};
int collect(const char *piece, size_t len, llm_token token, void *user) {
  auto *c = static_cast<Collected *>(user);
  c->text.append(piece, len);
  if (token >= 0) c->tokens.push_back(token);
  return 0;
}

std::string detokenize(llm_model *m, const std::vector<llm_token> &ids) {
  size_t len = 0;
  llm_detokenize(m, ids.data(), ids.size(), nullptr, 0, &len);
  std::string s(len, '\0');
  EXPECT_EQ(llm_detokenize(m, ids.data(), ids.size(), s.data(), s.size(), &len), LLM_OK) << llm_last_error();
  return s;
}

TEST_P(TinyLlamaCode, GenerateStreamsTheGreedyText) {
  REQUIRE_FILE(model_file());
  ModelPtr model = load(model_file());
  json ref = load_json(ref_dir() + "/reference.json");
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.temperature = 0;
  gp.max_tokens = 64;
  gp.ignore_eos = 1;
  for (const json &c : ref["cases"]) {
    std::vector<llm_token> prompt_ids = c["input_ids"].get<std::vector<llm_token>>();
    std::vector<llm_token> want = c["greedy_ids"].get<std::vector<llm_token>>();
    SessionPtr s = session(model.get(), 0, false);
    Collected out;
    ASSERT_EQ(llm_generate(s.get(), c["prompt"].get<std::string>().c_str(), &gp, collect, &out), LLM_OK)
        << llm_last_error();
    EXPECT_EQ(out.tokens, want);
    EXPECT_EQ(llm_session_stop_reason(s.get()), LLM_STOP_MAX_TOKENS);
    std::vector<llm_token> all = prompt_ids;
    all.insert(all.end(), want.begin(), want.end());
    std::string before = detokenize(model.get(), prompt_ids), full = detokenize(model.get(), all);
    ASSERT_EQ(full.compare(0, before.size(), before), 0);
    EXPECT_EQ(out.text, full.substr(before.size())) << "prompt: " << c["prompt"];
  }
}

double run_perplexity(const std::string &model_file, const std::string &text_file) {
  std::string cmd = std::string(LLM_CLI_EXE) + " perplexity -m " + model_file + " -f " + text_file +
                    " --ctx 512 --stride 511 --max-tokens 16384 --json";
  FILE *p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << cmd;
  json j = json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.contains("perplexity")) {
    ADD_FAILURE() << "unexpected output of " << cmd << ": " << out;
    return -1;
  }
  EXPECT_EQ(j["tokens_scored"].get<int>(), 16383);
  return j["perplexity"].get<double>();
}

TEST_P(TinyLlamaCode, PerplexityMatchesReference) {
  REQUIRE_FILE(model_file());
  json ref = load_json(ref_dir() + "/reference.json");
  for (const char *set : {"code_eval", "brown_eval"}) {
    std::string text = ref_dir() + (std::string(set) == "code_eval" ? "/eval_code.txt" : "/brown_eval.txt");
    double want = ref["evals"][set]["ppl"].get<double>();
    double got = run_perplexity(model_file(), text);
    std::printf("[ metric ] tiny-llama-code %s %s: perplexity %.4f (reference %.4f, %+.3f%%)\n",
                GetParam().c_str(), set, got, want, 100 * (got / want - 1));
    EXPECT_NEAR(got / want, 1.0, 0.005) << set;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TinyLlamaCode, ::testing::Values("f32", "bf16"));

// Random-weight checkpoints for features the trained model lacks: Llama 3.1
// RoPE scaling and Mistral's sliding window. A tolerance of 5e-3 of max|logit|
// separates right from wrong (leaving the feature out moves logits by 0.09+).
TEST(RandomModels, Llama3RopeScalingLogits) {
  std::string f = work_file("tiny-random-llama3-f32.llm");
  REQUIRE_FILE(f);
  LogitError e = compare_logits(f, shared_model_dir("tiny-random-llama3") + "/reference");
  std::printf("[ metric ] tiny-random-llama3: relative max error %.3g\n", e.relative());
  EXPECT_LE(e.relative(), 5e-3);
}

TEST(RandomModels, MistralSlidingWindowLogits) {
  std::string f = work_file("tiny-random-mistral-swa-f32.llm");
  REQUIRE_FILE(f);
  LogitError e = compare_logits(f, shared_model_dir("tiny-random-mistral-swa") + "/reference");
  std::printf("[ metric ] tiny-random-mistral-swa: relative max error %.3g\n", e.relative());
  EXPECT_LE(e.relative(), 5e-3);
}

}  // namespace
