// matmul_q on the NEON dot-product extension (sdot). This file alone is
// compiled with -march=armv8.2-a+dotprod and is only called when the kernel
// reports the extension (HWCAP_ASIMDDP, see cpu_features.cpp).
#include "kernels/cpu/quant_neon_impl.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "quant_neon_dot.cpp must be compiled with the dot-product extension"
#endif

namespace llm::cpu::detail {

void matmul_q_rows_neon_dot(const QMatmulArgs &a, int64_t j0, int64_t j1) { rows_impl(a, j0, j1); }

}  // namespace llm::cpu::detail
