// KV cache and attention kernels: RoPE fused with storing K and V rows in the
// cache's row format, split-K ("flash-decoding") attention over the paged
// cache with an online softmax, and the context shift's key re-rotation.
//
// Attention: one block of four warps per (query head, query row, key split);
// a decode step splits the context into pieces of 128 positions.
// Each warp takes 32 keys at a time, one per lane: the lane computes its key's
// full dot product with the query (held in shared memory), the warp updates
// its running max and sum, then accumulates the 32 value rows with each lane
// owning head_dim / 32 of the output. The warps and then the splits are
// merged with their max-corrected sums. Rotated KV types (Q8, Q4) rotate the
// query once and the output once (kernels/cpu/kv.h).
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace llm::cuda {
namespace {

constexpr int kAttnWarps = 4;
constexpr int kMaxSplits = 64;  // of one decode row's keys (a multiple of 32)
constexpr int kMaxLaneDims = kMaxHeadDim / 32;

__device__ __forceinline__ bool rotated(KvFormat f) { return f == KvFormat::Q8 || f == KvFormat::Q4; }

__device__ __forceinline__ uint16_t to_f16_bits(float v) { return __half_as_ushort(__float2half_rn(v)); }
__device__ __forceinline__ float f16_round(float v) { return __half2float(__float2half_rn(v)); }

// Encodes the row held in shared memory `buf` (head_dim values; rotated in
// place first for Q8 / Q4) into dst, as kernels/cpu/kv.cpp kv_quantize_row.
// Called by every thread of the block.
__device__ void store_row(KvFormat f, float *buf, int hd, uint8_t *dst, float *red) {
  if (rotated(f)) fwht_shared(buf, hd);
  switch (f) {
    case KvFormat::F32:
      for (int t = threadIdx.x; t < hd; t += blockDim.x) reinterpret_cast<float *>(dst)[t] = buf[t];
      return;
    case KvFormat::F16:
      for (int t = threadIdx.x; t < hd; t += blockDim.x) reinterpret_cast<uint16_t *>(dst)[t] = to_f16_bits(buf[t]);
      return;
    case KvFormat::BF16:
      for (int t = threadIdx.x; t < hd; t += blockDim.x)
        reinterpret_cast<uint16_t *>(dst)[t] = __bfloat16_as_ushort(__float2bfloat16_rn(buf[t]));
      return;
    case KvFormat::Q8: {
      float amax = 0.0f;
      for (int t = threadIdx.x; t < hd; t += blockDim.x) amax = fmaxf(amax, fabsf(buf[t]));
      amax = block_max(amax, red);
      const float dq = fminf(amax / 127.0f, 65504.0f);
      const float d = f16_round(dq);
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      for (int t = threadIdx.x; t < hd; t += blockDim.x)
        dst[t] = static_cast<uint8_t>(static_cast<int8_t>(fminf(fmaxf(rintf(buf[t] * id), -127.0f), 127.0f)));
      if (threadIdx.x == 0) *reinterpret_cast<uint16_t *>(dst + hd) = to_f16_bits(dq);
      return;
    }
    case KvFormat::Q4: {
      const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
      for (int g = warp; g < hd / 32; g += nw) {
        const float v = buf[g * 32 + lane];
        // The value of largest magnitude, the first of equals (as the CPU).
        float best = fabsf(v);
        int idx = lane;
        for (int o = 16; o > 0; o >>= 1) {
          const float ob = __shfl_xor_sync(0xffffffffu, best, o);
          const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
          if (ob > best || (ob == best && oi < idx)) best = ob, idx = oi;
        }
        const float m = buf[g * 32 + idx];
        const float dq = fminf(fmaxf(m / -8.0f, -65504.0f), 65504.0f);
        const float d = f16_round(dq);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const int qv = static_cast<int>(fminf(fmaxf(rintf(v * id), -8.0f), 7.0f)) + 8;
        const int hi = __shfl_down_sync(0xffffffffu, qv, 16);
        if (lane < 16) dst[g * 16 + lane] = static_cast<uint8_t>(qv | (hi << 4));
        if (lane == 0) *reinterpret_cast<uint16_t *>(dst + hd / 2 + 2 * g) = to_f16_bits(dq);
      }
      return;
    }
  }
}

__device__ __forceinline__ void rope_pair(float *x, int t, int half, float c, float s) {
  const float x1 = x[t], x2 = x[t + half];
  x[t] = x1 * c - x2 * s;
  x[t + half] = x2 * c + x1 * s;
}

__global__ void rope_store_kernel(KvLayer kv, const int32_t *staging, int seg, float *q, int64_t ldq, float *k,
                                  int64_t ldk, const float *v, int64_t ldv, int n_heads, const float *cos,
                                  const float *sin) {
  pdl_begin();
  __shared__ float buf[kMaxHeadDim];
  __shared__ float red[32];
  const SegmentDesc sd = reinterpret_cast<const SegmentDesc *>(staging)[seg];
  const int i = blockIdx.x, slot = blockIdx.y, hd = kv.head_dim, half = hd / 2;
  const float *c = cos ? cos + static_cast<int64_t>(i) * half : nullptr;
  const float *s = sin ? sin + static_cast<int64_t>(i) * half : nullptr;
  if (slot < n_heads) {
    float *x = q + i * ldq + static_cast<int64_t>(slot) * hd;
    for (int t = threadIdx.x; t < half; t += blockDim.x) rope_pair(x, t, half, c[t], s[t]);
    return;
  }
  const int h = slot - n_heads;
  float *x = k + i * ldk + static_cast<int64_t>(h) * hd;
  for (int t = threadIdx.x; t < half; t += blockDim.x) {
    if (cos) rope_pair(x, t, half, c[t], s[t]);
    buf[t] = x[t];
    buf[t + half] = x[t + half];
  }
  __syncthreads();
  const int64_t pos = sd.pos0 + i;
  const int32_t *pages = staging + sd.pages_off;
  store_row(kv.format, buf, hd, const_cast<uint8_t *>(kv_row(kv, pages, 0, h, pos)), red);
  __syncthreads();
  for (int t = threadIdx.x; t < hd; t += blockDim.x) buf[t] = v[i * ldv + static_cast<int64_t>(h) * hd + t];
  __syncthreads();
  store_row(kv.format, buf, hd, const_cast<uint8_t *>(kv_row(kv, pages, 1, h, pos)), red);
}

__global__ void rope_kernel(float *x, int64_t ldx, int n_heads, int hd, const float *cos, const float *sin) {
  pdl_begin();
  const int i = blockIdx.x, h = blockIdx.y, half = hd / 2;
  float *xh = x + i * ldx + static_cast<int64_t>(h) * hd;
  for (int t = threadIdx.x; t < half; t += blockDim.x)
    rope_pair(xh, t, half, cos[static_cast<int64_t>(i) * half + t], sin[static_cast<int64_t>(i) * half + t]);
}

// Values d0..d0+NT-1 of a KV row (NT 2 or 4, d0 a multiple of NT), with
// one load for the float types. Q8 / Q4 rows are only 2-byte aligned.
template <KvFormat F, int NT>
__device__ __forceinline__ void kv_load_vec(const uint8_t *row, int d0, int hd, float (&o)[NT]) {
  static_assert(NT == 2 || NT == 4, "2 or 4 values");
  if constexpr (F == KvFormat::F32) {
    if constexpr (NT == 4) {
      const float4 a = *reinterpret_cast<const float4 *>(row + 4 * d0);
      o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w;
    } else {
      const float2 a = *reinterpret_cast<const float2 *>(row + 4 * d0);
      o[0] = a.x, o[1] = a.y;
    }
  } else if constexpr (F == KvFormat::F16 || F == KvFormat::BF16) {
    uint32_t u[NT / 2];
    if constexpr (NT == 4) {
      const uint2 a = *reinterpret_cast<const uint2 *>(row + 2 * d0);
      u[0] = a.x, u[1] = a.y;
    } else {
      u[0] = *reinterpret_cast<const uint32_t *>(row + 2 * d0);
    }
#pragma unroll
    for (int i = 0; i < NT / 2; ++i) {
      if constexpr (F == KvFormat::F16) {
        o[2 * i] = f16_bits_to_float(static_cast<uint16_t>(u[i] & 0xFFFF));
        o[2 * i + 1] = f16_bits_to_float(static_cast<uint16_t>(u[i] >> 16));
      } else {
        o[2 * i] = __uint_as_float(u[i] << 16);
        o[2 * i + 1] = __uint_as_float(u[i] & 0xFFFF0000u);
      }
    }
  } else if constexpr (F == KvFormat::Q8) {
    const float d = f16_bits_to_float(load_u16(row + hd));
#pragma unroll
    for (int i = 0; i < NT / 2; ++i) {
      const uint16_t u = load_u16(row + d0 + 2 * i);
      o[2 * i] = static_cast<float>(static_cast<int8_t>(u & 0xFF)) * d;
      o[2 * i + 1] = static_cast<float>(static_cast<int8_t>(u >> 8)) * d;
    }
  } else {
    const int g = d0 >> 5, e = d0 & 31, shift = e < 16 ? 0 : 4;
    const float d = f16_bits_to_float(load_u16(row + hd / 2 + 2 * g));
    const uint8_t *b = row + g * 16 + (e & 15);
#pragma unroll
    for (int i = 0; i < NT / 2; ++i) {
      const uint16_t u = load_u16(b + 2 * i);
      o[2 * i] = static_cast<float>(((u >> shift) & 0x0F) - 8) * d;
      o[2 * i + 1] = static_cast<float>(((u >> (8 + shift)) & 0x0F) - 8) * d;
    }
  }
}

// NT: value dimensions per lane, ceil(head_dim / 32) rounded up to a
// specialization (2 for 64, 4 for 128, else kMaxLaneDims). For 64 and 128
// each lane owns NT adjacent dimensions (one load per value row), else
// dimensions lane, lane + 32, ...
// Quantizes one head's output (hd values in shared memory, hd % 32 == 0)
// into row i of the products' QuantInput (kernels.h), one warp per block of 32.
__device__ __forceinline__ void quantize_head(const float *buf, int hd, int h, int i, QuantInput qi, int64_t k) {
  const int lane = threadIdx.x & 31;
  for (int d0 = (threadIdx.x >> 5) * 32; d0 < hd; d0 += (blockDim.x >> 5) * 32) {
    const int64_t c = static_cast<int64_t>(h) * hd + d0;
    quantize_block32(buf[d0 + lane], qi.q + i * k + c, qi.ds + i * (k / 32) + c / 32);
  }
}

template <KvFormat F, int NT>
__global__ void __launch_bounds__(kAttnWarps * 32)
    attention_kernel(KvLayer kv, const int32_t *staging, int seg, const float *q, int64_t ldq, int n_heads,
                     int64_t window, float scale, float *out, int64_t ldo, float *partial, int n_splits,
                     int64_t split_len, QuantInput qi) {
  constexpr bool kContig = NT == 2 || NT == 4;  // head_dim == 32 * NT
  __shared__ __align__(16) float qs[kMaxHeadDim];
  __shared__ float wacc[kAttnWarps][kMaxHeadDim];
  __shared__ float wm[kAttnWarps], wl[kAttnWarps];
  // The step's inputs (staging) were copied before any kernel of the step ran.
  const SegmentDesc sd = reinterpret_cast<const SegmentDesc *>(staging)[seg];
  const int h = blockIdx.x, i = blockIdx.y, split = blockIdx.z;
  const int hd = kv.head_dim, kvh = h / (n_heads / kv.n_kv_heads);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t p = sd.pos0 + i;
  int64_t lo = window > 0 ? max(int64_t{0}, p - window + 1) : 0;
  lo = max(lo, split * split_len);
  const int64_t hi = min(p, (split + 1) * split_len - 1);
  const int32_t *pages = staging + sd.pages_off;
  // The block's key and value rows are prefetched into L2 while the previous
  // kernel (RoPE and store of this step's keys) finishes. L2 is where the
  // GPU keeps memory coherent, so a row that kernel is still writing is
  // never read stale; the prefetch only moves the earlier rows closer.
  // Decode rows only: in a prompt, every row's blocks would fetch the same keys.
  for (int64_t j = lo + threadIdx.x; gridDim.y <= kGemvMaxRows && j <= hi; j += blockDim.x) {
    const uint8_t *kr = kv_row(kv, pages, 0, kvh, j), *vr = kv_row(kv, pages, 1, kvh, j);
    for (int b = 0; b < kv.row_bytes; b += 128) {
      asm volatile("prefetch.global.L2 [%0];" ::"l"(kr + b));
      asm volatile("prefetch.global.L2 [%0];" ::"l"(vr + b));
    }
  }
  pdl_begin();

  for (int t = threadIdx.x; t < hd; t += blockDim.x) qs[t] = q[i * ldq + static_cast<int64_t>(h) * hd + t];
  __syncthreads();
  if (rotated(F)) fwht_shared(qs, hd);

  float m = -INFINITY, l = 0.0f, acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  for (int64_t base = lo + warp * 32; base <= hi; base += kAttnWarps * 32) {
    const int64_t j = base + lane;
    const bool valid = j <= hi;
    float sc = -INFINITY;
    // Each lane looks up its own key's rows once; the value loop below
    // receives them by shuffle, so its loads do not wait on the page table.
    const uint8_t *my_v = valid ? kv_row(kv, pages, 1, kvh, j) : nullptr;
    if (valid) {
      const uint8_t *kr = kv_row(kv, pages, 0, kvh, j);
      float dot = 0.0f;
      const int hdl = kContig ? NT * 32 : hd;  // a constant for the specializations: loads unrolled
#pragma unroll
      for (int c = 0; c < hdl; c += 8) {
        float kv8[8];
        kv_load8<F>(kr, c, hd, kv8);
        const float4 qa = *reinterpret_cast<const float4 *>(qs + c);
        const float4 qb = *reinterpret_cast<const float4 *>(qs + c + 4);
        dot += qa.x * kv8[0] + qa.y * kv8[1] + qa.z * kv8[2] + qa.w * kv8[3] + qb.x * kv8[4] + qb.y * kv8[5] +
               qb.z * kv8[6] + qb.w * kv8[7];
      }
      sc = dot * scale;
    }
    const float mn = fmaxf(m, warp_max(sc));
    const float pr = valid ? expf(sc - mn) : 0.0f;
    const float corr = expf(m - mn);
    l = l * corr + warp_sum(pr);
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] *= corr;
    const int cnt = static_cast<int>(min(int64_t{32}, hi - base + 1));
    // The value rows of KB keys are loaded before any is used.
    constexpr int KB = kContig ? 16 : 4;
    for (int k0 = 0; k0 < cnt; k0 += KB) {
      float vv[KB][NT], pk[KB];
#pragma unroll
      for (int kk = 0; kk < KB; ++kk) {
        const int key = k0 + kk;  // warp-uniform
        pk[kk] = __shfl_sync(0xffffffffu, pr, key & 31);
        const uint8_t *vr = reinterpret_cast<const uint8_t *>(
            __shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(my_v), key & 31));
        if (key >= cnt) {
          pk[kk] = 0.0f;
#pragma unroll
          for (int t = 0; t < NT; ++t) vv[kk][t] = 0.0f;
        } else if constexpr (kContig) {
          kv_load_vec<F, NT>(vr, lane * NT, hd, vv[kk]);
        } else {
#pragma unroll
          for (int t = 0; t < NT; ++t) {
            const int d = lane + 32 * t;
            vv[kk][t] = d < hd ? kv_elem<F>(vr, d, hd) : 0.0f;
          }
        }
      }
#pragma unroll
      for (int kk = 0; kk < KB; ++kk)
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[t] += pk[kk] * vv[kk][t];
    }
    m = mn;
  }
  if (lane == 0) wm[warp] = m, wl[warp] = l;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const int d = kContig ? lane * NT + t : lane + 32 * t;
    if (d < hd) wacc[warp][d] = acc[t];
  }
  __syncthreads();
  float M = wm[0];
  for (int w = 1; w < kAttnWarps; ++w) M = fmaxf(M, wm[w]);
  float f[kAttnWarps], L = 0.0f;
  for (int w = 0; w < kAttnWarps; ++w) {
    f[w] = wm[w] == -INFINITY ? 0.0f : expf(wm[w] - M);
    L += wl[w] * f[w];
  }
  if (n_splits > 1) {
    float *pp = partial + ((static_cast<int64_t>(i) * n_heads + h) * n_splits + split) * (hd + 2);
    if (threadIdx.x == 0) pp[0] = M, pp[1] = L;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
      float a = 0.0f;
      for (int w = 0; w < kAttnWarps; ++w) a += wacc[w][d] * f[w];
      pp[2 + d] = a;
    }
    return;
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) a += wacc[w][d] * f[w];
    qs[d] = a / L;
  }
  if (rotated(F)) fwht_shared(qs, hd);
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) out[i * ldo + static_cast<int64_t>(h) * hd + d] = qs[d];
  if (qi.q) quantize_head(qs, hd, h, i, qi, static_cast<int64_t>(n_heads) * hd);
}

// Merges the splits of one (head, row): warp 0 turns the splits' maxima and
// sums into one weight per split (all loaded at once), then every thread
// sums its dimensions over the splits that hold keys of this row.
__global__ void combine_kernel(const float *partial, int n_heads, int hd, int n_splits, bool rot, float *out,
                               int64_t ldo, QuantInput qi) {
  pdl_begin();
  __shared__ float buf[kMaxHeadDim];
  __shared__ float weight[kMaxSplits];
  const int h = blockIdx.x, i = blockIdx.y;
  const float *pp = partial + (static_cast<int64_t>(i) * n_heads + h) * n_splits * (hd + 2);
  if (threadIdx.x < 32) {
    float ms[kMaxSplits / 32], ls[kMaxSplits / 32], M = -INFINITY;
#pragma unroll
    for (int t = 0; t < kMaxSplits / 32; ++t) {
      const int sp = threadIdx.x + 32 * t;
      ms[t] = sp < n_splits ? pp[sp * (hd + 2)] : -INFINITY;
      ls[t] = sp < n_splits ? pp[sp * (hd + 2) + 1] : 0.0f;
      M = fmaxf(M, ms[t]);
    }
    M = warp_max(M);
    float L = 0.0f;
#pragma unroll
    for (int t = 0; t < kMaxSplits / 32; ++t) {
      ms[t] = ms[t] == -INFINITY ? 0.0f : expf(ms[t] - M);
      L += ls[t] * ms[t];
    }
    L = warp_sum(L);
#pragma unroll
    for (int t = 0; t < kMaxSplits / 32; ++t) weight[threadIdx.x + 32 * t] = ms[t] / L;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    // Eight splits' loads at a time; empty splits (weight 0) are not read.
    float a = 0.0f;
    for (int sp0 = 0; sp0 < n_splits; sp0 += 8) {
      float v[8], wt[8];
#pragma unroll
      for (int t = 0; t < 8; ++t) {
        wt[t] = sp0 + t < n_splits ? weight[sp0 + t] : 0.0f;
        v[t] = wt[t] != 0.0f ? pp[(sp0 + t) * (hd + 2) + 2 + d] : 0.0f;
      }
#pragma unroll
      for (int t = 0; t < 8; ++t) a += v[t] * wt[t];
    }
    buf[d] = a;
  }
  __syncthreads();
  if (rot) fwht_shared(buf, hd);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) out[i * ldo + static_cast<int64_t>(h) * hd + d] = buf[d];
  if (qi.q) quantize_head(buf, hd, h, i, qi, static_cast<int64_t>(n_heads) * hd);
}

template <KvFormat F>
__device__ void load_row(const uint8_t *row, int hd, float *buf) {
  for (int t = threadIdx.x; t < hd; t += blockDim.x) buf[t] = kv_elem<F>(row, t, hd);
}

__global__ void kv_shift_kernel(KvLayer kv, int64_t layer_stride, const int32_t *pages, int64_t dst, int64_t src,
                                int64_t first, const float *cos, const float *sin) {
  pdl_begin();
  __shared__ float buf[kMaxHeadDim];
  __shared__ float red[32];
  const int64_t i = first + blockIdx.x;
  kv.layer_off = blockIdx.y * layer_stride;
  const int h = blockIdx.z, hd = kv.head_dim, half = hd / 2;
  const uint8_t *ks = kv_row(kv, pages, 0, h, src + i);
  switch (kv.format) {
    case KvFormat::F32: load_row<KvFormat::F32>(ks, hd, buf); break;
    case KvFormat::F16: load_row<KvFormat::F16>(ks, hd, buf); break;
    case KvFormat::BF16: load_row<KvFormat::BF16>(ks, hd, buf); break;
    case KvFormat::Q8: load_row<KvFormat::Q8>(ks, hd, buf); break;
    case KvFormat::Q4: load_row<KvFormat::Q4>(ks, hd, buf); break;
  }
  __syncthreads();
  if (rotated(kv.format)) fwht_shared(buf, hd);
  for (int t = threadIdx.x; t < half; t += blockDim.x) rope_pair(buf, t, half, cos[t], sin[t]);
  __syncthreads();
  store_row(kv.format, buf, hd, const_cast<uint8_t *>(kv_row(kv, pages, 0, h, dst + i)), red);
  const uint8_t *vs = kv_row(kv, pages, 1, h, src + i);
  uint8_t *vd = const_cast<uint8_t *>(kv_row(kv, pages, 1, h, dst + i));
  for (int t = threadIdx.x; t < kv.row_bytes; t += blockDim.x) vd[t] = vs[t];
}

// Attention of a prompt (more than kGemvMaxRows rows; float KV formats,
// head_dim 64 or 128): a block takes kPrefillRows query rows of one head and
// walks the keys in tiles of 32, each tile's keys and values dequantized once
// into shared memory for all of its rows (the one-row kernel above reads
// every key again for every row: for a 7B model's 512-token prompt that was
// about 490 µs a layer, bound by L2). Warp w owns rows w, w + 4, ...; in the
// scores lane l is key l of the tile, in the values it owns dimensions l,
// l + 32, ... Same online softmax as the one-row kernel.
constexpr int kPrefillRows = 16;
constexpr int kPrefillKeys = 32;
constexpr int kPrefillRowsPerWarp = kPrefillRows / kAttnWarps;

template <KvFormat F, int HD>
__global__ void __launch_bounds__(kAttnWarps * 32)
    prefill_attention_kernel(KvLayer kv, const int32_t *staging, int seg, const float *q, int64_t ldq, int rows,
                             int n_heads, int64_t window, float scale, float *out, int64_t ldo) {
  constexpr int ND = HD / 32;  // value dimensions per lane
  __shared__ float qs[kPrefillRows][HD];
  __shared__ float ks[kPrefillKeys][HD + 1];  // +1: lane l reads row l, conflict-free
  __shared__ float vs[kPrefillKeys][HD];
  pdl_begin();
  const SegmentDesc sd = reinterpret_cast<const SegmentDesc *>(staging)[seg];
  const int h = blockIdx.x, i0 = blockIdx.y * kPrefillRows;
  const int kvh = h / (n_heads / kv.n_kv_heads);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int32_t *pages = staging + sd.pages_off;
  const int nrows = min(kPrefillRows, rows - i0);
  for (int t = threadIdx.x; t < kPrefillRows * HD; t += blockDim.x) {
    const int r = t / HD, d = t % HD;
    qs[r][d] = r < nrows ? q[static_cast<int64_t>(i0 + r) * ldq + static_cast<int64_t>(h) * HD + d] * scale : 0.0f;
  }
  // Keys any row of the block sees: [first row's window start, last row's position].
  const int64_t p_first = sd.pos0 + i0, p_last = sd.pos0 + i0 + nrows - 1;
  const int64_t j_begin = window > 0 ? max(int64_t{0}, p_first - window + 1) : 0;
  float m[kPrefillRowsPerWarp], l[kPrefillRowsPerWarp], acc[kPrefillRowsPerWarp][ND];
#pragma unroll
  for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int t = 0; t < ND; ++t) acc[r][t] = 0.0f;
  }
  for (int64_t j0 = j_begin; j0 <= p_last; j0 += kPrefillKeys) {
    __syncthreads();  // the previous tile is used up (and qs written, the first time)
    for (int t = threadIdx.x; t < kPrefillKeys * (HD / 8); t += blockDim.x) {
      const int kk = t / (HD / 8), c = (t % (HD / 8)) * 8;
      const int64_t j = j0 + kk;
      float kv8[8], vv8[8];
      if (j <= p_last) {
        kv_load8<F>(kv_row(kv, pages, 0, kvh, j), c, HD, kv8);
        kv_load8<F>(kv_row(kv, pages, 1, kvh, j), c, HD, vv8);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) kv8[e] = vv8[e] = 0.0f;
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        ks[kk][c + e] = kv8[e];
        vs[kk][c + e] = vv8[e];
      }
    }
    __syncthreads();
    const int64_t j = j0 + lane;
    float sc[kPrefillRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kPrefillRowsPerWarp; ++r) sc[r] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < HD; ++d) {
      const float kd = ks[lane][d];
#pragma unroll
      for (int r = 0; r < kPrefillRowsPerWarp; ++r) sc[r] += qs[warp + kAttnWarps * r][d] * kd;
    }
#pragma unroll
    for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
      const int row = warp + kAttnWarps * r;
      const int64_t p = sd.pos0 + i0 + row;
      const int64_t lo = window > 0 ? max(int64_t{0}, p - window + 1) : 0;
      const bool valid = row < nrows && j >= lo && j <= p;
      const float s_r = valid ? sc[r] : -INFINITY;
      const float mx = warp_max(s_r);
      if (mx == -INFINITY) {  // no key of this tile for this row
        sc[r] = 0.0f;
        continue;
      }
      const float mn = fmaxf(m[r], mx);
      const float pr = valid ? expf(s_r - mn) : 0.0f;
      const float corr = expf(m[r] - mn);
      l[r] = l[r] * corr + warp_sum(pr);
#pragma unroll
      for (int t = 0; t < ND; ++t) acc[r][t] *= corr;
      m[r] = mn;
      sc[r] = pr;
    }
#pragma unroll 4
    for (int kk = 0; kk < kPrefillKeys; ++kk) {
      float v[ND];
#pragma unroll
      for (int t = 0; t < ND; ++t) v[t] = vs[kk][lane + 32 * t];
#pragma unroll
      for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
        const float pk = __shfl_sync(0xffffffffu, sc[r], kk);
#pragma unroll
        for (int t = 0; t < ND; ++t) acc[r][t] += pk * v[t];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
    const int row = warp + kAttnWarps * r;
    if (row >= nrows) continue;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
#pragma unroll
    for (int t = 0; t < ND; ++t)
      out[static_cast<int64_t>(i0 + row) * ldo + static_cast<int64_t>(h) * HD + lane + 32 * t] = acc[r][t] * inv;
  }
}

template <KvFormat F>
bool launch_prefill_attention(const KvLayer &kv, const int32_t *staging, int seg, const float *q, int64_t ldq,
                              int64_t rows, int n_heads, int64_t window, float scale, float *out, int64_t ldo,
                              cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(n_heads), ceil_div(rows, kPrefillRows));
  const int r = static_cast<int>(rows);
  if (kv.head_dim == 64)
    launch(prefill_attention_kernel<F, 64>, grid, kAttnWarps * 32, s, kv, staging, seg, q, ldq, r, n_heads, window,
           scale, out, ldo);
  else if (kv.head_dim == 128)
    launch(prefill_attention_kernel<F, 128>, grid, kAttnWarps * 32, s, kv, staging, seg, q, ldq, r, n_heads, window,
           scale, out, ldo);
  else
    return false;
  LLM_CUDA_LAUNCH_CHECK();
  return true;
}

template <KvFormat F>
void launch_attention(dim3 grid, const KvLayer &kv, const int32_t *staging, int seg, const float *q, int64_t ldq,
                      int n_heads, int64_t window, float scale, float *out, int64_t ldo, float *partial,
                      int n_splits, int64_t split_len, QuantInput qi, cudaStream_t s) {
  if (kv.head_dim == 64)
    launch(attention_kernel<F, 2>, grid, kAttnWarps * 32, s, kv, staging, seg, q, ldq, n_heads, window, scale, out,
           ldo, partial, n_splits, split_len, qi);
  else if (kv.head_dim == 128)
    launch(attention_kernel<F, 4>, grid, kAttnWarps * 32, s, kv, staging, seg, q, ldq, n_heads, window, scale, out,
           ldo, partial, n_splits, split_len, qi);
  else
    launch(attention_kernel<F, kMaxLaneDims>, grid, kAttnWarps * 32, s, kv, staging, seg, q, ldq, n_heads, window,
           scale, out, ldo, partial, n_splits, split_len, qi);
}

int64_t split_length(int64_t n_ctx, int n_splits) { return (n_ctx + n_splits - 1) / n_splits; }

}  // namespace

void rope_store_kv(const KvLayer &kv, const int32_t *staging, int seg, float *q, int64_t ldq, float *k, int64_t ldk,
                   const float *v, int64_t ldv, int64_t rows, int64_t n_heads, const float *cos, const float *sin,
                   cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(n_heads + kv.n_kv_heads));
  launch(rope_store_kernel, grid, 64, s, kv, staging, seg, q, ldq, k, ldk, v, ldv, static_cast<int>(n_heads), cos,
                                        sin);
  LLM_CUDA_LAUNCH_CHECK();
}

void rope(float *x, int64_t ldx, int64_t rows, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin,
          cudaStream_t s) {
  launch(rope_kernel, dim3(static_cast<unsigned>(rows), static_cast<unsigned>(n_heads)), 64, s, 
      x, ldx, static_cast<int>(n_heads), static_cast<int>(head_dim), cos, sin);
  LLM_CUDA_LAUNCH_CHECK();
}

int attention_splits(int64_t rows, int64_t n_ctx) {
  if (rows > kGemvMaxRows) return 1;
  const int64_t s = (n_ctx + 127) / 128;  // 128 keys per split: one chunk of 32 per warp
  return static_cast<int>(s < 1 ? 1 : s > kMaxSplits ? kMaxSplits : s);
}

size_t attention_partial_floats(int64_t rows, int64_t n_heads, int64_t head_dim, int64_t n_ctx) {
  const int64_t r = rows < kGemvMaxRows ? rows : kGemvMaxRows;
  const int splits = attention_splits(r, n_ctx);
  return splits > 1 ? static_cast<size_t>(r * n_heads * splits * (head_dim + 2)) : 0;
}

void attention(const KvLayer &kv, const int32_t *staging, int seg, const float *q, int64_t ldq, int64_t rows,
               int64_t n_heads, int64_t n_ctx, int64_t window, float scale, float *out, int64_t ldo, float *partial,
               cudaStream_t s, void *quant_scratch) {
  const QuantInput qi = quant_scratch && rows <= kGemvMaxRows && kv.head_dim % 32 == 0
                            ? quant_input_at(quant_scratch, rows, n_heads * kv.head_dim)
                            : QuantInput{nullptr, nullptr};
  const int n_splits = attention_splits(rows, n_ctx);
  const int64_t split_len = split_length(n_ctx, n_splits);
  const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(rows), static_cast<unsigned>(n_splits));
  const int nh = static_cast<int>(n_heads);
  if (rows > kGemvMaxRows) {  // a prompt: tiled over rows and keys where the format allows
    bool done = false;
    switch (kv.format) {
      case KvFormat::F32:
        done = launch_prefill_attention<KvFormat::F32>(kv, staging, seg, q, ldq, rows, nh, window, scale, out, ldo, s);
        break;
      case KvFormat::F16:
        done = launch_prefill_attention<KvFormat::F16>(kv, staging, seg, q, ldq, rows, nh, window, scale, out, ldo, s);
        break;
      case KvFormat::BF16:
        done = launch_prefill_attention<KvFormat::BF16>(kv, staging, seg, q, ldq, rows, nh, window, scale, out, ldo, s);
        break;
      default: break;
    }
    if (done) return;
  }
  switch (kv.format) {
    case KvFormat::F32:
      launch_attention<KvFormat::F32>(grid, kv, staging, seg, q, ldq, nh, window, scale, out, ldo, partial, n_splits, split_len, qi, s);
      break;
    case KvFormat::F16:
      launch_attention<KvFormat::F16>(grid, kv, staging, seg, q, ldq, nh, window, scale, out, ldo, partial, n_splits, split_len, qi, s);
      break;
    case KvFormat::BF16:
      launch_attention<KvFormat::BF16>(grid, kv, staging, seg, q, ldq, nh, window, scale, out, ldo, partial, n_splits, split_len, qi, s);
      break;
    case KvFormat::Q8:
      launch_attention<KvFormat::Q8>(grid, kv, staging, seg, q, ldq, nh, window, scale, out, ldo, partial, n_splits, split_len, qi, s);
      break;
    case KvFormat::Q4:
      launch_attention<KvFormat::Q4>(grid, kv, staging, seg, q, ldq, nh, window, scale, out, ldo, partial, n_splits, split_len, qi, s);
      break;
  }
  LLM_CUDA_LAUNCH_CHECK();
  if (n_splits > 1) {
    const bool rot = kv.format == KvFormat::Q8 || kv.format == KvFormat::Q4;
    launch(combine_kernel, dim3(static_cast<unsigned>(n_heads), static_cast<unsigned>(rows)), 128, s, 
        partial, nh, kv.head_dim, n_splits, rot, out, ldo, qi);
    LLM_CUDA_LAUNCH_CHECK();
  }
}

void kv_shift(const KvLayer &layer0, int64_t n_layers, int64_t layer_stride, const int32_t *pages, int64_t dst,
              int64_t src, int64_t n, const float *cos, const float *sin, cudaStream_t s) {
  // Chunks of (src - dst) positions: a chunk writes only rows whose sources
  // earlier chunks have already read.
  const int64_t chunk = src - dst;
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t m = n - first < chunk ? n - first : chunk;
    const dim3 grid(static_cast<unsigned>(m), static_cast<unsigned>(n_layers), static_cast<unsigned>(layer0.n_kv_heads));
    launch(kv_shift_kernel, grid, 64, s, layer0, layer_stride, pages, dst, src, first, cos, sin);
    LLM_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace llm::cuda
