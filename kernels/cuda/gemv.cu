// Matrix-vector products for decoding (up to kGemvMaxRows input rows): one
// warp per four output features, every lane streaming 16-byte pieces of the
// weight rows once for all input rows. Quantized weights: integer dot products of the
// 4- or 8-bit values with the int8-quantized input, one scale per group;
// float weights: fp32 products with the fp32 input. Several weights sharing
// one input (q, k, v; gate, up) run in one launch.
#include "kernels/cuda/common.cuh"

namespace llm::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kRowsPerWarp = 4;

struct GemvJobs {
  GemvJob job[kMaxGemvJobs];
  int64_t warp_end[kMaxGemvJobs];  // cumulative warps
  int n_jobs;
};

// Each warp computes kRowsPerWarp consecutive output features: every lane
// issues the loads of all of them before using any, so each lane keeps
// several 16-byte weight loads in flight, and the input is read once for
// all of them.
constexpr int R = kRowsPerWarp;

// Group of the b-th block of 32 values: a shift for the usual power-of-two
// group sizes (no integer division in the inner loops).
struct GroupOf {
  int blocks, shift;
  __device__ explicit GroupOf(int blocks_per_group) : blocks(blocks_per_group), shift(-1) {
    if ((blocks & (blocks - 1)) == 0) {
      shift = 0;
      while ((1 << shift) < blocks) ++shift;
    }
  }
  __device__ int operator()(int b) const { return shift >= 0 ? b >> shift : b / blocks; }
};

// Integer dot product of 32 weight values (four per int, as dp4a reads
// them: values 0..15 in wq[0..3], 16..31 in wq[4..7]) with 32 input values.
__device__ __forceinline__ int dot32(const int (&wq)[8], const int4 a, const int4 c) {
  int dot = __dp4a(wq[0], a.x, 0);
  dot = __dp4a(wq[1], a.y, dot);
  dot = __dp4a(wq[2], a.z, dot);
  dot = __dp4a(wq[3], a.w, dot);
  dot = __dp4a(wq[4], c.x, dot);
  dot = __dp4a(wq[5], c.y, dot);
  dot = __dp4a(wq[6], c.z, dot);
  return __dp4a(wq[7], c.w, dot);
}

// Block b of every input row: its 32 int8 values (as two int4) and (scale, sum).
template <int NR>
__device__ __forceinline__ void load_input(const int8_t *q, const float2 *ds, int64_t k, int nb, int b, int4 *xa,
                                           int4 *xc, float2 *d) {
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const int4 *xq = reinterpret_cast<const int4 *>(q + r * k + b * 32);
    xa[r] = xq[0];
    xc[r] = xq[1];
    d[r] = ds[r * nb + b];
  }
}

// I4: a row is k / 2 bytes, 16-byte blocks of 32 values (low nibbles: values
// 0..15 of the block, high nibbles: 16..31); value = (q - z) * scale.
template <int NR>
__device__ __forceinline__ void dot_i4(const DevWeight &w, int64_t row0, int nvalid, int64_t k, const int8_t *q,
                                       const float2 *ds, float (&acc)[R][NR]) {
  const int lane = threadIdx.x & 31;
  const int nb = static_cast<int>(k / 32), gpr = static_cast<int>(k / w.group);
  const GroupOf group_of(static_cast<int>(w.group / 32));
  const uint4 *wr = reinterpret_cast<const uint4 *>(static_cast<const uint8_t *>(w.data) + row0 * (k / 2));
  for (int b = lane; b < nb; b += 32) {
    uint4 wv[R];
#pragma unroll
    for (int rr = 0; rr < R; ++rr) wv[rr] = rr < nvalid ? __ldcs(wr + rr * nb + b) : make_uint4(0, 0, 0, 0);
    int4 xa[NR], xc[NR];
    float2 d[NR];
    load_input<NR>(q, ds, k, nb, b, xa, xc, d);
    const int g = group_of(b);
#pragma unroll
    for (int rr = 0; rr < R; ++rr) {
      if (rr >= nvalid) break;
      const int64_t gi = (row0 + rr) * gpr + g;
      const float scale = f16_bits_to_float(w.scales[gi]);
      const int z = w.zeros ? static_cast<const uint8_t *>(w.zeros)[gi] : 8;
      const uint4 v = wv[rr];
      const int lo0 = v.x & 0x0F0F0F0F, lo1 = v.y & 0x0F0F0F0F, lo2 = v.z & 0x0F0F0F0F, lo3 = v.w & 0x0F0F0F0F;
      const int hi0 = (v.x >> 4) & 0x0F0F0F0F, hi1 = (v.y >> 4) & 0x0F0F0F0F, hi2 = (v.z >> 4) & 0x0F0F0F0F,
                hi3 = (v.w >> 4) & 0x0F0F0F0F;
      const int wq[8] = {lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3};
#pragma unroll
      for (int r = 0; r < NR; ++r)
        acc[rr][r] += scale * d[r].x * static_cast<float>(dot32(wq, xa[r], xc[r]) - z * static_cast<int>(d[r].y));
    }
  }
}

// I8: a row is k int8 values; value = (q - z) * scale.
template <int NR>
__device__ __forceinline__ void dot_i8(const DevWeight &w, int64_t row0, int nvalid, int64_t k, const int8_t *q,
                                       const float2 *ds, float (&acc)[R][NR]) {
  const int lane = threadIdx.x & 31;
  const int nb = static_cast<int>(k / 32), gpr = static_cast<int>(k / w.group);
  const GroupOf group_of(static_cast<int>(w.group / 32));
  const uint4 *wr = reinterpret_cast<const uint4 *>(static_cast<const int8_t *>(w.data) + row0 * k);
  for (int b = lane; b < nb; b += 32) {
    uint4 w0[R], w1[R];
#pragma unroll
    for (int rr = 0; rr < R; ++rr) {
      w0[rr] = rr < nvalid ? __ldcs(wr + rr * 2 * nb + 2 * b) : make_uint4(0, 0, 0, 0);
      w1[rr] = rr < nvalid ? __ldcs(wr + rr * 2 * nb + 2 * b + 1) : make_uint4(0, 0, 0, 0);
    }
    int4 xa[NR], xc[NR];
    float2 d[NR];
    load_input<NR>(q, ds, k, nb, b, xa, xc, d);
    const int g = group_of(b);
#pragma unroll
    for (int rr = 0; rr < R; ++rr) {
      if (rr >= nvalid) break;
      const int64_t gi = (row0 + rr) * gpr + g;
      const float scale = f16_bits_to_float(w.scales[gi]);
      const int z = w.zeros ? static_cast<const int8_t *>(w.zeros)[gi] : 0;
      const int wq[8] = {static_cast<int>(w0[rr].x), static_cast<int>(w0[rr].y), static_cast<int>(w0[rr].z),
                         static_cast<int>(w0[rr].w), static_cast<int>(w1[rr].x), static_cast<int>(w1[rr].y),
                         static_cast<int>(w1[rr].z), static_cast<int>(w1[rr].w)};
#pragma unroll
      for (int r = 0; r < NR; ++r)
        acc[rr][r] += scale * d[r].x * static_cast<float>(dot32(wq, xa[r], xc[r]) - z * static_cast<int>(d[r].y));
    }
  }
}

template <WType T>
__device__ __forceinline__ float float_elem(const void *row, int64_t c) {
  if constexpr (T == WType::F32) return static_cast<const float *>(row)[c];
  if constexpr (T == WType::F16) return f16_bits_to_float(static_cast<const uint16_t *>(row)[c]);
  return bf16_bits_to_float(static_cast<const uint16_t *>(row)[c]);
}

template <WType T>
__device__ __forceinline__ void load8(const void *row, int64_t c, float *o) {
  if constexpr (T == WType::F32) {
    const float4 a = __ldcs(reinterpret_cast<const float4 *>(static_cast<const float *>(row) + c));
    const float4 b = __ldcs(reinterpret_cast<const float4 *>(static_cast<const float *>(row) + c + 4));
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
  } else {
    unpack8_16bit<T == WType::F16>(__ldcs(reinterpret_cast<const uint4 *>(static_cast<const uint16_t *>(row) + c)), o);
  }
}

// Float weights against the fp32 input; `vec`: k % 8 == 0 and ldx % 4 == 0.
template <WType T, int NR>
__device__ __forceinline__ void dot_float(const DevWeight &w, int64_t row0, int nvalid, int64_t k, const float *x,
                                          int64_t ldx, bool vec, float (&acc)[R][NR]) {
  const int lane = threadIdx.x & 31;
  const size_t esize = T == WType::F32 ? 4 : 2;
  const uint8_t *base = static_cast<const uint8_t *>(w.data) + row0 * k * esize;
  if (vec) {
    for (int64_t c = lane * 8; c < k; c += 256) {
      float wv[R][8];
#pragma unroll
      for (int rr = 0; rr < R; ++rr)
        if (rr < nvalid) load8<T>(base + rr * k * esize, c, wv[rr]);
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        const float4 a = *reinterpret_cast<const float4 *>(x + r * ldx + c);
        const float4 b = *reinterpret_cast<const float4 *>(x + r * ldx + c + 4);
#pragma unroll
        for (int rr = 0; rr < R; ++rr) {
          if (rr >= nvalid) break;
          acc[rr][r] += wv[rr][0] * a.x + wv[rr][1] * a.y + wv[rr][2] * a.z + wv[rr][3] * a.w +
                        wv[rr][4] * b.x + wv[rr][5] * b.y + wv[rr][6] * b.z + wv[rr][7] * b.w;
        }
      }
    }
    return;
  }
  for (int rr = 0; rr < R; ++rr) {
    if (rr >= nvalid) break;
    const void *wr = base + rr * k * esize;
    for (int64_t c = lane; c < k; c += 32) {
      const float wv = float_elem<T>(wr, c);
#pragma unroll
      for (int r = 0; r < NR; ++r) acc[rr][r] += wv * x[r * ldx + c];
    }
  }
}

template <int NR>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __grid_constant__ GemvJobs jobs, int64_t k,
                                                           const float *x, int64_t ldx, const int8_t *q,
                                                           const float2 *ds, bool vec) {
  pdl_begin();
  const int lane = threadIdx.x & 31;
  // Warps are numbered across the jobs; job j owns ceil(rows_j / R) of them.
  int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  int j = 0;
  while (j < jobs.n_jobs && warp >= jobs.warp_end[j]) ++j;
  if (j == jobs.n_jobs) return;
  if (j > 0) warp -= jobs.warp_end[j - 1];
  const GemvJob &job = jobs.job[j];
  const int64_t row0 = warp * R;
  const int nvalid = static_cast<int>(job.w.rows - row0 < R ? job.w.rows - row0 : R);
  float acc[R][NR];
#pragma unroll
  for (int rr = 0; rr < R; ++rr)
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[rr][r] = 0.0f;
  switch (job.w.type) {
    case WType::I4: dot_i4<NR>(job.w, row0, nvalid, k, q, ds, acc); break;
    case WType::I8: dot_i8<NR>(job.w, row0, nvalid, k, q, ds, acc); break;
    case WType::F32: dot_float<WType::F32, NR>(job.w, row0, nvalid, k, x, ldx, vec, acc); break;
    case WType::F16: dot_float<WType::F16, NR>(job.w, row0, nvalid, k, x, ldx, vec, acc); break;
    case WType::BF16: dot_float<WType::BF16, NR>(job.w, row0, nvalid, k, x, ldx, vec, acc); break;
  }
#pragma unroll
  for (int rr = 0; rr < R; ++rr) {
    if (rr >= nvalid) break;
    const int64_t row = row0 + rr;
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[rr][r] = warp_sum(acc[rr][r]);
    if (lane == 0) {
      const float b = job.bias ? job.bias[row] : 0.0f;
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        float *o = job.out + r * job.ldo + row;
        const float v = acc[rr][r] + b;
        *o = job.accumulate ? *o + v : v;
      }
    }
  }
}

template <int NR>
void launch_gemv(const GemvJobs &jobs, unsigned blocks, int64_t k, const float *x, int64_t ldx, const int8_t *q,
                 const float2 *ds, bool vec, cudaStream_t s) {
  launch(gemv_kernel<NR>, blocks, kWarps * 32, s, jobs, k, x, ldx, q, ds, vec);
}

}  // namespace

void gemv(const GemvJob *job, int n_jobs, int64_t n, int64_t k, const float *x, int64_t ldx,
          const void *quant_scratch, cudaStream_t s) {
  GemvJobs jobs{};
  int64_t warps = 0;
  for (int i = 0; i < n_jobs; ++i) {
    jobs.job[i] = job[i];
    warps += (job[i].w.rows + kRowsPerWarp - 1) / kRowsPerWarp;
    jobs.warp_end[i] = warps;
  }
  jobs.n_jobs = n_jobs;
  const QuantInput qi =
      quant_scratch ? quant_input_at(const_cast<void *>(quant_scratch), n, k) : QuantInput{nullptr, nullptr};
  const bool vec = k % 8 == 0 && ldx % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const unsigned blocks = ceil_div(warps, kWarps);
  switch (n) {
    case 1: launch_gemv<1>(jobs, blocks, k, x, ldx, qi.q, qi.ds, vec, s); break;
    case 2: launch_gemv<2>(jobs, blocks, k, x, ldx, qi.q, qi.ds, vec, s); break;
    case 3: launch_gemv<3>(jobs, blocks, k, x, ldx, qi.q, qi.ds, vec, s); break;
    case 4: launch_gemv<4>(jobs, blocks, k, x, ldx, qi.q, qi.ds, vec, s); break;
    case 5: launch_gemv<5>(jobs, blocks, k, x, ldx, qi.q, qi.ds, vec, s); break;
    case 6: launch_gemv<6>(jobs, blocks, k, x, ldx, qi.q, qi.ds, vec, s); break;
    case 7: launch_gemv<7>(jobs, blocks, k, x, ldx, qi.q, qi.ds, vec, s); break;
    default: launch_gemv<8>(jobs, blocks, k, x, ldx, qi.q, qi.ds, vec, s); break;
  }
  LLM_CUDA_LAUNCH_CHECK();
}

}  // namespace llm::cuda
