// Reads the configuration files of a Hugging Face checkpoint folder into the
// model metadata of format/model_meta.h:
//   config.json             architecture and hyper-parameters (required)
//   generation_config.json  special token ids and sampling defaults (optional)
//   tokenizer_config.json   chat template, add_bos/eos flags, token strings (optional)
//   chat_template.jinja     chat template; overrides tokenizer_config.json as in
//                           transformers (optional)
//
// Supported: model_type llama / mistral (Arch::Llama) and qwen2 (Arch::Qwen2),
// i.e. LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM; RoPE types
// default, linear and llama3, from either the legacy rope_theta/rope_scaling
// keys or the newer rope_parameters object.
//
// Errors (llm::Error, naming the file and key): LLM_ERR_IO when config.json
// cannot be read; LLM_ERR_FORMAT for invalid JSON, missing keys, wrong types
// and out-of-range values; LLM_ERR_UNSUPPORTED for architectures, activations,
// RoPE types, MLP biases, per-layer attention patterns and pre-quantized
// checkpoints this runtime cannot run.
#pragma once

#include <optional>
#include <string>

#include "format/model_meta.h"

namespace llm::convert {

struct HfModelConfig {
  Arch arch = Arch::Llama;
  std::string model_type;    // "llama", "mistral" or "qwen2"
  std::string architecture;  // e.g. "LlamaForCausalLM"; "" when config.json lists none
  // attention_bias means q/k/v biases for Qwen2. For Llama with
  // attention_bias: true, transformers also gives o_proj a bias: whether
  // it exists is for the converter to see in the checkpoint's tensors.
  HParams hparams;
  // Token ids are checked to lie in [0, vocab_size). top_k is 50 when not
  // given, the transformers default (it only matters when do_sample is set).
  GenerationConfig generation;
  // From tokenizer_config.json; unset / "" when absent, for cross-checking
  // against the tokenizer.
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::string bos_token;
  std::string eos_token;
};

HfModelConfig read_hf_config(const std::string &dir);

}  // namespace llm::convert
