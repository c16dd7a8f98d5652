// CPU backend: weights are views into the memory-mapped model file, session
// memory is one host allocation, and operations run the kernels in
// kernels/cpu on the model's thread pool.
#include <cstring>

#include "format/error.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/kv.h"
#include "kernels/cpu/quant.h"
#include "runtime/backend.h"
#include "runtime/host_memory.h"
#include "runtime/thread_pool.h"

namespace llm {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(ThreadPool &pool) : pool_(pool) {}

  const char *name() const override { return "cpu"; }

  Weight prepare_weight(const ModelFile &file, const TensorInfo &t) override {
    Weight w;
    w.dtype = t.dtype;
    w.rows = t.shape[0];
    w.cols = t.shape.size() > 1 ? t.shape[1] : 1;
    w.data = file.data(t);
    if (t.quant.group_size) {
      w.group = t.quant.group_size;
      w.scales = reinterpret_cast<const uint16_t *>(file.data_at(t.quant.scales_offset));
      w.zeros = t.quant.zeros_size ? file.data_at(t.quant.zeros_offset) : nullptr;
    }
    return w;
  }

  // Quantized activations, then matmul_q's work area.
  size_t matmul_scratch_bytes(int64_t n, int64_t k) const override {
    return acts_bytes(n, k) + cpu::matmul_q_work_bytes(pool_.size(), n);
  }

  void *alloc(size_t bytes) override {
    void *p = host_alloc(bytes, 64);
    if (!p)
      fail(LLM_ERR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(bytes) + " bytes of host memory");
    return p;
  }
  void free(void *p) override { host_free(p); }

  size_t attention_scratch_floats(int64_t n_ctx, int64_t, int64_t n_heads, int64_t n_kv_heads,
                                  int64_t head_dim) const override {
    return static_cast<size_t>(pool_.size()) *
           static_cast<size_t>(cpu::paged_attention_scratch_stride(n_ctx, n_heads, n_kv_heads, head_dim));
  }

  void embed(const Weight &table, const int32_t *tokens, int64_t n, Act out) override {
    if (table.quantized()) {
      const cpu::QuantWeight qw = quant_view(table);
      for (int64_t i = 0; i < n; ++i) cpu::dequantize_row(qw, tokens[i], out.data + i * out.stride);
      return;
    }
    size_t row_bytes = dtype_bytes(table.dtype, static_cast<uint64_t>(table.cols));
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t *row = static_cast<const uint8_t *>(table.data) + tokens[i] * row_bytes;
      cpu::convert_row_to_f32(row, table.dtype, table.cols, out.data + i * out.stride);
    }
  }

  void rmsnorm(Act x, const Weight &w, float eps, Act out, void *) override {
    for (int64_t i = 0; i < x.rows; ++i)
      cpu::rmsnorm(x.data + i * x.stride, static_cast<const float *>(w.data), 1, x.cols, eps,
                   out.data + i * out.stride);
  }

  void matmul(Act x, const Weight &w, const Weight *bias, Act out, void *scratch) override {
    const float *b = bias && bias->present() ? static_cast<const float *>(bias->data) : nullptr;
    if (w.quantized()) {
      cpu::quantize_acts(pool_, x.data, x.rows, x.cols, x.stride, scratch);
      cpu::matmul_q(pool_, scratch, x.rows, quant_view(w), b, out.data, out.stride, work_of(x, scratch));
      return;
    }
    cpu::matmul(pool_, x.data, x.rows, x.cols, x.stride, w.data, w.dtype, w.rows, b, out.data,
                out.stride);
  }

  // Quantized weights: the input is quantized once for all of them.
  void matmuls(Act x, const Product *products, int count, void *scratch) override {
    bool all_quantized = true;
    for (int i = 0; i < count; ++i) all_quantized = all_quantized && products[i].w->quantized();
    if (!all_quantized) return Backend::matmuls(x, products, count, scratch);
    cpu::quantize_acts(pool_, x.data, x.rows, x.cols, x.stride, scratch);
    for (int i = 0; i < count; ++i) {
      const Product &p = products[i];
      const float *b = p.bias && p.bias->present() ? static_cast<const float *>(p.bias->data) : nullptr;
      cpu::matmul_q(pool_, scratch, x.rows, quant_view(*p.w), b, p.out.data, p.out.stride, work_of(x, scratch));
    }
  }

  void rope(Act x, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin) override {
    int64_t half = head_dim / 2;
    for (int64_t i = 0; i < x.rows; ++i)
      cpu::rope(x.data + i * x.stride, n_heads, head_dim, cos + i * half, sin + i * half);
  }

  void store_kv(const KvSequence &kv, int64_t layer, int64_t pos0, Act k, Act v) override {
    const KvGeometry &g = kv.geometry();
    const int64_t hd = g.head_dim;
    for (int64_t i = 0; i < k.rows; ++i)
      for (int64_t h = 0; h < g.n_kv_heads; ++h) {
        cpu::kv_quantize_row(g.type, k.data + i * k.stride + h * hd, hd, kv.row(layer, 0, h, pos0 + i));
        cpu::kv_quantize_row(g.type, v.data + i * v.stride + h * hd, hd, kv.row(layer, 1, h, pos0 + i));
      }
  }

  void attention(const KvSequence &kv, int64_t layer, Act q, int64_t n_heads, int64_t pos0,
                 int64_t window, float scale, Act out, float *scratch, void *) override {
    const cpu::KvLayerView view = kv.layer_view(layer);
    cpu::paged_attention(pool_, q.data, q.rows, q.stride, n_heads, kv.geometry().n_kv_heads, view, pos0, window,
                         scale, out.data, out.stride, scratch,
                         cpu::paged_attention_scratch_stride(kv.n_ctx(), n_heads, kv.geometry().n_kv_heads, view.head_dim));
  }

  void kv_shift(const KvSequence &kv, int64_t dst, int64_t src, int64_t n, const float *cos,
                const float *sin) override {
    const KvGeometry &g = kv.geometry();
    const int64_t hd = g.head_dim;
    const size_t row_bytes = g.row_bytes();
    float buf[1024];  // head_dim <= 512 (cpu::kv_type_fits)
    // Ascending positions: a row is read before any later write can reach it.
    for (int64_t i = 0; i < n; ++i)
      for (int64_t l = 0; l < g.n_layers; ++l)
        for (int64_t h = 0; h < g.n_kv_heads; ++h) {
          cpu::kv_dequantize_row(g.type, kv.row(l, 0, h, src + i), hd, buf);
          cpu::rope(buf, 1, hd, cos, sin);
          cpu::kv_quantize_row(g.type, buf, hd, kv.row(l, 0, h, dst + i));
          std::memcpy(kv.row(l, 1, h, dst + i), kv.row(l, 1, h, src + i), row_bytes);
        }
  }

  void silu_mul(Act gate, Act up, void *) override {
    for (int64_t i = 0; i < gate.rows; ++i)
      cpu::silu_mul(gate.data + i * gate.stride, up.data + i * up.stride, gate.cols);
  }

  void add(Act x, Act y) override {
    for (int64_t i = 0; i < x.rows; ++i)
      cpu::add(x.data + i * x.stride, y.data + i * y.stride, x.cols);
  }

  void read(Act src, float *dst) override {
    for (int64_t i = 0; i < src.rows; ++i)
      std::memcpy(dst + i * src.cols, src.data + i * src.stride,
                  static_cast<size_t>(src.cols) * sizeof(float));
  }

  void copy(void *dst, const void *src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void to_host(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height) override {
    copy_2d(dst, dpitch, src, spitch, width, height);
  }
  void from_host(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height) override {
    copy_2d(dst, dpitch, src, spitch, width, height);
  }
  static void copy_2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height) {
    for (size_t i = 0; i < height; ++i)
      std::memcpy(static_cast<uint8_t *>(dst) + i * dpitch, static_cast<const uint8_t *>(src) + i * spitch, width);
  }

 private:
  static cpu::QuantWeight quant_view(const Weight &w) {
    cpu::QuantWeight q;
    q.dtype = w.dtype;
    q.rows = w.rows;
    q.cols = w.cols;
    q.group = w.group;
    q.q = w.data;
    q.scales = w.scales;
    q.zeros = w.zeros;
    return q;
  }

  // Bytes of n rows of k activations quantized, rounded up to 64.
  static size_t acts_bytes(int64_t n, int64_t k) {
    const size_t b = cpu::quantized_acts_bytes(n, (k + cpu::kActBlock - 1) / cpu::kActBlock * cpu::kActBlock);
    return (b + 63) / 64 * 64;
  }
  // matmul_q's work area in a product's scratch (after x quantized), or
  // nullptr where matmul_q uses none for x's rows.
  void *work_of(Act x, void *scratch) const {
    if (cpu::matmul_q_work_bytes(pool_.size(), x.rows) == 0) return nullptr;
    return static_cast<char *>(scratch) + acts_bytes(x.rows, x.cols);
  }

  ThreadPool &pool_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(ThreadPool &pool) {
  return std::make_unique<CpuBackend>(pool);
}

}  // namespace llm
