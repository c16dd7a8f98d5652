// Quantized matrix products on the CPU: int8 / int4 group-quantized weights
// against activations quantized on the fly to int8.
//
// Weight layout (as stored in the model file, see docs/format.md):
//   W is [rows][cols], quantized along cols in groups of `group` elements
//   (group is a multiple of 32 and divides cols). Real value:
//       w = (q - z) * scale[row][col / group]
//   scales: f16, [rows][cols / group].
//   I8: q is int8 in [-128, 127], one byte per element, row-major.
//       z = 0 (symmetric) or zeros[row][col / group] as int8 (asymmetric).
//   I4: q is unsigned in [0, 15]; each row is cols / 2 bytes made of blocks
//       of 16 bytes covering 32 consecutive elements: byte i of a block holds
//       element i in its low nibble and element i + 16 in its high nibble.
//       z = 8 (symmetric) or zeros[row][col / group] as uint8 in [0, 15].
//
// Activation layout (QuantizedActs): each row of k floats is split into
// blocks of 32; a block stores 32 int8 values, its float scale d (x ≈ q * d)
// and the int32 sum of its 32 values (used to apply zero points cheaply).
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/model_meta.h"

namespace llm {
class ThreadPool;
}

namespace llm::cpu {

constexpr int64_t kActBlock = 32;

struct QuantWeight {
  DType dtype = DType::I4;       // I8 or I4
  int64_t rows = 0, cols = 0;
  int64_t group = 32;
  const void *q = nullptr;        // quantized values
  const uint16_t *scales = nullptr;  // f16, rows * cols / group
  const void *zeros = nullptr;    // nullptr: symmetric
};

// Bytes of scratch needed to hold n rows of k activations quantized
// (k must be a multiple of 32).
size_t quantized_acts_bytes(int64_t n, int64_t k);

// Quantizes n rows of k floats (row stride ldx) into `scratch` (at least
// quantized_acts_bytes(n, k) bytes, 64-byte aligned). Round to nearest,
// scale = max|x| / 127 per block of 32.
void quantize_acts(ThreadPool &pool, const float *x, int64_t n, int64_t k, int64_t ldx, void *scratch);

// Bytes of the optional work area of matmul_q for products of n tokens on a
// pool of `threads`: where not 0, products of more than 8 tokens (prompts)
// on the AVX-512 paths keep each weight octet they decode there and reuse it
// for every tile of 8 tokens, instead of decoding it again per tile. 0 where
// no path uses it (n <= 8, builds without x86 kernels).
size_t matmul_q_work_bytes(int threads, int64_t n);

// out[i][j] = sum_k x[i][k] * W[j][k] (+ bias[j]) where x was quantized into
// `acts` by quantize_acts(.., n, W.cols, ..). Parallel over rows of W; weights
// are streamed once per call for any n. `work`: nullptr, or
// matmul_q_work_bytes(pool.size(), n) bytes, 64-byte aligned; the results are
// the same either way, bit for bit. Never allocates.
void matmul_q(ThreadPool &pool, const void *acts, int64_t n, const QuantWeight &W, const float *bias,
              float *out, int64_t ldo, void *work = nullptr);

// Dequantizes one row of W into n = W.cols floats (for embedding lookups).
void dequantize_row(const QuantWeight &W, int64_t row, float *out);

}  // namespace llm::cpu
