// The interface between the forward pass and the hardware. The forward pass
// (runtime/forward.cpp) is written once as a sequence of these operations;
// each backend implements them for its own memory (host memory for the CPU
// backend; device memory for a GPU backend). The forward pass never reads or
// writes activation memory itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "format/model_file.h"
#include "runtime/kv_cache.h"

namespace llm {

// A weight as a backend sees it: a view into the mapped file on the CPU, or a
// device copy on a GPU. 2-D weights are [rows][cols] (rows = output features).
struct Weight {
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;       // 1 for vectors
  const void *data = nullptr;
  // Group-quantized types (I8, I4): see kernels/cpu/quant.h for the layout.
  int64_t group = 0;
  const uint16_t *scales = nullptr;  // f16
  const void *zeros = nullptr;       // nullptr: symmetric
  bool present() const { return data != nullptr; }
  bool quantized() const { return dtype == DType::I8 || dtype == DType::I4; }
  // Rows [first, first + count) of a 2-D weight, as a weight of its own.
  Weight rows_view(int64_t first, int64_t count) const {
    Weight w = *this;
    w.rows = count;
    if (!quantized()) {
      w.data = static_cast<const uint8_t *>(data) + first * static_cast<int64_t>(dtype_bytes(dtype, cols));
      return w;
    }
    const int64_t groups = cols / group;
    w.data = static_cast<const uint8_t *>(data) + first * (dtype == DType::I8 ? cols : cols / 2);
    w.scales = scales + first * groups;
    if (zeros) w.zeros = static_cast<const uint8_t *>(zeros) + first * groups;
    return w;
  }
};

// fp32 activations in backend memory: `rows` rows of `cols` floats, row
// stride `stride` floats.
struct Act {
  float *data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
  Act slice_rows(int64_t first, int64_t count) const {
    return Act{data + first * stride, count, cols, stride};
  }
};

// Host-memory inputs of one forward step (token ids, RoPE tables, where each
// sequence's rows go). A backend whose memory is not host memory copies them
// over once per step, in begin_step; the operations that take host pointers
// (embed, rope, rope_store_kv, store_kv, attention) are then given pointers
// into these arrays and sequences of these segments.
struct StepSegment {
  const void *owner;  // backend block of the segment's session (its logits, scratch)
  const KvSequence *kv;
  int64_t row0, n, pos0;
};
struct Step {
  const void *owner;            // the session's backend block: identifies its buffers
  const int32_t *tokens;        // n
  int64_t n;
  const float *cos, *sin;       // n rows of `half` floats each
  int64_t half;
  const StepSegment *segments;  // n_segments, rows in order
  size_t n_segments;
};

// One matrix product of a group that shares its input (Backend::matmuls).
struct Product {
  const Weight *w;
  const Weight *bias;  // nullptr or not present: none
  Act out;
};

constexpr int kMaxSampleCandidates = 256;  // Backend::top_candidates

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char *name() const = 0;

  // Makes a tensor of the model file usable by this backend.
  virtual Weight prepare_weight(const ModelFile &file, const TensorInfo &t) = 0;

  // One block of backend memory for a session (the session arena); aligned to
  // at least 64 bytes. Throws llm::Error(LLM_ERR_OUT_OF_MEMORY) on failure.
  virtual void *alloc(size_t bytes) = 0;
  virtual void free(void *p) = 0;
  // Scratch floats the attention op needs for up to n_rows query rows of
  // n_heads heads (over n_kv_heads KV heads) of head_dim over a context of
  // n_ctx positions.
  virtual size_t attention_scratch_floats(int64_t n_ctx, int64_t n_rows, int64_t n_heads, int64_t n_kv_heads,
                                          int64_t head_dim) const = 0;
  // A session that runs steps of up to n_batch rows over n_ctx positions
  // exists: reserve what steps need (called when a session is created; may
  // throw llm::Error(LLM_ERR_OUT_OF_MEMORY)).
  virtual void reserve_steps(int64_t n_batch, int64_t n_ctx) {
    (void)n_batch;
    (void)n_ctx;
  }
  // Brackets the operations of one forward step. begin_step returns true
  // when the backend replayed a recording of an identical earlier step with
  // these inputs: the caller then issues no operations. end_step(true) after
  // the operations (or the replay); end_step(false) when they were abandoned
  // by an exception.
  virtual bool begin_step(const Step &step) {
    (void)step;
    return false;
  }
  virtual void end_step(bool ok) { (void)ok; }
  // Scratch bytes matmul needs for up to n rows of at most k inputs (e.g. the
  // activations quantized to int8 for quantized weights).
  virtual size_t matmul_scratch_bytes(int64_t n, int64_t k) const = 0;

  // ---- operations (each completes before the next on the same session) ----
  // out row i = table row tokens[i] (tokens are host memory, validated).
  virtual void embed(const Weight &table, const int32_t *tokens, int64_t n, Act out) = 0;
  // Ops whose output is the input of matrix products (rmsnorm, silu_mul) are
  // given the products' scratch: a backend may leave the output there already
  // prepared (e.g. quantized), and the products that read it next use that.
  virtual void rmsnorm(Act x, const Weight &w, float eps, Act out, void *scratch) = 0;
  // out = x · Wᵀ (+ bias); scratch holds matmul_scratch_bytes(x.rows, x.cols).
  virtual void matmul(Act x, const Weight &w, const Weight *bias, Act out, void *scratch) = 0;
  // Several products of one input (the attention's q, k, v; the MLP's gate
  // and up); a backend may prepare the input once, or run them as one.
  virtual void matmuls(Act x, const Product *products, int count, void *scratch) {
    for (int i = 0; i < count; ++i) matmul(x, *products[i].w, products[i].bias, products[i].out, scratch);
  }
  // acc += x · Wᵀ (the residual connections); tmp, of acc's shape, is
  // working memory a backend may use.
  virtual void matmul_add(Act x, const Weight &w, Act acc, Act tmp, void *scratch) {
    matmul(x, w, nullptr, tmp, scratch);
    add(acc, tmp);
  }
  // Rotates each row's n_heads heads; cos/sin are host arrays [rows][head_dim/2].
  virtual void rope(Act x, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin) = 0;
  // Stores rows of k and v (each [n][n_kv_heads*head_dim]) at positions
  // pos0.. of `layer`, in the cache's row format (the pages are writable:
  // KvSequence::prepare_write).
  virtual void store_kv(const KvSequence &kv, int64_t layer, int64_t pos0, Act k, Act v) = 0;
  // The rows of one segment: RoPE on q (n_heads heads) and k (n_kv_heads),
  // then k and v stored at pos0.. of `layer` (rope twice and store_kv).
  virtual void rope_store_kv(const KvSequence &kv, int64_t layer, int64_t pos0, Act q, Act k, Act v,
                             int64_t n_heads, int64_t head_dim, const float *cos, const float *sin) {
    rope(q, n_heads, head_dim, cos, sin);
    rope(k, kv.geometry().n_kv_heads, head_dim, cos, sin);
    store_kv(kv, layer, pos0, k, v);
  }
  // Causal attention of q's rows (positions pos0..) over the cache; scratch
  // holds attention_scratch_floats(kv.n_ctx(), q.rows, n_heads, n_kv_heads,
  // head_dim). out is the input of the output projection, whose scratch is
  // product_scratch: as with rmsnorm, a backend may leave out prepared there.
  virtual void attention(const KvSequence &kv, int64_t layer, Act q, int64_t n_heads, int64_t pos0,
                         int64_t window, float scale, Act out, float *scratch, void *product_scratch) = 0;
  // Moves n positions of every layer from src to dst (< src), rotating the
  // keys by the angle whose cos/sin (host arrays of head_dim/2) are given.
  virtual void kv_shift(const KvSequence &kv, int64_t dst, int64_t src, int64_t n, const float *cos,
                        const float *sin) = 0;
  // gate = silu(gate) * up; scratch: see rmsnorm.
  virtual void silu_mul(Act gate, Act up, void *scratch) = 0;
  virtual void add(Act x, Act y) = 0;
  // Copies rows to host memory (dst: rows*cols floats, packed).
  virtual void read(Act src, float *dst) = 0;
  // Sampling candidates (at most kMaxSampleCandidates): the n best of row[0, count) (backend memory) in the
  // sampler's order (larger value first, NaN as -inf, +inf as the largest
  // float, equal values by lower index), their indices and values to host
  // ids / values in no particular order, so that a sampler reads n entries
  // instead of the whole row. Returns false, touching nothing, where the
  // backend does not do this (or not for this n): the caller reads the row.
  virtual bool top_candidates(const float *row, int64_t count, int n, int32_t *ids, float *values) {
    (void)row;
    (void)count;
    (void)n;
    (void)ids;
    (void)values;
    return false;
  }
  // Byte copies: backend to backend memory; backend to host and host to
  // backend as `height` runs of `width` bytes, `dpitch` / `spitch` bytes
  // apart at the destination / source (one call moves a whole KV page).
  virtual void copy(void *dst, const void *src, size_t bytes) = 0;
  virtual void to_host(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height) = 0;
  virtual void from_host(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height) = 0;
};

class ThreadPool;
std::unique_ptr<Backend> make_cpu_backend(ThreadPool &pool);
// The CUDA backend on device `ordinal` (runtime/backend_cuda.cpp; builds
// without CUDA throw LLM_ERR_UNSUPPORTED). Weights are copied to device
// memory, or used in place on an integrated GPU that can read the mapping.
std::unique_ptr<Backend> make_cuda_backend(int ordinal, const ModelFile &file);
// Whether this build has the CUDA backend.
bool cuda_backend_built();

}  // namespace llm
