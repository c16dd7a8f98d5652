// CPU compute kernels. Portable scalar code plus SIMD paths chosen at run
// time (x86-64: AVX2/FMA, AVX-512; aarch64: NEON; see cpu_features.cpp). All functions use fp32
// arithmetic, never allocate, and take their parallelism from the ThreadPool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "format/model_meta.h"  // DType

namespace llm {
class ThreadPool;
}

namespace llm::cpu {

// Which SIMD path the kernels use. set_isa (for tests and benchmarks) selects
// a path explicitly; Auto picks the best the CPU supports.
//  Avx2       AVX2 + FMA + F16C for every kernel.
//  Avx512     Avx2, plus the quantized matmul in AVX-512BW (512-bit maddubs).
//  Avx512Vnni Avx512 with the quantized matmul on VNNI (vpdpbusd).
//  Neon       aarch64 Advanced SIMD for every kernel (int8 products by
//             widening multiplies).
//  NeonDot    Neon with the quantized matmul on the dot-product extension
//             (sdot, ARMv8.2 FEAT_DotProd).
// Values are appended, never renumbered.
enum class Isa { Auto, Scalar, Avx2, Avx512, Avx512Vnni, Neon, NeonDot };
void set_isa(Isa isa);   // not thread-safe; call before running kernels
Isa active_isa();
bool isa_supported(Isa isa);
const char *isa_name(Isa isa);
// Every path this CPU can run (never Auto), Scalar first, best last.
std::vector<Isa> available_isas();

// fp16 / bf16 <-> fp32 conversions (round-to-nearest-even on the way down).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);
void convert_row_to_f32(const void *src, DType dtype, int64_t n, float *dst);

// out[i][j] = sum_k x[i][k] * W[j][k] (+ bias[j] when bias != nullptr)
// x: n rows of k floats, row stride ldx; W: m rows of k elements of `wtype`
// (F32, F16 or BF16), rows contiguous; out: n rows, row stride ldo.
// Parallel over rows of W; handles n == 1 (decode) and n > 1 (prefill)
// efficiently (weights are streamed once per call for any n).
void matmul(ThreadPool &pool, const float *x, int64_t n, int64_t k, int64_t ldx,
            const void *W, DType wtype, int64_t m, const float *bias,
            float *out, int64_t ldo);

// out = x / sqrt(mean(x^2) + eps) * w, for each of n rows of dim floats.
void rmsnorm(const float *x, const float *w, int64_t n, int64_t dim, float eps, float *out);

// In place: gate[i] = silu(gate[i]) * up[i] for i < n.
void silu_mul(float *gate, const float *up, int64_t n);

// In place: x[i] += y[i].
void add(float *x, const float *y, int64_t n);

// In place, numerically stable softmax of n floats.
void softmax(float *x, int64_t n);

// Rotary embedding, Hugging Face "rotate_half" layout: for each head, pairs
// (i, i + head_dim/2) are rotated by angle with cos[i], sin[i] (i < head_dim/2).
// x: n_heads rows of head_dim floats (contiguous).
void rope(float *x, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin);

// Attention over the KV cache: see paged_attention in kernels/cpu/kv.h.

}  // namespace llm::cpu
