// The conversion pipeline: Hugging Face folder -> libllm model file.
#include "converter/convert.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "converter/hf_config.h"
#include "converter/hf_tokenizer.h"
#include "converter/safetensors.h"
#include "format/error.h"
#include "format/model_file.h"
#include "kernels/cpu/kernels.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

namespace llm::convert {
namespace {

std::string read_text_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(LLM_ERR_IO, "cannot read " + path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string base_name(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  size_t slash = dir.rfind('/');
  return slash == std::string::npos ? dir : dir.substr(slash + 1);
}

// A checkpoint tensor and the name it gets in the model file.
struct Mapping {
  std::string src, dst;
};

// Hugging Face Llama/Mistral/Qwen2 names -> canonical names. Tensors that
// only carry derived data (RoPE inverse frequencies) are skipped.
std::vector<Mapping> map_tensors(const HParams &h, const Checkpoint &ck) {
  std::vector<Mapping> m;
  m.push_back({"model.embed_tokens.weight", "token_embd.weight"});
  m.push_back({"model.norm.weight", "output_norm.weight"});
  if (!h.tie_word_embeddings) m.push_back({"lm_head.weight", "output.weight"});
  for (uint32_t i = 0; i < h.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto add = [&](const std::string &src, const char *dst) { m.push_back({p + src, layer_tensor_name(i, dst)}); };
    add("input_layernorm.weight", "attn_norm.weight");
    add("self_attn.q_proj.weight", "attn_q.weight");
    add("self_attn.k_proj.weight", "attn_k.weight");
    add("self_attn.v_proj.weight", "attn_v.weight");
    add("self_attn.o_proj.weight", "attn_output.weight");
    if (h.attention_bias) {
      add("self_attn.q_proj.bias", "attn_q.bias");
      add("self_attn.k_proj.bias", "attn_k.bias");
      add("self_attn.v_proj.bias", "attn_v.bias");
    }
    add("post_attention_layernorm.weight", "ffn_norm.weight");
    add("mlp.gate_proj.weight", "ffn_gate.weight");
    add("mlp.up_proj.weight", "ffn_up.weight");
    add("mlp.down_proj.weight", "ffn_down.weight");
  }
  // Every checkpoint tensor must be accounted for: an unknown one means a
  // model variant we would convert wrongly.
  for (const std::string &name : ck.names()) {
    bool known = name.find("rotary_emb.inv_freq") != std::string::npos ||
                 (h.tie_word_embeddings && name == "lm_head.weight");
    for (const Mapping &x : m) known = known || x.src == name;
    if (!known)
      fail(LLM_ERR_UNSUPPORTED, "checkpoint tensor " + name + " is not part of the supported architecture");
  }
  return m;
}

// Streams one tensor through fp32 in fixed-size chunks so peak memory stays
// small whatever the tensor size.
void write_tensor(ModelWriter &w, const Checkpoint &ck, const SrcTensor &src, const std::string &dst,
                  DType dtype) {
  w.begin_tensor(dst, dtype, src.shape);
  uint64_t total = 1;
  for (int64_t d : src.shape) total *= static_cast<uint64_t>(d);
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<float> f32(static_cast<size_t>(std::min(total, kChunk)));
  std::vector<uint16_t> half(dtype == DType::F32 ? 0 : f32.size());
  for (uint64_t first = 0; first < total; first += kChunk) {
    const uint64_t n = std::min(kChunk, total - first);
    ck.read_f32(src, first, n, f32.data());
    ck.release(src, first, n);
    if (dtype == DType::F32) {
      w.write(f32.data(), n * sizeof(float));
      continue;
    }
    for (uint64_t i = 0; i < n; ++i)
      half[i] = dtype == DType::F16 ? cpu::f32_to_f16(f32[i]) : cpu::f32_to_bf16(f32[i]);
    w.write(half.data(), n * sizeof(uint16_t));
  }
  w.end_tensor();
}

}  // namespace

ConvertStats convert(const ConvertOptions &options) {
  if (options.dtype != DType::F32 && options.dtype != DType::F16 && options.dtype != DType::BF16)
    fail(LLM_ERR_UNSUPPORTED, std::string("--dtype ") + dtype_name(options.dtype) + " is not supported yet");
  const std::string &dir = options.input_dir;
  HfModelConfig cfg = read_hf_config(dir);
  TokenizerSpec tokenizer = parse_hf_tokenizer(read_text_file(dir + "/tokenizer.json"));
  {
    Tokenizer check(tokenizer);  // rejects an inconsistent tokenizer before writing anything
    if (static_cast<uint32_t>(check.vocab_size()) > cfg.hparams.vocab_size)
      fail_format("tokenizer.json has " + std::to_string(check.vocab_size()) +
                  " tokens but config.json says vocab_size " + std::to_string(cfg.hparams.vocab_size));
  }

  ModelMetadata meta;
  meta.name = options.name.empty() ? base_name(dir) : options.name;
  meta.producer = "llm-convert 0.1.0";
  meta.arch = cfg.arch;
  meta.hparams = cfg.hparams;
  meta.generation = cfg.generation;
  meta.vocab_only = options.vocab_only;

  ConvertStats stats;
  ModelWriter writer(options.output_path);
  if (!options.vocab_only) {
    Checkpoint ck = Checkpoint::open(dir);
    for (const Mapping &m : map_tensors(cfg.hparams, ck)) {
      const SrcTensor &src = ck.get(m.src);
      // Vectors (norm weights, biases) are tiny and precision-sensitive: keep f32.
      DType dtype = src.shape.size() == 1 ? DType::F32 : options.dtype;
      write_tensor(writer, ck, src, m.dst, dtype);
      uint64_t n = 1;
      for (int64_t d : src.shape) n *= static_cast<uint64_t>(d);
      meta.parameter_count += n;
      ++stats.tensors;
      if (options.verbose)
        std::fprintf(stderr, "  %-28s -> %-24s %s\n", m.src.c_str(), m.dst.c_str(), dtype_name(dtype));
    }
  }
  writer.finish(meta, tokenizer);
  stats.bytes = writer.bytes_written();
  stats.parameters = meta.parameter_count;

  // Load what was written, with every structural check the runtime makes, so
  // a file that would not load is reported now rather than on a device. (The
  // checksums were computed from the very bytes written; re-hashing would only
  // pull the whole output into memory.)
  try {
    ModelOptions load;
    load.n_threads = 1;
    load.verify = ModelFile::Verify::None;
    Model::load(options.output_path, load);
  } catch (...) {
    std::remove(options.output_path.c_str());
    throw;
  }
  return stats;
}

}  // namespace llm::convert
