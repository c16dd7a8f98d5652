// Matrix-vector products for decoding (up to kGemvMaxRows input rows): a
// warp computes R consecutive output features, each lane streaming 16-byte
// pieces of the weight rows once for all input rows. Quantized weights:
// integer dot products of the 4- or 8-bit values with the int8-quantized
// input, one scale (and zero-point) per group; float weights: fp32 products
// with the fp32 input. Several weights sharing one input (q, k, v; gate, up)
// run in one launch.
//
// Decoding is bound by how fast the weights stream in, so each lane issues
// all the loads of U pieces per row (weights, scales, zero-points) before it
// uses any of them, and the first of those loads go out before the kernel
// waits for the previous one (pdl_wait): weights do not change during a step.
// R and U are chosen per launch (gemv below) from the number of rows and k.
#include "kernels/cuda/common.cuh"

namespace llm::cuda {
namespace {

constexpr int kWarps = 8;

struct GemvJobs {
  GemvJob job[kMaxGemvJobs];
  int64_t warp_end[kMaxGemvJobs];  // cumulative warps
  int n_jobs;
};

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

// Waits for the previous kernel once (see the top of the file).
__device__ __forceinline__ void wait_once(bool &waited) {
  if (!waited) {
    pdl_wait();
    waited = true;
  }
}

// Quantized weights. I4: a row is k / 2 bytes, one 16-byte piece per block
// of 32 values (low nibbles: values 0..15, high nibbles: 16..31), value =
// (q - z) * scale with z = 8 when symmetric. I8: a row is k int8 values, two
// 16-byte pieces per block; z = 0 when symmetric.
template <bool kI4, int NR, int R, int U>
__device__ __forceinline__ void dot_quant(const DevWeight &w, int64_t row0, int nvalid, int64_t k, const int8_t *q,
                                          const float2 *ds, float (&acc)[R][NR], bool &waited) {
  constexpr int C = kI4 ? 1 : 2;  // 16-byte pieces per block of 32
  const int lane = threadIdx.x & 31;
  const int nb = static_cast<int>(k / 32), gpr = static_cast<int>(k / w.group);
  const GroupOf group_of(static_cast<int>(w.group / 32));
  const uint4 *wr = reinterpret_cast<const uint4 *>(static_cast<const uint8_t *>(w.data) + row0 * nb * C * 16);
  for (int b0 = 0; b0 < nb; b0 += 32 * U) {
    uint4 wv[R][U][C];
    float scale[R][U];
    int zero[R][U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int b = b0 + u * 32 + lane;
#pragma unroll
      for (int rr = 0; rr < R; ++rr) {
        const bool ok = b < nb && rr < nvalid;
#pragma unroll
        for (int c = 0; c < C; ++c) wv[rr][u][c] = ok ? __ldcs(wr + (rr * nb + b) * C + c) : make_uint4(0, 0, 0, 0);
        const int64_t gi = (row0 + rr) * gpr + group_of(b);
        scale[rr][u] = ok ? f16_bits_to_float(__ldg(w.scales + gi)) : 0.0f;
        if constexpr (kI4)
          zero[rr][u] = ok && w.zeros ? __ldg(static_cast<const uint8_t *>(w.zeros) + gi) : 8;
        else
          zero[rr][u] = ok && w.zeros ? __ldg(static_cast<const int8_t *>(w.zeros) + gi) : 0;
      }
    }
    wait_once(waited);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int b = b0 + u * 32 + lane;
      if (b >= nb) break;
      int4 xa[NR], xc[NR];  // block b of every input row: 32 int8 values and (scale, sum)
      float2 d[NR];
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        const int4 *xq = reinterpret_cast<const int4 *>(q + r * k + b * 32);
        xa[r] = xq[0];
        xc[r] = xq[1];
        d[r] = ds[r * nb + b];
      }
#pragma unroll
      for (int rr = 0; rr < R; ++rr) {
        int wq[8];
        if constexpr (kI4) {
          const uint4 v = wv[rr][u][0];
          wq[0] = v.x & 0x0F0F0F0F, wq[1] = v.y & 0x0F0F0F0F, wq[2] = v.z & 0x0F0F0F0F, wq[3] = v.w & 0x0F0F0F0F;
          wq[4] = (v.x >> 4) & 0x0F0F0F0F, wq[5] = (v.y >> 4) & 0x0F0F0F0F, wq[6] = (v.z >> 4) & 0x0F0F0F0F;
          wq[7] = (v.w >> 4) & 0x0F0F0F0F;
        } else {
          const uint4 a = wv[rr][u][0], c = wv[rr][u][C - 1];
          wq[0] = a.x, wq[1] = a.y, wq[2] = a.z, wq[3] = a.w, wq[4] = c.x, wq[5] = c.y, wq[6] = c.z, wq[7] = c.w;
        }
#pragma unroll
        for (int r = 0; r < NR; ++r)
          acc[rr][r] += scale[rr][u] * d[r].x *
                        static_cast<float>(dot32(wq, xa[r], xc[r]) - zero[rr][u] * static_cast<int>(d[r].y));
      }
    }
  }
}

template <WType T>
__device__ __forceinline__ float float_elem(const void *row, int64_t c) {
  if constexpr (T == WType::F32) return static_cast<const float *>(row)[c];
  if constexpr (T == WType::F16) return f16_bits_to_float(static_cast<const uint16_t *>(row)[c]);
  return bf16_bits_to_float(static_cast<const uint16_t *>(row)[c]);
}

// Values c..c+7 of a float weight row: 32 bytes (F32) or 16 bytes, as loaded.
template <WType T>
struct Piece {
  uint4 v[T == WType::F32 ? 2 : 1];
};
template <WType T>
__device__ __forceinline__ Piece<T> load_piece(const void *row, int64_t c) {
  Piece<T> p;
  if constexpr (T == WType::F32) {
    const uint4 *a = reinterpret_cast<const uint4 *>(static_cast<const float *>(row) + c);
    p.v[0] = __ldcs(a);
    p.v[1] = __ldcs(a + 1);
  } else {
    p.v[0] = __ldcs(reinterpret_cast<const uint4 *>(static_cast<const uint16_t *>(row) + c));
  }
  return p;
}
template <WType T>
__device__ __forceinline__ void unpack_piece(const Piece<T> &p, float *o) {
  if constexpr (T == WType::F32) {
    o[0] = __uint_as_float(p.v[0].x), o[1] = __uint_as_float(p.v[0].y), o[2] = __uint_as_float(p.v[0].z);
    o[3] = __uint_as_float(p.v[0].w), o[4] = __uint_as_float(p.v[1].x), o[5] = __uint_as_float(p.v[1].y);
    o[6] = __uint_as_float(p.v[1].z), o[7] = __uint_as_float(p.v[1].w);
  } else {
    unpack8_16bit<T == WType::F16>(p.v[0], o);
  }
}

// Float weights against the fp32 input; `vec`: k % 8 == 0 and ldx % 4 == 0.
template <WType T, int NR, int R, int U>
__device__ __forceinline__ void dot_float(const DevWeight &w, int64_t row0, int nvalid, int64_t k, const float *x,
                                          int64_t ldx, bool vec, float (&acc)[R][NR], bool &waited) {
  const int lane = threadIdx.x & 31;
  const size_t esize = T == WType::F32 ? 4 : 2;
  const uint8_t *base = static_cast<const uint8_t *>(w.data) + row0 * k * esize;
  if (vec) {
    for (int64_t c0 = 0; c0 < k; c0 += 256 * U) {
      Piece<T> wv[R][U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t c = c0 + u * 256 + lane * 8;
#pragma unroll
        for (int rr = 0; rr < R; ++rr)
          if (c < k && rr < nvalid) wv[rr][u] = load_piece<T>(base + rr * k * esize, c);
      }
      wait_once(waited);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t c = c0 + u * 256 + lane * 8;
        if (c >= k) break;
#pragma unroll
        for (int rr = 0; rr < R; ++rr) {
          if (rr >= nvalid) break;
          float f[8];
          unpack_piece<T>(wv[rr][u], f);
#pragma unroll
          for (int r = 0; r < NR; ++r) {
            const float4 a = *reinterpret_cast<const float4 *>(x + r * ldx + c);
            const float4 b = *reinterpret_cast<const float4 *>(x + r * ldx + c + 4);
            acc[rr][r] += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w + f[4] * b.x + f[5] * b.y +
                          f[6] * b.z + f[7] * b.w;
          }
        }
      }
    }
    return;
  }
  wait_once(waited);
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

// The products of one job's warp: TT is the weight type when every job of
// the launch has it (the kernel then holds only that type's registers), or
// kAnyType.
constexpr int kAnyType = -1;
template <int TT, int NR, int R, int U>
__device__ __forceinline__ void dot_job(const GemvJob &job, int64_t row0, int nvalid, int64_t k, const float *x,
                                        int64_t ldx, const int8_t *q, const float2 *ds, bool vec,
                                        float (&acc)[R][NR], bool &waited) {
  if constexpr (TT == static_cast<int>(WType::I4)) {
    dot_quant<true, NR, R, U>(job.w, row0, nvalid, k, q, ds, acc, waited);
  } else if constexpr (TT == static_cast<int>(WType::I8)) {
    dot_quant<false, NR, R, U>(job.w, row0, nvalid, k, q, ds, acc, waited);
  } else if constexpr (TT == static_cast<int>(WType::F32)) {
    dot_float<WType::F32, NR, R, U>(job.w, row0, nvalid, k, x, ldx, vec, acc, waited);
  } else if constexpr (TT == static_cast<int>(WType::F16)) {
    dot_float<WType::F16, NR, R, U>(job.w, row0, nvalid, k, x, ldx, vec, acc, waited);
  } else if constexpr (TT == static_cast<int>(WType::BF16)) {
    dot_float<WType::BF16, NR, R, U>(job.w, row0, nvalid, k, x, ldx, vec, acc, waited);
  } else {
    switch (job.w.type) {
      case WType::I4: dot_quant<true, NR, R, U>(job.w, row0, nvalid, k, q, ds, acc, waited); break;
      case WType::I8: dot_quant<false, NR, R, U>(job.w, row0, nvalid, k, q, ds, acc, waited); break;
      case WType::F32: dot_float<WType::F32, NR, R, U>(job.w, row0, nvalid, k, x, ldx, vec, acc, waited); break;
      case WType::F16: dot_float<WType::F16, NR, R, U>(job.w, row0, nvalid, k, x, ldx, vec, acc, waited); break;
      case WType::BF16: dot_float<WType::BF16, NR, R, U>(job.w, row0, nvalid, k, x, ldx, vec, acc, waited); break;
    }
  }
}

template <int TT, int NR, int R, int U>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __grid_constant__ GemvJobs jobs, int64_t k,
                                                           const float *x, int64_t ldx, const int8_t *q,
                                                           const float2 *ds, bool vec) {
  pdl_trigger();
  bool waited = false;
  const int lane = threadIdx.x & 31;
  // Warps are numbered across the jobs; job j owns ceil(rows_j / R) of them.
  int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  int j = 0;
  while (j < jobs.n_jobs && warp >= jobs.warp_end[j]) ++j;
  if (j == jobs.n_jobs) {
    pdl_wait();  // this grid finishes only after the previous one
    return;
  }
  if (j > 0) warp -= jobs.warp_end[j - 1];
  const GemvJob &job = jobs.job[j];
  const int64_t row0 = warp * R;
  const int nvalid = static_cast<int>(job.w.rows - row0 < R ? job.w.rows - row0 : R);
  float acc[R][NR];
#pragma unroll
  for (int rr = 0; rr < R; ++rr)
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[rr][r] = 0.0f;
  dot_job<TT, NR, R, U>(job, row0, nvalid, k, x, ldx, q, ds, vec, acc, waited);
  wait_once(waited);
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

// The arguments of one gemv() call, for the launch of the (R, U) it picks.
struct Launch {
  GemvJobs jobs;
  int64_t k;
  const float *x;
  int64_t ldx;
  const int8_t *q;
  const float2 *ds;
  bool vec;
  cudaStream_t s;
};

template <int NR, int R, int U>
void launch_gemv(Launch a) {
  int64_t warps = 0;
  bool same = true;
  for (int i = 0; i < a.jobs.n_jobs; ++i) {
    warps += (a.jobs.job[i].w.rows + R - 1) / R;
    a.jobs.warp_end[i] = warps;
    same = same && a.jobs.job[i].w.type == a.jobs.job[0].w.type;
  }
  const unsigned grid = ceil_div(warps, kWarps), block = kWarps * 32;
  auto go = [&](auto kernel) { launch(kernel, grid, block, a.s, a.jobs, a.k, a.x, a.ldx, a.q, a.ds, a.vec); };
  if (!same) return go(gemv_kernel<kAnyType, NR, R, U>);
  switch (a.jobs.job[0].w.type) {
    case WType::I4: return go(gemv_kernel<static_cast<int>(WType::I4), NR, R, U>);
    case WType::I8: return go(gemv_kernel<static_cast<int>(WType::I8), NR, R, U>);
    case WType::F32: return go(gemv_kernel<static_cast<int>(WType::F32), NR, R, U>);
    case WType::F16: return go(gemv_kernel<static_cast<int>(WType::F16), NR, R, U>);
    case WType::BF16: return go(gemv_kernel<static_cast<int>(WType::BF16), NR, R, U>);
  }
}

// A batch of NR input rows: (RS, US) for launches of fewer than 8192 rows,
// (RM, UM) from 8192 rows on.
template <int NR, int RS, int US, int RM, int UM>
void launch_batch(const Launch &a, int64_t rows) {
  if (rows >= 8192)
    launch_gemv<NR, RM, UM>(a);
  else
    launch_gemv<NR, RS, US>(a);
}

}  // namespace

void gemv(const GemvJob *job, int n_jobs, int64_t n, int64_t k, const float *x, int64_t ldx,
          const void *quant_scratch, cudaStream_t s) {
  GemvJobs jobs{};
  int64_t rows = 0;
  for (int i = 0; i < n_jobs; ++i) {
    jobs.job[i] = job[i];
    rows += job[i].w.rows;
  }
  jobs.n_jobs = n_jobs;
  const QuantInput qi =
      quant_scratch ? quant_input_at(const_cast<void *>(quant_scratch), n, k) : QuantInput{nullptr, nullptr};
  const bool vec = k % 8 == 0 && ldx % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const Launch a{jobs, k, x, ldx, qi.q, qi.ds, vec, s};
  // One input row: R rows per warp, U pieces of each in flight per lane,
  // chosen per weight type and number of rows from a sweep of the choices
  // on an H100 (docs/cuda.md): one row per warp with four pieces in flight
  // for launches of fewer rows, so that they still fill every SM; for many
  // rows, four rows per warp (int4 up to 16K rows, float weights) or one row
  // with one piece (int8, larger int4 launches), which balances the blocks
  // over the SMs better.
  const WType t = job[0].w.type;
  if (n == 1) {
    if (t == WType::I8 && rows >= 4096 && rows < 8192)
      launch_gemv<1, 2, 4>(a);
    else if (rows < (t == WType::I8 ? 4096 : 8192))
      launch_gemv<1, 1, 4>(a);
    else if (t == WType::I8 || (t == WType::I4 && rows >= 16384))
      launch_gemv<1, 1, 1>(a);
    else
      launch_gemv<1, 4, 1>(a);
  } else {
    // Several input rows (batched decode): measured the same way for 2, 4
    // and 8 rows of int4 weights.
    switch (n) {
      case 2: launch_batch<2, 1, 2, 2, 1>(a, rows); break;
      case 3: launch_batch<3, 2, 2, 4, 1>(a, rows); break;
      case 4: launch_batch<4, 2, 2, 4, 1>(a, rows); break;
      case 5: launch_batch<5, 4, 1, 2, 1>(a, rows); break;
      case 6: launch_batch<6, 4, 1, 2, 1>(a, rows); break;
      case 7: launch_batch<7, 4, 1, 2, 1>(a, rows); break;
      default: launch_batch<8, 4, 1, 2, 1>(a, rows); break;
    }
  }
  LLM_CUDA_LAUNCH_CHECK();
}

}  // namespace llm::cuda
