// Internal declarations shared by the quantized-kernel translation units
// (quant.cpp, quant_avx2.cpp, quant_avx512*.cpp, quant_neon*.cpp): the scratch layout of quantized activations,
// the arguments of a matmul_q task, and the per-ISA bodies.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/quant.h"

namespace llm::cpu::detail {

// ---- quantized activations ---------------------------------------------------
//
// Blocks are handled in octets of 8 (256 elements). Within an octet the
// SIMD code gives every block one 32-bit lane, in the lane order
//     lane s : block kOctetBlock[s] = 0 2 4 6 1 3 5 7
// (what the 128-bit-lane-local unpack instructions produce for free), so
// that sums over an octet are plain vector adds and one float scale vector
// covers 8 blocks.
//
// Scratch layout written by quantize_acts for n rows of k = 32 * nb floats,
// nb8 = nb rounded up to 8. Every region starts 64-byte aligned; region rows
// are contiguous.
//   q    : nb8 * 32 int8 per row. Octet o is 256 bytes: 8 vectors of 32
//          bytes, vector v holding elements 4v..4v+3 of the octet's 8 blocks
//          in lane order (4 bytes per lane). Blocks past nb are zero.
//   d    : nb float block scales (x ~= q * d), natural order
//   sum  : nb int32 block sums (sum of the 32 int8 values), natural order
//   dp   : nb8 floats, the block scales in octet lane order (0 past nb)
//   dsum : nb8 floats, d * sum in octet lane order (0 past nb), for applying
//          zero points in float
//   zsum : nb8 int32, -8 * sum in octet lane order (0 past nb): the zero-point
//          term of symmetric int4 weights (nibble - 8), for applying it to
//          the integer dot products before their conversion to float

constexpr int64_t kOctet = 8;
constexpr int64_t kOctetBytes = kOctet * kActBlock;
constexpr int kOctetBlock[kOctet] = {0, 2, 4, 6, 1, 3, 5, 7};

inline int64_t align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

// Lane of block j (0..7) within its octet: the inverse of kOctetBlock.
inline int64_t octet_lane(int64_t j) { return (j % 2) * 4 + j / 2; }

// Byte offset within a row of q of elements e..e+3 (e % 4 == 0) of block b.
inline int64_t act_unit_offset(int64_t b, int64_t e) {
  return (b / kOctet) * kOctetBytes + (e / 4) * 32 + octet_lane(b % kOctet) * 4;
}

struct ActsLayout {
  int64_t k = 0, nb = 0, nb8 = 0, q_row = 0;
  int64_t d_offset = 0, sum_offset = 0, dp_offset = 0, dsum_offset = 0, zsum_offset = 0, bytes = 0;
  ActsLayout(int64_t n, int64_t k_) : k(k_), nb(k_ / kActBlock), nb8((nb + 7) / 8 * 8), q_row(nb8 * kActBlock) {
    d_offset = align64(n * q_row);
    sum_offset = d_offset + align64(n * nb * 4);
    dp_offset = sum_offset + align64(n * nb * 4);
    dsum_offset = dp_offset + align64(n * nb8 * 4);
    zsum_offset = dsum_offset + align64(n * nb8 * 4);
    bytes = zsum_offset + align64(n * nb8 * 4);
  }
};

// One row of the scratch regions (for writing).
struct ActRow {
  int8_t *q;
  float *d;
  int32_t *sum;
  float *dp;
  float *dsum;
  int32_t *zsum;
};

// Read-only view of all rows, used by the matmul bodies: token i's data is
// q + i * q_row, d / sum + i * nb, dp / dsum / zsum + i * nb8.
struct Acts {
  const int8_t *q;
  const float *d;
  const int32_t *sum;
  const float *dp;
  const float *dsum;
  const int32_t *zsum;
  int64_t k, nb, nb8, q_row;
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

// Writes dp and dsum (padding included) of a row whose d and sum are done.
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
  // This thread's share of matmul_q's work area (kWideWorkBytes), or nullptr.
  uint8_t *work;
};

// The work area of the wide tile (quant_x86_impl.h), per thread: decoded
// weight octets of up to kWideWorkRows rows (one range chunk) over one
// k-panel plus the partial octet past it (kWideWorkOctets), one slot of at
// most kWideWorkSlotBytes per row pair and octet.
constexpr int64_t kWideWorkRows = 64;
constexpr int64_t kWideWorkOctets = 9;
constexpr int64_t kWideWorkSlotBytes = 768;
constexpr size_t kWideWorkBytes = kWideWorkRows / 2 * kWideWorkOctets * kWideWorkSlotBytes;

// Computes out[i][j] for all tokens i and weight rows j in [j0, j1).
void matmul_q_rows_scalar(const QMatmulArgs &a, int64_t j0, int64_t j1);

// Exact integer dot product of activation block b of token t with weight row
// `row`, zero point included: sum_e (q_w[e] - z) * q_x[e] over 32 elements.
int32_t block_dot_scalar(const QMatmulArgs &a, int64_t row, int64_t t, int64_t b);

#if defined(LLM_HAVE_X86)
void quantize_row_avx2(const float *x, int64_t nb, int64_t nb8, const ActRow &row);
void matmul_q_rows_avx2(const QMatmulArgs &a, int64_t j0, int64_t j1);
void matmul_q_rows_avx512(const QMatmulArgs &a, int64_t j0, int64_t j1);       // AVX-512BW
void matmul_q_rows_avx512vnni(const QMatmulArgs &a, int64_t j0, int64_t j1);   // + VNNI
#endif

#if defined(LLM_HAVE_NEON)
void quantize_row_neon(const float *x, int64_t nb, int64_t nb8, const ActRow &row);
void matmul_q_rows_neon(const QMatmulArgs &a, int64_t j0, int64_t j1);
void matmul_q_rows_neon_dot(const QMatmulArgs &a, int64_t j0, int64_t j1);  // sdot
#endif

}  // namespace llm::cpu::detail
