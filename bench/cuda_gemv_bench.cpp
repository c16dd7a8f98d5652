// Decode products alone on the GPU: `llm_cuda_gemv_bench [filter]` times the
// one-row products (kernels/cuda/gemv.cu) of a TinyLlama-1.1B and a
// Llama-2-7B shape for int4 and int8 (groups of 32, symmetric) and bf16
// weights, and prints microseconds per product and the weight bytes read per
// second. Each measurement is one CUDA graph of 200 launches whose weights
// cycle through at least 400 MB of copies, so every launch reads its
// weights from memory, and consecutive launches overlap as in a decode step
// (programmatic dependent launch). LLM_GEMV_BENCH_CYCLE_MB sets that cycle
// in MB (0: two copies, which stay in L2 for all but the largest shapes).
// Weights and inputs are random: the time does not depend on the values.
// Prints a note and exits 0 without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/kernels.h"

namespace {

using llm::cuda::DevWeight;
using llm::cuda::GemvJob;
using llm::cuda::WType;

struct Shape {
  const char *name;
  int64_t k;
  std::vector<int64_t> rows;  // weights sharing the input, run as one launch
};

struct Format {
  const char *name;
  WType type;
  int64_t bits;
};

bool ok(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return true;
  std::fprintf(stderr, "llm_cuda_gemv_bench: %s: %s\n", what, cudaGetErrorString(e));
  return false;
}

// Microseconds per launch of `shape` in `format`; bytes: weight and scale
// bytes one launch reads.
bool run(const Shape &shape, const Format &f, cudaStream_t s, double *us, double *bytes) {
  int64_t rows = 0;
  for (int64_t r : shape.rows) rows += r;
  const int64_t k = shape.k, group = 32;
  const bool quant = f.type == WType::I4 || f.type == WType::I8;
  const size_t wbytes = static_cast<size_t>(rows * k * f.bits / 8);
  const size_t sbytes = quant ? static_cast<size_t>(rows * (k / group) * 2) : 0;
  const char *cycle_env = std::getenv("LLM_GEMV_BENCH_CYCLE_MB");
  const size_t cycle = (cycle_env ? std::strtoull(cycle_env, nullptr, 10) : 400) << 20;
  const int copies = static_cast<int>(std::max<size_t>(2, cycle / (wbytes + sbytes) + 1));
  std::mt19937 rng(1);
  std::vector<uint8_t> hw(wbytes);
  for (auto &b : hw) b = static_cast<uint8_t>(rng());
  if (f.type == WType::BF16)  // keep bf16 values finite and small
    for (size_t i = 1; i < hw.size(); i += 2) hw[i] = static_cast<uint8_t>(0x3C + (hw[i] & 1));
  std::vector<uint16_t> hs(sbytes / 2, 0x2000);  // f16 scales of about 0.008
  std::vector<void *> buffers;
  auto alloc = [&](size_t n) -> uint8_t * {
    void *p = nullptr;
    if (!ok(cudaMalloc(&p, std::max<size_t>(n, 1)), "cudaMalloc")) return nullptr;
    buffers.push_back(p);
    return static_cast<uint8_t *>(p);
  };
  auto free_all = [&] {
    for (void *p : buffers) cudaFree(p);
  };
  std::vector<uint8_t *> w(copies), sc(copies);
  for (int c = 0; c < copies; ++c) {
    w[c] = alloc(wbytes);
    sc[c] = quant ? alloc(sbytes) : nullptr;
    if (!w[c] || (quant && !sc[c])) return free_all(), false;
    cudaMemcpy(w[c], hw.data(), wbytes, cudaMemcpyHostToDevice);
    if (quant) cudaMemcpy(sc[c], hs.data(), sbytes, cudaMemcpyHostToDevice);
  }
  // The input: fp32 for float weights, quantized (QuantInput) for the others.
  const size_t qbytes = llm::cuda::quant_input_bytes(1, k);
  std::vector<uint8_t> hq(qbytes);
  for (auto &b : hq) b = static_cast<uint8_t>(rng() & 0x3F);
  const llm::cuda::QuantInput hqi = llm::cuda::quant_input_at(hq.data(), 1, k);
  for (int64_t b = 0; b < k / 32; ++b) hqi.ds[b] = make_float2(0.01f, 0.0f);
  std::vector<float> hx(static_cast<size_t>(k), 0.5f);
  uint8_t *q = alloc(qbytes), *x = alloc(static_cast<size_t>(k) * 4), *out = alloc(static_cast<size_t>(rows) * 4);
  if (!q || !x || !out) return free_all(), false;
  cudaMemcpy(q, hq.data(), qbytes, cudaMemcpyHostToDevice);
  cudaMemcpy(x, hx.data(), hx.size() * 4, cudaMemcpyHostToDevice);

  auto launch = [&](int c) {
    GemvJob jobs[llm::cuda::kMaxGemvJobs] = {};
    int64_t r0 = 0;
    for (size_t i = 0; i < shape.rows.size(); ++i) {
      const int64_t r = shape.rows[i];
      jobs[i].w = DevWeight{f.type, r, k, quant ? group : 0, w[c] + r0 * k * f.bits / 8,
                            quant ? reinterpret_cast<const uint16_t *>(sc[c]) + r0 * (k / group) : nullptr, nullptr};
      jobs[i].out = reinterpret_cast<float *>(out) + r0;
      jobs[i].ldo = rows;
      r0 += r;
    }
    llm::cuda::gemv(jobs, static_cast<int>(shape.rows.size()), 1, k, reinterpret_cast<const float *>(x), k,
                    quant ? q : nullptr, s);
  };
  constexpr int kLaunches = 200;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool good = ok(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capture");
  for (int i = 0; good && i < kLaunches; ++i) launch(i % copies);
  good = good && ok(cudaStreamEndCapture(s, &graph), "capture") && ok(cudaGraphInstantiate(&exec, graph, 0), "graph");
  cudaEvent_t a = nullptr, b = nullptr;
  float ms = 0.0f;
  if (good) {
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaGraphLaunch(exec, s);  // warm-up
    cudaEventRecord(a, s);
    cudaGraphLaunch(exec, s);
    cudaEventRecord(b, s);
    good = ok(cudaEventSynchronize(b), "running the products") && ok(cudaEventElapsedTime(&ms, a, b), "timing");
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  free_all();
  *us = 1000.0 * ms / kLaunches;
  *bytes = static_cast<double>(wbytes + sbytes);
  return good;
}

}  // namespace

int main(int argc, char **argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("llm_cuda_gemv_bench: no CUDA device; nothing measured\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const char *filter = argc > 1 ? argv[1] : nullptr;
  const std::vector<Shape> shapes = {
      {"TinyLlama q/k/v", 2048, {2048, 256, 256}}, {"TinyLlama o", 2048, {2048}},
      {"TinyLlama gate/up", 2048, {5632, 5632}},   {"TinyLlama down", 5632, {2048}},
      {"TinyLlama head", 2048, {32000}},           {"7B q/k/v", 4096, {4096, 4096, 4096}},
      {"7B o", 4096, {4096}},                      {"7B gate/up", 4096, {11008, 11008}},
      {"7B down", 11008, {4096}},                  {"7B head", 4096, {32000}}};
  const Format formats[] = {{"int4", WType::I4, 4}, {"int8", WType::I8, 8}, {"bf16", WType::BF16, 16}};
  cudaStream_t s = nullptr;
  if (!ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream")) return 1;
  std::printf("%s: one-row decode products, weight bytes read per second\n", prop.name);
  std::printf("%-18s %6s %8s %10s %10s\n", "product", "format", "MB", "us", "GB/s");
  for (const Shape &shape : shapes) {
    if (filter && !std::strstr(shape.name, filter)) continue;
    for (const Format &f : formats) {
      double us = 0, bytes = 0;
      if (!run(shape, f, s, &us, &bytes)) return 1;
      std::printf("%-18s %6s %8.1f %10.2f %10.0f\n", shape.name, f.name, bytes / 1e6, us, bytes / us / 1e3);
    }
  }
  cudaStreamDestroy(s);
  return 0;
}
