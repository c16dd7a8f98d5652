// Group-wise weight quantization for the converter: int8 / int4, symmetric or
// with zero points, r = (q - z) * s with one f16 scale (and zero point) per
// group of `group_size` consecutive elements of a row. Produces the layouts
// described in kernels/cpu/quant.h.
//
// Scales are chosen per group either by round-to-nearest of the group's range
// or (search = true, the default) by trying a grid of candidate scales (and,
// asymmetric, clipping ranges) and keeping the one with the smallest squared
// reconstruction error, each error term weighted by the importance of its
// input column when calibration statistics are given (mean square of the
// activation feeding that column, in the spirit of AWQ and llama.cpp's
// importance matrix): columns that see large activations are reproduced more
// faithfully.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "format/model_meta.h"

namespace llm::convert {

struct QuantConfig {
  DType dtype = DType::I4;   // I8 or I4
  uint32_t group_size = 32;  // multiple of 32
  bool asymmetric = false;
  bool search = true;        // false: plain round-to-nearest
};

// Running reconstruction-error totals of one tensor.
struct QuantError {
  double sum_sq_err = 0, sum_sq = 0, max_abs = 0;
  double relative_rmse() const { return sum_sq > 0 ? std::sqrt(sum_sq_err / sum_sq) : 0.0; }
  void merge(const QuantError &o) {
    sum_sq_err += o.sum_sq_err;
    sum_sq += o.sum_sq;
    max_abs = std::max(max_abs, o.max_abs);
  }
};

// Bytes of quantized values for one row of `cols` elements.
uint64_t quant_row_bytes(DType dtype, int64_t cols);

// Quantizes `rows` rows of `cols` floats. Writes quant_row_bytes per row to
// q, cols/group f16 scales per row, and (asymmetric) cols/group zero points
// per row. importance: per-column weights (cols floats) or nullptr. Uses up
// to n_threads threads. Accumulates the reconstruction error into *err.
void quantize_rows(const float *w, int64_t rows, int64_t cols, const QuantConfig &cfg,
                   const float *importance, uint8_t *q, uint16_t *scales, uint8_t *zeros,
                   int n_threads, QuantError *err);

}  // namespace llm::convert
