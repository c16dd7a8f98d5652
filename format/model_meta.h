// Plain C++ description of a model's metadata (everything in the model file
// except the tokenizer and the tensor table). Shared by the converter, the
// model file reader/writer and the runtime.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llm {

enum class Arch : uint8_t { Llama = 0, Qwen2 = 1 };
const char *arch_name(Arch arch);

enum class RopeType : uint8_t { Default = 0, Linear = 1, Llama3 = 2 };

struct RopeScaling {
  RopeType type = RopeType::Default;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  uint32_t original_max_position = 0;
};

struct HParams {
  uint32_t vocab_size = 0;
  uint32_t hidden_size = 0;
  uint32_t num_layers = 0;
  uint32_t num_heads = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t intermediate_size = 0;
  uint32_t max_context = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  uint32_t sliding_window = 0;  // 0 = full attention
};

struct GenerationConfig {
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  int32_t pad_id = -1;
  std::string chat_template;
  float temperature = 1.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  bool do_sample = false;
};

// Storage type of tensor elements (same values as the schema's DType).
enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2, I8 = 3, I4 = 4 };
const char *dtype_name(DType dtype);
// Bytes needed for `n` elements of a dense float type (F32/F16/BF16).
size_t dtype_bytes(DType dtype, uint64_t n);

}  // namespace llm
