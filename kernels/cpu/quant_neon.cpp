// NEON quantize_acts body and the baseline-NEON matmul_q body (aarch64; see
// quant_neon_impl.h for the matmul, quant.cpp for the scalar references).
#include "kernels/cpu/quant_neon_impl.h"

namespace llm::cpu::detail {

void quantize_row_neon(const float *x, int64_t nb, int64_t nb8, const ActRow &row) {
  for (int64_t b = 0; b < nb; ++b, x += kActBlock) {
    float32x4_t v[8], m = vdupq_n_f32(0);
    for (int i = 0; i < 8; ++i) {
      v[i] = vld1q_f32(x + 4 * i);
      m = vmaxq_f32(m, vabsq_f32(v[i]));
    }
    float inv;
    block_scale(vmaxvq_f32(m), &row.d[b], &inv);
    // Round to nearest even as the scalar lrint; the clamp only matters for
    // non-finite input, as there.
    int32x4_t sum = vdupq_n_s32(0);
    int8_t q[kActBlock];
    for (int i = 0; i < 8; i += 2) {
      int32x4_t r0 = vcvtnq_s32_f32(vmulq_n_f32(v[i], inv)), r1 = vcvtnq_s32_f32(vmulq_n_f32(v[i + 1], inv));
      r0 = vmaxq_s32(vminq_s32(r0, vdupq_n_s32(127)), vdupq_n_s32(-127));
      r1 = vmaxq_s32(vminq_s32(r1, vdupq_n_s32(127)), vdupq_n_s32(-127));
      sum = vaddq_s32(sum, vaddq_s32(r0, r1));
      vst1_s8(q + 4 * i, vmovn_s16(vcombine_s16(vmovn_s32(r0), vmovn_s32(r1))));
    }
    row.sum[b] = vaddvq_s32(sum);
    for (int64_t e = 0; e < kActBlock; e += 4) std::memcpy(row.q + act_unit_offset(b, e), q + e, 4);
  }
  for (int64_t b = nb; b < nb8; ++b)
    for (int64_t e = 0; e < kActBlock; e += 4) std::memset(row.q + act_unit_offset(b, e), 0, 4);
  finish_act_row(nb, nb8, row);
}

void matmul_q_rows_neon(const QMatmulArgs &a, int64_t j0, int64_t j1) { rows_impl(a, j0, j1); }

}  // namespace llm::cpu::detail
