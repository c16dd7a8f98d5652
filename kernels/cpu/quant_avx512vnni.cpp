// matmul_q on AVX-512 with VNNI (vpdpbusd; Cascade Lake, Ice Lake, Zen 4 and
// later); see quant_avx512_impl.h. Only called when cpu_features reports
// AVX-512 VNNI.
#include "kernels/cpu/quant_avx512_impl.h"

#if !defined(__AVX512VNNI__)
#error "quant_avx512vnni.cpp must be compiled with -mavx512vnni"
#endif

namespace llm::cpu::detail {

void matmul_q_rows_avx512vnni(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  // Group sizes other than 32, 64 and 128 take the AVX2 body.
  if (!rows_dispatch<I8x512, I4x512, false>(a, j0, j1)) matmul_q_rows_avx2(a, j0, j1);
}

}  // namespace llm::cpu::detail
