// CUDA kernels of the CUDA backend (runtime/backend_cuda.cpp). Host-callable
// launchers; every launch goes to the given stream and returns at once.
//
// Formats are those of the CPU kernels, so the same model file and the same
// KV rows serve both backends:
//   weights: kernels/cpu/quant.h (I8 / I4 group-quantized, f16 scales)
//   KV rows: kernels/cpu/kv.h (F32 / F16 / BF16 / rotated Q8 / rotated Q4)
// Activations are fp32 rows with a row stride, as in runtime/backend.h.
//
// Products by quantized weights quantize their input to int8 in blocks of 32
// (scale = max|x| / 127, round to nearest even, exactly as the CPU path) and
// use integer dot products (dp4a); products by float weights read the fp32
// input. Inputs of more than kGemvMaxRows rows go through cuBLAS instead, on
// weights dequantized to bf16 tiles.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace llm::cuda {

enum class WType : int32_t { F32 = 0, F16 = 1, BF16 = 2, I8 = 3, I4 = 4 };
enum class KvFormat : int32_t { F32 = 0, F16 = 1, BF16 = 2, Q8 = 3, Q4 = 4 };

constexpr int kGemvMaxRows = 8;   // decode batches up to this size use the GEMV kernels
constexpr int kMaxGemvJobs = 3;   // weights sharing one input in one launch
constexpr int kMaxHeadDim = 512;

// A weight in device memory (layout of kernels/cpu/quant.h for I8 / I4).
struct DevWeight {
  WType type;
  int64_t rows, cols, group;
  const void *data;
  const uint16_t *scales;  // f16 [rows][cols / group]
  const void *zeros;       // nullptr: symmetric (I8: int8, I4: uint8 per group)
};

// An input quantized for the GEMV kernels: row i holds k int8 values at
// q + i * k and, per block of 32, (scale, sum of the 32 values) at ds + i * k / 32.
struct QuantInput {
  int8_t *q;
  float2 *ds;
};
// Bytes of a QuantInput of n rows of k values (k a multiple of 32).
size_t quant_input_bytes(int64_t n, int64_t k);
#if defined(__CUDACC__)
__host__ __device__
#endif
inline QuantInput quant_input_at(void *scratch, int64_t n, int64_t k) {
  int8_t *q = static_cast<int8_t *>(scratch);
  const size_t q_bytes = (static_cast<size_t>(n * k) + 255) / 256 * 256;
  return QuantInput{q, reinterpret_cast<float2 *>(q + q_bytes)};
}

// How an op that produces a product's input leaves it prepared in scratch.
enum class Prepare : int32_t { None = 0, Int8 = 1, Bf16 = 2 };

// One output of a GEMV launch: out[r * ldo + j] (+)= x_r · W_j + bias_j.
struct GemvJob {
  DevWeight w;
  const float *bias;  // nullptr: none
  float *out;
  int64_t ldo;
  int32_t accumulate;  // add to out instead of overwriting it
};

// ---- element-wise and row kernels -------------------------------------------
// out row i = dequantized table row tokens[i] (tokens: device memory).
void embed(const DevWeight &table, const int32_t *tokens, int64_t n, float *out, int64_t ldo, cudaStream_t s);
// out = x / rms(x) * w (out must not overlap x); and, per `prepare`, out
// quantized or in bf16 in scratch.
void rmsnorm(const float *x, int64_t ldx, const float *w, int64_t rows, int64_t cols, float eps, float *out,
             int64_t ldo, Prepare prepare, void *scratch, cudaStream_t s);
// gate = silu(gate) * up; and gate prepared in scratch per `prepare`.
void silu_mul(float *gate, int64_t ldg, const float *up, int64_t ldu, int64_t rows, int64_t cols,
              Prepare prepare, void *scratch, cudaStream_t s);
// x += y
void add(float *x, int64_t ldx, const float *y, int64_t ldy, int64_t rows, int64_t cols, cudaStream_t s);
// Input preparation for the products (see Prepare).
void quantize_input(const float *x, int64_t ldx, int64_t rows, int64_t cols, void *scratch, cudaStream_t s);
void to_bf16(const float *x, int64_t ldx, int64_t rows, int64_t cols, void *scratch, cudaStream_t s);
// Rows [row0, row0 + n) of w as bf16 (float_out: fp32) into out, [n][cols].
void dequantize_rows(const DevWeight &w, int64_t row0, int64_t n, void *out, bool float_out, cudaStream_t s);
// out[i][j] += bias[j]
void add_bias(float *out, int64_t ldo, const float *bias, int64_t rows, int64_t cols, cudaStream_t s);

// ---- products ---------------------------------------------------------------
// n <= kGemvMaxRows rows of input: x (fp32, for float weights) and its
// QuantInput (for quantized weights; k % 32 == 0). Every job has w.cols == k.
void gemv(const GemvJob *jobs, int n_jobs, int64_t n, int64_t k, const float *x, int64_t ldx,
          const void *quant_scratch, cudaStream_t s);

// ---- KV cache and attention ---------------------------------------------------
// One layer of the paged cache (runtime/kv_cache.h): the row of (kind, head)
// at position j is at
//   base + pages[j / 16] * page_bytes + layer_off + kind * kind_stride
//        + head * head_stride + (j % 16) * row_bytes
struct KvLayer {
  KvFormat format;
  int32_t head_dim, row_bytes, n_kv_heads;
  int64_t page_bytes, layer_off, kind_stride, head_stride;
  uint8_t *base;
};
constexpr int kPageTokens = 16;

// Per-segment step data in device memory: rows [row0, row0 + n) of the step
// are positions pos0.. of the sequence whose page table starts at
// staging + pages_off (int32 units).
struct SegmentDesc {
  int32_t row0, n, pos0, pages_off;
};

// RoPE of the segment's q rows (n_heads heads) and k rows (n_kv_heads), then
// k and v stored at positions pos0.. . cos/sin: [rows][head_dim / 2], device;
// with cos == nullptr (and n_heads == 0) k and v are stored as they are.
void rope_store_kv(const KvLayer &kv, const int32_t *staging, int seg, float *q, int64_t ldq, float *k,
                   int64_t ldk, const float *v, int64_t ldv, int64_t rows, int64_t n_heads, const float *cos,
                   const float *sin, cudaStream_t s);
// RoPE of rows of n_heads heads (cos/sin: [rows][head_dim / 2], device).
void rope(float *x, int64_t ldx, int64_t rows, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin,
          cudaStream_t s);
// Number of key splits attention uses for rows query rows over n_ctx positions.
int attention_splits(int64_t rows, int64_t n_ctx);
// Floats of partial results attention needs.
size_t attention_partial_floats(int64_t rows, int64_t n_heads, int64_t head_dim, int64_t n_ctx);
// Causal attention of the segment's query rows over the cache. With
// quant_scratch (head_dim % 32 == 0) the output rows are also left there
// quantized, as the QuantInput of `rows` rows of n_heads * head_dim values
// that the GEMV kernels read (one kernel less before the output projection).
void attention(const KvLayer &kv, const int32_t *staging, int seg, const float *q, int64_t ldq, int64_t rows,
               int64_t n_heads, int64_t n_ctx, int64_t window, float scale, float *out, int64_t ldo,
               float *partial, cudaStream_t s, void *quant_scratch = nullptr);
// Moves positions [src, src + n) to [dst, ...) in every layer, re-rotating the
// keys by cos/sin (device, head_dim / 2). pages: the sequence's page table.
void kv_shift(const KvLayer &layer0, int64_t n_layers, int64_t layer_stride, const int32_t *pages,
              int64_t dst, int64_t src, int64_t n, const float *cos, const float *sin, cudaStream_t s);

// ---- sampling -----------------------------------------------------------------
// The n best entries of x[0, count) (1 <= n <= min(count, kMaxTopCandidates)),
// in the host sampler's order (runtime/sampler.cpp): larger value first, NaN
// as -inf, +inf as the largest float, equal values by lower index. Their
// indices and values (as in x) go to ids / values (device) in no particular
// order.
constexpr int kMaxTopCandidates = 256;
void top_candidates(const float *x, int64_t count, int n, int32_t *ids, float *values, cudaStream_t s);

}  // namespace llm::cuda
