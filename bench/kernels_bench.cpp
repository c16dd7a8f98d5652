// CPU kernel benchmarks on TinyLlama-1.1B projection shapes (rows x cols of
// the weight matrix): float matmul (F32, BF16) and quantized matmul_q (I8,
// I4, group 32 symmetric, plus I4 group 128 asymmetric) for decode (n = 1)
// and prefill (n = 128).
//
//  decode:  reports bytes_per_second over the weight bytes read (values +
//           scales + zero points). Weight copies are rotated so that every
//           iteration reads from DRAM, like a real decode step that streams
//           the whole model ("cold"); "hot" runs reuse one copy, which may
//           stay in the last-level cache.
//  prefill: reports FLOP/s = 2 * rows * cols * n per call (quantize_acts not
//           included; it has its own benchmark).
//  read_bandwidth: a plain parallel sum of a large array with the same pool,
//           the ceiling the decode numbers should be compared with.
//
// Threads: LLM_BENCH_THREADS (default: all online cores). ISA: LLM_BENCH_ISA
// = scalar | avx2 | avx512 | avx512vnni | neon | neon-dotprod (default: best
// available). matmul_q gets the work area a session gives it unless
// LLM_BENCH_NO_WORK is set.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quant.h"
#include "runtime/thread_pool.h"

namespace {

using llm::DType;
using llm::ThreadPool;
namespace cpu = llm::cpu;

struct Shape {
  const char *name;
  int64_t rows, cols;
};

const Shape kShapes[] = {
    {"q_o_proj", 2048, 2048}, {"k_v_proj", 256, 2048}, {"gate_up", 5632, 2048},
    {"down", 2048, 5632},     {"lm_head", 32000, 2048},
};

// Decode reads at least this much distinct weight memory per pass over the
// copies: several times a server's last-level cache.
constexpr size_t kColdBytes = size_t{256} << 20;

ThreadPool &pool() {
  static ThreadPool p([] {
    const char *s = std::getenv("LLM_BENCH_THREADS");
    return s ? std::atoi(s) : 0;
  }());
  return p;
}

// 64-byte aligned storage, filled with a cheap deterministic pattern.
class Buffer {
 public:
  explicit Buffer(size_t bytes) : bytes_(bytes), raw_(new unsigned char[bytes + 64]) {
    const auto addr = reinterpret_cast<uintptr_t>(raw_.get());
    ptr_ = raw_.get() + (64 - addr % 64) % 64;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < bytes; ++i) {
      h = (h ^ static_cast<uint32_t>(i)) * 16777619u;
      ptr_[i] = static_cast<unsigned char>(h >> 24);
    }
  }
  unsigned char *data() const { return ptr_; }
  size_t size() const { return bytes_; }

 private:
  size_t bytes_;
  std::unique_ptr<unsigned char[]> raw_;
  unsigned char *ptr_;
};

// Fills n floats (or halves / bf16 of floats) with small normal values.
void fill_floats(void *dst, DType type, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(static_cast<int>(i * 2654435761u % 2001) - 1000) * 1e-4f;
    if (type == DType::F32) static_cast<float *>(dst)[i] = v;
    else if (type == DType::F16) static_cast<uint16_t *>(dst)[i] = cpu::f32_to_f16(v);
    else static_cast<uint16_t *>(dst)[i] = cpu::f32_to_bf16(v);
  }
}

// LLM_BENCH_ISA=scalar|avx2|avx512|avx512vnni|neon|neon-dotprod (default:
// the best path); an unsupported name falls back to the best path.
void select_isa() {
  const char *s = std::getenv("LLM_BENCH_ISA");
  cpu::Isa want = cpu::Isa::Auto;
  for (cpu::Isa isa : {cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::Avx512, cpu::Isa::Avx512Vnni, cpu::Isa::Neon,
                       cpu::Isa::NeonDot})
    if (s && std::string(s) == cpu::isa_name(isa)) want = isa;
  cpu::set_isa(want);
}

size_t copies_for(size_t bytes, bool cold) { return cold ? std::max<size_t>(1, (kColdBytes + bytes - 1) / bytes) : 1; }

void report(benchmark::State &state, const Shape &s, int64_t n, size_t weight_bytes) {
  const auto iters = static_cast<double>(state.iterations());
  if (n == 1) {
    state.SetBytesProcessed(static_cast<int64_t>(weight_bytes * state.iterations()));
  } else {
    state.counters["FLOP/s"] =
        benchmark::Counter(2.0 * static_cast<double>(s.rows * s.cols * n) * iters, benchmark::Counter::kIsRate);
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n) * iters, benchmark::Counter::kIsRate);
  }
}

// ---- float matmul ------------------------------------------------------------------

void bm_matmul(benchmark::State &state, Shape s, DType type, int64_t n, bool cold) {
  select_isa();
  const size_t elem = type == DType::F32 ? 4 : 2;
  const size_t wbytes = static_cast<size_t>(s.rows * s.cols) * elem;
  std::vector<std::unique_ptr<Buffer>> copies;
  for (size_t c = 0; c < copies_for(wbytes, cold && n == 1); ++c) {
    copies.push_back(std::make_unique<Buffer>(wbytes));
    fill_floats(copies.back()->data(), type, static_cast<size_t>(s.rows * s.cols));
  }
  std::vector<float> x(static_cast<size_t>(n * s.cols)), out(static_cast<size_t>(n * s.rows));
  fill_floats(x.data(), DType::F32, x.size());
  size_t c = 0;
  for (auto _ : state) {
    cpu::matmul(pool(), x.data(), n, s.cols, s.cols, copies[c]->data(), type, s.rows, nullptr, out.data(), s.rows);
    benchmark::DoNotOptimize(out.data());
    c = (c + 1) % copies.size();
  }
  report(state, s, n, wbytes);
}

// ---- quantized matmul --------------------------------------------------------------------

struct QuantCopy {
  std::unique_ptr<Buffer> q, scales, zeros;
  cpu::QuantWeight w;
};

QuantCopy make_quant(const Shape &s, DType type, int64_t group, bool asym) {
  QuantCopy c;
  const int64_t groups = s.cols / group;
  c.q = std::make_unique<Buffer>(static_cast<size_t>(s.rows * (type == DType::I8 ? s.cols : s.cols / 2)));
  c.scales = std::make_unique<Buffer>(static_cast<size_t>(s.rows * groups * 2));
  fill_floats(c.scales->data(), DType::F16, static_cast<size_t>(s.rows * groups));
  if (asym) {
    c.zeros = std::make_unique<Buffer>(static_cast<size_t>(s.rows * groups));
    if (type == DType::I4)
      for (size_t i = 0; i < c.zeros->size(); ++i) c.zeros->data()[i] &= 15;
  }
  c.w.dtype = type;
  c.w.rows = s.rows;
  c.w.cols = s.cols;
  c.w.group = group;
  c.w.q = c.q->data();
  c.w.scales = reinterpret_cast<const uint16_t *>(c.scales->data());
  c.w.zeros = asym ? c.zeros->data() : nullptr;
  return c;
}

size_t quant_bytes(const QuantCopy &c) {
  return c.q->size() + c.scales->size() + (c.zeros ? c.zeros->size() : 0);
}

void bm_matmul_q(benchmark::State &state, Shape s, DType type, int64_t group, bool asym, int64_t n, bool cold) {
  select_isa();
  std::vector<QuantCopy> copies;
  copies.push_back(make_quant(s, type, group, asym));
  const size_t wbytes = quant_bytes(copies[0]);
  while (copies.size() < copies_for(wbytes, cold && n == 1)) copies.push_back(make_quant(s, type, group, asym));

  std::vector<float> x(static_cast<size_t>(n * s.cols)), out(static_cast<size_t>(n * s.rows));
  fill_floats(x.data(), DType::F32, x.size());
  Buffer acts(cpu::quantized_acts_bytes(n, s.cols));
  cpu::quantize_acts(pool(), x.data(), n, s.cols, s.cols, acts.data());
  // The work area a session provides (the runtime's CPU backend does).
  Buffer work(std::max<size_t>(1, cpu::matmul_q_work_bytes(pool().size(), n)));
  void *w = cpu::matmul_q_work_bytes(pool().size(), n) ? work.data() : nullptr;
  if (std::getenv("LLM_BENCH_NO_WORK")) w = nullptr;
  size_t c = 0;
  for (auto _ : state) {
    cpu::matmul_q(pool(), acts.data(), n, copies[c].w, nullptr, out.data(), s.rows, w);
    benchmark::DoNotOptimize(out.data());
    c = (c + 1) % copies.size();
  }
  report(state, s, n, wbytes);
}

void bm_quantize_acts(benchmark::State &state, int64_t n, int64_t k) {
  select_isa();
  std::vector<float> x(static_cast<size_t>(n * k));
  fill_floats(x.data(), DType::F32, x.size());
  Buffer acts(cpu::quantized_acts_bytes(n, k));
  for (auto _ : state) {
    cpu::quantize_acts(pool(), x.data(), n, k, k, acts.data());
    benchmark::DoNotOptimize(acts.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(x.size() * 4) * state.iterations());
}

// ---- memory read bandwidth -------------------------------------------------------------

// Sum of 64-bit words over 4 interleaved streams (the quarters of [p, p+n)),
// with independent accumulators: a pure streaming read. Several streams per
// core, like the 4-row decode tiles, draw more bandwidth than one.
uint64_t sum_words(const uint64_t *p, size_t n) {
  const size_t q = n / 4;
  const uint64_t *s0 = p, *s1 = p + q, *s2 = p + 2 * q, *s3 = p + 3 * q;
  uint64_t a[8] = {};
  size_t i = 0;
  for (; i + 2 <= q; i += 2) {
    a[0] += s0[i], a[1] += s0[i + 1], a[2] += s1[i], a[3] += s1[i + 1];
    a[4] += s2[i], a[5] += s2[i + 1], a[6] += s3[i], a[7] += s3[i + 1];
  }
  for (size_t k = 0; k < 4; ++k)  // leftovers: an odd quarter's last word, then n % 4 words
    for (size_t j = i; j < q; ++j) a[0] += p[k * q + j];
  for (size_t r = 4 * q; r < n; ++r) a[0] += p[r];
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

void bm_read_bandwidth(benchmark::State &state, size_t mib) {
  const Buffer buf(mib << 20);
  const auto *words = reinterpret_cast<const uint64_t *>(buf.data());
  const size_t n_words = buf.size() / 8;
  // Tasks of 256 KiB, claimed dynamically like the kernels' row tasks.
  const size_t task_words = (size_t{256} << 10) / 8;
  const int64_t tasks = static_cast<int64_t>((n_words + task_words - 1) / task_words);
  std::vector<uint64_t> partial(static_cast<size_t>(tasks));
  for (auto _ : state) {
    pool().parallel_for(tasks, [&](int64_t t, int) {
      const size_t w0 = static_cast<size_t>(t) * task_words;
      partial[static_cast<size_t>(t)] = sum_words(words + w0, std::min(task_words, n_words - w0));
    });
    benchmark::DoNotOptimize(partial.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(buf.size()) * state.iterations());
}

std::string shape_name(const Shape &s) {
  return std::string(s.name) + "/" + std::to_string(s.rows) + "x" + std::to_string(s.cols);
}

// Wall-clock time (the pool's threads do the work, so the caller's CPU time
// means little), and best / worst of the repetitions next to mean and
// median when run with --benchmark_repetitions: on a shared machine the
// best run is the closest to what the hardware can do.
void configure(benchmark::internal::Benchmark *b) {
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
  b->ComputeStatistics("min", [](const std::vector<double> &v) { return *std::min_element(v.begin(), v.end()); });
  b->ComputeStatistics("max", [](const std::vector<double> &v) { return *std::max_element(v.begin(), v.end()); });
}

template <class... Args>
void add(const std::string &name, Args &&...args) {
  configure(benchmark::RegisterBenchmark(name.c_str(), std::forward<Args>(args)...));
}

void register_all() {
  for (const Shape &s : kShapes)
    for (int64_t n : {1, 8, 128}) {  // one token, a batch of sessions, a prompt
      const std::string suffix = shape_name(s) + "/n=" + std::to_string(n);
      const bool decode = n == 1;
      for (bool cold : {true, false}) {
        if (!decode && !cold) continue;
        const std::string tag = decode ? (cold ? "/cold" : "/hot") : "";
        add("matmul/f32/" + suffix + tag, bm_matmul, s, DType::F32, n, cold);
        add("matmul/bf16/" + suffix + tag, bm_matmul, s, DType::BF16, n, cold);
        add("matmul_q/i8_g32/" + suffix + tag, bm_matmul_q, s, DType::I8, int64_t{32}, false, n, cold);
        add("matmul_q/i4_g32/" + suffix + tag, bm_matmul_q, s, DType::I4, int64_t{32}, false, n, cold);
        add("matmul_q/i4_g128_asym/" + suffix + tag, bm_matmul_q, s, DType::I4, int64_t{128}, true, n, cold);
      }
    }
  for (int64_t n : {1, 128}) add("quantize_acts/k=2048/n=" + std::to_string(n), bm_quantize_acts, n, int64_t{2048});
  for (size_t mib : {8, 1024}) add("read_bandwidth/" + std::to_string(mib) + "MiB", bm_read_bandwidth, mib);
}

}  // namespace

int main(int argc, char **argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
