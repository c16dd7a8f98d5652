// Conversion of a Hugging Face checkpoint folder into a libllm model file.
#pragma once

#include <cstdint>
#include <string>

#include "format/model_meta.h"

namespace llm::convert {

struct ConvertOptions {
  std::string input_dir;
  std::string output_path;
  DType dtype = DType::BF16;  // storage of matrices; vectors stay f32
  bool vocab_only = false;
  std::string name;           // default: the input folder's name
  bool verbose = false;
};

struct ConvertStats {
  uint64_t tensors = 0;
  uint64_t parameters = 0;
  uint64_t bytes = 0;
};

// Throws llm::Error with a message naming the problem. On failure no output
// file is left behind.
ConvertStats convert(const ConvertOptions &options);

}  // namespace llm::convert
