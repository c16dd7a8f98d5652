// The per-type table shared by the files of the KV row operations (kv.cpp,
// kv_avx2.cpp, kv_neon.cpp). Each file supplies one row type per storage type
// (static decode(row, hd, dst) writing hd floats) and one kernel type (static
// scores and accumulate on decoded rows, kv.h's KvRowOps); this template turns
// them into the table. Instantiated only with types local to each file, so
// ISA-specific code never mixes across files.
#pragma once

#include <algorithm>

#include "kernels/cpu/kv.h"

namespace llm::cpu::detail::kv_rows {

template <class R>
void decode_rows(const uint8_t *rows, size_t row_bytes, int64_t n, int64_t hd, float *dst) {
  const int64_t hd_pad = kv_padded_dim(hd);
  for (int64_t j = 0; j < n; ++j) {
    float *d = dst + j * hd_pad;
    R::decode(rows + j * row_bytes, hd, d);
    std::fill(d + hd, d + hd_pad, 0.0f);
  }
}

// The table for type t from the file's row types and kernels.
template <class F32, class F16, class BF16, class Q8, class Q4, class Kernels>
KvRowOps table(KvType t) {
  KvRowOps ops{decode_rows<F32>, Kernels::scores, Kernels::accumulate};
  switch (t) {
    case KvType::F32: break;
    case KvType::F16: ops.decode_rows = decode_rows<F16>; break;
    case KvType::BF16: ops.decode_rows = decode_rows<BF16>; break;
    case KvType::Q8: ops.decode_rows = decode_rows<Q8>; break;
    case KvType::Q4: ops.decode_rows = decode_rows<Q4>; break;
  }
  return ops;
}

}  // namespace llm::cpu::detail::kv_rows
