// The row loops and the per-type table shared by the SIMD files of the KV row
// operations (kv_avx2.cpp, kv_neon.cpp). Each file supplies one row type per
// storage type (static dot(q, row, hd) and axpy(a, row, hd, acc)); these
// templates turn them into kv.h's KvRowOps. Instantiated only with types
// local to each file, so ISA-specific code never mixes across files.
#pragma once

#include "kernels/cpu/kv.h"

namespace llm::cpu::detail::kv_rows {

template <class R>
void dot_rows(const float *q, const uint8_t *rows, size_t row_bytes, int64_t n, int64_t hd, float scale,
              float *out) {
  for (int64_t j = 0; j < n; ++j) out[j] = R::dot(q, rows + j * row_bytes, hd) * scale;
}

template <class R>
void axpy_rows(const float *p, const uint8_t *rows, size_t row_bytes, int64_t n, int64_t hd, float *acc) {
  for (int64_t j = 0; j < n; ++j) R::axpy(p[j], rows + j * row_bytes, hd, acc);
}

template <class R>
KvRowOps ops() {
  return {dot_rows<R>, axpy_rows<R>};
}

// The table for type t from the file's row types.
template <class F32, class F16, class BF16, class Q8, class Q4>
KvRowOps table(KvType t) {
  switch (t) {
    case KvType::F32: return ops<F32>();
    case KvType::F16: return ops<F16>();
    case KvType::BF16: return ops<BF16>();
    case KvType::Q8: return ops<Q8>();
    case KvType::Q4: return ops<Q4>();
  }
  return kv_row_ops_scalar(t);
}

}  // namespace llm::cpu::detail::kv_rows
