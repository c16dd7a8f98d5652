// The KV cache on a trained model (tiny-llama-code, bf16 weights, the code
// evaluation text): perplexity and KL divergence of the int8 and int4 caches
// against the f16 cache, and a context shift that keeps text prediction as
// good as fresh windows of the same size.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "llm.h"
#include "tests/common/handles.h"

namespace {

std::string work_file(const std::string &name) { return std::string(LLM_WORK_DIR) + "/" + name; }
std::string eval_text_path() {
  return std::string(LLM_SHARED_DIR) + "/models/tiny-llama-code/reference/eval_code.txt";
}
bool exists(const std::string &path) { return std::ifstream(path).good(); }

using llm_test::ModelPtr;
using llm_test::SessionPtr;

class KvModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string model = work_file("tiny-llama-code-bf16.llm");
    if (!exists(model) || !exists(eval_text_path()))
      GTEST_SKIP() << "needs " << model << " and " << eval_text_path() << " (../shared)";
    llm_model *m = nullptr;
    ASSERT_EQ(llm_model_load(model.c_str(), nullptr, &m), LLM_OK) << llm_last_error();
    model_.reset(m);
    std::ifstream f(eval_text_path(), std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    const std::string text = s.str();
    size_t n = 0;
    ASSERT_EQ(llm_tokenize(m, text.data(), text.size(), 1, nullptr, 0, &n), LLM_ERR_BUFFER_TOO_SMALL);
    ids_.resize(n);
    ASSERT_EQ(llm_tokenize(m, text.data(), text.size(), 1, ids_.data(), n, &n), LLM_OK);
    llm_model_info info;
    info.struct_size = sizeof info;
    ASSERT_EQ(llm_model_get_info(m, &info), LLM_OK);
    vocab_ = info.vocab_size;
    bos_ = info.bos_token;
  }

  SessionPtr session(int n_ctx, int n_batch, int kv, int policy = LLM_CONTEXT_STOP) {
    llm_session_params p;
    llm_session_params_init(&p);
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.logits_all = 1;
    p.kv_type = kv;
    p.context_policy = policy;
    llm_session *s = nullptr;
    EXPECT_EQ(llm_session_create(model_.get(), &p, &s), LLM_OK) << llm_last_error();
    return SessionPtr(s);
  }

  void log_softmax(const float *x, std::vector<double> &out) const {
    out.resize(static_cast<size_t>(vocab_));
    double mx = x[0];
    for (int i = 1; i < vocab_; ++i) mx = std::max(mx, static_cast<double>(x[i]));
    double sum = 0;
    for (int i = 0; i < vocab_; ++i) sum += std::exp(x[i] - mx);
    const double lse = mx + std::log(sum);
    for (int i = 0; i < vocab_; ++i) out[static_cast<size_t>(i)] = x[i] - lse;
  }

  ModelPtr model_;
  std::vector<llm_token> ids_;
  int vocab_ = 0;
  llm_token bos_ = -1;
};

// llama.cpp's method: windows of 512 with BOS first, scoring the second half.
TEST_F(KvModelTest, QuantizedCachesKeepPerplexityWithinTargets) {
  const int ctx = 512, windows = 4;
  ASSERT_GE(ids_.size(), static_cast<size_t>(ctx * windows));
  struct Result {
    double nll = 0, kld = 0;
    size_t same_top1 = 0, n = 0;
  };
  const int kinds[] = {LLM_KV_F16, LLM_KV_INT8, LLM_KV_INT4};
  Result r[3];
  SessionPtr s[3];
  for (int k = 0; k < 3; ++k) s[k] = session(ctx, ctx, kinds[k]);
  std::vector<double> lp, lq;
  for (int w = 0; w < windows; ++w) {
    std::vector<llm_token> win(ids_.begin() + w * ctx, ids_.begin() + (w + 1) * ctx);
    win[0] = bos_;
    for (int k = 0; k < 3; ++k) {
      ASSERT_EQ(llm_session_reset(s[k].get()), LLM_OK);
      ASSERT_EQ(llm_session_eval(s[k].get(), win.data(), win.size()), LLM_OK) << llm_last_error();
    }
    for (int j = ctx / 2; j + 1 < ctx; ++j) {
      log_softmax(llm_session_logits_at(s[0].get(), j), lp);
      const size_t want = static_cast<size_t>(win[static_cast<size_t>(j) + 1]);
      const auto top = std::max_element(lp.begin(), lp.end()) - lp.begin();
      for (int k = 0; k < 3; ++k) {
        log_softmax(llm_session_logits_at(s[k].get(), j), lq);
        r[k].nll -= lq[want];
        double kl = 0;
        for (int v = 0; v < vocab_; ++v) kl += std::exp(lp[v]) * (lp[v] - lq[v]);
        r[k].kld += std::max(kl, 0.0);
        r[k].same_top1 += (std::max_element(lq.begin(), lq.end()) - lq.begin()) == top;
        ++r[k].n;
      }
    }
  }
  double ppl[3];
  for (int k = 0; k < 3; ++k) {
    ppl[k] = std::exp(r[k].nll / static_cast<double>(r[k].n));
    std::printf("[ metric ] kv %s: perplexity %.4f (%+.3f%% vs f16), mean KLD vs f16 %.6f, same top-1 %.2f%%\n",
                k == 0 ? "f16" : k == 1 ? "int8" : "int4", ppl[k], 100 * (ppl[k] / ppl[0] - 1),
                r[k].kld / static_cast<double>(r[k].n), 100.0 * r[k].same_top1 / static_cast<double>(r[k].n));
  }
  EXPECT_LT(std::fabs(ppl[1] / ppl[0] - 1), 0.005);  // int8 within 0.5%
  EXPECT_LT(std::fabs(ppl[2] / ppl[0] - 1), 0.03);   // int4 within 3%
  EXPECT_LT(r[1].kld / static_cast<double>(r[1].n), 0.001);
  EXPECT_LT(r[2].kld / static_cast<double>(r[2].n), 0.03);
  EXPECT_GT(r[2].kld, r[1].kld);
}

// A 128-token session that shifts its context, fed the text 16 tokens at a
// time, predicts it at least as well as fresh 128-token windows do (each of
// its predictions sees 64 to 128 earlier tokens; a fresh window's see 0 to
// 127). A shift that mangled the cache would do far worse.
TEST_F(KvModelTest, ShiftedContextPredictsAsWellAsFreshWindows) {
  const int ctx = 128, step = 16, total = 2048;
  ASSERT_GE(ids_.size(), static_cast<size_t>(total));
  std::vector<double> lq;
  // Fresh windows: score every token of each window but the first.
  SessionPtr fresh = session(ctx, ctx, LLM_KV_F16);
  double nll_fresh = 0;
  size_t n_fresh = 0;
  for (int w = 0; w + ctx <= total; w += ctx) {
    std::vector<llm_token> win(ids_.begin() + w, ids_.begin() + w + ctx);
    win[0] = bos_;
    ASSERT_EQ(llm_session_reset(fresh.get()), LLM_OK);
    ASSERT_EQ(llm_session_eval(fresh.get(), win.data(), win.size()), LLM_OK);
    for (int j = 0; j + 1 < ctx; ++j) {
      log_softmax(llm_session_logits_at(fresh.get(), j), lq);
      nll_fresh -= lq[static_cast<size_t>(win[static_cast<size_t>(j) + 1])];
      ++n_fresh;
    }
  }
  // One shifting session over the same tokens (BOS first, kept by every shift).
  SessionPtr shifted = session(ctx, step, LLM_KV_F16, LLM_CONTEXT_SHIFT);
  std::vector<llm_token> stream(ids_.begin(), ids_.begin() + total);
  stream[0] = bos_;
  double nll_shift = 0;
  size_t n_shift = 0;
  for (int i = 0; i + step < total; i += step) {
    ASSERT_EQ(llm_session_eval(shifted.get(), stream.data() + i, step), LLM_OK) << llm_last_error();
    for (int j = 0; j < step; ++j) {
      log_softmax(llm_session_logits_at(shifted.get(), j), lq);
      nll_shift -= lq[static_cast<size_t>(stream[static_cast<size_t>(i + j + 1)])];
      ++n_shift;
    }
  }
  llm_session_info info;
  info.struct_size = sizeof info;
  ASSERT_EQ(llm_session_get_info(shifted.get(), &info), LLM_OK);
  const double ppl_fresh = std::exp(nll_fresh / static_cast<double>(n_fresh));
  const double ppl_shift = std::exp(nll_shift / static_cast<double>(n_shift));
  std::printf("[ metric ] context 128: fresh windows perplexity %.4f, shifting session %.4f (%llu shifts)\n",
              ppl_fresh, ppl_shift, static_cast<unsigned long long>(info.n_shifts));
  EXPECT_GE(info.n_shifts, 20u);
  EXPECT_LT(ppl_shift, ppl_fresh);
}

}  // namespace
