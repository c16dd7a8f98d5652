// Element-wise and row kernels: embedding lookup, RMSNorm, SwiGLU, residual
// add, input preparation for the products, weight dequantization, sampling
// candidates.
#include <cfloat>

#include <cub/block/block_scan.cuh>

#include "kernels/cuda/common.cuh"

namespace llm::cuda {
namespace {

// Element c of row r of a weight, dequantized.
__device__ __forceinline__ float weight_elem(const DevWeight &w, int64_t r, int64_t c) {
  switch (w.type) {
    case WType::F32: return static_cast<const float *>(w.data)[r * w.cols + c];
    case WType::F16: return f16_bits_to_float(static_cast<const uint16_t *>(w.data)[r * w.cols + c]);
    case WType::BF16: return bf16_bits_to_float(static_cast<const uint16_t *>(w.data)[r * w.cols + c]);
    case WType::I8: {
      const int64_t g = r * (w.cols / w.group) + c / w.group;
      const int z = w.zeros ? static_cast<const int8_t *>(w.zeros)[g] : 0;
      const int q = static_cast<const int8_t *>(w.data)[r * w.cols + c];
      return static_cast<float>(q - z) * f16_bits_to_float(w.scales[g]);
    }
    case WType::I4: {
      const int64_t g = r * (w.cols / w.group) + c / w.group;
      const int z = w.zeros ? static_cast<const uint8_t *>(w.zeros)[g] : 8;
      const uint8_t b = static_cast<const uint8_t *>(w.data)[r * (w.cols / 2) + (c / 32) * 16 + (c & 15)];
      const int q = (c & 31) < 16 ? (b & 0x0F) : (b >> 4);
      return static_cast<float>(q - z) * f16_bits_to_float(w.scales[g]);
    }
  }
  return 0.0f;
}

__global__ void embed_kernel(DevWeight table, const int32_t *tokens, int64_t n, float *out, int64_t ldo) {
  pdl_begin();
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    const int64_t row = tokens[i];
    for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < table.cols; c += gridDim.x * blockDim.x)
      out[i * ldo + c] = weight_elem(table, row, c);
  }
}

// Values c, c + step, ..., (N of them) of xr added to ss as squares, in
// that order, all loaded before the first is used.
template <int N>
__device__ __forceinline__ void add_squares(const float *xr, int64_t &c, int64_t step, int64_t cols, float &ss) {
  for (; c + (N - 1) * step < cols; c += N * step) {
    float v[N];
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = xr[c + j * step];
#pragma unroll
    for (int j = 0; j < N; ++j) ss += v[j] * v[j];
  }
}

// Grid (column blocks, rows). Every block reduces the sum of squares of its
// whole row (from L2: 16 KB for a 4096-wide model) and then normalizes its
// own columns, so a decode step's single row spreads over many SMs instead
// of waiting on one. For Prepare::Int8 each warp normalizes and quantizes
// whole groups of 32 from registers (cols % 32 == 0), so nothing is read back.
// All blocks of a row sum in the same order and so agree on the scale.
__global__ void rmsnorm_kernel(const float *x, int64_t ldx, const float *w, int64_t rows, int64_t cols, float eps,
                               float *out, int64_t ldo, Prepare prepare, void *scratch) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  // The norm weight does not change during a step: the first column's is
  // loaded before waiting for the kernel that wrote x.
  const float w_first = first < cols ? __ldg(w + first) : 0.0f;
  pdl_begin();
  __shared__ float red[32];
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float *xr = x + r * ldx;
    float *orow = out + r * ldo;
    // The squares in column order, as before, but with up to 16 of a
    // thread's loads in flight at once (one round trip to L2 for a
    // 4096-wide row instead of four).
    float ss = 0.0f;
    int64_t c = threadIdx.x;
    add_squares<16>(xr, c, blockDim.x, cols, ss);
    add_squares<8>(xr, c, blockDim.x, cols, ss);
    add_squares<4>(xr, c, blockDim.x, cols, ss);
    add_squares<1>(xr, c, blockDim.x, cols, ss);
    ss = block_sum(ss, red);
    const float inv = static_cast<float>(1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(cols) + eps));
    if (prepare == Prepare::Int8) {
      const QuantInput qi = quant_input_at(scratch, rows, cols);
      const int lane = threadIdx.x & 31;
      for (int64_t c = first; c < cols; c += stride) {  // whole warps: cols % 32 == 0
        const float v = xr[c] * inv * (c == first ? w_first : w[c]);
        orow[c] = v;
        quantize_block32(v, qi.q + r * cols + (c - lane), qi.ds + r * (cols / 32) + c / 32);
      }
      continue;
    }
    __nv_bfloat16 *ob = prepare == Prepare::Bf16 ? static_cast<__nv_bfloat16 *>(scratch) + r * cols : nullptr;
    for (int64_t c = first; c < cols; c += stride) {
      const float v = xr[c] * inv * (c == first ? w_first : w[c]);
      orow[c] = v;
      if (ob) ob[c] = __float2bfloat16_rn(v);
    }
  }
}

// Grid (column blocks of 256, rows): each warp handles one group of 32.
__global__ void silu_mul_kernel(float *gate, int64_t ldg, const float *up, int64_t ldu, int64_t rows, int64_t cols,
                                Prepare prepare, void *scratch) {
  pdl_begin();
  const int64_t r = blockIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t g = c / 32;
  if (g * 32 >= cols) return;  // whole warps leave together
  float v = 0.0f;
  if (c < cols) {
    const float x = gate[r * ldg + c];
    v = x / (1.0f + expf(-x)) * up[r * ldu + c];
    gate[r * ldg + c] = v;
  }
  if (prepare == Prepare::Int8) {
    const QuantInput qi = quant_input_at(scratch, rows, cols);
    quantize_block32(v, qi.q + r * cols + g * 32, qi.ds + r * (cols / 32) + g);
  } else if (prepare == Prepare::Bf16 && c < cols) {
    static_cast<__nv_bfloat16 *>(scratch)[r * cols + c] = __float2bfloat16_rn(v);
  }
}

__global__ void add_kernel(float *x, int64_t ldx, const float *y, int64_t ldy, int64_t rows, int64_t cols) {
  pdl_begin();
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
    x[r * ldx + c] += y[r * ldy + c];
}

__global__ void quantize_kernel(const float *x, int64_t ldx, int64_t rows, int64_t cols, void *scratch) {
  pdl_begin();
  const int64_t b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (b >= cols / 32) return;  // whole warps leave together
  const QuantInput qi = quant_input_at(scratch, rows, cols);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    quantize_block32(x[r * ldx + b * 32 + (threadIdx.x & 31)], qi.q + r * cols + b * 32,
                     qi.ds + r * (cols / 32) + b);
}

__global__ void to_bf16_kernel(const float *x, int64_t ldx, int64_t rows, int64_t cols, __nv_bfloat16 *out) {
  pdl_begin();
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
    out[r * cols + c] = __float2bfloat16_rn(x[r * ldx + c]);
}

__global__ void dequantize_kernel(DevWeight w, int64_t row0, int64_t rows, void *out, bool float_out) {
  pdl_begin();
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < w.cols; c += gridDim.x * blockDim.x) {
    const float v = weight_elem(w, row0 + r, c);
    if (float_out)
      static_cast<float *>(out)[r * w.cols + c] = v;
    else
      static_cast<__nv_bfloat16 *>(out)[r * w.cols + c] = __float2bfloat16_rn(v);
  }
}

// Quantized rows to bf16 (layouts of kernels/cpu/quant.h), eight values per
// thread: thread t of a 32-value block's four writes values 8t..8t+7, so a
// warp stores 512 contiguous bytes at once. I4: values 0..15 are the low
// nibbles of the block's 16 bytes and 16..31 the high ones, so thread t
// reads bytes 8 (t & 1)..+7 and takes the low (t < 2) or high nibbles.
__global__ void dequantize_q_kernel(DevWeight w, int64_t row0, int64_t rows, __nv_bfloat16 *out) {
  pdl_begin();
  const int64_t nbr = w.cols / 32, total = rows * nbr * 4, gpr = w.cols / w.group, bpg = w.group / 32;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t blk = i >> 2, r = blk / nbr, b = blk - r * nbr, row = row0 + r;
    const int part = static_cast<int>(i & 3);
    const int64_t gi = row * gpr + b / bpg;
    const float scale = f16_bits_to_float(w.scales[gi]);
    float v[8];
    if (w.type == WType::I4) {
      const int z = w.zeros ? static_cast<const uint8_t *>(w.zeros)[gi] : 8;
      const uint2 q = reinterpret_cast<const uint2 *>(static_cast<const uint8_t *>(w.data) + row * (w.cols / 2) +
                                                      b * 16)[part & 1];
      const int shift = part < 2 ? 0 : 4;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const uint32_t byte = ((e < 4 ? q.x : q.y) >> (8 * (e & 3) + shift)) & 0x0F;
        v[e] = static_cast<float>(static_cast<int>(byte) - z) * scale;
      }
    } else {
      const int z = w.zeros ? static_cast<const int8_t *>(w.zeros)[gi] : 0;
      const uint2 q = reinterpret_cast<const uint2 *>(static_cast<const int8_t *>(w.data) + row * w.cols +
                                                      b * 32)[part];
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const int8_t byte = static_cast<int8_t>(((e < 4 ? q.x : q.y) >> (8 * (e & 3))) & 0xFF);
        v[e] = static_cast<float>(static_cast<int>(byte) - z) * scale;
      }
    }
    uint32_t packed[4];
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * t], v[2 * t + 1]);
      packed[t] = *reinterpret_cast<const uint32_t *>(&h);
    }
    reinterpret_cast<uint4 *>(out + r * w.cols + b * 32)[part] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
  }
}

__global__ void add_bias_kernel(float *out, int64_t ldo, const float *bias, int64_t rows, int64_t cols) {
  pdl_begin();
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
    out[r * ldo + c] += bias[c];
}

// Sampling candidates. Keys that order the floats as the host sampler does:
// NaN as -inf, +inf as the largest float, -0 equal to +0; a larger key is a
// better value, and equal keys go by index.
__device__ __forceinline__ uint32_t order_key(float v) {
  if (v != v) v = -INFINITY;
  if (v > FLT_MAX) v = FLT_MAX;
  if (v == 0.0f) v = 0.0f;
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

constexpr int kTopThreads = 1024;

// One block. A radix select finds the key of the n-th best entry one byte at
// a time (most significant first), counting the keys that still share the
// prefix found so far; then every entry above that key is taken, and of the
// entries equal to it the lowest indices, through a scan over contiguous
// chunks of the row.
__global__ void __launch_bounds__(kTopThreads) top_candidates_kernel(const float *x, int64_t count, int n,
                                                                     int32_t *ids, float *values) {
  using Scan = cub::BlockScan<uint32_t, kTopThreads>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ uint32_t hist[256];
  __shared__ uint32_t found_prefix, found_remaining, next_slot;
  pdl_begin();
  uint32_t prefix = 0, mask = 0, remaining = static_cast<uint32_t>(n);
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (threadIdx.x < 256) hist[threadIdx.x] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < count; i += kTopThreads) {
      const uint32_t k = order_key(x[i]);
      if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255u], 1u);
    }
    __syncthreads();
    // Thread t counts digit 255 - t: the inclusive sum is the number of keys
    // whose digit is that one or larger.
    const uint32_t c = threadIdx.x < 256 ? hist[255 - threadIdx.x] : 0;
    uint32_t incl = 0;
    Scan(scan).InclusiveSum(c, incl);
    const uint32_t above = incl - c;
    if (threadIdx.x < 256 && above < remaining && remaining <= incl) {
      found_prefix = prefix | ((255u - threadIdx.x) << shift);
      found_remaining = remaining - above;
    }
    __syncthreads();
    prefix = found_prefix;
    remaining = found_remaining;
    mask |= 255u << shift;
  }
  // prefix: the n-th best key; `remaining` entries equal to it are taken.
  const uint32_t above = static_cast<uint32_t>(n) - remaining;
  if (threadIdx.x == 0) next_slot = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < count; i += kTopThreads) {
    const float v = x[i];
    if (order_key(v) > prefix) {
      const uint32_t slot = atomicAdd(&next_slot, 1u);
      ids[slot] = static_cast<int32_t>(i);
      values[slot] = v;
    }
  }
  const int64_t chunk = (count + kTopThreads - 1) / kTopThreads;
  const int64_t begin = threadIdx.x * chunk, end = begin + chunk < count ? begin + chunk : count;
  uint32_t equal = 0;
  for (int64_t i = begin; i < end; ++i) equal += order_key(x[i]) == prefix;
  uint32_t rank = 0;
  Scan(scan).ExclusiveSum(equal, rank);
  for (int64_t i = begin; i < end && rank < remaining; ++i) {
    const float v = x[i];
    if (order_key(v) != prefix) continue;
    ids[above + rank] = static_cast<int32_t>(i);
    values[above + rank] = v;
    ++rank;
  }
}

unsigned col_blocks(int64_t cols) { return ceil_div(cols, 256) < 64 ? ceil_div(cols, 256) : 64; }
unsigned row_blocks(int64_t rows) { return static_cast<unsigned>(rows < 65535 ? rows : 65535); }

}  // namespace

bool pdl_supported() {
  static const bool yes = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return yes;
}

size_t quant_input_bytes(int64_t n, int64_t k) {
  const size_t q = (static_cast<size_t>(n * k) + 255) / 256 * 256;
  return q + static_cast<size_t>(n * (k / 32)) * sizeof(float2);
}

void embed(const DevWeight &table, const int32_t *tokens, int64_t n, float *out, int64_t ldo, cudaStream_t s) {
  launch(embed_kernel, dim3(col_blocks(table.cols), row_blocks(n)), 256, s, table, tokens, n, out, ldo);
  LLM_CUDA_LAUNCH_CHECK();
}

void rmsnorm(const float *x, int64_t ldx, const float *w, int64_t rows, int64_t cols, float eps, float *out,
             int64_t ldo, Prepare prepare, void *scratch, cudaStream_t s) {
  // A few rows (decode): one block per 256 columns of each; more: one block per row.
  const unsigned blocks = rows <= kGemvMaxRows ? ceil_div(cols, 256) : 1;
  launch(rmsnorm_kernel, dim3(blocks, row_blocks(rows)), 256, s, x, ldx, w, rows, cols, eps, out, ldo,
         prepare, scratch);
  LLM_CUDA_LAUNCH_CHECK();
}

void silu_mul(float *gate, int64_t ldg, const float *up, int64_t ldu, int64_t rows, int64_t cols, Prepare prepare,
              void *scratch, cudaStream_t s) {
  launch(silu_mul_kernel, dim3(ceil_div(cols, 256), static_cast<unsigned>(rows)), 256, s, gate, ldg, up, ldu, rows, cols, prepare, scratch);
  LLM_CUDA_LAUNCH_CHECK();
}

void add(float *x, int64_t ldx, const float *y, int64_t ldy, int64_t rows, int64_t cols, cudaStream_t s) {
  launch(add_kernel, dim3(col_blocks(cols), row_blocks(rows)), 256, s, x, ldx, y, ldy, rows, cols);
  LLM_CUDA_LAUNCH_CHECK();
}

void quantize_input(const float *x, int64_t ldx, int64_t rows, int64_t cols, void *scratch, cudaStream_t s) {
  launch(quantize_kernel, dim3(ceil_div(cols / 32, 8), row_blocks(rows)), 256, s, x, ldx, rows, cols,
                                                                                             scratch);
  LLM_CUDA_LAUNCH_CHECK();
}

void to_bf16(const float *x, int64_t ldx, int64_t rows, int64_t cols, void *scratch, cudaStream_t s) {
  launch(to_bf16_kernel, dim3(col_blocks(cols), row_blocks(rows)), 256, s, 
      x, ldx, rows, cols, static_cast<__nv_bfloat16 *>(scratch));
  LLM_CUDA_LAUNCH_CHECK();
}

void dequantize_rows(const DevWeight &w, int64_t row0, int64_t n, void *out, bool float_out, cudaStream_t s) {
  if (!float_out && (w.type == WType::I4 || w.type == WType::I8)) {
    const int64_t threads = n * (w.cols / 32) * 4;
    const unsigned grid = static_cast<unsigned>(threads / 256 + 1 < 65535 ? threads / 256 + 1 : 65535);
    launch(dequantize_q_kernel, grid, 256, s, w, row0, n, static_cast<__nv_bfloat16 *>(out));
    LLM_CUDA_LAUNCH_CHECK();
    return;
  }
  launch(dequantize_kernel, dim3(col_blocks(w.cols), row_blocks(n)), 256, s, w, row0, n, out, float_out);
  LLM_CUDA_LAUNCH_CHECK();
}

void add_bias(float *out, int64_t ldo, const float *bias, int64_t rows, int64_t cols, cudaStream_t s) {
  launch(add_bias_kernel, dim3(col_blocks(cols), row_blocks(rows)), 256, s, out, ldo, bias, rows, cols);
  LLM_CUDA_LAUNCH_CHECK();
}

void top_candidates(const float *x, int64_t count, int n, int32_t *ids, float *values, cudaStream_t s) {
  launch(top_candidates_kernel, 1, kTopThreads, s, x, count, n, ids, values);
  LLM_CUDA_LAUNCH_CHECK();
}

}  // namespace llm::cuda
