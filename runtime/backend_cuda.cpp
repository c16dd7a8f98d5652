// CUDA backend: weights in one device allocation per model (or used in place
// from the mapped file on an integrated GPU that can read it), session memory
// from the session's own allocations, operations on one stream per model
// through the kernels of kernels/cuda and cuBLAS.
//
// Steps. The host inputs of a forward step (token ids, RoPE tables, segment
// positions, KV page tables) are packed into one pinned buffer and copied to
// the device in one transfer (begin_step); operations that are given host
// pointers into those inputs use the device copy. A decode step (one row,
// one sequence) is captured into a CUDA graph the first time a session runs
// it, and replayed for every later token: the graph begins with the copy of
// the inputs, so a replay is one graph launch. A graph is dropped when the
// memory it refers to is freed or the staging buffers are replaced.
//
// Threads. Sessions of one model share the stream: a step holds the backend's
// lock from begin_step to end_step, and the other entry points take it too.
#include <cstdint>
#include <cstring>

#include "format/error.h"
#include "runtime/backend.h"
#include "runtime/backend_cuda.h"

#if defined(LLM_HAVE_CUDA)
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "kernels/cuda/kernels.h"
#endif

namespace llm {

#if !defined(LLM_HAVE_CUDA)

bool cuda_backend_built() { return false; }
std::unique_ptr<Backend> make_cuda_backend(int, const ModelFile &) {
  fail(LLM_ERR_UNSUPPORTED, "this build of libllm has no CUDA backend (configure with -DLLM_CUDA=ON)");
}
bool cuda_backend_stats(const Backend &, CudaStats *) { return false; }
int cuda_device_count() { return 0; }

#else

namespace {

[[noreturn]] void fail_cuda(cudaError_t e, const std::string &what) {
  const llm_status st = e == cudaErrorMemoryAllocation ? LLM_ERR_OUT_OF_MEMORY
                        : (e == cudaErrorNoDevice || e == cudaErrorInvalidDevice || e == cudaErrorInsufficientDriver)
                            ? LLM_ERR_UNSUPPORTED
                            : LLM_ERR_INTERNAL;
  fail(st, what + ": CUDA error " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) fail_cuda(e, what);
}
void check_blas(cublasStatus_t st, const char *what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    fail(st == CUBLAS_STATUS_ALLOC_FAILED ? LLM_ERR_OUT_OF_MEMORY : LLM_ERR_INTERNAL,
         std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(st)));
}

constexpr size_t kAlign = 256;
size_t align_up(size_t n, size_t a = kAlign) { return (n + a - 1) / a * a; }
constexpr size_t kBlasWorkspace = size_t{32} << 20;
constexpr int64_t kTileElements = int64_t{48} << 20;  // bf16 dequantization tile for cuBLAS products
constexpr size_t kMaxGraphs = 64;
static_assert(cuda::kMaxTopCandidates >= kMaxSampleCandidates, "the candidate buffers hold every request");
constexpr size_t kCandidateBytes = size_t{cuda::kMaxTopCandidates} * (sizeof(int32_t) + sizeof(float));

cuda::WType wtype(DType t) {
  switch (t) {
    case DType::F32: return cuda::WType::F32;
    case DType::F16: return cuda::WType::F16;
    case DType::BF16: return cuda::WType::BF16;
    case DType::I8: return cuda::WType::I8;
    case DType::I4: return cuda::WType::I4;
    default: fail(LLM_ERR_UNSUPPORTED, std::string("the CUDA backend cannot use weights of type ") + dtype_name(t));
  }
}

cuda::DevWeight dev(const Weight &w) {
  return cuda::DevWeight{wtype(w.dtype), w.rows, w.cols, w.group, w.data, w.scales, w.zeros};
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int ordinal, const ModelFile &file) : ordinal_(ordinal) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
      fail(LLM_ERR_UNSUPPORTED, "no CUDA device is available");
    if (ordinal < 0 || ordinal >= count)
      fail(LLM_ERR_UNSUPPORTED, "CUDA device " + std::to_string(ordinal) + " does not exist (" +
                                    std::to_string(count) + " device(s))");
    check(cudaSetDevice(ordinal), "selecting the CUDA device");
    check(cudaGetDeviceProperties(&prop_, ordinal), "reading the device properties");
    const HParams &h = file.meta().hparams;
    head_dim_ = h.head_dim;
    if (!file.meta().vocab_only && (head_dim_ % 8 != 0 || head_dim_ > cuda::kMaxHeadDim))
      fail(LLM_ERR_UNSUPPORTED, "the CUDA backend needs a head size that is a multiple of 8 and at most 512 (model: " +
                                    std::to_string(head_dim_) + ")");
    // An integrated GPU that reads pageable host memory uses the mapped file
    // in place (no second copy of the weights).
    int pageable = 0;
    cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, ordinal);
    zero_copy_ = prop_.integrated && pageable;

    size_t weights = 0;
    int64_t tile = 0;
    for (const TensorInfo &t : file.tensors()) {
      if (!zero_copy_) weights += align_up(t.size) + align_up(t.quant.scales_size) + align_up(t.quant.zeros_size);
      if (t.shape.size() == 2 && t.dtype != DType::F32 && t.dtype != DType::BF16)
        tile = std::max(tile, std::min(t.shape[0], std::max<int64_t>(1, kTileElements / t.shape[1])) * t.shape[1]);
    }
    tile_bytes_ = align_up(static_cast<size_t>(tile) * 2);
    const size_t total = weights + kBlasWorkspace + tile_bytes_ + kCandidateBytes;
    try {
      check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a CUDA stream");
      check_blas(cublasCreate(&blas_), "creating the cuBLAS handle");
      check_blas(cublasSetStream(blas_, stream_), "cuBLAS stream");
      arena_ = device_malloc(total, "the model's weights");
      weights_end_ = weights;
      check_blas(cublasSetWorkspace(blas_, arena_ + weights, kBlasWorkspace), "cuBLAS workspace");
      tile_ = arena_ + weights + kBlasWorkspace;
      candidates_ = tile_ + tile_bytes_;
      check(cudaMallocHost(&candidates_host_, kCandidateBytes), "allocating pinned memory for sampling");
    } catch (...) {
      release();
      throw;
    }
  }

  ~CudaBackend() override { release(); }

  const char *name() const override { return "cuda"; }

  Weight prepare_weight(const ModelFile &file, const TensorInfo &t) override {
    Weight w;
    w.dtype = t.dtype;
    w.rows = t.shape[0];
    w.cols = t.shape.size() > 1 ? t.shape[1] : 1;
    wtype(t.dtype);  // rejects types the kernels cannot read
    if (w.quantized()) has_quantized_ = true;
    if (t.dtype != DType::F32 && t.shape.size() == 2) has_low_precision_ = true;
    const uint8_t *data = file.data(t);
    const uint8_t *scales = t.quant.group_size ? file.data_at(t.quant.scales_offset) : nullptr;
    const uint8_t *zeros = t.quant.zeros_size ? file.data_at(t.quant.zeros_offset) : nullptr;
    if (t.quant.group_size) w.group = t.quant.group_size;
    if (zero_copy_) {
      w.data = data;
      w.scales = reinterpret_cast<const uint16_t *>(scales);
      w.zeros = zeros;
      return w;
    }
    w.data = upload(data, t.size);
    if (scales) w.scales = static_cast<const uint16_t *>(upload(scales, t.quant.scales_size));
    if (zeros) w.zeros = upload(zeros, t.quant.zeros_size);
    return w;
  }

  void *alloc(size_t bytes) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return device_malloc(bytes, "session memory");
  }

  void free(void *p) override {
    if (!p) return;
    std::lock_guard<std::recursive_mutex> lock(mu_);
    cudaStreamSynchronize(stream_);
    drop_graphs([p](const Graph &g) { return g.uses(p); });
    cudaFree(p);
  }

  size_t attention_scratch_floats(int64_t n_ctx, int64_t n_rows, int64_t n_heads, int64_t, int64_t head_dim) const override {
    return cuda::attention_partial_floats(n_rows, n_heads, head_dim, n_ctx);
  }

  size_t matmul_scratch_bytes(int64_t n, int64_t k) const override {
    const int64_t k32 = (k + 31) / 32 * 32;
    return std::max(cuda::quant_input_bytes(std::min<int64_t>(n, cuda::kGemvMaxRows), k32),
                    static_cast<size_t>(n * k) * 2) +
           kAlign;
  }

  void reserve_steps(int64_t n_batch, int64_t n_ctx) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (n_batch > 65535) fail_argument("the CUDA backend runs at most 65535 rows per step (n_batch)");
    max_batch_ = std::max(max_batch_, n_batch);
    max_ctx_ = std::max(max_ctx_, n_ctx);
    const size_t need = staging_bound(max_batch_, max_ctx_);
    if (need <= staging_cap_) return;
    cudaStreamSynchronize(stream_);
    drop_graphs([](const Graph &) { return true; });
    if (pinned_) cudaFreeHost(pinned_);
    if (staging_) cudaFree(staging_);
    pinned_ = nullptr;
    staging_ = nullptr;
    staging_cap_ = 0;
    check(cudaMallocHost(&pinned_, need), "allocating pinned staging memory");
    staging_ = device_malloc(need, "staging memory");
    staging_cap_ = need;
    ++generation_;
  }

  bool begin_step(const Step &step) override {
    mu_.lock();
    in_step_ = true;
    prepared_ = Prepared{};
    check(cudaStreamSynchronize(stream_), "waiting for the previous step");
    pack(step);
    // A decode step: one row per session, for one session or a batch that
    // the GEMV kernels take whole.
    const bool decode = step.n == static_cast<int64_t>(step.n_segments) && step.n <= cuda::kGemvMaxRows;
    if (decode) {
      for (const Graph &g : graphs_)
        if (g.matches(step, packed_bytes_, generation_)) {
          check(cudaGraphLaunch(g.exec, stream_), "replaying the decode step");
          ++stats_.graph_launches;
          return true;
        }
      check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "capturing the decode step");
      capturing_ = true;
    }
    check(cudaMemcpyAsync(staging_, pinned_, packed_bytes_, cudaMemcpyHostToDevice, stream_), "step inputs");
    return false;
  }

  void end_step(bool ok) override {
    if (!in_step_) return;
    in_step_ = false;
    std::unique_lock<std::recursive_mutex> lock(mu_, std::adopt_lock);
    prepared_ = Prepared{};
    if (!capturing_) return;
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    const cudaError_t e = cudaStreamEndCapture(stream_, &graph);
    if (!ok) {
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      return;
    }
    if (e != cudaSuccess) fail_cuda(e, "capturing the decode step");
    stats_.graph_kernels = count_kernels(graph);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (ie != cudaSuccess) fail_cuda(ie, "instantiating the decode step");
    if (graphs_.size() >= kMaxGraphs) {
      cudaGraphExecDestroy(graphs_.front().exec);
      graphs_.erase(graphs_.begin());
    }
    graphs_.push_back(Graph::of(step_, packed_bytes_, generation_, exec));
    ++stats_.graph_captures;
    check(cudaGraphLaunch(exec, stream_), "running the decode step");
    ++stats_.graph_launches;
  }

  void embed(const Weight &table, const int32_t *tokens, int64_t n, Act out) override {
    prepared_ = Prepared{};
    cuda::embed(dev(table), reinterpret_cast<const int32_t *>(staging_ + map_offset(tokens, step_.tokens, off_tokens_)),
                n, out.data, out.stride, stream_);
  }

  void rmsnorm(Act x, const Weight &w, float eps, Act out, void *scratch) override {
    const cuda::Prepare p = prepare_kind(x.rows, x.cols);
    cuda::rmsnorm(x.data, x.stride, static_cast<const float *>(w.data), x.rows, x.cols, eps, out.data, out.stride, p,
                  scratch, stream_);
    prepared_ = Prepared{out.data, out.rows, out.cols, scratch, p};
  }

  void matmul(Act x, const Weight &w, const Weight *bias, Act out, void *scratch) override {
    const Product p{&w, bias, out};
    matmuls(x, &p, 1, scratch);
  }

  void matmuls(Act x, const Product *products, int count, void *scratch) override {
    const int64_t n = x.rows;
    if (n <= cuda::kGemvMaxRows) {
      cuda::GemvJob jobs[cuda::kMaxGemvJobs];
      for (int first = 0; first < count; first += cuda::kMaxGemvJobs) {
        const int m = std::min(count - first, cuda::kMaxGemvJobs);
        for (int i = 0; i < m; ++i) {
          const Product &p = products[first + i];
          jobs[i] = cuda::GemvJob{dev(*p.w), bias_of(p.bias), p.out.data, p.out.stride, 0};
        }
        gemv(x, jobs, m, scratch);
      }
      return;
    }
    for (int i = 0; i < count; ++i) gemm(x, products[i], scratch);
  }

  void matmul_add(Act x, const Weight &w, Act acc, Act, void *scratch) override {
    if (x.rows > cuda::kGemvMaxRows) return gemm(x, Product{&w, nullptr, acc}, scratch, true);  // cuBLAS beta = 1
    cuda::GemvJob job{dev(w), nullptr, acc.data, acc.stride, 1};
    gemv(x, &job, 1, scratch);
  }

  void rope(Act x, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin) override {
    prepared_ = Prepared{};
    cuda::rope(x.data, x.stride, x.rows, n_heads, head_dim, device_floats(cos, step_.cos, off_cos_),
               device_floats(sin, step_.sin, off_sin_), stream_);
  }

  void rope_store_kv(const KvSequence &kv, int64_t layer, int64_t pos0, Act q, Act k, Act v, int64_t n_heads,
                     int64_t, const float *cos, const float *sin) override {
    prepared_ = Prepared{};
    const int seg = segment_of(kv, pos0);
    cuda::rope_store_kv(kv_layer(kv, layer), step_ints(), seg, q.data, q.stride, k.data, k.stride, v.data, v.stride,
                        q.rows, n_heads, device_floats(cos, step_.cos, off_cos_),
                        device_floats(sin, step_.sin, off_sin_), stream_);
  }

  void store_kv(const KvSequence &kv, int64_t layer, int64_t pos0, Act k, Act v) override {
    prepared_ = Prepared{};
    const int seg = segment_of(kv, pos0);
    cuda::rope_store_kv(kv_layer(kv, layer), step_ints(), seg, nullptr, 0, k.data, k.stride, v.data, v.stride, k.rows,
                        0, nullptr, nullptr, stream_);
  }

  void attention(const KvSequence &kv, int64_t layer, Act q, int64_t n_heads, int64_t pos0, int64_t window,
                 float scale, Act out, float *scratch, void *product_scratch) override {
    prepared_ = Prepared{};
    const int seg = segment_of(kv, pos0);
    // The output goes to the output projection quantized when it is the
    // whole step's input of that product (one segment) and a GEMV reads it.
    const bool quantize = step_.n_segments == 1 && out.rows == step_.n &&
                          prepare_kind(out.rows, out.cols) == cuda::Prepare::Int8 && head_dim_ % 32 == 0;
    cuda::attention(kv_layer(kv, layer), step_ints(), seg, q.data, q.stride, q.rows, n_heads, kv.n_ctx(), window,
                    scale, out.data, out.stride, scratch, stream_, quantize ? product_scratch : nullptr);
    if (quantize) prepared_ = Prepared{out.data, out.rows, out.cols, product_scratch, cuda::Prepare::Int8};
  }

  void kv_shift(const KvSequence &kv, int64_t dst, int64_t src, int64_t n, const float *cos,
                const float *sin) override {
    if (n <= 0) return;
    std::lock_guard<std::recursive_mutex> lock(mu_);
    check(cudaStreamSynchronize(stream_), "waiting for the stream");
    const KvGeometry &g = kv.geometry();
    const size_t half = static_cast<size_t>(g.head_dim / 2);
    const size_t pages = static_cast<size_t>(pages_for(kv.n_ctx()));
    const size_t bytes = 2 * half * sizeof(float) + pages * sizeof(int32_t);
    if (bytes > staging_cap_) fail(LLM_ERR_INTERNAL, "staging memory was not reserved for this session");
    std::memcpy(pinned_, cos, half * sizeof(float));
    std::memcpy(pinned_ + half * sizeof(float), sin, half * sizeof(float));
    std::memcpy(pinned_ + 2 * half * sizeof(float), kv.pages(), pages * sizeof(int32_t));
    check(cudaMemcpyAsync(staging_, pinned_, bytes, cudaMemcpyHostToDevice, stream_), "shift inputs");
    const float *dcos = reinterpret_cast<const float *>(staging_);
    cuda::kv_shift(kv_layer(kv, 0), g.n_layers, static_cast<int64_t>(g.layer_stride()),
                   reinterpret_cast<const int32_t *>(staging_ + 2 * half * sizeof(float)), dst, src, n, dcos,
                   dcos + half, stream_);
    check(cudaStreamSynchronize(stream_), "shifting the KV cache");
  }

  void silu_mul(Act gate, Act up, void *scratch) override {
    const cuda::Prepare p = prepare_kind(gate.rows, gate.cols);
    cuda::silu_mul(gate.data, gate.stride, up.data, up.stride, gate.rows, gate.cols, p, scratch, stream_);
    prepared_ = Prepared{gate.data, gate.rows, gate.cols, scratch, p};
  }

  void add(Act x, Act y) override {
    prepared_ = Prepared{};
    cuda::add(x.data, x.stride, y.data, y.stride, x.rows, x.cols, stream_);
  }

  void read(Act src, float *dst) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    check(cudaMemcpy2DAsync(dst, static_cast<size_t>(src.cols) * sizeof(float), src.data,
                            static_cast<size_t>(src.stride) * sizeof(float),
                            static_cast<size_t>(src.cols) * sizeof(float), static_cast<size_t>(src.rows),
                            cudaMemcpyDeviceToHost, stream_),
          "reading results");
    check(cudaStreamSynchronize(stream_), "reading results");
  }

  // The selection runs on the device; only the n (index, value) pairs cross.
  bool top_candidates(const float *row, int64_t count, int n, int32_t *ids, float *values) override {
    if (n <= 0 || n > cuda::kMaxTopCandidates || n > count || count > INT32_MAX) return false;
    std::lock_guard<std::recursive_mutex> lock(mu_);
    const size_t half = kCandidateBytes / 2;  // ids, then values
    cuda::top_candidates(row, count, n, reinterpret_cast<int32_t *>(candidates_),
                         reinterpret_cast<float *>(candidates_ + half), stream_);
    check(cudaMemcpyAsync(candidates_host_, candidates_, kCandidateBytes, cudaMemcpyDeviceToHost, stream_),
          "reading sampling candidates");
    check(cudaStreamSynchronize(stream_), "reading sampling candidates");
    std::memcpy(ids, candidates_host_, static_cast<size_t>(n) * sizeof(int32_t));
    std::memcpy(values, candidates_host_ + half, static_cast<size_t>(n) * sizeof(float));
    return true;
  }

  void copy(void *dst, const void *src, size_t bytes) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    prepared_ = Prepared{};
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copying device memory");
  }
  void to_host(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    check(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToHost, stream_),
          "copying to the host");
    check(cudaStreamSynchronize(stream_), "copying to the host");
  }
  void from_host(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    prepared_ = Prepared{};
    check(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyHostToDevice, stream_),
          "copying to the device");
    check(cudaStreamSynchronize(stream_), "copying to the device");
  }

  CudaStats stats() const {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return stats_;
  }

 private:
  // A recorded decode step: the sessions (backend blocks), KV sequences and
  // KV pools of its segments, in order, and the layout of its inputs.
  struct Graph {
    const void *owner;
    size_t n_segments;
    const void *owners[cuda::kGemvMaxRows];
    const KvSequence *kvs[cuda::kGemvMaxRows];
    const void *pools[cuda::kGemvMaxRows];
    size_t bytes;
    uint64_t generation;
    cudaGraphExec_t exec;

    static Graph of(const Step &step, size_t bytes, uint64_t generation, cudaGraphExec_t exec) {
      Graph g{step.owner, step.n_segments, {}, {}, {}, bytes, generation, exec};
      for (size_t i = 0; i < step.n_segments; ++i) {
        g.owners[i] = step.segments[i].owner;
        g.kvs[i] = step.segments[i].kv;
        g.pools[i] = step.segments[i].kv->pool().base();
      }
      return g;
    }
    bool matches(const Step &step, size_t packed_bytes, uint64_t gen) const {
      if (owner != step.owner || n_segments != step.n_segments || bytes != packed_bytes || generation != gen)
        return false;
      for (size_t i = 0; i < n_segments; ++i)
        if (owners[i] != step.segments[i].owner || kvs[i] != step.segments[i].kv ||
            pools[i] != step.segments[i].kv->pool().base())
          return false;
      return true;
    }
    // Whether the graph reads or writes the backend block p.
    bool uses(const void *p) const {
      if (owner == p) return true;
      for (size_t i = 0; i < n_segments; ++i)
        if (owners[i] == p || pools[i] == p) return true;
      return false;
    }
  };
  // The last rmsnorm / silu_mul output and how it was left in scratch.
  struct Prepared {
    const float *x = nullptr;
    int64_t rows = 0, cols = 0;
    void *scratch = nullptr;
    cuda::Prepare kind = cuda::Prepare::None;
    bool matches(const Act &a, void *s, cuda::Prepare k) const {
      return x == a.data && rows == a.rows && cols == a.cols && scratch == s && kind == k;
    }
  };

  static uint64_t count_kernels(cudaGraph_t graph) {
    size_t n = 0;
    if (cudaGraphGetNodes(graph, nullptr, &n) != cudaSuccess) return 0;
    std::vector<cudaGraphNode_t> nodes(n);
    if (cudaGraphGetNodes(graph, nodes.data(), &n) != cudaSuccess) return 0;
    uint64_t kernels = 0;
    for (cudaGraphNode_t node : nodes) {
      cudaGraphNodeType type;
      if (cudaGraphNodeGetType(node, &type) == cudaSuccess && type == cudaGraphNodeTypeKernel) ++kernels;
    }
    return kernels;
  }

  uint8_t *device_malloc(size_t bytes, const char *what) {
    void *p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
      cudaGetLastError();
      if (e == cudaErrorMemoryAllocation)
        fail(LLM_ERR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(bytes) + " bytes of device memory for " +
                                        what + " on " + prop_.name);
      fail_cuda(e, std::string("allocating ") + what);
    }
    ++stats_.device_allocs;
    return static_cast<uint8_t *>(p);
  }

  void *upload(const void *src, size_t bytes) {
    if (bytes == 0) return nullptr;
    if (arena_used_ + align_up(bytes) > weights_end_) fail(LLM_ERR_INTERNAL, "weights exceed their reservation");
    uint8_t *dst = arena_ + arena_used_;
    arena_used_ += align_up(bytes);
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copying weights to the device");
    return dst;
  }

  void release() {
    drop_graphs([](const Graph &) { return true; });
    if (blas_) cublasDestroy(blas_);
    if (stream_) cudaStreamDestroy(stream_);
    if (arena_) cudaFree(arena_);
    if (pinned_) cudaFreeHost(pinned_);
    if (candidates_host_) cudaFreeHost(candidates_host_);
    if (staging_) cudaFree(staging_);
    blas_ = nullptr;
    stream_ = nullptr;
    arena_ = nullptr;
    pinned_ = nullptr;
    candidates_host_ = nullptr;
    staging_ = nullptr;
  }

  template <class Pred>
  void drop_graphs(Pred pred) {
    for (size_t i = 0; i < graphs_.size();) {
      if (pred(graphs_[i])) {
        cudaGraphExecDestroy(graphs_[i].exec);
        graphs_.erase(graphs_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
  }

  // ---- step inputs: [segments][tokens][cos][sin][page tables] ----
  size_t staging_bound(int64_t n_batch, int64_t n_ctx) const {
    const size_t b = static_cast<size_t>(n_batch), half = static_cast<size_t>(head_dim_ / 2);
    return align_up(b * sizeof(cuda::SegmentDesc), 16) + align_up(b * 4, 16) + 2 * align_up(b * half * 4, 16) +
           b * static_cast<size_t>(pages_for(n_ctx)) * 4 + 64;
  }

  void pack(const Step &step) {
    const int64_t half = step.half;
    size_t off = 0;
    auto place = [&](size_t bytes) {
      const size_t at = off;
      off = align_up(off + bytes, 16);
      return at;
    };
    const size_t segs = place(step.n_segments * sizeof(cuda::SegmentDesc));
    off_tokens_ = place(static_cast<size_t>(step.n) * sizeof(int32_t));
    off_cos_ = place(static_cast<size_t>(step.n * half) * sizeof(float));
    off_sin_ = place(static_cast<size_t>(step.n * half) * sizeof(float));
    size_t pages_at = off;
    size_t need = off;
    for (size_t s = 0; s < step.n_segments; ++s) need += static_cast<size_t>(pages_for(step.segments[s].kv->n_ctx())) * 4;
    if (need > staging_cap_) fail(LLM_ERR_INTERNAL, "staging memory was not reserved for this step");
    auto *descs = reinterpret_cast<cuda::SegmentDesc *>(pinned_ + segs);
    for (size_t s = 0; s < step.n_segments; ++s) {
      const StepSegment &sg = step.segments[s];
      const size_t n_pages = static_cast<size_t>(pages_for(sg.kv->n_ctx()));
      descs[s] = cuda::SegmentDesc{static_cast<int32_t>(sg.row0), static_cast<int32_t>(sg.n),
                                   static_cast<int32_t>(sg.pos0), static_cast<int32_t>(pages_at / 4)};
      std::memcpy(pinned_ + pages_at, sg.kv->pages(), n_pages * 4);
      pages_at += n_pages * 4;
    }
    std::memcpy(pinned_ + off_tokens_, step.tokens, static_cast<size_t>(step.n) * sizeof(int32_t));
    std::memcpy(pinned_ + off_cos_, step.cos, static_cast<size_t>(step.n * half) * sizeof(float));
    std::memcpy(pinned_ + off_sin_, step.sin, static_cast<size_t>(step.n * half) * sizeof(float));
    packed_bytes_ = pages_at;
    step_ = step;
  }

  // Device address of a host pointer into one of the step's input arrays.
  template <class T>
  size_t map_offset(const T *p, const T *base, size_t off) const {
    if (!in_step_ || p < base) fail(LLM_ERR_INTERNAL, "a CUDA operation was given inputs outside its step");
    return off + static_cast<size_t>(p - base) * sizeof(T);
  }
  const float *device_floats(const float *p, const float *base, size_t off) const {
    return reinterpret_cast<const float *>(staging_ + map_offset(p, base, off));
  }
  const int32_t *step_ints() const { return reinterpret_cast<const int32_t *>(staging_); }
  int segment_of(const KvSequence &kv, int64_t pos0) const {
    if (in_step_)
      for (size_t s = 0; s < step_.n_segments; ++s)
        if (step_.segments[s].kv == &kv && step_.segments[s].pos0 == pos0) return static_cast<int>(s);
    fail(LLM_ERR_INTERNAL, "a CUDA KV operation was given a sequence outside its step");
  }

  cuda::KvLayer kv_layer(const KvSequence &kv, int64_t layer) const {
    const KvGeometry &g = kv.geometry();
    return cuda::KvLayer{static_cast<cuda::KvFormat>(g.type),
                         static_cast<int32_t>(g.head_dim),
                         static_cast<int32_t>(g.row_bytes()),
                         static_cast<int32_t>(g.n_kv_heads),
                         static_cast<int64_t>(g.page_bytes()),
                         layer * static_cast<int64_t>(g.layer_stride()),
                         static_cast<int64_t>(g.kind_stride()),
                         static_cast<int64_t>(g.head_stride()),
                         kv.pool().base()};
  }

  static const float *bias_of(const Weight *b) {
    return b && b->present() ? static_cast<const float *>(b->data) : nullptr;
  }

  // How rmsnorm / silu_mul leave a matmul input of this shape.
  cuda::Prepare prepare_kind(int64_t rows, int64_t cols) const {
    if (rows <= cuda::kGemvMaxRows) return has_quantized_ && cols % 32 == 0 ? cuda::Prepare::Int8 : cuda::Prepare::None;
    return has_low_precision_ ? cuda::Prepare::Bf16 : cuda::Prepare::None;
  }

  void gemv(Act x, cuda::GemvJob *jobs, int n_jobs, void *scratch) {
    bool quantized = false;
    for (int i = 0; i < n_jobs; ++i)
      quantized = quantized || jobs[i].w.type == cuda::WType::I8 || jobs[i].w.type == cuda::WType::I4;
    if (quantized && !prepared_.matches(x, scratch, cuda::Prepare::Int8)) {
      if (x.cols % 32 != 0) fail(LLM_ERR_INTERNAL, "quantized product with an input width not a multiple of 32");
      cuda::quantize_input(x.data, x.stride, x.rows, x.cols, scratch, stream_);
      prepared_ = Prepared{x.data, x.rows, x.cols, scratch, cuda::Prepare::Int8};
    }
    cuda::gemv(jobs, n_jobs, x.rows, x.cols, x.data, x.stride, quantized ? scratch : nullptr, stream_);
  }

  // Products of more rows: cuBLAS on bf16 (fp32 weights: fp32), the weight
  // dequantized tile by tile when it is not stored in bf16.
  // accumulate: out += x · Wᵀ (the product's bias is then not added).
  void gemm(Act x, const Product &p, void *scratch, bool accumulate = false) {
    const Weight &w = *p.w;
    const int64_t n = x.rows, k = x.cols;
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    if (w.dtype == DType::F32) {
      check_blas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.rows), static_cast<int>(n),
                              static_cast<int>(k), &one, w.data, CUDA_R_32F, static_cast<int>(k), x.data, CUDA_R_32F,
                              static_cast<int>(x.stride), &beta, p.out.data, CUDA_R_32F,
                              static_cast<int>(p.out.stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "matrix product");
    } else {
      if (!prepared_.matches(x, scratch, cuda::Prepare::Bf16)) {
        cuda::to_bf16(x.data, x.stride, n, k, scratch, stream_);
        prepared_ = Prepared{x.data, x.rows, x.cols, scratch, cuda::Prepare::Bf16};
      }
      const int64_t tile_rows =
          w.dtype == DType::BF16 ? w.rows : std::max<int64_t>(1, static_cast<int64_t>(tile_bytes_ / 2) / k);
      for (int64_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
        const int64_t m = std::min(tile_rows, w.rows - r0);
        const void *a = static_cast<const uint8_t *>(w.data) + r0 * k * 2;
        if (w.dtype != DType::BF16) {
          cuda::dequantize_rows(dev(w), r0, m, tile_, false, stream_);
          a = tile_;
        }
        check_blas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
                                static_cast<int>(k), &one, a, CUDA_R_16BF, static_cast<int>(k), scratch, CUDA_R_16BF,
                                static_cast<int>(k), &beta, p.out.data + r0, CUDA_R_32F,
                                static_cast<int>(p.out.stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "matrix product");
      }
    }
    if (const float *b = bias_of(p.bias); b && !accumulate) cuda::add_bias(p.out.data, p.out.stride, b, n, w.rows, stream_);
  }

  int ordinal_ = 0;
  cudaDeviceProp prop_{};
  int64_t head_dim_ = 0;
  bool zero_copy_ = false;
  bool has_quantized_ = false, has_low_precision_ = false;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  uint8_t *arena_ = nullptr;
  size_t arena_used_ = 0, weights_end_ = 0;
  uint8_t *tile_ = nullptr;
  size_t tile_bytes_ = 0;
  // Sampling candidates: ids then values, on the device (in the arena) and in
  // pinned host memory.
  uint8_t *candidates_ = nullptr, *candidates_host_ = nullptr;

  mutable std::recursive_mutex mu_;
  uint8_t *pinned_ = nullptr, *staging_ = nullptr;
  size_t staging_cap_ = 0;
  int64_t max_batch_ = 0, max_ctx_ = 0;
  uint64_t generation_ = 0;
  bool in_step_ = false, capturing_ = false;
  Step step_{};
  size_t off_tokens_ = 0, off_cos_ = 0, off_sin_ = 0, packed_bytes_ = 0;
  Prepared prepared_;
  std::vector<Graph> graphs_;
  CudaStats stats_;
};

}  // namespace

bool cuda_backend_built() { return true; }

std::unique_ptr<Backend> make_cuda_backend(int ordinal, const ModelFile &file) {
  return std::make_unique<CudaBackend>(ordinal, file);
}

bool cuda_backend_stats(const Backend &backend, CudaStats *out) {
  const auto *b = dynamic_cast<const CudaBackend *>(&backend);
  if (!b) return false;
  *out = b->stats();
  return true;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

#endif

}  // namespace llm
