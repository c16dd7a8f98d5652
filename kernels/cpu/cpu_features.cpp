// Run-time selection of the SIMD path used by the CPU kernels.
#include <atomic>

#if defined(LLM_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(LLM_HAVE_NEON) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)  // linux/arch/arm64/include/uapi/asm/hwcap.h
#endif
#endif

#include "kernels/cpu/kernels_impl.h"

namespace llm::cpu {

namespace {

bool cpu_has_avx2() {
#if defined(LLM_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
  // The compiler runtime's checks include OS support for the YMM state
  // (XGETBV). Not every compiler knows "f16c" there, so read CPUID for it.
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
#else
  return false;
#endif
}

// AVX-512 F + BW + VL (the quantized kernels use 512-bit byte operations and
// a few 256-bit EVEX forms). The compiler runtime also checks that the OS
// saves the ZMM and mask state (XCR0).
bool cpu_has_avx512bw() {
#if defined(LLM_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

bool cpu_has_avx512vnni() {
#if defined(LLM_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
  return cpu_has_avx512bw() && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

// Advanced SIMD is part of every aarch64 Linux system; the dot-product
// instructions (sdot/udot) are optional before ARMv8.4 and reported by the
// kernel in AT_HWCAP.
bool cpu_has_neon() {
#if defined(LLM_HAVE_NEON)
  return true;
#else
  return false;
#endif
}

bool cpu_has_neon_dotprod() {
#if defined(LLM_HAVE_NEON) && defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
  return false;
#endif
}

Isa detect_best() {
  if (cpu_has_avx512vnni()) return Isa::Avx512Vnni;
  if (cpu_has_avx512bw()) return Isa::Avx512;
  if (cpu_has_avx2()) return Isa::Avx2;
  if (cpu_has_neon_dotprod()) return Isa::NeonDot;
  if (cpu_has_neon()) return Isa::Neon;
  return Isa::Scalar;
}

Isa best_isa() {
  static const Isa best = detect_best();
  return best;
}

// Never holds Auto. Atomic only so that concurrent readers are well defined;
// set_isa itself is documented as not to be called while kernels run.
std::atomic<Isa> &current_isa() {
  static std::atomic<Isa> isa{best_isa()};
  return isa;
}

}  // namespace

void set_isa(Isa isa) {
  // An unsupported request falls back to the best path rather than crash.
  if (isa == Isa::Auto || !isa_supported(isa)) isa = best_isa();
  current_isa().store(isa, std::memory_order_relaxed);
}

Isa active_isa() { return current_isa().load(std::memory_order_relaxed); }

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Auto:
    case Isa::Scalar:
      return true;
    case Isa::Avx2:
      return cpu_has_avx2();
    case Isa::Avx512:
      return cpu_has_avx512bw();
    case Isa::Avx512Vnni:
      return cpu_has_avx512vnni();
    case Isa::Neon:
      return cpu_has_neon();
    case Isa::NeonDot:
      return cpu_has_neon_dotprod();
  }
  return false;
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Neon, Isa::NeonDot})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

const char *isa_name(Isa isa) {
  switch (isa) {
    case Isa::Auto:
      return "auto";
    case Isa::Scalar:
      return "scalar";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx512Vnni:
      return "avx512vnni";
    case Isa::Neon:
      return "neon";
    case Isa::NeonDot:
      return "neon-dotprod";
  }
  return "unknown";
}

}  // namespace llm::cpu
