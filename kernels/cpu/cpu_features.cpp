// Run-time selection of the SIMD path used by the CPU kernels.
#include <atomic>

#if defined(LLM_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
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

Isa best_isa() {
  static const Isa best = cpu_has_avx2() ? Isa::Avx2 : Isa::Scalar;
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
      return best_isa() == Isa::Avx2;
  }
  return false;
}

const char *isa_name(Isa isa) {
  switch (isa) {
    case Isa::Auto:
      return "auto";
    case Isa::Scalar:
      return "scalar";
    case Isa::Avx2:
      return "avx2";
  }
  return "unknown";
}

}  // namespace llm::cpu
