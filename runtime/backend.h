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
  // Scratch floats the attention op needs for a context of n_ctx positions.
  virtual size_t attention_scratch_floats(int64_t n_ctx) const = 0;
  // Scratch bytes matmul needs for up to n rows of at most k inputs (e.g. the
  // activations quantized to int8 for quantized weights).
  virtual size_t matmul_scratch_bytes(int64_t n, int64_t k) const = 0;

  // ---- operations (each completes before the next on the same session) ----
  // out row i = table row tokens[i] (tokens are host memory, validated).
  virtual void embed(const Weight &table, const int32_t *tokens, int64_t n, Act out) = 0;
  virtual void rmsnorm(Act x, const Weight &w, float eps, Act out) = 0;
  // out = x · Wᵀ (+ bias); scratch holds matmul_scratch_bytes(x.rows, x.cols).
  virtual void matmul(Act x, const Weight &w, const Weight *bias, Act out, void *scratch) = 0;
  // Rotates each row's n_heads heads; cos/sin are host arrays [rows][head_dim/2].
  virtual void rope(Act x, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin) = 0;
  // Stores rows of k and v (each [n][n_kv_heads*head_dim]) at positions
  // pos0.. of `layer`, in the cache's row format (the pages are writable:
  // KvSequence::prepare_write).
  virtual void store_kv(const KvSequence &kv, int64_t layer, int64_t pos0, Act k, Act v) = 0;
  // Causal attention of q's rows (positions pos0..) over the cache; scratch
  // holds attention_scratch_floats(kv.n_ctx()).
  virtual void attention(const KvSequence &kv, int64_t layer, Act q, int64_t n_heads, int64_t pos0,
                         int64_t window, float scale, Act out, float *scratch) = 0;
  // Moves n positions of every layer from src to dst (< src), rotating the
  // keys by the angle whose cos/sin (host arrays of head_dim/2) are given.
  virtual void kv_shift(const KvSequence &kv, int64_t dst, int64_t src, int64_t n, const float *cos,
                        const float *sin) = 0;
  virtual void silu_mul(Act gate, Act up) = 0;
  virtual void add(Act x, Act y) = 0;
  // Copies rows to host memory (dst: rows*cols floats, packed).
  virtual void read(Act src, float *dst) = 0;
  // Byte copies: backend to backend memory, backend to host, host to backend.
  virtual void copy(void *dst, const void *src, size_t bytes) = 0;
  virtual void to_host(void *dst, const void *src, size_t bytes) = 0;
  virtual void from_host(void *dst, const void *src, size_t bytes) = 0;
};

class ThreadPool;
std::unique_ptr<Backend> make_cpu_backend(ThreadPool &pool);

}  // namespace llm
