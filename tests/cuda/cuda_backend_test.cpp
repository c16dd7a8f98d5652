// The CUDA backend against the CPU backend and the Hugging Face reference.
// Every test skips, saying so, on a machine without a CUDA device.
//
// Models: the default model (models/libllm-tiny) converted by this test to
// f32, bf16, int8 (group 32, symmetric) and int4 (group 128, asymmetric) in
// the test work folder; tiny-llama-code bf16 (converted by the `models`
// fixture from ../shared) for the greedy-continuation reference. A model
// that is missing skips its tests with the file's name.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <utility>
#include <random>
#include <cstring>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <ostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llm.h"
#include "tests/common/greedy.h"
#include "tests/common/handles.h"
#include "kernels/cuda/kernels.h"
#include "runtime/backend_cuda.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace {

bool exists(const std::string &path) { return std::ifstream(path).good(); }
std::string work_file(const std::string &name) { return std::string(LLM_WORK_DIR) + "/" + name; }

#define REQUIRE_GPU()                                                                      \
  do {                                                                                     \
    if (llm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped"; \
  } while (0)
#define REQUIRE_FILE(path) \
  if (!exists(path)) GTEST_SKIP() << (path) << " not found"

using llm_test::ModelPtr;
using llm_test::SessionPtr;

ModelPtr load(const std::string &path, const char *device) {
  llm_model_params p;
  llm_model_params_init(&p);
  p.device = device;
  llm_model *m = nullptr;
  const llm_status st = llm_model_load(path.c_str(), &p, &m);
  EXPECT_EQ(st, LLM_OK) << device << ": " << llm_last_error();
  return ModelPtr(m);
}

SessionPtr session(llm_model *m, int n_ctx, bool logits_all, int32_t kv = LLM_KV_F16, int32_t policy = 0) {
  llm_session_params p;
  llm_session_params_init(&p);
  p.n_ctx = n_ctx;
  p.logits_all = logits_all;
  p.kv_type = kv;
  if (policy) p.context_policy = policy;
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(m, &p, &s), LLM_OK) << llm_last_error();
  return SessionPtr(s);
}

int32_t vocab(llm_model *m) {
  llm_model_info info;
  info.struct_size = sizeof info;
  EXPECT_EQ(llm_model_get_info(m, &info), LLM_OK);
  return info.vocab_size;
}

std::vector<llm_token> tokenize(llm_model *m, const std::string &text) {
  std::vector<llm_token> ids(text.size() + 8);
  size_t n = 0;
  EXPECT_EQ(llm_tokenize(m, text.data(), text.size(), 1, ids.data(), ids.size(), &n), LLM_OK) << llm_last_error();
  ids.resize(n);
  return ids;
}

const float *logits_at(llm_session *s, size_t i) {
  const float *l = llm_session_logits_at(s, static_cast<int32_t>(i));
  EXPECT_NE(l, nullptr) << llm_last_error();
  return l;
}
const float *last_logits(llm_session *s) {
  const float *l = llm_session_logits(s);
  EXPECT_NE(l, nullptr) << llm_last_error();
  return l;
}

// Largest |gpu - cpu| relative to max |cpu| over rows, and top-1 agreement.
struct Diff {
  double max_abs = 0, max_ref = 0;
  size_t rows = 0, same_top1 = 0;
  void add(const float *ref, const float *got, int32_t n) {
    int64_t a = 0, b = 0;
    for (int32_t j = 0; j < n; ++j) {
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(ref[j]) - got[j]));
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[j])));
      if (ref[j] > ref[a]) a = j;
      if (got[j] > got[b]) b = j;
    }
    ++rows;
    same_top1 += a == b;
  }
  double relative() const { return max_ref > 0 ? max_abs / max_ref : 0; }
};

const char *kPrompt =
    "import os\nimport json\n\ndef load_config(path):\n    \"\"\"Read a JSON file and return its contents.\"\"\"\n"
    "    with open(path) as f:\n        return json.load(f)\n";

// Converts the default model once per format into the work folder.
std::string default_model(const std::string &tag, const std::string &args) {
  const std::string out = work_file("cuda-libllm-tiny-" + tag + ".llm");
  if (!exists(out)) {
    const std::string cmd = std::string(LLM_CONVERT_EXE) + " " + LLM_DEFAULT_MODEL_DIR + " -o " + out + " " + args +
                            " > /dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) std::remove(out.c_str());
  }
  return out;
}

struct Format {
  const char *tag, *args;
  double tolerance;  // max |Δlogit| / max |cpu logit|
};
const Format kFormats[] = {
    {"f32", "--dtype f32", 1e-3},
    {"bf16", "--dtype bf16", 2e-2},
    {"int8", "--weights int8 --group-size 32 --symmetric --no-search", 3e-2},
    {"int4", "--weights int4 --group-size 128 --asymmetric --no-search", 3e-2},
};

void PrintTo(const Format &f, std::ostream *os) { *os << f.tag; }

// Each test gets the format's model loaded on the CPU and on the GPU.
class CudaFormats : public ::testing::TestWithParam<Format> {
 protected:
  void SetUp() override {
    REQUIRE_GPU();
    const Format &f = GetParam();
    const std::string path = default_model(f.tag, f.args);
    REQUIRE_FILE(path);
    cpu = load(path, "cpu");
    gpu = load(path, "cuda");
    ASSERT_TRUE(cpu && gpu);
  }
  ModelPtr cpu, gpu;
};

// Prefill of every position (cuBLAS path) and then 24 greedy decode steps
// (GEMV path, CUDA graphs), each against the CPU backend on the same file.
TEST_P(CudaFormats, LogitsMatchCpu) {
  const Format &f = GetParam();
  const int32_t nv = vocab(cpu.get());
  std::vector<llm_token> ids = tokenize(cpu.get(), kPrompt);
  SessionPtr sc = session(cpu.get(), 256, true), sg = session(gpu.get(), 256, true);
  ASSERT_EQ(llm_session_eval(sc.get(), ids.data(), ids.size()), LLM_OK) << llm_last_error();
  ASSERT_EQ(llm_session_eval(sg.get(), ids.data(), ids.size()), LLM_OK) << llm_last_error();
  Diff prefill, decode;
  for (size_t i = 0; i < ids.size(); ++i) prefill.add(logits_at(sc.get(), i), logits_at(sg.get(), i), nv);
  for (int step = 0; step < 24; ++step) {
    const float *lc = last_logits(sc.get());
    llm_token t = static_cast<llm_token>(std::max_element(lc, lc + nv) - lc);
    ASSERT_EQ(llm_session_eval(sc.get(), &t, 1), LLM_OK) << llm_last_error();
    ASSERT_EQ(llm_session_eval(sg.get(), &t, 1), LLM_OK) << llm_last_error();
    decode.add(last_logits(sc.get()), last_logits(sg.get()), nv);
  }
  std::printf("[ metric ] cuda vs cpu, %s: prefill %zu rows relative %.3g (top-1 %zu/%zu); decode relative %.3g "
              "(top-1 %zu/%zu)\n",
              f.tag, prefill.rows, prefill.relative(), prefill.same_top1, prefill.rows, decode.relative(),
              decode.same_top1, decode.rows);
  EXPECT_GT(prefill.max_ref, 1.0);
  EXPECT_LE(prefill.relative(), f.tolerance);
  EXPECT_LE(decode.relative(), f.tolerance);
  EXPECT_GE(prefill.same_top1 + 2, prefill.rows);
  EXPECT_GE(decode.same_top1 + 1, decode.rows);
}

// For n = 2..8: n sessions on each backend, session i evaluating the first
// first_len + 5 i prompt ids, then one more token (the CPU's greedy choice,
// or with greedy false the next prompt id) decoded alone on the CPU and as
// one llm_decode_batch of the n sessions on the GPU; every row into d.
void batches_of_every_size(llm_model *cpu, llm_model *gpu, const std::vector<llm_token> &ids, size_t first_len,
                           bool greedy, Diff *d) {
  const int32_t nv = vocab(cpu);
  for (size_t n = 2; n <= 8; ++n) {
    std::vector<SessionPtr> cs, gs;
    std::vector<llm_session *> handles;
    std::vector<llm_token> toks;
    for (size_t i = 0; i < n; ++i) {
      const size_t len = first_len + 5 * i;
      cs.push_back(session(cpu, 64, false));
      gs.push_back(session(gpu, 64, false));
      ASSERT_EQ(llm_session_eval(cs.back().get(), ids.data(), len), LLM_OK);
      ASSERT_EQ(llm_session_eval(gs.back().get(), ids.data(), len), LLM_OK);
      const float *l = last_logits(cs.back().get());
      toks.push_back(greedy ? static_cast<llm_token>(std::max_element(l, l + nv) - l) : ids[len]);
      ASSERT_EQ(llm_session_eval(cs.back().get(), &toks.back(), 1), LLM_OK);
      handles.push_back(gs.back().get());
    }
    ASSERT_EQ(llm_decode_batch(handles.data(), toks.data(), n), LLM_OK) << llm_last_error();
    for (size_t i = 0; i < n; ++i) d->add(last_logits(cs[i].get()), last_logits(gs[i].get()), nv);
  }
}

// Batched decode of every batch size the decode products take as one launch
// (2..8 sessions, each size its own kernels), against each session decoded
// alone on the CPU.
TEST_P(CudaFormats, BatchesOfEverySizeMatchCpu) {
  const Format &f = GetParam();
  std::vector<llm_token> ids = tokenize(cpu.get(), kPrompt);
  ASSERT_GT(ids.size(), 42u);
  Diff d;
  batches_of_every_size(cpu.get(), gpu.get(), ids, 6, true, &d);
  if (HasFatalFailure()) return;
  std::printf("[ metric ] cuda batches of 2..8 vs cpu, %s: relative %.3g, top-1 %zu/%zu\n", f.tag, d.relative(),
              d.same_top1, d.rows);
  EXPECT_LE(d.relative(), f.tolerance);
  EXPECT_GE(d.same_top1 + 2, d.rows);
}

INSTANTIATE_TEST_SUITE_P(Weights, CudaFormats, ::testing::ValuesIn(kFormats),
                         [](const ::testing::TestParamInfo<Format> &i) { return std::string(i.param.tag); });

// A synthetic model shaped so that the decode products take every launch
// choice of kernels/cuda/gemv.cu that the shipped model's small shapes do
// not: fused gate/up of 9216 rows, an output head of 20000 rows (the
// shipped model's largest launch has 6144 rows); decode of one session and
// batches of 2..8 sessions against the CPU on the same file.
const Format kWideFormats[] = {
    {"bf16", "--dtype bf16", 2e-2},
    {"int8", "--weights int8 --group-size 32 --symmetric --no-search", 3e-2},
    {"int4", "--weights int4 --group-size 32 --symmetric --no-search", 3e-2},
};
std::string wide_model(const Format &f) {
  const std::string dir = work_file("cuda-wide-synthetic"), out = work_file(std::string("cuda-wide-") + f.tag + ".llm");
  if (exists(out)) return out;
  if (!exists(dir + "/config.json")) {
    const std::string config = work_file("cuda-wide-config.json");
    std::ofstream(config) << R"({"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 4608, "vocab_size": 20000,
      "max_position_embeddings": 256, "rope_theta": 10000.0, "tie_word_embeddings": false})";
    const std::string cmd =
        std::string(LLM_CONVERT_EXE) + " --synthetic " + config + " -o " + dir + " > /dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) return out;
  }
  const std::string cmd = std::string(LLM_CONVERT_EXE) + " " + dir + " -o " + out + " " + f.args + " > /dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) std::remove(out.c_str());
  return out;
}

class CudaWide : public ::testing::TestWithParam<Format> {};

TEST_P(CudaWide, EveryProductLaunchMatchesCpu) {
  REQUIRE_GPU();
  const Format &f = GetParam();
  const std::string path = wide_model(f);
  REQUIRE_FILE(path);
  ModelPtr cpu = load(path, "cpu"), gpu = load(path, "cuda");
  ASSERT_TRUE(cpu && gpu);
  const int32_t nv = vocab(cpu.get());
  ASSERT_EQ(nv, 20000);
  std::vector<llm_token> ids;
  for (int i = 0; i < 48; ++i) ids.push_back(static_cast<llm_token>((i * 7919 + 13) % nv));
  // One session: a prompt, then 8 greedy decode steps.
  Diff one;
  SessionPtr sc = session(cpu.get(), 64, false), sg = session(gpu.get(), 64, false);
  ASSERT_EQ(llm_session_eval(sc.get(), ids.data(), 12), LLM_OK);
  ASSERT_EQ(llm_session_eval(sg.get(), ids.data(), 12), LLM_OK);
  for (int step = 0; step < 8; ++step) {
    const float *l = last_logits(sc.get());
    const llm_token t = static_cast<llm_token>(std::max_element(l, l + nv) - l);
    ASSERT_EQ(llm_session_eval(sc.get(), &t, 1), LLM_OK);
    ASSERT_EQ(llm_session_eval(sg.get(), &t, 1), LLM_OK);
    one.add(last_logits(sc.get()), last_logits(sg.get()), nv);
  }
  // Batches of every size.
  Diff batch;
  batches_of_every_size(cpu.get(), gpu.get(), ids, 4, false, &batch);
  if (HasFatalFailure()) return;
  std::printf("[ metric ] cuda vs cpu, wide synthetic %s: decode relative %.3g (top-1 %zu/%zu), batches of "
              "2..8 relative %.3g (top-1 %zu/%zu)\n",
              f.tag, one.relative(), one.same_top1, one.rows, batch.relative(), batch.same_top1, batch.rows);
  EXPECT_LE(one.relative(), f.tolerance);
  EXPECT_LE(batch.relative(), f.tolerance);
  EXPECT_GE(one.same_top1 + 1, one.rows);
  EXPECT_GE(batch.same_top1 + 2, batch.rows);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaWide, ::testing::ValuesIn(kWideFormats),
                         [](const ::testing::TestParamInfo<Format> &i) { return std::string(i.param.tag); });

// Every KV type: decode logits of the bf16 model against the CPU with the
// same KV type (both quantize rows with the same arithmetic).
TEST(CudaKv, EveryKvTypeMatchesCpu) {
  REQUIRE_GPU();
  const std::string path = default_model("bf16", "--dtype bf16");
  REQUIRE_FILE(path);
  ModelPtr cpu = load(path, "cpu"), gpu = load(path, "cuda");
  ASSERT_TRUE(cpu && gpu);
  const int32_t nv = vocab(cpu.get());
  std::vector<llm_token> ids = tokenize(cpu.get(), kPrompt);
  const struct {
    int32_t type;
    const char *name;
    double tol;
  } kinds[] = {{LLM_KV_F32, "f32", 2e-2}, {LLM_KV_F16, "f16", 2e-2}, {LLM_KV_BF16, "bf16", 2e-2},
               {LLM_KV_INT8, "int8", 3e-2}, {LLM_KV_INT4, "int4", 5e-2}};
  for (const auto &k : kinds) {
    SessionPtr sc = session(cpu.get(), 128, false, k.type), sg = session(gpu.get(), 128, false, k.type);
    Diff d;
    for (size_t i = 0; i < ids.size(); ++i) {  // token by token: decode attention at every length
      ASSERT_EQ(llm_session_eval(sc.get(), &ids[i], 1), LLM_OK) << llm_last_error();
      ASSERT_EQ(llm_session_eval(sg.get(), &ids[i], 1), LLM_OK) << llm_last_error();
      d.add(last_logits(sc.get()), last_logits(sg.get()), nv);
    }
    std::printf("[ metric ] cuda vs cpu, KV %s: relative %.3g, top-1 %zu/%zu\n", k.name, d.relative(), d.same_top1,
                d.rows);
    EXPECT_LE(d.relative(), k.tol) << k.name;
    EXPECT_GE(d.same_top1 + 2, d.rows) << k.name;
  }
}

// Batched decode of three sessions at different lengths against each
// session decoded alone on the CPU; then a context shift on the GPU against
// the same shift on the CPU; then a state saved on the GPU restored on the CPU.
TEST(CudaSessions, BatchShiftAndStateMatchCpu) {
  REQUIRE_GPU();
  const std::string path = default_model("int4", "--weights int4 --group-size 128 --asymmetric --no-search");
  REQUIRE_FILE(path);
  ModelPtr cpu = load(path, "cpu"), gpu = load(path, "cuda");
  ASSERT_TRUE(cpu && gpu);
  const int32_t nv = vocab(cpu.get());
  std::vector<llm_token> ids = tokenize(cpu.get(), kPrompt);
  ASSERT_GT(ids.size(), 40u);

  // Batch.
  std::vector<SessionPtr> cs, gs;
  for (size_t len : {size_t{10}, size_t{25}, size_t{40}}) {
    cs.push_back(session(cpu.get(), 128, false, LLM_KV_INT8));
    gs.push_back(session(gpu.get(), 128, false, LLM_KV_INT8));
    ASSERT_EQ(llm_session_eval(cs.back().get(), ids.data(), len), LLM_OK);
    ASSERT_EQ(llm_session_eval(gs.back().get(), ids.data(), len), LLM_OK);
  }
  Diff batch;
  for (int step = 0; step < 8; ++step) {
    std::vector<llm_session *> handles;
    std::vector<llm_token> toks;
    for (size_t i = 0; i < cs.size(); ++i) {
      const float *l = last_logits(cs[i].get());
      toks.push_back(static_cast<llm_token>(std::max_element(l, l + nv) - l));
      ASSERT_EQ(llm_session_eval(cs[i].get(), &toks.back(), 1), LLM_OK);
      handles.push_back(gs[i].get());
    }
    ASSERT_EQ(llm_decode_batch(handles.data(), toks.data(), handles.size()), LLM_OK) << llm_last_error();
    for (size_t i = 0; i < cs.size(); ++i) batch.add(last_logits(cs[i].get()), last_logits(gs[i].get()), nv);
  }
  std::printf("[ metric ] cuda batch of 3 vs cpu: relative %.3g, top-1 %zu/%zu\n", batch.relative(), batch.same_top1,
              batch.rows);
  EXPECT_LE(batch.relative(), 3e-2);
  EXPECT_GE(batch.same_top1 + 1, batch.rows);

  // Context shift: 48 positions, 90 tokens evaluated one by one.
  SessionPtr sc = session(cpu.get(), 48, false, LLM_KV_INT8, LLM_CONTEXT_SHIFT);
  SessionPtr sg = session(gpu.get(), 48, false, LLM_KV_INT8, LLM_CONTEXT_SHIFT);
  Diff shift;
  for (int i = 0; i < 90; ++i) {
    const llm_token t = ids[static_cast<size_t>(i) % ids.size()];
    ASSERT_EQ(llm_session_eval(sc.get(), &t, 1), LLM_OK) << llm_last_error();
    ASSERT_EQ(llm_session_eval(sg.get(), &t, 1), LLM_OK) << llm_last_error();
    if (i >= 48) shift.add(last_logits(sc.get()), last_logits(sg.get()), nv);
  }
  std::printf("[ metric ] cuda context shift vs cpu: relative %.3g, top-1 %zu/%zu\n", shift.relative(),
              shift.same_top1, shift.rows);
  EXPECT_LE(shift.relative(), 3e-2);
  EXPECT_GE(shift.same_top1 + 2, shift.rows);

  // State: saved from the GPU session, restored into a CPU session.
  size_t size = 0;
  ASSERT_EQ(llm_session_state_size(gs[2].get(), &size), LLM_OK);
  std::vector<uint8_t> state(size);
  ASSERT_EQ(llm_session_save(gs[2].get(), state.data(), state.size(), &size), LLM_OK) << llm_last_error();
  SessionPtr restored = session(cpu.get(), 128, false, LLM_KV_INT8);
  ASSERT_EQ(llm_session_restore(restored.get(), state.data(), size), LLM_OK) << llm_last_error();
  const llm_token t = ids[3];
  ASSERT_EQ(llm_session_eval(restored.get(), &t, 1), LLM_OK);
  ASSERT_EQ(llm_session_eval(cs[2].get(), &t, 1), LLM_OK);
  Diff st;
  st.add(last_logits(cs[2].get()), last_logits(restored.get()), nv);
  EXPECT_LE(st.relative(), 3e-2);
}

// Runs `step` n times between two readings of the device's free memory and
// the backend's counters, prints both, and checks that the steps allocated
// nothing and were one graph replay each (no new recording).
template <class F>
void expect_replays_only(llm::Model &model, const char *what, int n, F step) {
  llm::CudaStats before{}, after{};
  size_t free_before = 0, free_after = 0, total = 0;
  ASSERT_TRUE(llm::cuda_backend_stats(model.backend(), &before));
  ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
  for (int i = 0; i < n; ++i) step();
  ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
  ASSERT_TRUE(llm::cuda_backend_stats(model.backend(), &after));
  std::printf("[ metric ] %d %s: device allocations %llu -> %llu, graph launches %llu -> %llu, captures %llu -> "
              "%llu, free memory %zu -> %zu\n",
              n, what, static_cast<unsigned long long>(before.device_allocs),
              static_cast<unsigned long long>(after.device_allocs),
              static_cast<unsigned long long>(before.graph_launches),
              static_cast<unsigned long long>(after.graph_launches),
              static_cast<unsigned long long>(before.graph_captures),
              static_cast<unsigned long long>(after.graph_captures), free_before, free_after);
  EXPECT_EQ(after.device_allocs, before.device_allocs);
  EXPECT_EQ(after.graph_captures, before.graph_captures);
  EXPECT_EQ(after.graph_launches, before.graph_launches + static_cast<uint64_t>(n));
  EXPECT_EQ(free_after, free_before);
}

// Decoding allocates no device memory: after the first decode step (which
// records the step as a CUDA graph), 32 more tokens leave the device's free
// memory and the backend's allocation count unchanged, and each is one
// graph replay; the same for the steps of a batch of sessions.
TEST(CudaMemory, DecodeAllocatesNothingAndReplaysGraphs) {
  REQUIRE_GPU();
  const std::string path = default_model("int4", "--weights int4 --group-size 128 --asymmetric --no-search");
  REQUIRE_FILE(path);
  llm::ModelOptions o;
  o.device = "cuda";
  std::unique_ptr<llm::Model> model = llm::Model::load(path, o);
  ModelPtr handle = load(path, "cuda");
  ASSERT_TRUE(handle);
  std::vector<llm_token> ids = tokenize(handle.get(), kPrompt);
  llm::SessionOptions so;
  so.n_ctx = 256;
  llm::Session s(*model, so);
  s.eval(ids.data(), ids.size());
  int32_t t = ids[0];
  s.eval(&t, 1);  // records the decode graph
  // Sampling on the device (top-k with the penalty) allocates nothing either.
  llm::SamplerParams sp;
  sp.repeat_penalty = 1.1f;
  expect_replays_only(*model, "decode steps", 32, [&] {
    t = s.sample(sp);
    s.eval(&t, 1);
  });
  // Per layer: two norms, q/k/v, RoPE + store, attention (+ the merge of its
  // splits, which also quantizes the output for the next product), the
  // output projection, gate/up, SwiGLU, down; then embedding, final norm and
  // output head.
  llm::CudaStats stats{};
  ASSERT_TRUE(llm::cuda_backend_stats(model->backend(), &stats));
  const uint64_t layers = model->hparams().num_layers;
  std::printf("[ metric ] decode step of %llu layers: %llu kernels\n", static_cast<unsigned long long>(layers),
              static_cast<unsigned long long>(stats.graph_kernels));
  EXPECT_GE(stats.graph_kernels, 9 * layers + 3);
  EXPECT_LE(stats.graph_kernels, 10 * layers + 3);

  // A batch of 4 sessions at different lengths: its first step is recorded,
  // every later one (16, sampling on the device) is one replay.
  std::vector<std::unique_ptr<llm::Session>> owned;
  std::vector<llm::Session *> batch;
  for (size_t i = 0; i < 4; ++i) {
    owned.push_back(std::make_unique<llm::Session>(*model, so));
    owned.back()->eval(ids.data(), ids.size() - 3 * i);
    batch.push_back(owned.back().get());
  }
  std::vector<int32_t> toks(batch.size(), ids[0]);
  llm::Session::decode_batch(batch.data(), toks.data(), batch.size());
  expect_replays_only(*model, "batched steps of 4 sessions", 16, [&] {
    for (size_t i = 0; i < batch.size(); ++i) toks[i] = batch[i]->sample(sp);
    llm::Session::decode_batch(batch.data(), toks.data(), batch.size());
  });
}

// The n best of a row in the host sampler's order (tests/unit/sampler_test.cpp
// has the same rule): sorted ids, and the values bit for bit.
std::vector<std::pair<int32_t, uint32_t>> best_of_row(const std::vector<float> &row, int n) {
  auto key = [](float v) { return v != v ? -INFINITY : std::min(v, FLT_MAX); };
  std::vector<int32_t> order(row.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return key(row[a]) > key(row[b]); });
  std::vector<std::pair<int32_t, uint32_t>> out;
  for (int i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &row[order[i]], 4);
    out.emplace_back(order[i], bits);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The device's candidate selection against the host rule over rows built to
// trip it: random, a few values shared by thousands of entries, all equal,
// non-finite values and both zeros, sizes from 1 to 150,000, n from 1 to 256.
TEST(CudaSampling, TopCandidatesMatchTheHostOrder) {
  REQUIRE_GPU();
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  float *dx = nullptr;
  int32_t *dids = nullptr;
  float *dvals = nullptr;
  const int64_t max_count = 150000;
  ASSERT_EQ(cudaMalloc(&dx, max_count * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dids, llm::cuda::kMaxTopCandidates * sizeof(int32_t)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dvals, llm::cuda::kMaxTopCandidates * sizeof(float)), cudaSuccess);
  int rows = 0;
  for (int64_t count : {int64_t{1}, int64_t{7}, int64_t{300}, int64_t{32000}, int64_t{128256}, max_count}) {
    for (int variant = 0; variant < 4; ++variant) {
      std::vector<float> row(static_cast<size_t>(count));
      for (float &v : row) v = normal(gen);
      if (variant == 1)
        for (float &v : row) v = std::round(v);  // about 20 distinct values
      if (variant == 2) std::fill(row.begin(), row.end(), 1.5f);
      if (variant == 3)
        for (size_t i = 0; i < row.size(); i += 97) {
          const float special[] = {NAN, INFINITY, -INFINITY, -0.0f, 0.0f, FLT_MAX, -FLT_MAX};
          row[i] = special[(i / 97) % 7];
        }
      ASSERT_EQ(cudaMemcpy(dx, row.data(), row.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      for (int n : {1, 2, 40, 104, 256}) {
        if (n > count) continue;
        llm::cuda::top_candidates(dx, count, n, dids, dvals, nullptr);
        std::vector<int32_t> ids(n);
        std::vector<float> vals(n);
        ASSERT_EQ(cudaMemcpy(ids.data(), dids, n * sizeof(int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(vals.data(), dvals, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
        std::vector<std::pair<int32_t, uint32_t>> got;
        for (int i = 0; i < n; ++i) {
          uint32_t bits;
          std::memcpy(&bits, &vals[i], 4);
          got.emplace_back(ids[i], bits);
        }
        std::sort(got.begin(), got.end());
        ASSERT_EQ(got, best_of_row(row, n)) << "count " << count << " variant " << variant << " n " << n;
        ++rows;
      }
    }
  }
  cudaFree(dx);
  cudaFree(dids);
  cudaFree(dvals);
  std::printf("[ metric ] device sampling candidates: %d selections equal to the host order\n", rows);
}

// llm_session_sample with the logits left on the device (only the candidates
// cross) draws what it draws from the whole row on the host: two sessions
// run the same prompt and seed, one reading its logits before each draw
// (which puts them on the host, where the sampler reads the whole row),
// greedy and top-k with the penalty, 48 tokens each.
TEST(CudaSampling, DeviceCandidatesDrawWhatTheHostDraws) {
  REQUIRE_GPU();
  const std::string path = default_model("int4", "--weights int4 --group-size 128 --asymmetric --no-search");
  REQUIRE_FILE(path);
  ModelPtr m = load(path, "cuda");
  ASSERT_TRUE(m);
  const std::vector<llm_token> ids = tokenize(m.get(), kPrompt);
  int compared = 0;
  for (const float temperature : {0.0f, 1.0f}) {
    llm_generate_params gp;
    llm_generate_params_init(&gp);
    gp.temperature = temperature;
    gp.top_k = 40;
    gp.repeat_penalty = 1.3f;
    gp.repeat_last_n = 64;
    gp.seed = 5;
    SessionPtr dev = session(m.get(), 256, false), host = session(m.get(), 256, false);
    ASSERT_EQ(llm_session_eval(dev.get(), ids.data(), ids.size()), LLM_OK);
    ASSERT_EQ(llm_session_eval(host.get(), ids.data(), ids.size()), LLM_OK);
    for (int i = 0; i < 48; ++i) {
      llm_token a = -1, b = -1;
      ASSERT_EQ(llm_session_sample(dev.get(), &gp, &a), LLM_OK) << llm_last_error();
      ASSERT_NE(llm_session_logits(host.get()), nullptr) << llm_last_error();
      ASSERT_EQ(llm_session_sample(host.get(), &gp, &b), LLM_OK) << llm_last_error();
      ASSERT_EQ(a, b) << "temperature " << temperature << ", token " << i;
      ASSERT_EQ(llm_session_eval(dev.get(), &a, 1), LLM_OK);
      ASSERT_EQ(llm_session_eval(host.get(), &b, 1), LLM_OK);
      ++compared;
    }
  }
  std::printf("[ metric ] sampling from device candidates: %d tokens equal to host sampling\n", compared);
}

// tiny-llama-code bf16 on the GPU: greedy continuations equal the Hugging
// Face reference for 64 tokens.
TEST(CudaReference, TinyLlamaCodeGreedyContinuations) {
  REQUIRE_GPU();
  const std::string path = work_file("tiny-llama-code-bf16.llm");
  const std::string ref_path = std::string(LLM_SHARED_DIR) + "/models/tiny-llama-code/reference/reference.json";
  REQUIRE_FILE(path);
  REQUIRE_FILE(ref_path);
  ModelPtr model = load(path, "cuda");
  ASSERT_TRUE(model);
  std::ifstream f(ref_path);
  const nlohmann::json ref = nlohmann::json::parse(f);
  size_t cases = 0;
  for (const nlohmann::json &c : ref["cases"]) {
    const std::vector<llm_token> want = c["greedy_ids"].get<std::vector<llm_token>>();
    EXPECT_EQ(llm_test::greedy_continuation(model.get(), c["input_ids"].get<std::vector<llm_token>>(), want.size()),
              want)
        << "prompt: " << c["prompt"];
    ++cases;
  }
  std::printf("[ metric ] tiny-llama-code bf16 on CUDA: %zu greedy continuations of 64 tokens compared\n", cases);
}

// Bad device names fail cleanly.
TEST(CudaDevice, UnknownOrdinalFails) {
  REQUIRE_GPU();
  const std::string path = default_model("bf16", "--dtype bf16");
  REQUIRE_FILE(path);
  llm_model_params p;
  llm_model_params_init(&p);
  p.device = "cuda:99";
  llm_model *m = nullptr;
  EXPECT_EQ(llm_model_load(path.c_str(), &p, &m), LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(std::string(llm_last_error()).find("does not exist"), std::string::npos) << llm_last_error();
}

}  // namespace
