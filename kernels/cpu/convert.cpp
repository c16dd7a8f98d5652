// Scalar fp16 / bf16 <-> fp32 conversions. They work on bit patterns so that
// the results do not depend on the host's floating-point environment.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/kernels_impl.h"

namespace llm::cpu {

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // Inf, NaN (payload kept)
  if (exp != 0) return bits_float(sign | ((exp + 112) << 23) | (mant << 13));  // rebias 15 -> 127
  if (mant == 0) return bits_float(sign);
  // Subnormal: shift the leading one up to the implicit position; each shift
  // lowers the exponent of the (now normal) fp32 result by one.
  uint32_t e = 113;  // exponent of 2^-14, the value of the implicit bit at shift 0
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return bits_float(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // Inf or NaN; NaNs stay NaN (quiet bit set)
    const uint32_t nan = a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0;
    return static_cast<uint16_t>(sign | 0x7c00u | nan);
  }
  // 65520 is halfway between 65504 (max half, odd mantissa) and 2^16:
  // it and everything above round to infinity.
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (a >= 0x38800000u) {  // normal half (>= 2^-14)
    // Add just under half an ulp, plus one when the kept lsb is odd: ties
    // go to even. A carry into the exponent is the correct rounding.
    const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((r - 0x38000000u) >> 13));
  }
  const uint32_t exp = a >> 23;
  if (exp < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself is a tie to 0)
  // Subnormal half: value / 2^-24 = mant24 * 2^(exp - 126), shift >= 14.
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exp;
  uint32_t r = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u))) ++r;  // may carry into the smallest normal: fine
  return static_cast<uint16_t>(sign | r);
}

float bf16_to_f32(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    // NaN: truncating could clear every payload bit and make an Inf.
    return static_cast<uint16_t>((u >> 16) | 0x40u);
  }
  // Round to nearest even; overflow past the largest finite value gives Inf.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void convert_row_to_f32(const void *src, DType dtype, int64_t n, float *dst) {
#if defined(LLM_HAVE_X86)
  if (detail::use_avx2()) return detail::convert_row_avx2(src, dtype, n, dst);
#endif
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) return detail::convert_row_neon(src, dtype, n, dst);
#endif
  detail::convert_row_scalar(src, dtype, n, dst);
}

void detail::convert_row_scalar(const void *src, DType dtype, int64_t n, float *dst) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16: {
      const auto *s = static_cast<const uint16_t *>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      const auto *s = static_cast<const uint16_t *>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    default:
      break;
  }
  std::fprintf(stderr, "llm: cannot convert dtype %d to f32\n", static_cast<int>(dtype));
  std::abort();
}

}  // namespace llm::cpu
