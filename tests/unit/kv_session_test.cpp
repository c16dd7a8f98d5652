// The KV cache through the public API, on a small random-weight model whose
// heads (32 values) fit every cache type: sizes by formula, accuracy of the
// quantized types, truncation, forks sharing pages copy-on-write, pool
// commitments, context shift, state save/restore, and batched decode.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "llm.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tests/common/synthetic_model.h"

namespace {

constexpr int kVocab = 259;

double max_rel_diff(const float *a, const float *b, int n = kVocab) {
  double diff = 0, scale = 0;
  for (int i = 0; i < n; ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return diff / scale;
}

std::vector<llm_token> ids(int n, int seed = 0) {
  std::vector<llm_token> v;
  for (int i = 0; i < n; ++i) v.push_back(3 + (i * 37 + 11 + seed * 101) % 256);
  return v;
}

std::vector<float> logits_of(llm_session *s) {
  const float *l = llm_session_logits(s);
  return l ? std::vector<float>(l, l + kVocab) : std::vector<float>();
}

class KvSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = testing::TempDir() + "llm_kv_session_test.llm";
    other_path_ = testing::TempDir() + "llm_kv_session_other.llm";
    llm::HParams h = llm::test::tiny_hparams();
    h.hidden_size = 64;
    h.num_heads = 2;
    h.num_kv_heads = 1;
    h.head_dim = 32;
    h.intermediate_size = 96;
    h.max_context = 256;
    llm::test::write_synthetic_model(path_, h, llm::DType::F32);
    llm::test::write_synthetic_model(other_path_, h, llm::DType::F32, /*vocab_only=*/false, /*seed=*/99);
  }
  void SetUp() override {
    llm_model_params p;
    llm_model_params_init(&p);
    p.n_threads = 2;
    ASSERT_EQ(llm_model_load(path_.c_str(), &p, &model_), LLM_OK) << llm_last_error();
  }
  void TearDown() override { llm_model_free(model_); }

  llm_session_params params(int n_ctx, int kv = LLM_KV_F32, llm_kv_pool *pool = nullptr) {
    llm_session_params p;
    llm_session_params_init(&p);
    p.n_ctx = n_ctx;
    p.kv_type = kv;
    p.kv_pool = pool;
    return p;
  }
  llm_session *make(int n_ctx, int kv = LLM_KV_F32, llm_kv_pool *pool = nullptr) {
    llm_session_params p = params(n_ctx, kv, pool);
    llm_session *s = nullptr;
    EXPECT_EQ(llm_session_create(model_, &p, &s), LLM_OK) << llm_last_error();
    return s;
  }
  llm_kv_pool *make_pool(int n_tokens, int kv = LLM_KV_F32) {
    llm_kv_pool_params p;
    llm_kv_pool_params_init(&p);
    p.kv_type = kv;
    p.n_tokens = n_tokens;
    llm_kv_pool *pool = nullptr;
    EXPECT_EQ(llm_kv_pool_create(model_, &p, &pool), LLM_OK) << llm_last_error();
    return pool;
  }
  static llm_kv_pool_info pool_info(llm_kv_pool *pool) {
    llm_kv_pool_info i;
    i.struct_size = sizeof i;
    EXPECT_EQ(llm_kv_pool_get_info(pool, &i), LLM_OK);
    return i;
  }
  // Logits after evaluating `tokens` in a fresh f32-KV session.
  std::vector<float> fresh_logits(const std::vector<llm_token> &tokens, int kv = LLM_KV_F32) {
    llm_session *s = make(256, kv);
    EXPECT_EQ(llm_session_eval(s, tokens.data(), tokens.size()), LLM_OK) << llm_last_error();
    std::vector<float> l = logits_of(s);
    llm_session_free(s);
    return l;
  }

  static std::string path_, other_path_;
  llm_model *model_ = nullptr;
};
std::string KvSessionTest::path_, KvSessionTest::other_path_;

TEST_F(KvSessionTest, SizesFollowTheDocumentedFormula) {
  // 2 layers, 1 KV head of 32 values.
  struct Case {
    int kv;
    uint64_t per_token;
  } cases[] = {{LLM_KV_F32, 2 * 2 * 32 * 4},
               {LLM_KV_F16, 2 * 2 * 32 * 2},
               {LLM_KV_BF16, 2 * 2 * 32 * 2},
               {LLM_KV_INT8, 2 * 2 * (32 + 2)},
               {LLM_KV_INT4, 2 * 2 * (16 + 2)}};
  for (const Case &c : cases) {
    llm_session *s = make(100, c.kv);
    llm_session_info info;
    info.struct_size = sizeof info;
    ASSERT_EQ(llm_session_get_info(s, &info), LLM_OK);
    EXPECT_EQ(info.kv_type, c.kv);
    EXPECT_EQ(info.kv_bytes_per_token, c.per_token) << c.kv;
    EXPECT_EQ(info.kv_bytes, c.per_token * 112) << c.kv;  // 100 positions -> 7 pages of 16
    uint64_t need = 0;
    llm_session_params p = params(100, c.kv);
    ASSERT_EQ(llm_session_memory_required(model_, &p, &need), LLM_OK);
    EXPECT_EQ(need, info.memory_bytes);
    llm_session_free(s);
  }
  // Version-1 callers (struct without the new fields) still get the default (f16).
  llm_session_params v1 = params(100);
  v1.struct_size = offsetof(llm_session_params, kv_type);
  llm_session *s = nullptr;
  ASSERT_EQ(llm_session_create(model_, &v1, &s), LLM_OK) << llm_last_error();
  llm_session_info info;
  info.struct_size = offsetof(llm_session_info, kv_type);  // an old caller's info struct
  ASSERT_EQ(llm_session_get_info(s, &info), LLM_OK);
  EXPECT_EQ(info.struct_size, offsetof(llm_session_info, kv_type));
  EXPECT_EQ(info.kv_bytes, 2u * 2 * 32 * 2 * 112);
  llm_session_free(s);
  // Bad values are refused.
  llm_session_params bad = params(100, 42);
  EXPECT_EQ(llm_session_create(model_, &bad, &s), LLM_ERR_INVALID_ARGUMENT);
  bad = params(100);
  bad.context_policy = 7;
  EXPECT_EQ(llm_session_create(model_, &bad, &s), LLM_ERR_INVALID_ARGUMENT);
  bad = params(100);
  bad.context_policy = LLM_CONTEXT_SHIFT;
  bad.n_keep = 100;  // nothing left to shift
  EXPECT_EQ(llm_session_create(model_, &bad, &s), LLM_ERR_INVALID_ARGUMENT);
  // A fork with default parameters copies the source's cache type.
  llm_session *src = make(64, LLM_KV_INT8), *copy = nullptr;
  llm_session_params fp = params(64, LLM_KV_DEFAULT);
  ASSERT_EQ(llm_session_fork(src, &fp, &copy), LLM_OK) << llm_last_error();
  info.struct_size = sizeof info;
  ASSERT_EQ(llm_session_get_info(copy, &info), LLM_OK);
  EXPECT_EQ(info.kv_type, LLM_KV_INT8);
  fp.kv_type = LLM_KV_F16;
  llm_session *other = nullptr;
  EXPECT_EQ(llm_session_fork(src, &fp, &other), LLM_ERR_INVALID_ARGUMENT);
  llm_session_free(copy);
  llm_session_free(src);
}

TEST_F(KvSessionTest, QuantizedCachesStayCloseToF32) {
  // On random weights logits are very sensitive; what this checks is that
  // each type is really used and that error grows with coarser types as the
  // formats predict (int4 steps are 16x int8's). Accuracy on a trained model
  // is measured by the model tests (perplexity and KL divergence).
  const std::vector<llm_token> t = ids(120);
  const std::vector<float> ref = fresh_logits(t);
  const struct {
    int kv;
    double bound;
  } cases[] = {{LLM_KV_F16, 2e-3}, {LLM_KV_BF16, 4e-2}, {LLM_KV_INT8, 8e-2}, {LLM_KV_INT4, 1.0}};
  double prev = 0;
  for (const auto &c : cases) {
    const std::vector<float> got = fresh_logits(t, c.kv);
    const double d = max_rel_diff(got.data(), ref.data());
    std::printf("[ metric ] kv %d: max relative logit difference vs f32 cache %.2e\n", c.kv, d);
    EXPECT_LT(d, c.bound) << c.kv;
    EXPECT_GT(d, prev) << c.kv;  // the cache really is stored in that type
    prev = d;
  }
}

TEST_F(KvSessionTest, TruncateThenContinueMatchesAFreshSession) {
  const std::vector<llm_token> a = ids(40, 1), b = ids(30, 2);
  llm_session *s = make(128);
  ASSERT_EQ(llm_session_eval(s, a.data(), a.size()), LLM_OK);
  ASSERT_EQ(llm_session_truncate(s, 25), LLM_OK);
  size_t n = 0;
  ASSERT_EQ(llm_session_n_tokens(s, &n), LLM_OK);
  EXPECT_EQ(n, 25u);
  EXPECT_EQ(llm_session_logits(s), nullptr);
  ASSERT_EQ(llm_session_eval(s, b.data(), b.size()), LLM_OK);
  std::vector<llm_token> joined(a.begin(), a.begin() + 25);
  joined.insert(joined.end(), b.begin(), b.end());
  EXPECT_LT(max_rel_diff(llm_session_logits(s), fresh_logits(joined).data()), 1e-5);
  EXPECT_EQ(llm_session_truncate(s, 1000), LLM_ERR_INVALID_ARGUMENT);
  // llm_generate after a truncation re-evaluates the last token by itself.
  ASSERT_EQ(llm_session_truncate(s, 30), LLM_OK);
  llm_generate_params g;
  llm_generate_params_init(&g);
  g.temperature = 0;
  g.max_tokens = 3;
  g.ignore_eos = 1;
  EXPECT_EQ(llm_generate(s, nullptr, &g, nullptr, nullptr), LLM_OK) << llm_last_error();
  ASSERT_EQ(llm_session_n_tokens(s, &n), LLM_OK);
  EXPECT_EQ(n, 33u);
  llm_session_free(s);
}

TEST_F(KvSessionTest, ForksShareFullPagesCopyOnWrite) {
  llm_kv_pool *pool = make_pool(512);
  const std::vector<llm_token> system = ids(40, 3);
  llm_session *a = make(128, LLM_KV_F32, pool);
  ASSERT_EQ(llm_session_eval(a, system.data(), system.size()), LLM_OK);
  EXPECT_EQ(pool_info(pool).pages_used, 3);  // 40 positions
  llm_session_params p = params(128, LLM_KV_F32, pool);
  llm_session *b = nullptr, *c = nullptr;
  ASSERT_EQ(llm_session_fork(a, &p, &b), LLM_OK) << llm_last_error();
  ASSERT_EQ(llm_session_fork(a, nullptr, &c), LLM_OK) << llm_last_error();  // a's pool and settings
  llm_kv_pool_info info = pool_info(pool);
  EXPECT_EQ(info.pages_shared, 2);  // the two full pages; each fork copied the partial third
  EXPECT_EQ(info.pages_used, 5);
  // Forks start with the source's logits and continue independently.
  EXPECT_EQ(max_rel_diff(llm_session_logits(b), llm_session_logits(a)), 0.0);
  const std::vector<llm_token> tb = ids(30, 4), tc = ids(25, 5), ta = ids(20, 6);
  ASSERT_EQ(llm_session_eval(b, tb.data(), tb.size()), LLM_OK);
  ASSERT_EQ(llm_session_eval(c, tc.data(), tc.size()), LLM_OK);
  ASSERT_EQ(llm_session_eval(a, ta.data(), ta.size()), LLM_OK);
  for (auto [s, t] : {std::pair{a, ta}, std::pair{b, tb}, std::pair{c, tc}}) {
    std::vector<llm_token> joined = system;
    joined.insert(joined.end(), t.begin(), t.end());
    EXPECT_LT(max_rel_diff(llm_session_logits(s), fresh_logits(joined).data()), 1e-5);
  }
  // Truncating into the shared prefix copies the page before writing into it.
  ASSERT_EQ(llm_session_truncate(b, 20), LLM_OK);
  ASSERT_EQ(llm_session_eval(b, tc.data(), 10), LLM_OK);
  ASSERT_EQ(llm_session_eval(a, ta.data(), 1), LLM_OK);  // a's prefix is intact
  std::vector<llm_token> ja = system;
  ja.insert(ja.end(), ta.begin(), ta.end());
  ja.push_back(ta[0]);
  EXPECT_LT(max_rel_diff(llm_session_logits(a), fresh_logits(ja).data()), 1e-5);
  llm_session_free(a);
  llm_session_free(b);
  llm_session_free(c);
  EXPECT_EQ(pool_info(pool).pages_used, 0);
  EXPECT_EQ(pool_info(pool).pages_committed, 0);
  llm_kv_pool_free(pool);
}

TEST_F(KvSessionTest, PoolCommitmentsAreNeverOverdrawn) {
  llm_kv_pool *pool = make_pool(96);  // 6 pages
  llm_session *a = make(64, LLM_KV_F32, pool);  // commits 4
  const std::vector<llm_token> t = ids(32, 7);
  ASSERT_EQ(llm_session_eval(a, t.data(), t.size()), LLM_OK);
  llm_session_params p = params(48, LLM_KV_F32, pool);
  llm_session *b = nullptr, *c = nullptr, *d = nullptr;
  ASSERT_EQ(llm_session_fork(a, &p, &b), LLM_OK) << llm_last_error();  // shares 2, commits 1
  ASSERT_EQ(llm_session_fork(a, &p, &c), LLM_OK) << llm_last_error();
  EXPECT_EQ(llm_session_fork(a, &p, &d), LLM_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(llm_last_error()).find("pages"), std::string::npos) << llm_last_error();
  EXPECT_EQ(d, nullptr);
  llm_session *e = nullptr;
  llm_session_params q = params(32, LLM_KV_F32, pool);
  EXPECT_EQ(llm_session_create(model_, &q, &e), LLM_ERR_OUT_OF_MEMORY);
  // Everything promised can be used: b and c fill their contexts.
  const std::vector<llm_token> more = ids(16, 8);
  ASSERT_EQ(llm_session_eval(b, more.data(), 16), LLM_OK) << llm_last_error();
  ASSERT_EQ(llm_session_eval(c, more.data(), 16), LLM_OK) << llm_last_error();
  EXPECT_EQ(llm_session_eval(c, more.data(), 1), LLM_ERR_CONTEXT_FULL);
  // Truncating b into a shared page needs one more page, which the pool
  // cannot back: refused, nothing changed.
  ASSERT_EQ(llm_session_truncate(b, 20), LLM_ERR_OUT_OF_MEMORY);
  size_t n = 0;
  ASSERT_EQ(llm_session_n_tokens(b, &n), LLM_OK);
  EXPECT_EQ(n, 48u);
  ASSERT_EQ(llm_session_truncate(c, 20), LLM_ERR_OUT_OF_MEMORY);
  llm_session_free(c);  // returns its page and commitment
  ASSERT_EQ(llm_session_truncate(b, 20), LLM_OK) << llm_last_error();
  ASSERT_EQ(llm_session_eval(b, more.data(), 16), LLM_OK) << llm_last_error();
  llm_session_free(a);
  llm_session_free(b);
  llm_kv_pool_info info = pool_info(pool);
  EXPECT_EQ(info.pages_used + info.pages_committed, 0);
  llm_kv_pool_free(pool);
  // A pool over its memory limit is refused with the size it needed.
  llm_kv_pool_params pp;
  llm_kv_pool_params_init(&pp);
  pp.n_tokens = 1000;
  pp.memory_limit = 1000;
  llm_kv_pool *big = nullptr;
  EXPECT_EQ(llm_kv_pool_create(model_, &pp, &big), LLM_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(big, nullptr);
}

// Layer-0 keys depend only on the token and its position, so after a shift
// the kept tokens' layer-0 keys must equal those a fresh session computes for
// the same tokens at their new positions: this pins down the re-rotation and
// the moving of rows. (Deeper layers keep what they computed with the dropped
// tokens in view, by design.)
TEST_F(KvSessionTest, ContextShiftReRotatesKeysToTheirNewPositions) {
  llm::ModelOptions mo;
  mo.n_threads = 2;
  std::unique_ptr<llm::Model> model = llm::Model::load(path_, mo);
  for (llm::KvType kv : {llm::KvType::F32, llm::KvType::Q8}) {
    SCOPED_TRACE(llm::cpu::kv_type_name(kv));
    llm::SessionOptions so;
    so.n_ctx = 64;
    so.kv_type = kv;
    so.policy = llm::ContextPolicy::Shift;
    so.n_keep = 4;
    llm::Session s(*model, so);
    const std::vector<llm_token> t = ids(60, 9), u = ids(10, 10);
    s.eval(t.data(), t.size());
    s.eval(u.data(), u.size());  // 10 do not fit: half of the 56 droppable go
    EXPECT_EQ(s.n_shifts(), 1u);
    std::vector<llm_token> kept(t.begin(), t.begin() + 4);
    kept.insert(kept.end(), t.begin() + 32, t.end());
    kept.insert(kept.end(), u.begin(), u.end());
    ASSERT_EQ(s.n_tokens(), static_cast<int64_t>(kept.size()));
    EXPECT_TRUE(std::equal(kept.begin(), kept.end(), s.tokens()));

    llm::SessionOptions fo;
    fo.n_ctx = 64;
    fo.kv_type = llm::KvType::F32;
    llm::Session fresh(*model, fo);
    fresh.eval(kept.data(), kept.size());
    const int64_t hd = 32;
    std::vector<float> a(hd), b(hd);
    double worst = 0, scale = 0;
    for (int64_t pos = 0; pos < s.n_tokens(); ++pos) {
      llm::cpu::kv_dequantize_row(kv, s.kv().row(0, 0, 0, pos), hd, a.data());
      llm::cpu::kv_dequantize_row(llm::KvType::F32, fresh.kv().row(0, 0, 0, pos), hd, b.data());
      for (int64_t e = 0; e < hd; ++e) {
        worst = std::max(worst, static_cast<double>(std::fabs(a[e] - b[e])));
        scale = std::max(scale, static_cast<double>(std::fabs(b[e])));
      }
    }
    std::printf("[ metric ] kv %s: layer-0 keys after a shift vs fresh: max relative difference %.2e\n",
                llm::cpu::kv_type_name(kv), worst / scale);
    EXPECT_LT(worst / scale, kv == llm::KvType::F32 ? 1e-5 : 2e-2);
  }
}

TEST_F(KvSessionTest, ContextShiftKeepsGenerating) {
  llm_session_params p = params(64, LLM_KV_INT8);
  p.context_policy = LLM_CONTEXT_SHIFT;
  llm_session *s = nullptr;
  ASSERT_EQ(llm_session_create(model_, &p, &s), LLM_OK);
  const std::vector<llm_token> t = ids(60, 9);
  ASSERT_EQ(llm_session_eval(s, t.data(), t.size()), LLM_OK);
  llm_generate_params g;
  llm_generate_params_init(&g);
  g.temperature = 0;
  g.max_tokens = 150;
  g.ignore_eos = 1;
  ASSERT_EQ(llm_generate(s, nullptr, &g, nullptr, nullptr), LLM_OK) << llm_last_error();
  EXPECT_EQ(llm_session_stop_reason(s), LLM_STOP_MAX_TOKENS);
  llm_session_info info;
  info.struct_size = sizeof info;
  ASSERT_EQ(llm_session_get_info(s, &info), LLM_OK);
  EXPECT_GE(info.n_shifts, 4u);
  EXPECT_LE(info.n_tokens, 64);
  // More than the context minus the kept tokens cannot be evaluated at once.
  const std::vector<llm_token> big = ids(70);
  EXPECT_EQ(llm_session_eval(s, big.data(), big.size()), LLM_ERR_CONTEXT_FULL);
  llm_session_free(s);
  // Without the policy, a full context stops generation.
  s = make(32);
  ASSERT_EQ(llm_session_eval(s, t.data(), 30), LLM_OK);
  g.temperature = 0.8f;
  g.max_tokens = 10;
  ASSERT_EQ(llm_generate(s, nullptr, &g, nullptr, nullptr), LLM_OK);
  EXPECT_EQ(llm_session_stop_reason(s), LLM_STOP_CONTEXT_FULL);
  llm_session_free(s);
}

TEST_F(KvSessionTest, SaveRestoreRoundTripsAndRejectsBadStates) {
  for (int kv : {LLM_KV_F16, LLM_KV_INT4}) {
    SCOPED_TRACE(kv);
    llm_session *s = make(128, kv);
    const std::vector<llm_token> t = ids(45, 11);
    ASSERT_EQ(llm_session_eval(s, t.data(), t.size()), LLM_OK);
    size_t size = 0, len = 0;
    ASSERT_EQ(llm_session_state_size(s, &size), LLM_OK);
    std::vector<uint8_t> state(size);
    EXPECT_EQ(llm_session_save(s, state.data(), 10, &len), LLM_ERR_BUFFER_TOO_SMALL);
    EXPECT_EQ(len, size);
    ASSERT_EQ(llm_session_save(s, state.data(), state.size(), &len), LLM_OK);

    llm_session *r = make(128, kv);
    ASSERT_EQ(llm_session_restore(r, state.data(), state.size()), LLM_OK) << llm_last_error();
    EXPECT_EQ(max_rel_diff(llm_session_logits(r), llm_session_logits(s)), 0.0);
    const std::vector<llm_token> u = ids(5, 12);
    ASSERT_EQ(llm_session_eval(s, u.data(), u.size()), LLM_OK);
    ASSERT_EQ(llm_session_eval(r, u.data(), u.size()), LLM_OK);
    EXPECT_EQ(max_rel_diff(llm_session_logits(r), llm_session_logits(s)), 0.0);

    // Damaged states are refused and leave the session as it was.
    std::vector<uint8_t> bad = state;
    bad[bad.size() / 2] ^= 0x10;
    EXPECT_EQ(llm_session_restore(r, bad.data(), bad.size()), LLM_ERR_FORMAT);
    EXPECT_NE(std::string(llm_last_error()).find("checksum"), std::string::npos);
    EXPECT_EQ(llm_session_restore(r, state.data(), state.size() - 1), LLM_ERR_FORMAT);
    EXPECT_EQ(llm_session_restore(r, state.data(), 20), LLM_ERR_FORMAT);
    bad = state;
    bad[0] = 'X';
    EXPECT_EQ(llm_session_restore(r, bad.data(), bad.size()), LLM_ERR_FORMAT);
    size_t n = 0;
    ASSERT_EQ(llm_session_n_tokens(r, &n), LLM_OK);
    EXPECT_EQ(n, 50u);
    // Another cache type, a too-small context.
    llm_session *other_kv = make(128, kv == LLM_KV_F16 ? LLM_KV_INT8 : LLM_KV_F16);
    EXPECT_EQ(llm_session_restore(other_kv, state.data(), state.size()), LLM_ERR_INVALID_ARGUMENT);
    llm_session *small = make(32, kv);
    EXPECT_EQ(llm_session_restore(small, state.data(), state.size()), LLM_ERR_CONTEXT_FULL);
    // Through a file.
    const std::string file = testing::TempDir() + "llm_kv_state.bin";
    ASSERT_EQ(llm_session_save_file(s, file.c_str()), LLM_OK) << llm_last_error();
    ASSERT_EQ(llm_session_restore_file(small, file.c_str()), LLM_ERR_CONTEXT_FULL);
    llm_session *f = make(128, kv);
    ASSERT_EQ(llm_session_restore_file(f, file.c_str()), LLM_OK) << llm_last_error();
    EXPECT_EQ(max_rel_diff(llm_session_logits(f), llm_session_logits(s)), 0.0);
    EXPECT_EQ(llm_session_restore_file(f, (file + ".missing").c_str()), LLM_ERR_IO);
    std::remove(file.c_str());
    for (llm_session *x : {s, r, other_kv, small, f}) llm_session_free(x);
  }
  // A state of another model file is refused.
  llm_model *other = nullptr;
  ASSERT_EQ(llm_model_load(other_path_.c_str(), nullptr, &other), LLM_OK);
  llm_session *s = make(64, LLM_KV_F16);
  const std::vector<llm_token> t = ids(10);
  ASSERT_EQ(llm_session_eval(s, t.data(), t.size()), LLM_OK);
  size_t size = 0, len = 0;
  ASSERT_EQ(llm_session_state_size(s, &size), LLM_OK);
  std::vector<uint8_t> state(size);
  ASSERT_EQ(llm_session_save(s, state.data(), size, &len), LLM_OK);
  llm_session_params p = params(64, LLM_KV_F16);
  llm_session *o = nullptr;
  ASSERT_EQ(llm_session_create(other, &p, &o), LLM_OK);
  EXPECT_EQ(llm_session_restore(o, state.data(), state.size()), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(llm_last_error()).find("another model"), std::string::npos);
  llm_session_free(o);
  llm_session_free(s);
  llm_model_free(other);
}

TEST_F(KvSessionTest, BatchedDecodeMatchesSessionsRunAlone) {
  for (int kv : {LLM_KV_F32, LLM_KV_INT4}) {
    SCOPED_TRACE(kv);
    const int n = 5;
    std::vector<llm_session *> batch, alone;
    for (int i = 0; i < n; ++i) {
      const std::vector<llm_token> t = ids(10 + 7 * i, 20 + i);  // different lengths
      batch.push_back(make(128, kv));
      alone.push_back(make(128, kv));
      ASSERT_EQ(llm_session_eval(batch.back(), t.data(), t.size()), LLM_OK);
      ASSERT_EQ(llm_session_eval(alone.back(), t.data(), t.size()), LLM_OK);
    }
    for (int step = 0; step < 6; ++step) {
      std::vector<llm_token> next;
      for (int i = 0; i < n; ++i) next.push_back(3 + (step * 31 + i * 17) % 256);
      ASSERT_EQ(llm_decode_batch(batch.data(), next.data(), n), LLM_OK) << llm_last_error();
      for (int i = 0; i < n; ++i) {
        ASSERT_EQ(llm_session_eval(alone[i], &next[i], 1), LLM_OK);
        EXPECT_LT(max_rel_diff(llm_session_logits(batch[i]), llm_session_logits(alone[i])), 1e-5) << i;
      }
    }
    // A batch of one session is a decode step of that session.
    const llm_token one = 42;
    ASSERT_EQ(llm_decode_batch(batch.data(), &one, 1), LLM_OK) << llm_last_error();
    ASSERT_EQ(llm_session_eval(alone[0], &one, 1), LLM_OK);
    EXPECT_LT(max_rel_diff(llm_session_logits(batch[0]), llm_session_logits(alone[0])), 1e-5);
    // Misuse is refused before anything is evaluated.
    llm_token two[2] = {5, 6};
    llm_session *dup[2] = {batch[0], batch[0]};
    EXPECT_EQ(llm_decode_batch(dup, two, 2), LLM_ERR_INVALID_ARGUMENT);
    llm_session *with_null[2] = {batch[0], nullptr};
    EXPECT_EQ(llm_decode_batch(with_null, two, 2), LLM_ERR_INVALID_ARGUMENT);
    llm_token bad[2] = {5, 100000};
    EXPECT_EQ(llm_decode_batch(batch.data(), bad, 2), LLM_ERR_INVALID_TOKEN);
    size_t n0 = 0;
    ASSERT_EQ(llm_session_n_tokens(batch[0], &n0), LLM_OK);
    EXPECT_EQ(n0, 17u);
    for (llm_session *s : batch) llm_session_free(s);
    for (llm_session *s : alone) llm_session_free(s);
  }
  // Sessions of different models cannot share a batch; a full context is refused.
  llm_model *other = nullptr;
  ASSERT_EQ(llm_model_load(other_path_.c_str(), nullptr, &other), LLM_OK);
  llm_session_params p = params(16);
  llm_session *a = make(16), *b = nullptr;
  ASSERT_EQ(llm_session_create(other, &p, &b), LLM_OK);
  llm_session *mixed[2] = {a, b};
  llm_token two[2] = {5, 6};
  EXPECT_EQ(llm_decode_batch(mixed, two, 2), LLM_ERR_INVALID_ARGUMENT);
  const std::vector<llm_token> t = ids(16);
  ASSERT_EQ(llm_session_eval(a, t.data(), t.size()), LLM_OK);
  EXPECT_EQ(llm_decode_batch(&a, two, 1), LLM_ERR_CONTEXT_FULL);
  llm_session_free(a);
  llm_session_free(b);
  llm_model_free(other);
}

}  // namespace
