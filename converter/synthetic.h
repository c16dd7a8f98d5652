// Writes a Hugging Face-format checkpoint folder with random weights of
// realistic scale (config.json, model.safetensors in bf16, tokenizer.json,
// tokenizer_config.json, generation_config.json), so speed can be measured on
// any model shape without downloading one.
#pragma once

#include <cstdint>
#include <string>

namespace llm::convert {

// config_path: a config.json giving at least hidden_size, num_hidden_layers,
// num_attention_heads, intermediate_size and vocab_size (num_key_value_heads,
// max_position_embeddings, tie_word_embeddings, model_type, rope_theta
// optional). Writes the checkpoint into out_dir (created if needed).
void write_synthetic_checkpoint(const std::string &config_path, const std::string &out_dir, uint64_t seed);

}  // namespace llm::convert
