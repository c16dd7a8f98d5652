// Device helpers shared by the CUDA kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <utility>

#include "kernels/cuda/kernels.h"

namespace llm::cuda {

#define LLM_CUDA_LAUNCH_CHECK() (void)cudaPeekAtLastError()

// Programmatic dependent launch (Hopper and later): each kernel lets the
// next one in the stream launch as soon as all of its blocks have started
// (pdl_trigger), and waits for the previous one to finish (and its writes to
// be visible) before touching what that one wrote (pdl_wait). This hides the
// launch latency of the many short kernels of a decode step. Every kernel
// calls both, most at once through pdl_begin(); the GEMV kernels issue their
// first weight loads (constant during a step) before waiting, so weights
// stream in while the previous kernel finishes.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaTriggerProgrammaticLaunchCompletion();
#endif
}
__device__ __forceinline__ void pdl_begin() {
  pdl_wait();
  pdl_trigger();
}

bool pdl_supported();  // the current device is compute capability 9.0 or later

template <typename... KernelArgs, typename... Args>
void launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, cudaStream_t s, Args &&...args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = 0;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_supported() ? 1 : 0;
  (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

__device__ __forceinline__ float f16_bits_to_float(uint16_t b) { return __half2float(__ushort_as_half(b)); }
__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) { return __uint_as_float(uint32_t{b} << 16); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum / max over the block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `red` holds 32 floats of shared memory.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float *red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const float t = lane < nw ? red[lane] : 0.0f;
  return kMax ? warp_max(t) : warp_sum(t);
}
__device__ __forceinline__ float block_sum(float v, float *red) { return block_reduce<false>(v, red); }
__device__ __forceinline__ float block_max(float v, float *red) { return block_reduce<true>(v, red); }

// Quantizes one block of 32 values held one per lane (the CPU's arithmetic:
// kernels/cpu/quant_impl.h block_scale and round to nearest even).
__device__ __forceinline__ void quantize_block32(float v, int8_t *q, float2 *ds) {
  const float amax = warp_max(fabsf(v));
  float d = 0.0f, inv = 0.0f;
  if (amax >= 1e-30f) {
    d = amax / 127.0f;
    inv = 1.0f / d;
  }
  const int qi = max(-127, min(127, __float2int_rn(v * inv)));
  const int sum = warp_sum_int(qi);
  q[threadIdx.x & 31] = static_cast<int8_t>(qi);
  if ((threadIdx.x & 31) == 0) *ds = make_float2(d, static_cast<float>(sum));
}

// In place: y = R·y on each block of (hd & -hd) values of a row in shared
// memory (orthonormal Walsh-Hadamard; see kernels/cpu/kv.h). Called by every
// thread of the block.
__device__ __forceinline__ void fwht_shared(float *y, int hd) {
  const int n = hd & -hd, halfn = n / 2;
  for (int len = 1; len < n; len *= 2) {
    __syncthreads();
    for (int t = threadIdx.x; t < hd / 2; t += blockDim.x) {
      const int blk = t / halfn, u = t % halfn;
      const int j = blk * n + (u / len) * 2 * len + (u % len);
      const float a = y[j], b = y[j + len];
      y[j] = a + b;
      y[j + len] = a - b;
    }
  }
  __syncthreads();
  const float norm = 1.0f / sqrtf(static_cast<float>(n));
  for (int i = threadIdx.x; i < hd; i += blockDim.x) y[i] *= norm;
  __syncthreads();
}

__device__ __forceinline__ uint16_t load_u16(const uint8_t *p) { return *reinterpret_cast<const uint16_t *>(p); }

// Eight f16 (kHalf) or bf16 values packed in 16 bytes, as floats.
template <bool kHalf>
__device__ __forceinline__ void unpack8_16bit(const uint4 u, float *o) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (kHalf) {
      o[2 * i] = f16_bits_to_float(static_cast<uint16_t>(w[i] & 0xFFFF));
      o[2 * i + 1] = f16_bits_to_float(static_cast<uint16_t>(w[i] >> 16));
    } else {
      o[2 * i] = __uint_as_float(w[i] << 16);
      o[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
    }
  }
}

// Element d of a KV row (as stored: rotated types stay rotated).
template <KvFormat F>
__device__ __forceinline__ float kv_elem(const uint8_t *row, int d, int hd) {
  if constexpr (F == KvFormat::F32) return reinterpret_cast<const float *>(row)[d];
  if constexpr (F == KvFormat::F16) return f16_bits_to_float(load_u16(row + 2 * d));
  if constexpr (F == KvFormat::BF16) return bf16_bits_to_float(load_u16(row + 2 * d));
  if constexpr (F == KvFormat::Q8)
    return static_cast<float>(static_cast<int8_t>(row[d])) * f16_bits_to_float(load_u16(row + hd));
  if constexpr (F == KvFormat::Q4) {
    const int g = d >> 5, e = d & 31;
    const uint8_t b = row[g * 16 + (e & 15)];
    const int q = (e < 16 ? (b & 0x0F) : (b >> 4)) - 8;
    return static_cast<float>(q) * f16_bits_to_float(load_u16(row + hd / 2 + 2 * g));
  }
  return 0.0f;
}

// Values c..c+7 of a KV row (c a multiple of 8; head_dim a multiple of 8).
template <KvFormat F>
__device__ __forceinline__ void kv_load8(const uint8_t *row, int c, int hd, float *o) {
  if constexpr (F == KvFormat::F32) {
    const float4 a = *reinterpret_cast<const float4 *>(row + 4 * c);
    const float4 b = *reinterpret_cast<const float4 *>(row + 4 * c + 16);
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
  } else if constexpr (F == KvFormat::F16 || F == KvFormat::BF16) {
    unpack8_16bit<F == KvFormat::F16>(*reinterpret_cast<const uint4 *>(row + 2 * c), o);
  } else if constexpr (F == KvFormat::Q8) {
    const float d = f16_bits_to_float(load_u16(row + hd));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint16_t u = load_u16(row + c + 2 * i);
      o[2 * i] = static_cast<float>(static_cast<int8_t>(u & 0xFF)) * d;
      o[2 * i + 1] = static_cast<float>(static_cast<int8_t>(u >> 8)) * d;
    }
  } else {
    const int g = c >> 5, e = c & 31;
    const float d = f16_bits_to_float(load_u16(row + hd / 2 + 2 * g));
    const uint8_t *b = row + g * 16 + (e & 15);
    const int shift = e < 16 ? 0 : 4;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint16_t u = load_u16(b + 2 * i);
      o[2 * i] = static_cast<float>(((u >> shift) & 0x0F) - 8) * d;
      o[2 * i + 1] = static_cast<float>(((u >> (8 + shift)) & 0x0F) - 8) * d;
    }
  }
}

__device__ __forceinline__ const uint8_t *kv_row(const KvLayer &kv, const int32_t *pages, int kind, int head,
                                                 int64_t pos) {
  return kv.base + static_cast<int64_t>(pages[pos / kPageTokens]) * kv.page_bytes + kv.layer_off +
         kind * kv.kind_stride + head * kv.head_stride + (pos % kPageTokens) * kv.row_bytes;
}

inline unsigned ceil_div(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace llm::cuda
