// Sessions sharing one KV pool (and the pages of a common prefix), driven
// from several threads at once: every thread's results equal those of the
// same work done one session at a time. Run under ThreadSanitizer by
// scripts/sanitizers.sh (label `concurrency`).
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "llm.h"
#include "tests/common/synthetic_model.h"

namespace {

struct Outcome {
  std::vector<llm_token> generated;
  std::vector<float> logits;
  bool ok = true;
  std::string error;
};

std::vector<llm_token> ids(int n, int seed) {
  std::vector<llm_token> v;
  for (int i = 0; i < n; ++i) v.push_back(3 + (i * 37 + 11 + seed * 101) % 256);
  return v;
}

int collect(const char *, size_t, llm_token token, void *user) {
  if (token >= 0) static_cast<std::vector<llm_token> *>(user)->push_back(token);
  return 0;
}

// One worker's job on its own session: continue the shared prefix, generate,
// roll back, generate again, save and restore its state.
Outcome work(llm_session *s, int seed) {
  Outcome o;
  auto fail = [&](const char *what) {
    o.ok = false;
    o.error = std::string(what) + ": " + llm_last_error();
    return o;
  };
  const std::vector<llm_token> t = ids(12 + seed, seed);
  if (llm_session_eval(s, t.data(), t.size()) != LLM_OK) return fail("eval");
  llm_generate_params g;
  llm_generate_params_init(&g);
  g.temperature = 0;
  g.max_tokens = 12;
  g.ignore_eos = 1;
  if (llm_generate(s, nullptr, &g, collect, &o.generated) != LLM_OK) return fail("generate");
  size_t n = 0;
  llm_session_n_tokens(s, &n);
  if (llm_session_truncate(s, n - 6) != LLM_OK) return fail("truncate");  // into a private page
  if (llm_generate(s, nullptr, &g, collect, &o.generated) != LLM_OK) return fail("generate again");
  size_t size = 0, len = 0;
  llm_session_state_size(s, &size);
  std::vector<uint8_t> state(size);
  if (llm_session_save(s, state.data(), size, &len) != LLM_OK) return fail("save");
  if (llm_session_reset(s) != LLM_OK) return fail("reset");
  if (llm_session_restore(s, state.data(), len) != LLM_OK) return fail("restore");
  const float *l = llm_session_logits(s);
  if (!l) return fail("logits");
  o.logits.assign(l, l + 259);
  return o;
}

TEST(KvPoolConcurrency, ThreadsOnForksOfOneSharedPrefixMatchSequentialRuns) {
  const std::string path = testing::TempDir() + "llm_kv_pool_concurrency.llm";
  llm::HParams h = llm::test::tiny_hparams();
  h.hidden_size = 64;
  h.num_heads = 2;
  h.num_kv_heads = 1;
  h.head_dim = 32;
  h.intermediate_size = 96;
  h.max_context = 256;
  llm::test::write_synthetic_model(path, h, llm::DType::F32);
  llm_model_params mp;
  llm_model_params_init(&mp);
  mp.n_threads = 2;
  llm_model *model = nullptr;
  ASSERT_EQ(llm_model_load(path.c_str(), &mp, &model), LLM_OK) << llm_last_error();

  for (int kv : {LLM_KV_F16, LLM_KV_INT4}) {
    SCOPED_TRACE(kv);
    llm_kv_pool_params pp;
    llm_kv_pool_params_init(&pp);
    pp.kv_type = kv;
    pp.n_tokens = 2048;
    llm_kv_pool *pool = nullptr;
    ASSERT_EQ(llm_kv_pool_create(model, &pp, &pool), LLM_OK) << llm_last_error();
    llm_session_params sp;
    llm_session_params_init(&sp);
    sp.n_ctx = 128;
    sp.kv_pool = pool;
    llm_session *base = nullptr;
    ASSERT_EQ(llm_session_create(model, &sp, &base), LLM_OK) << llm_last_error();
    const std::vector<llm_token> system = ids(40, 99);  // 2 full pages shared by every fork
    ASSERT_EQ(llm_session_eval(base, system.data(), system.size()), LLM_OK);

    const int n = 4;
    std::vector<llm_session *> seq(n), par(n);
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(llm_session_fork(base, &sp, &seq[i]), LLM_OK) << llm_last_error();
      ASSERT_EQ(llm_session_fork(base, &sp, &par[i]), LLM_OK) << llm_last_error();
    }
    std::vector<Outcome> want(n), got(n);
    for (int i = 0; i < n; ++i) want[i] = work(seq[i], i);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) threads.emplace_back([&, i] { got[i] = work(par[i], i); });
    // Meanwhile this thread decodes the base session further: its pages are
    // the ones the workers share.
    for (int i = 0; i < 20; ++i) {
      llm_token t = 5 + i;
      ASSERT_EQ(llm_session_eval(base, &t, 1), LLM_OK) << llm_last_error();
    }
    for (std::thread &t : threads) t.join();
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(want[i].ok) << want[i].error;
      ASSERT_TRUE(got[i].ok) << got[i].error;
      EXPECT_EQ(got[i].generated, want[i].generated) << i;
      EXPECT_EQ(got[i].logits, want[i].logits) << i;
    }
    for (int i = 0; i < n; ++i) {
      llm_session_free(seq[i]);
      llm_session_free(par[i]);
    }
    llm_session_free(base);
    llm_kv_pool_info info;
    info.struct_size = sizeof info;
    ASSERT_EQ(llm_kv_pool_get_info(pool, &info), LLM_OK);
    EXPECT_EQ(info.pages_used + info.pages_committed, 0);
    llm_kv_pool_free(pool);
  }
  llm_model_free(model);
}

}  // namespace
