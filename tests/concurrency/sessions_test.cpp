// Several threads on one shared model through the public C API: greedy
// generation on concurrent sessions gives exactly what a sequential run gives,
// tokenization is thread-safe, and llm_session_cancel from another thread
// stops llm_generate promptly with LLM_ERR_CANCELLED and leaves the session
// usable. Labelled `concurrency`: scripts/sanitizers.sh runs every test with
// that label under ThreadSanitizer.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "llm.h"
#include "tests/common/synthetic_model.h"

namespace {

class Concurrency : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = testing::TempDir() + "llm_concurrency_test.llm";
    llm::test::write_synthetic_model(path_, llm::test::tiny_hparams(), llm::DType::BF16);
  }
  void SetUp() override {
    llm_model_params p;
    llm_model_params_init(&p);
    p.n_threads = 2;  // each session's forward pass also runs on the model's pool
    ASSERT_EQ(llm_model_load(path_.c_str(), &p, &model_), LLM_OK) << llm_last_error();
  }
  void TearDown() override { llm_model_free(model_); }

  llm_session *make_session() {
    llm_session *s = nullptr;
    EXPECT_EQ(llm_session_create(model_, nullptr, &s), LLM_OK) << llm_last_error();
    return s;
  }

  static llm_generate_params greedy(int max_tokens) {
    llm_generate_params gp;
    llm_generate_params_init(&gp);
    gp.temperature = 0;
    gp.max_tokens = max_tokens;
    gp.ignore_eos = 1;
    return gp;
  }

  static std::string path_;
  llm_model *model_ = nullptr;
};
std::string Concurrency::path_;

int append_text(const char *piece, size_t len, llm_token, void *user) {
  static_cast<std::string *>(user)->append(piece, len);
  return 0;
}

const char *const kPrompts[] = {"abc", "def main():", "Hello, world", "\xe2\x82\xac 42", "zzz", "Once upon"};
constexpr int kThreads = 4;
constexpr int kRounds = 3;

// What thread `t` generates in round `r`: a fresh session per round, and the
// last round continues the previous round's session to cover multi-turn use.
std::string thread_work(llm_model *model, int t) {
  std::string out;
  llm_session *s = nullptr;
  for (int r = 0; r < kRounds; ++r) {
    if (r < kRounds - 1) {
      llm_session_free(s);
      s = nullptr;
      if (llm_session_create(model, nullptr, &s) != LLM_OK) return std::string("create failed: ") + llm_last_error();
    }
    llm_generate_params gp;
    llm_generate_params_init(&gp);
    gp.temperature = 0;
    gp.max_tokens = 16;
    gp.ignore_eos = 1;
    std::string text;
    const llm_status st = llm_generate(s, kPrompts[(t + r) % 6], &gp, append_text, &text);
    if (st != LLM_OK) return std::string("generate failed: ") + llm_last_error();
    out += "[" + text + "]";
  }
  llm_session_free(s);
  return out;
}

TEST_F(Concurrency, GreedySessionsOnThreadsMatchASequentialRun) {
  std::vector<std::string> sequential(kThreads), concurrent(kThreads);
  for (int t = 0; t < kThreads; ++t) sequential[t] = thread_work(model_, t);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&, t] { concurrent[t] = thread_work(model_, t); });
  for (std::thread &th : threads) th.join();
  EXPECT_EQ(concurrent, sequential);
  EXPECT_NE(sequential[0], sequential[1]);  // different prompts, different texts
}

TEST_F(Concurrency, TokenizeAndDetokenizeFromManyThreads) {
  auto work = [&](int t, std::string *out) {
    for (int r = 0; r < 20; ++r) {
      const char *text = kPrompts[(t + r) % 6];
      llm_token ids[64];
      size_t n = 0;
      if (llm_tokenize(model_, text, std::strlen(text), 1, ids, 64, &n) != LLM_OK) {
        *out = llm_last_error();
        return;
      }
      char buf[256];
      size_t len = 0;
      if (llm_detokenize(model_, ids, n, buf, sizeof buf, &len) != LLM_OK) {
        *out = llm_last_error();
        return;
      }
      out->append(buf, len);
      out->push_back('|');
    }
  };
  std::vector<std::string> sequential(kThreads), concurrent(kThreads);
  for (int t = 0; t < kThreads; ++t) work(t, &sequential[t]);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(work, t, &concurrent[t]);
  for (std::thread &th : threads) th.join();
  EXPECT_EQ(concurrent, sequential);
}

struct Progress {
  std::atomic<int> pieces{0};
};

int slow_counter(const char *, size_t, llm_token, void *user) {
  static_cast<Progress *>(user)->pieces.fetch_add(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a UI thread drawing text
  return 0;
}

TEST_F(Concurrency, CancelFromAnotherThreadStopsPromptlyAndLeavesTheSessionUsable) {
  llm_session *s = make_session();
  llm_session_info info;
  info.struct_size = sizeof info;
  ASSERT_EQ(llm_session_get_info(s, &info), LLM_OK);
  Progress progress;
  int pieces_at_cancel = -1;
  std::chrono::steady_clock::time_point cancelled_at;
  std::thread canceller([&] {
    while (progress.pieces.load() < 2) std::this_thread::yield();
    pieces_at_cancel = progress.pieces.load();
    cancelled_at = std::chrono::steady_clock::now();
    llm_session_cancel(s);
  });
  llm_generate_params gp = greedy(0);  // until the context is full: ~120 tokens, 2 ms each
  const llm_status st = llm_generate(s, "abc", &gp, slow_counter, &progress);
  const auto returned_at = std::chrono::steady_clock::now();
  canceller.join();
  ASSERT_EQ(st, LLM_ERR_CANCELLED) << "generation ended before the cancellation (" << progress.pieces.load()
                                   << " pieces)";
  EXPECT_STREQ(llm_last_error(), "generation cancelled");
  // The piece being delivered when the cancellation came may complete; no
  // further token is sampled.
  EXPECT_LE(progress.pieces.load(), pieces_at_cancel + 1);
  EXPECT_LT(std::chrono::duration<double>(returned_at - cancelled_at).count(), 2.0);
  size_t n = 0;
  ASSERT_EQ(llm_session_n_tokens(s, &n), LLM_OK);
  EXPECT_EQ(n, 4u + static_cast<size_t>(progress.pieces.load()));  // BOS + "abc" + delivered tokens
  EXPECT_LT(n, static_cast<size_t>(info.n_ctx));

  // Usable afterwards: the cancellation flag is cleared by the next call, and
  // the continuation is what an uncancelled session holding the same tokens
  // would produce.
  std::string more;
  llm_generate_params three = greedy(3);
  ASSERT_EQ(llm_generate(s, nullptr, &three, append_text, &more), LLM_OK) << llm_last_error();
  size_t n2 = 0;
  llm_session_n_tokens(s, &n2);
  EXPECT_EQ(n2, n + 3);

  llm_session *ref = make_session();
  std::string ref_text;
  llm_generate_params all = greedy(static_cast<int>(n2 - 4));
  ASSERT_EQ(llm_generate(ref, "abc", &all, append_text, &ref_text), LLM_OK) << llm_last_error();
  ASSERT_GE(ref_text.size(), more.size());
  EXPECT_EQ(ref_text.substr(ref_text.size() - more.size()), more);
  llm_session_free(ref);
  llm_session_free(s);
}

}  // namespace
