// Internal declarations shared by the quantized-kernel translation units
// (quant.cpp, quant_avx2.cpp): the scratch layout of quantized activations,
// the arguments of a matmul_q task, and the per-ISA bodies.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/quant.h"

namespace llm::cpu::detail {

// ---- quantized activations ---------------------------------------------------
//
// Scratch layout written by quantize_acts for n rows of k = 32 * nb floats.
// Every region starts 64-byte aligned; row i of a region with row length L
// starts at element i * L.
//   q    : k int8 per row. Blocks go in pairs (2p, 2p + 1) of 64 bytes,
//          first halves then second halves:
//              b0[0..15] b1[0..15] b0[16..31] b1[16..31]
//          so that one 256-bit multiply covers half of each block, matching
//          the low / high nibbles of 32 bytes of I4 weights. When nb is odd
//          the last block is stored as is (act_half_offset).
//   d    : nb float block scales (x ~= q * d)
//   sum  : nb int32 block sums (sum of the 32 int8 values)
//   d4   : 4 * nb floats, each block scale repeated 4 times: a pair's
//          [d0 d0 d0 d0 d1 d1 d1 d1] lines up with the int32 lanes of its
//          dot products, so SIMD code loads it instead of building it
//   dsum : nb8 = nb rounded up to 8 floats, d * sum per block (zero padded),
//          for applying zero points in float, 8 blocks at a time

inline int64_t align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

struct ActsLayout {
  int64_t k = 0, nb = 0, nb8 = 0;
  int64_t d_offset = 0, sum_offset = 0, d4_offset = 0, dsum_offset = 0, bytes = 0;
  ActsLayout(int64_t n, int64_t k_) : k(k_), nb(k_ / kActBlock), nb8((nb + 7) / 8 * 8) {
    d_offset = align64(n * k);
    sum_offset = d_offset + align64(n * nb * 4);
    d4_offset = sum_offset + align64(n * nb * 4);
    dsum_offset = d4_offset + align64(n * nb * 16);
    bytes = dsum_offset + align64(n * nb8 * 4);
  }
};

// Byte offset within a row of q of half h (0: elements 0..15, 1: 16..31) of
// block b.
inline int64_t act_half_offset(int64_t nb, int64_t b, int h) {
  if (nb % 2 == 1 && b == nb - 1) return b * kActBlock + 16 * h;
  return 64 * (b / 2) + 32 * h + 16 * (b % 2);
}

// One row of the scratch regions (for writing).
struct ActRow {
  int8_t *q;
  float *d;
  int32_t *sum;
  float *d4;
  float *dsum;
};

// Read-only view of all rows, used by the matmul bodies.
struct Acts {
  const int8_t *q;
  const float *d;
  const int32_t *sum;
  const float *d4;
  const float *dsum;
  int64_t k, nb, nb8;
};

// Blocks whose largest magnitude is below this are stored as all zeros with
// d = 0: the reciprocal 127 / max|x| would overflow to infinity for the
// tiniest inputs, and such values cannot matter next to any normal weight.
constexpr float kMinBlockMax = 1e-30f;

// Scale and its reciprocal for a block whose largest magnitude is amax. Both
// the scalar and the SIMD paths use exactly this arithmetic so that they
// quantize bit-identically (q = round-to-nearest-even(x * inv)).
inline void block_scale(float amax, float *d, float *inv) {
  if (amax < kMinBlockMax) {
    *d = 0.0f;
    *inv = 0.0f;
  } else {
    *d = amax / 127.0f;
    *inv = 1.0f / *d;
  }
}

// Writes the per-block values derived from d and sum (d4, dsum) and the dsum
// padding of a row whose d and sum are complete.
void finish_act_row(int64_t nb, int64_t nb8, const ActRow &row);

// Quantizes one row of nb blocks of 32 floats.
void quantize_row_scalar(const float *x, int64_t nb, int64_t nb8, const ActRow &row);

// ---- matmul_q ----------------------------------------------------------------------

struct QMatmulArgs {
  Acts x;
  int64_t n;          // tokens
  DType dtype;        // I8 or I4
  int64_t rows, cols, group;
  int64_t row_bytes;  // bytes of q per weight row
  int64_t groups;     // groups per weight row (cols / group)
  const uint8_t *q;
  const uint16_t *scales;
  const uint8_t *zeros;  // nullptr: symmetric; else int8 (I8) or uint8 (I4)
  const float *bias;
  float *out;
  int64_t ldo;
};

// Computes out[i][j] for all tokens i and weight rows j in [j0, j1).
void matmul_q_rows_scalar(const QMatmulArgs &a, int64_t j0, int64_t j1);

// Exact integer dot product of activation block b of token t with weight row
// `row`, zero point included: sum_e (q_w[e] - z) * q_x[e] over 32 elements.
int32_t block_dot_scalar(const QMatmulArgs &a, int64_t row, int64_t t, int64_t b);

#if defined(LLM_HAVE_X86)
void quantize_row_avx2(const float *x, int64_t nb, int64_t nb8, const ActRow &row);
void matmul_q_rows_avx2(const QMatmulArgs &a, int64_t j0, int64_t j1);
#endif

}  // namespace llm::cpu::detail
