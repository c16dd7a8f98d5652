// Sessions on a small random-weight model: batched and token-by-token
// evaluation agree, memory planning and limits, context limits, stop
// strings, cancellation, and concurrent sessions on one model.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "llm.h"
#include "tests/common/synthetic_model.h"

namespace {

class SessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = testing::TempDir() + "llm_session_test.llm";
    llm::HParams h = llm::test::tiny_hparams();
    h.attention_bias = true;
    llm::test::write_synthetic_model(path_, h, llm::DType::BF16);
  }
  void SetUp() override {
    llm_model_params p;
    llm_model_params_init(&p);
    p.n_threads = 2;
    ASSERT_EQ(llm_model_load(path_.c_str(), &p, &model_), LLM_OK) << llm_last_error();
  }
  void TearDown() override { llm_model_free(model_); }

  llm_session *make_session(int n_ctx, int n_batch = 0, bool logits_all = false) {
    llm_session_params p;
    llm_session_params_init(&p);
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.logits_all = logits_all;
    llm_session *s = nullptr;
    EXPECT_EQ(llm_session_create(model_, &p, &s), LLM_OK) << llm_last_error();
    return s;
  }
  static std::vector<llm_token> prompt(int n) {
    std::vector<llm_token> ids;
    for (int i = 0; i < n; ++i) ids.push_back(3 + (i * 37 + 11) % 256);
    return ids;
  }

  static std::string path_;
  llm_model *model_ = nullptr;
  const int vocab_ = 259;
};
std::string SessionTest::path_;

double max_rel_diff(const float *a, const float *b, int n) {
  double diff = 0, scale = 0;
  for (int i = 0; i < n; ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return diff / scale;
}

TEST_F(SessionTest, BatchedAndTokenByTokenEvaluationAgree) {
  const std::vector<llm_token> ids = prompt(40);
  llm_session *batched = make_session(64, 0, true);
  llm_session *split = make_session(64, 7, true);   // prompt split into chunks of 7
  llm_session *single = make_session(64);
  ASSERT_EQ(llm_session_eval(batched, ids.data(), ids.size()), LLM_OK);
  ASSERT_EQ(llm_session_eval(split, ids.data(), ids.size()), LLM_OK);
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(llm_session_eval(single, &ids[i], 1), LLM_OK);
    const float *want = llm_session_logits(single);
    ASSERT_NE(want, nullptr);
    EXPECT_LT(max_rel_diff(llm_session_logits_at(batched, static_cast<int32_t>(i)), want, vocab_), 1e-5) << i;
  }
  // With chunks of 7, only the last chunk's rows are kept.
  EXPECT_EQ(llm_session_logits_at(split, 0), nullptr);
  EXPECT_LT(max_rel_diff(llm_session_logits_at(split, -1), llm_session_logits(single), vocab_), 1e-5);
  EXPECT_LT(max_rel_diff(llm_session_logits(split), llm_session_logits(single), vocab_), 1e-5);
  llm_session_free(batched);
  llm_session_free(split);
  llm_session_free(single);
}

TEST_F(SessionTest, MemoryPlanIsEnforcedExactly) {
  llm_session_params p;
  llm_session_params_init(&p);
  p.n_ctx = 100;
  uint64_t need = 0;
  ASSERT_EQ(llm_session_memory_required(model_, &p, &need), LLM_OK);
  // KV cache alone: 2 (K,V) * layers * kv_heads * ctx * head_dim * 4 bytes.
  EXPECT_GT(need, 2ull * 2 * 2 * 100 * 8 * 4);
  llm_session *s = nullptr;
  p.memory_limit = need - 1;
  EXPECT_EQ(llm_session_create(model_, &p, &s), LLM_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(llm_last_error()).find(std::to_string(need)), std::string::npos) << llm_last_error();
  p.memory_limit = need;
  EXPECT_EQ(llm_session_create(model_, &p, &s), LLM_OK) << llm_last_error();
  llm_session_free(s);
}

TEST_F(SessionTest, ContextLimitIsReportedAndNothingIsAppended) {
  llm_session *s = make_session(16);
  std::vector<llm_token> ids = prompt(17);
  EXPECT_EQ(llm_session_eval(s, ids.data(), ids.size()), LLM_ERR_CONTEXT_FULL);
  size_t n = 99;
  llm_session_n_tokens(s, &n);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(llm_session_eval(s, ids.data(), 16), LLM_OK);
  EXPECT_EQ(llm_session_eval(s, ids.data(), 1), LLM_ERR_CONTEXT_FULL);
  ASSERT_EQ(llm_session_reset(s), LLM_OK);
  EXPECT_EQ(llm_session_eval(s, ids.data(), 3), LLM_OK);
  llm_session_free(s);
}

struct Text {
  std::string s;
  llm_session *cancel_target = nullptr;
  int pieces = 0;
};
int append(const char *piece, size_t len, llm_token, void *user) {
  auto *t = static_cast<Text *>(user);
  t->s.append(piece, len);
  if (++t->pieces == 3 && t->cancel_target) llm_session_cancel(t->cancel_target);
  return 0;
}

bool valid_utf8(const std::string &s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

TEST_F(SessionTest, StreamedTextIsValidUtf8AndStopStringsStopIt) {
  // Random byte tokens produce arbitrary bytes: the stream must still be UTF-8.
  llm_session *s = make_session(128);
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.temperature = 0;
  gp.max_tokens = 60;
  gp.ignore_eos = 1;
  Text full;
  ASSERT_EQ(llm_generate(s, "abc", &gp, append, &full), LLM_OK) << llm_last_error();
  EXPECT_TRUE(valid_utf8(full.s));
  ASSERT_GT(full.s.size(), 10u);
  // Stop at a string taken from the middle of that output.
  size_t cut = full.s.size() / 2;
  while (cut > 0 && (static_cast<unsigned char>(full.s[cut]) >> 6) == 2) --cut;
  std::string stop = full.s.substr(cut, 3);
  while (!valid_utf8(stop)) stop.pop_back();
  ASSERT_FALSE(stop.empty());
  gp.stop[0] = stop.c_str();
  gp.n_stop = 1;
  llm_session_reset(s);
  Text stopped;
  ASSERT_EQ(llm_generate(s, "abc", &gp, append, &stopped), LLM_OK);
  EXPECT_EQ(llm_session_stop_reason(s), LLM_STOP_STRING);
  EXPECT_EQ(stopped.s, full.s.substr(0, full.s.find(stop)));
  llm_session_free(s);
}

TEST_F(SessionTest, CancellationEndsGenerationAndLeavesSessionUsable) {
  llm_session *s = make_session(128);
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.max_tokens = 50;
  gp.ignore_eos = 1;
  Text t;
  t.cancel_target = s;
  EXPECT_EQ(llm_generate(s, "abc", &gp, append, &t), LLM_ERR_CANCELLED);
  EXPECT_EQ(t.pieces, 3);
  size_t n = 0;
  llm_session_n_tokens(s, &n);
  EXPECT_EQ(n, 4u + 3u);  // BOS + 3 prompt bytes + the 3 delivered tokens
  Text more;
  gp.max_tokens = 5;
  EXPECT_EQ(llm_generate(s, nullptr, &gp, append, &more), LLM_OK) << llm_last_error();
  EXPECT_EQ(more.pieces >= 1, true);
  llm_session_n_tokens(s, &n);
  EXPECT_EQ(n, 12u);
  llm_session_free(s);
}

TEST_F(SessionTest, ConcurrentSessionsMatchSequentialRuns) {
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.max_tokens = 24;
  gp.ignore_eos = 1;
  auto run = [&](uint64_t seed, std::string *out) {
    llm_session *s = make_session(64);
    llm_generate_params p = gp;
    p.seed = seed;
    Text t;
    EXPECT_EQ(llm_generate(s, "xyz", &p, append, &t), LLM_OK);
    *out = t.s;
    llm_session_free(s);
  };
  std::vector<std::string> sequential(4), concurrent(4);
  for (int i = 0; i < 4; ++i) run(i, &sequential[i]);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back(run, i, &concurrent[i]);
  for (std::thread &t : threads) t.join();
  EXPECT_EQ(sequential, concurrent);
  EXPECT_NE(sequential[0], sequential[1]);  // seeds matter
}

}  // namespace
