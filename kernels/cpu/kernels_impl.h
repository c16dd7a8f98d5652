// Internal declarations shared by the CPU kernel translation units: the
// per-ISA bodies that the public entry points in kernels.h dispatch to.
// Functions with an _avx2 suffix live in *_avx2.cpp files (compiled with
// -mavx2 -mfma -mf16c) and may only be called when use_avx2(); _avx512 ones
// (quant_avx512*.cpp) only for the matching Avx512 paths. _neon ones live in
// *_neon.cpp files, compiled only for aarch64 (LLM_HAVE_NEON).
#pragma once

#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace llm::cpu::detail {

// True when the AVX2 float kernels are selected: the Avx2 path and the
// AVX-512 paths, which add AVX-512 quantized kernels on top of AVX2 (never
// on non-x86 builds).
inline bool use_avx2() {
  const Isa isa = active_isa();
  return isa == Isa::Avx2 || isa == Isa::Avx512 || isa == Isa::Avx512Vnni;
}

// True when a NEON path is selected (never on non-aarch64 builds).
inline bool use_neon() {
  const Isa isa = active_isa();
  return isa == Isa::Neon || isa == Isa::NeonDot;
}

// Everything a matmul task needs, so that the per-ISA bodies share one shape.
struct MatmulArgs {
  const float *x;
  int64_t n, k, ldx;
  const void *W;
  DType wtype;
  int64_t m;
  const float *bias;
  float *out;
  int64_t ldo;
};

// Computes output columns [j0, j1) (weight rows j0..j1-1) for all n tokens.
// k > 0 is guaranteed by the caller.
void matmul_rows_scalar(const MatmulArgs &a, int64_t j0, int64_t j1);

// Scalar conversion of n elements of a dense float type (F32/F16/BF16).
void convert_row_scalar(const void *src, DType dtype, int64_t n, float *dst);

// Small vector primitives used by attention.
float dot_scalar(const float *a, const float *b, int64_t n);
void axpy_scalar(float alpha, const float *x, float *y, int64_t n);  // y += alpha*x
void softmax_scalar(float *x, int64_t n);

#if defined(LLM_HAVE_X86)
void matmul_rows_avx2(const MatmulArgs &a, int64_t j0, int64_t j1);
float dot_avx2(const float *a, const float *b, int64_t n);
void axpy_avx2(float alpha, const float *x, float *y, int64_t n);
void softmax_avx2(float *x, int64_t n);
void silu_mul_avx2(float *gate, const float *up, int64_t n);
void convert_row_avx2(const void *src, DType dtype, int64_t n, float *dst);
#endif

#if defined(LLM_HAVE_NEON)
void matmul_rows_neon(const MatmulArgs &a, int64_t j0, int64_t j1);
float dot_neon(const float *a, const float *b, int64_t n);
void axpy_neon(float alpha, const float *x, float *y, int64_t n);
void softmax_neon(float *x, int64_t n);
void silu_mul_neon(float *gate, const float *up, int64_t n);
void convert_row_neon(const void *src, DType dtype, int64_t n, float *dst);
void rmsnorm_neon(const float *x, const float *w, int64_t n, int64_t dim, float eps, float *out);
void add_neon(float *x, const float *y, int64_t n);
void rope_neon(float *x, int64_t n_heads, int64_t head_dim, const float *cos, const float *sin);
#endif

// The vector primitives of the active path, for kernels (attention) that
// hand them to their tasks as function pointers.
struct VectorOps {
  float (*dot)(const float *, const float *, int64_t);
  void (*axpy)(float, const float *, float *, int64_t);
  void (*softmax)(float *, int64_t);
};
VectorOps vector_ops();

}  // namespace llm::cpu::detail
