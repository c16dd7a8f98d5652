#include "format/model_meta.h"

namespace llm {

const char *arch_name(Arch arch) {
  switch (arch) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2: return "qwen2";
  }
  return "unknown";
}

const char *dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I8: return "int8";
    case DType::I4: return "int4";
  }
  return "unknown";
}

size_t dtype_bytes(DType dtype, uint64_t n) {
  switch (dtype) {
    case DType::F32: return static_cast<size_t>(n) * 4;
    case DType::F16:
    case DType::BF16: return static_cast<size_t>(n) * 2;
    case DType::I8: return static_cast<size_t>(n);
    case DType::I4: return static_cast<size_t>((n + 1) / 2);
  }
  return 0;
}

}  // namespace llm
