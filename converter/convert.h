// Conversion of a Hugging Face checkpoint folder into a libllm model file.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "format/model_meta.h"

namespace llm::convert {

struct ConvertOptions {
  std::string input_dir;
  std::string output_path;
  DType dtype = DType::BF16;  // float storage of matrices that are not quantized
  // Quantization of 2-D weights (I8 or I4); F32 means "not requested".
  DType weights = DType::F32;
  uint32_t group_size = 32;
  bool asymmetric = false;
  bool search = true;             // scale search (false: round to nearest)
  std::string calibrate_path;     // text for activation statistics ("" = none)
  int64_t calibrate_tokens = 16384;
  std::vector<std::string> keep_f16;                          // glob patterns
  std::vector<std::pair<std::string, DType>> weights_for;     // pattern -> type, last match wins
  bool report = false;            // per-tensor reconstruction error on stderr
  bool vocab_only = false;
  std::string name;               // default: the input folder's name
  bool verbose = false;
  int n_threads = 0;              // 0: all cores
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
