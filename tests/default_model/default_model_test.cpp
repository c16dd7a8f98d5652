// The default model shipped in models/libllm-tiny, converted by the
// convert_default_model fixture, against models/libllm-tiny/eval/reference.json
// (Hugging Face transformers, fp32 math with TF32 off, on the same bf16
// weights; written by scripts/train_default_model.py): held-out perplexity,
// tokenizer ids, greedy continuations, and its chat template. Needs nothing
// outside the repository.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "llm.h"
#include "tests/common/handles.h"

namespace {

using nlohmann::json;

const std::string kModelDir = LLM_DEFAULT_MODEL_DIR;

std::string work_file(const std::string &name) { return std::string(LLM_WORK_DIR) + "/" + name; }

std::string read_text(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

const json &reference() {
  static const json r = json::parse(read_text(kModelDir + "/eval/reference.json"));
  return r;
}

using llm_test::ModelPtr;
using llm_test::SessionPtr;

ModelPtr load(const std::string &weights) {
  const std::string path = work_file("libllm-tiny-" + weights + ".llm");
  llm_model *m = nullptr;
  llm_status st = llm_model_load(path.c_str(), nullptr, &m);
  EXPECT_EQ(st, LLM_OK) << path << ": " << llm_last_error();
  return ModelPtr(m);
}

SessionPtr session(llm_model *m, int32_t n_ctx, bool logits_all) {
  llm_session_params p;
  llm_session_params_init(&p);
  p.n_ctx = n_ctx;
  p.logits_all = logits_all;
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(m, &p, &s), LLM_OK) << llm_last_error();
  return SessionPtr(s);
}

std::vector<llm_token> tokenize(llm_model *m, const std::string &text) {
  size_t n = 0;
  llm_tokenize(m, text.data(), text.size(), 1, nullptr, 0, &n);
  std::vector<llm_token> ids(n);
  EXPECT_EQ(llm_tokenize(m, text.data(), text.size(), 1, ids.data(), ids.size(), &n), LLM_OK);
  return ids;
}

// Mean negative log-likelihood with the reference's windowing: windows of 512
// ids starting every 511, each from an empty context, scoring each position's
// next id within its window.
double mean_nll(llm_model *m, const std::vector<llm_token> &ids) {
  const size_t ctx = 512, stride = 511;
  SessionPtr s = session(m, ctx, true);
  llm_model_info info;
  info.struct_size = sizeof info;
  EXPECT_EQ(llm_model_get_info(m, &info), LLM_OK);
  double total = 0;
  size_t count = 0;
  for (size_t start = 0; start + 1 < ids.size(); start += stride) {
    const size_t len = std::min(ctx, ids.size() - start);
    EXPECT_EQ(llm_session_reset(s.get()), LLM_OK);
    EXPECT_EQ(llm_session_eval(s.get(), ids.data() + start, len), LLM_OK) << llm_last_error();
    for (size_t j = 0; j + 1 < len; ++j) {
      const float *logits = llm_session_logits_at(s.get(), static_cast<int32_t>(j));
      double mx = logits[0];
      for (int32_t v = 1; v < info.vocab_size; ++v) mx = std::max(mx, static_cast<double>(logits[v]));
      double sum = 0;
      for (int32_t v = 0; v < info.vocab_size; ++v) sum += std::exp(logits[v] - mx);
      total += std::log(sum) + mx - logits[ids[start + j + 1]];
      ++count;
    }
    if (start + ctx >= ids.size()) break;
  }
  return total / static_cast<double>(count);
}

int32_t argmax(const float *x, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

TEST(DefaultModel, ShipsWithinItsSizeBudget) {
  uintmax_t bytes = 0;
  for (const auto &e : std::filesystem::recursive_directory_iterator(kModelDir))
    if (e.is_regular_file()) bytes += e.file_size();
  EXPECT_LE(bytes, 16u * 1000 * 1000) << "models/libllm-tiny must stay within 16 MB";
}

TEST(DefaultModel, Info) {
  ModelPtr m = load("bf16");
  ASSERT_TRUE(m);
  llm_model_info info;
  info.struct_size = sizeof info;
  ASSERT_EQ(llm_model_get_info(m.get(), &info), LLM_OK);
  EXPECT_STREQ(info.architecture, "llama");
  EXPECT_EQ(info.vocab_size, 6144);
  EXPECT_EQ(info.n_layers, 8);
  EXPECT_EQ(info.n_heads, 4);
  EXPECT_EQ(info.n_kv_heads, 2);
  EXPECT_EQ(info.context_length, 1024);
  EXPECT_EQ(info.bos_token, 0);
  EXPECT_TRUE(llm_token_is_eog(m.get(), 1));  // </s>
  EXPECT_TRUE(llm_token_is_eog(m.get(), 3));  // <|im_end|>
}

TEST(DefaultModel, TokenizerMatchesHuggingFace) {
  ModelPtr m = load("f32");
  ASSERT_TRUE(m);
  for (const json &g : reference()["greedy"])
    EXPECT_EQ(tokenize(m.get(), g["prompt"].get<std::string>()), g["prompt_ids"].get<std::vector<llm_token>>())
        << g["prompt"];
}

// Greedy decoding follows the reference up to the first step where the
// reference's two best logits are within 0.01 (a near tie that fp32
// rounding differences may resolve either way).
TEST(DefaultModel, GreedyContinuationsMatchReference) {
  ModelPtr m = load("bf16");
  ASSERT_TRUE(m);
  llm_model_info info;
  info.struct_size = sizeof info;
  ASSERT_EQ(llm_model_get_info(m.get(), &info), LLM_OK);
  size_t total = 0;
  for (const json &g : reference()["greedy"]) {
    const auto prompt = g["prompt_ids"].get<std::vector<llm_token>>();
    const auto expected = g["greedy_ids"].get<std::vector<llm_token>>();
    const auto gaps = g["top2_gaps"].get<std::vector<double>>();
    SessionPtr s = session(m.get(), 256, false);
    ASSERT_EQ(llm_session_eval(s.get(), prompt.data(), prompt.size()), LLM_OK) << llm_last_error();
    size_t compared = 0;
    for (size_t i = 0; i < expected.size() && gaps[i] >= 0.01; ++i, ++compared) {
      const llm_token t = argmax(llm_session_logits(s.get()), info.vocab_size);
      ASSERT_EQ(t, expected[i]) << "step " << i << " of " << g["prompt"];
      ASSERT_EQ(llm_session_eval(s.get(), &t, 1), LLM_OK);
    }
    EXPECT_GE(compared, 3u) << g["prompt"];
    total += compared;
  }
  EXPECT_GE(total, 64u) << "too few greedy tokens compared before near ties";
}

struct Bound {
  const char *weights;
  double max_nll_excess;  // mean NLL above the reference's, in nats
};

void PrintTo(const Bound &b, std::ostream *os) { *os << b.weights << " (max excess " << b.max_nll_excess << " nats)"; }

class HeldOut : public ::testing::TestWithParam<Bound> {};

// f32/bf16 hold the checkpoint's bf16 weights exactly, so only the order of
// fp32 operations differs from the reference (measured: < 2e-4 nats). The
// quantized bounds are about twice the measured excess (int8 +0.001, int4
// +0.05 nats: perplexity +5%).
TEST_P(HeldOut, PerplexityMatchesReference) {
  ModelPtr m = load(GetParam().weights);
  ASSERT_TRUE(m);
  for (const auto &[kind, ref] : reference()["heldout"].items()) {
    const std::vector<llm_token> ids =
        tokenize(m.get(), read_text(kModelDir + "/eval/" + ref["file"].get<std::string>()));
    ASSERT_EQ(ids.size(), ref["ids"].get<size_t>()) << kind;
    const double nll = mean_nll(m.get(), ids), ref_nll = ref["nll"].get<double>();
    const double excess = nll - ref_nll;
    EXPECT_LE(excess, GetParam().max_nll_excess) << kind << ": perplexity " << std::exp(nll) << ", reference "
                                                 << std::exp(ref_nll);
    if (GetParam().max_nll_excess < 0.005) EXPECT_GE(excess, -GetParam().max_nll_excess) << kind;
  }
}

INSTANTIATE_TEST_SUITE_P(Weights, HeldOut,
                         ::testing::Values(Bound{"f32", 2e-3}, Bound{"bf16", 2e-3}, Bound{"int8", 0.01},
                                           Bound{"int4", 0.1}),
                         [](const auto &info) { return std::string(info.param.weights); });

TEST(DefaultModel, ChatTemplateIsChatML) {
  ModelPtr m = load("bf16");
  ASSERT_TRUE(m);
  const llm_chat_message msgs[] = {{"system", "Answer briefly."},
                                   {"user", "What does os.path.join do?"},
                                   {"assistant", "It joins paths."},
                                   {"user", "Thanks"}};
  char buf[1024];
  size_t len = 0;
  ASSERT_EQ(llm_chat_apply_template(m.get(), msgs, 4, 1, buf, sizeof buf, &len), LLM_OK) << llm_last_error();
  EXPECT_EQ(std::string(buf, len),
            "<|im_start|>system\nAnswer briefly.<|im_end|>\n"
            "<|im_start|>user\nWhat does os.path.join do?<|im_end|>\n"
            "<|im_start|>assistant\nIt joins paths.<|im_end|>\n"
            "<|im_start|>user\nThanks<|im_end|>\n"
            "<|im_start|>assistant\n");
}

}  // namespace
