// Internal declarations shared by the CPU kernel translation units: the
// per-ISA bodies that the public entry points in kernels.h dispatch to.
// Functions with an _avx2 suffix live in *_avx2.cpp files (compiled with
// -mavx2 -mfma -mf16c) and may only be called when active_isa() == Avx2.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace llm::cpu::detail {

// True when the AVX2 path is selected (never on non-x86 builds).
inline bool use_avx2() { return active_isa() == Isa::Avx2; }

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

}  // namespace llm::cpu::detail
