#include "converter/synthetic.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "format/error.h"
#include "kernels/cpu/kernels.h"

namespace llm::convert {
namespace {

using nlohmann::json;

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  float stddev;  // 0: constant 1 (norm weights)
};

int64_t get_int(const json &c, const char *key) {
  if (!c.contains(key) || !c[key].is_number_integer() || c[key].get<int64_t>() <= 0)
    fail_argument(std::string("synthetic config: ") + key + " must be a positive integer");
  return c[key].get<int64_t>();
}

std::vector<Tensor> tensor_list(const json &c) {
  const int64_t d = get_int(c, "hidden_size"), layers = get_int(c, "num_hidden_layers"),
                heads = get_int(c, "num_attention_heads"), ffn = get_int(c, "intermediate_size"),
                vocab = get_int(c, "vocab_size");
  const int64_t kv_heads = c.value("num_key_value_heads", heads);
  const int64_t head_dim = c.value("head_dim", d / heads);
  const bool qwen2 = c.value("model_type", std::string("llama")) == "qwen2";
  // Scale as at initialisation (std 0.02), with output projections scaled
  // down by depth as GPT-2-style initialisation does, so activations stay in
  // a realistic range through the layers.
  const float s = 0.02f, s_out = 0.02f / std::sqrt(2.0f * static_cast<float>(layers));
  std::vector<Tensor> t;
  t.push_back({"model.embed_tokens.weight", {vocab, d}, s});
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {d}, 0});
    t.push_back({p + "self_attn.q_proj.weight", {heads * head_dim, d}, s});
    t.push_back({p + "self_attn.k_proj.weight", {kv_heads * head_dim, d}, s});
    t.push_back({p + "self_attn.v_proj.weight", {kv_heads * head_dim, d}, s});
    if (qwen2) {
      t.push_back({p + "self_attn.q_proj.bias", {heads * head_dim}, s});
      t.push_back({p + "self_attn.k_proj.bias", {kv_heads * head_dim}, s});
      t.push_back({p + "self_attn.v_proj.bias", {kv_heads * head_dim}, s});
    }
    t.push_back({p + "self_attn.o_proj.weight", {d, heads * head_dim}, s_out});
    t.push_back({p + "post_attention_layernorm.weight", {d}, 0});
    t.push_back({p + "mlp.gate_proj.weight", {ffn, d}, s});
    t.push_back({p + "mlp.up_proj.weight", {ffn, d}, s});
    t.push_back({p + "mlp.down_proj.weight", {d, ffn}, s_out});
  }
  t.push_back({"model.norm.weight", {d}, 0});
  if (!c.value("tie_word_embeddings", false)) t.push_back({"lm_head.weight", {vocab, d}, s});
  return t;
}

uint64_t numel(const Tensor &t) {
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

void write_json(const std::string &path, const json &j) {
  std::ofstream f(path);
  if (!f) fail(LLM_ERR_IO, "cannot write " + path);
  f << j.dump(2) << "\n";
}

void write_safetensors(const std::string &path, const std::vector<Tensor> &tensors, uint64_t seed) {
  json header = json::object();
  uint64_t offset = 0;
  for (const Tensor &t : tensors) {
    const uint64_t bytes = numel(t) * 2;
    header[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f) fail(LLM_ERR_IO, "cannot create " + path);
  const uint64_t hlen = h.size();
  bool ok = std::fwrite(&hlen, 8, 1, f) == 1 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  // Values come in chunks of 1 Mi, each drawn from its own generator seeded
  // by (seed, tensor, chunk), so the file depends only on the seed while the
  // chunks of a batch are drawn on all cores.
  constexpr size_t kChunk = size_t{1} << 20;
  const unsigned n_threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  std::vector<std::vector<uint16_t>> bufs(n_threads, std::vector<uint16_t>(kChunk));
  for (size_t ti = 0; ok && ti < tensors.size(); ++ti) {
    const Tensor &t = tensors[ti];
    const uint64_t n = numel(t), chunks = (n + kChunk - 1) / kChunk;
    for (uint64_t c0 = 0; ok && c0 < chunks; c0 += n_threads) {
      const unsigned batch = static_cast<unsigned>(std::min<uint64_t>(n_threads, chunks - c0));
      auto draw = [&](unsigned i) {
        const uint64_t c = c0 + i, len = std::min<uint64_t>(kChunk, n - c * kChunk);
        std::seed_seq seq{seed, static_cast<uint64_t>(ti), c};
        std::mt19937_64 rng(seq);
        std::normal_distribution<float> dist(0.0f, t.stddev > 0 ? t.stddev : 1.0f);
        for (uint64_t j = 0; j < len; ++j) bufs[i][j] = cpu::f32_to_bf16(t.stddev > 0 ? dist(rng) : 1.0f);
      };
      std::vector<std::thread> pool;
      for (unsigned i = 1; i < batch; ++i) pool.emplace_back(draw, i);
      draw(0);
      for (std::thread &th : pool) th.join();
      for (unsigned i = 0; ok && i < batch; ++i) {
        const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, n - (c0 + i) * kChunk));
        ok = std::fwrite(bufs[i].data(), 2, len, f) == len;
      }
    }
  }
  ok = std::fclose(f) == 0 && ok;
  if (!ok) fail(LLM_ERR_IO, "cannot write " + path);
}

// A byte-fallback BPE vocabulary of the requested size: <unk>, <s>, </s>, the
// 256 byte tokens, then filler pieces. Tokenization is not what is measured.
json tokenizer_json(int64_t vocab) {
  json v = json::object();
  v["<unk>"] = 0;
  v["<s>"] = 1;
  v["</s>"] = 2;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    v[name] = 3 + b;
  }
  for (int64_t id = 259; id < vocab; ++id) v["\u2581tok" + std::to_string(id)] = id;
  json added = json::array();
  const char *specials[] = {"<unk>", "<s>", "</s>"};
  for (int id = 0; id < 3; ++id)
    added.push_back({{"id", id}, {"content", specials[id]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                                                                 {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor", {{"type", "TemplateProcessing"},
                              {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                              {"pair", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                                                          {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                                          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
                     {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
                     {"vocab", v}, {"merges", json::array()}}}};
}

}  // namespace

void write_synthetic_checkpoint(const std::string &config_path, const std::string &out_dir, uint64_t seed) {
  std::ifstream in(config_path);
  if (!in) fail(LLM_ERR_IO, "cannot read " + config_path);
  json c = json::parse(in, nullptr, false);
  if (c.is_discarded() || !c.is_object()) fail_format(config_path + " is not a JSON object");
  const std::vector<Tensor> tensors = tensor_list(c);
  const int64_t vocab = get_int(c, "vocab_size");
  if (vocab < 259) fail_argument("synthetic config: vocab_size must be at least 259");
  ::mkdir(out_dir.c_str(), 0755);
  json cfg = c;
  const std::string type = c.value("model_type", std::string("llama"));
  cfg["model_type"] = type;
  cfg["architectures"] = {type == "qwen2" ? "Qwen2ForCausalLM" : type == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM"};
  if (!cfg.contains("max_position_embeddings")) cfg["max_position_embeddings"] = 2048;
  if (!cfg.contains("rms_norm_eps")) cfg["rms_norm_eps"] = 1e-5;
  if (!cfg.contains("hidden_act")) cfg["hidden_act"] = "silu";
  cfg["bos_token_id"] = 1;
  cfg["eos_token_id"] = 2;
  write_json(out_dir + "/config.json", cfg);
  write_json(out_dir + "/generation_config.json", {{"bos_token_id", 1}, {"eos_token_id", 2}});
  write_json(out_dir + "/tokenizer_config.json",
             {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}, {"add_bos_token", true}});
  write_json(out_dir + "/tokenizer.json", tokenizer_json(vocab));
  write_safetensors(out_dir + "/model.safetensors", tensors, seed);
}

}  // namespace llm::convert
