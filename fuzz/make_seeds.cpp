// Writes the seed corpora of fuzz/corpus/<target>/: small valid inputs and a
// few near-valid ones. Usage: fuzz_make_seeds OUT_DIR (normally fuzz/corpus).
// Regenerate after a change to the model file format or the tokenizer
// fixtures; every seed stays well below 64 KB.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/model_file.h"
#include "fuzz/fuzz_targets.h"
#include "kernels/cpu/kernels.h"

namespace fs = std::filesystem;

namespace {

std::string g_out;

void put(const std::string &target, const std::string &name, const std::string &bytes) {
  const fs::path dir = fs::path(g_out) / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
  if (bytes.size() >= 64 * 1024) std::fprintf(stderr, "warning: %s/%s is %zu bytes\n", target.c_str(), name.c_str(), bytes.size());
}

std::string read_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---- model files ---------------------------------------------------------------

// A 16-token SentencePiece-like tokenizer: the smallest vocabulary that still
// runs every stage (normalizers, merges, added tokens, decoders, BOS).
llm::TokenizerSpec mini_tokenizer() {
  llm::TokenizerSpec t;
  t.vocab = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "c", "d", "e", "h", "l", "o",
             "\xe2\x96\x81h", "he", "ll", "<0x0A>"};
  t.merges = {{9, 8, 13}, {10, 10, 14}, {3, 9, 12}};
  t.unk_id = 0;
  t.byte_fallback = true;
  t.fuse_unk = true;
  for (int id = 0; id < 3; ++id) {
    llm::AddedTokenSpec a;
    a.id = id;
    a.content = t.vocab[static_cast<size_t>(id)];
    a.special = true;
    t.added_tokens.push_back(a);
  }
  llm::NormalizerSpec prepend;
  prepend.kind = llm::NormalizerSpec::Prepend;
  prepend.content = "\xe2\x96\x81";
  llm::NormalizerSpec replace;
  replace.kind = llm::NormalizerSpec::Replace;
  replace.pattern = " ";
  replace.content = "\xe2\x96\x81";
  t.normalizers = {prepend, replace};
  llm::DecoderSpec rep;
  rep.kind = llm::DecoderSpec::Replace;
  rep.pattern = "\xe2\x96\x81";
  rep.content = " ";
  llm::DecoderSpec fallback;
  fallback.kind = llm::DecoderSpec::ByteFallback;
  llm::DecoderSpec fuse;
  fuse.kind = llm::DecoderSpec::Fuse;
  llm::DecoderSpec strip;
  strip.kind = llm::DecoderSpec::Strip;
  strip.content = " ";
  strip.start = 1;
  t.decoders = {rep, fallback, fuse, strip};
  t.prefix_ids = {1};
  return t;
}

llm::TokenizerSpec byte_tokenizer() {  // as tests/common/synthetic_model.h
  llm::TokenizerSpec t;
  t.vocab = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    t.vocab.push_back(buf);
  }
  t.unk_id = 0;
  t.byte_fallback = true;
  for (int id = 0; id < 3; ++id) {
    llm::AddedTokenSpec a;
    a.id = id;
    a.content = t.vocab[static_cast<size_t>(id)];
    a.special = true;
    t.added_tokens.push_back(a);
  }
  llm::DecoderSpec fallback;
  fallback.kind = llm::DecoderSpec::ByteFallback;
  llm::DecoderSpec fuse;
  fuse.kind = llm::DecoderSpec::Fuse;
  t.decoders = {fallback, fuse};
  t.prefix_ids = {1};
  return t;
}

llm::HParams mini_hparams() {
  llm::HParams h;
  h.vocab_size = 16;
  h.hidden_size = 8;
  h.num_layers = 1;
  h.num_heads = 2;
  h.num_kv_heads = 1;
  h.head_dim = 4;
  h.intermediate_size = 8;
  h.max_context = 32;
  h.tie_word_embeddings = true;
  return h;
}

struct WeightOptions {
  llm::DType dtype = llm::DType::F32;  // of the matrices
  uint32_t group_size = 0;             // quantize layer matrices (dtype I8 / I4)
  bool zero_points = false;
};

void write_tensor(llm::ModelWriter &w, std::mt19937 &rng, const std::string &name, std::vector<int64_t> shape,
                  llm::DType dtype, const WeightOptions &o, float offset = 0) {
  std::normal_distribution<float> dist(0.0f, 0.3f);
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  const bool quantized = dtype == llm::DType::I8 || dtype == llm::DType::I4;
  llm::QuantSpec q;
  if (quantized) q = {o.group_size, o.zero_points};
  w.begin_tensor(name, dtype, shape, q);
  if (quantized) {
    std::vector<uint8_t> values(dtype == llm::DType::I8 ? n : (n + 1) / 2);
    for (uint8_t &v : values) v = static_cast<uint8_t>(rng());
    w.write(values.data(), values.size());
    w.begin_scales();
    const uint64_t groups = llm::quant_scales_bytes(shape[0], shape[1], o.group_size) / 2;
    for (uint64_t i = 0; i < groups; ++i) {
      uint16_t s = llm::cpu::f32_to_f16(0.01f + 0.001f * static_cast<float>(i % 7));
      w.write(&s, 2);
    }
    if (o.zero_points) {
      w.begin_zeros();
      std::vector<uint8_t> zeros(llm::quant_zeros_bytes(shape[0], shape[1], o.group_size), 0x11);
      w.write(zeros.data(), zeros.size());
    }
  } else {
    for (uint64_t i = 0; i < n; ++i) {
      const float v = dist(rng) + offset;
      if (dtype == llm::DType::F32) {
        w.write(&v, 4);
      } else {
        const uint16_t h = dtype == llm::DType::BF16 ? llm::cpu::f32_to_bf16(v) : llm::cpu::f32_to_f16(v);
        w.write(&h, 2);
      }
    }
  }
  w.end_tensor();
}

std::string model_bytes(const llm::HParams &h, const llm::TokenizerSpec &tok, const WeightOptions &o,
                        bool vocab_only = false, llm::Arch arch = llm::Arch::Llama) {
  const std::string path = (fs::temp_directory_path() / "llm_fuzz_seed.llm").string();
  std::mt19937 rng(7);
  {
    llm::ModelWriter w(path);
    llm::ModelMetadata meta;
    meta.name = "fuzz-seed";
    meta.producer = "fuzz/make_seeds";
    meta.arch = arch;
    meta.hparams = h;
    meta.generation.bos_id = 1;
    meta.generation.eos_ids = {2};
    meta.generation.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
    meta.vocab_only = vocab_only;
    if (!vocab_only) {
      const int64_t d = h.hidden_size, q = int64_t{h.num_heads} * h.head_dim,
                    kv = int64_t{h.num_kv_heads} * h.head_dim, f = h.intermediate_size, v = h.vocab_size;
      const llm::DType mat = o.dtype;  // layer matrices (quantized when group_size is set)
      const llm::DType emb = o.group_size ? llm::DType::F16 : o.dtype;
      write_tensor(w, rng, "token_embd.weight", {v, d}, emb, o);
      write_tensor(w, rng, "output_norm.weight", {d}, llm::DType::F32, o, 1.0f);
      if (!h.tie_word_embeddings) write_tensor(w, rng, "output.weight", {v, d}, emb, o);
      for (uint32_t l = 0; l < h.num_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        write_tensor(w, rng, p + "attn_norm.weight", {d}, llm::DType::F32, o, 1.0f);
        write_tensor(w, rng, p + "attn_q.weight", {q, d}, mat, o);
        write_tensor(w, rng, p + "attn_k.weight", {kv, d}, mat, o);
        write_tensor(w, rng, p + "attn_v.weight", {kv, d}, mat, o);
        if (h.attention_bias) {
          write_tensor(w, rng, p + "attn_q.bias", {q}, llm::DType::F32, o);
          write_tensor(w, rng, p + "attn_k.bias", {kv}, llm::DType::F32, o);
          write_tensor(w, rng, p + "attn_v.bias", {kv}, llm::DType::F32, o);
        }
        write_tensor(w, rng, p + "attn_output.weight", {d, q}, mat, o);
        write_tensor(w, rng, p + "ffn_norm.weight", {d}, llm::DType::F32, o, 1.0f);
        write_tensor(w, rng, p + "ffn_gate.weight", {f, d}, mat, o);
        write_tensor(w, rng, p + "ffn_up.weight", {f, d}, mat, o);
        write_tensor(w, rng, p + "ffn_down.weight", {d, f}, mat, o);
      }
    }
    w.finish(meta, tok);
  }
  std::string bytes = read_file(path);
  fs::remove(path);
  return bytes;
}

void model_seeds() {
  const llm::TokenizerSpec mini = mini_tokenizer();
  put("model_load", "mini_f32.llm", model_bytes(mini_hparams(), mini, {}));
  {
    llm::HParams h = mini_hparams();
    h.vocab_size = 259;
    put("model_load", "vocab_only_bytes.llm", model_bytes(h, byte_tokenizer(), {}, true));
  }
  {  // Qwen2: q/k/v biases, untied, bf16, linear RoPE scaling, sliding window.
    llm::HParams h = mini_hparams();
    h.tie_word_embeddings = false;
    h.attention_bias = true;
    h.rope_scaling.type = llm::RopeType::Linear;
    h.rope_scaling.factor = 2.0f;
    h.sliding_window = 4;
    put("model_load", "qwen2_bias_bf16.llm", model_bytes(h, mini, {llm::DType::BF16}, false, llm::Arch::Qwen2));
  }
  {  // int8 / int4 layer matrices, Llama 3 RoPE scaling.
    llm::HParams h = mini_hparams();
    h.hidden_size = 32;
    h.num_heads = 4;
    h.num_kv_heads = 2;
    h.head_dim = 8;
    h.intermediate_size = 32;
    h.rope_theta = 500000.0f;
    h.rope_scaling.type = llm::RopeType::Llama3;
    h.rope_scaling.factor = 8.0f;
    h.rope_scaling.original_max_position = 16;
    put("model_load", "int8_llama3_rope.llm", model_bytes(h, mini, {llm::DType::I8, 32, false}));
    put("model_load", "int4_zero_points.llm", model_bytes(h, mini, {llm::DType::I4, 32, true}));
  }
  {  // Near-valid: the header claims one byte more than the file holds.
    std::string b = model_bytes(mini_hparams(), mini, {}, true);
    put("model_load", "truncated_vocab_only.llm", b.substr(0, b.size() - 1));
  }
}

// ---- tokenizer -------------------------------------------------------------------

void tokenizer_seeds() {
  auto text = [](uint8_t flags, const std::string &s) { return std::string(1, static_cast<char>(flags)) + s; };
  put("tokenizer", "plain", text(0, "Hello world, the cat is in the hat."));
  put("tokenizer", "code_special", text(3, "<s>def f(self):\n    return print(x)  # 0000\n</s>"));
  put("tokenizer", "unicode", text(1, " caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \xe2\x85\xa7 \xef\xac\x81 \xe2\x96\x81x"));
  put("tokenizer", "added_tokens", text(2, "<|endoftext|><|begin_of_text|> <tool> abc abcd Hi hi <unk></s>"));
  put("tokenizer", "special_as_text", text(0, "<s><|eot_id|>< s>"));
  put("tokenizer", "invalid_utf8", text(2, std::string("\xff\xfe\xc3(\xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80\x00x", 17)));
  put("tokenizer", "whitespace_digits", text(1, "   1234567 \n\n\t x  \r\n 3.14159  "));
  std::string ids;
  for (int id : {1, 3, 40, 259, 300, 512, 2, 0, 7, 7, 7}) {
    ids += static_cast<char>(id & 0xFF);
    ids += static_cast<char>(id >> 8);
  }
  put("tokenizer", "ids", text(4, ids));
  put("tokenizer", "ids_raw", text(12, std::string("\xff\xff\x00\x80\x10\x00\x05\x01", 8)));
  put("tokenizer", "byte_tokens", text(4, std::string("\xc6\x00\xc4\x00\xa3\x00\x83\x00\x2b\x00", 10)));
}

// ---- tokenizer.json --------------------------------------------------------------

void tokenizer_json_seeds() {
  for (const auto &[name, text] : llm::fuzz::embedded_tokenizer_jsons()) put("tokenizer_json", name + ".json", text);
  put("tokenizer_json", "subword_prefix.json",
      R"({"model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": "##", )"
      R"("end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, )"
      R"("vocab": {"<unk>": 0, "a": 1, "##b": 2, "##c": 3, "ab": 4, "abc": 5, "b": 6, "c": 7, "##a": 8}, )"
      R"("merges": [["a", "##b"], ["ab", "##c"]]}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, )"
      R"("behavior": "Removed", "invert": false}})");
  put("tokenizer_json", "word_suffix_strings.json",
      R"({"model": {"type": "BPE", "unk_token": "<unk>", "end_of_word_suffix": "</w>", "ignore_merges": true, )"
      R"("vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "a</w>": 4, "b</w>": 5, "c</w>": 6, "ab</w>": 7, "ab": 8}, )"
      R"("merges": ["a b</w>", "a b"]}, "normalizer": {"type": "Sequence", "normalizers": [{"type": "Strip", )"
      R"("strip_left": true, "strip_right": true}, {"type": "NFKD"}, {"type": "Replace", "pattern": {"String": "ll"}, )"
      R"("content": "l"}]}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": )"
      R"({"String": "-"}, "behavior": "MergedWithNext", "invert": true}, {"type": "Digits", "individual_digits": false}]}, )"
      R"("decoder": {"type": "Sequence", "decoders": [{"type": "Strip", "content": "a", "start": 2, "stop": 2}]}, )"
      R"("post_processor": {"type": "RobertaProcessing", "sep": ["c", 3], "cls": ["a", 1], "trim_offsets": true, )"
      R"("add_prefix_space": true}})");
  put("tokenizer_json", "legacy_metaspace_bert.json",
      R"({"added_tokens": [{"id": 9, "content": "[x]", "lstrip": true, "rstrip": true, "single_word": true, )"
      R"("normalized": true, "special": false}], "model": {"type": "BPE", "vocab": {"<unk>": 0, "\u2581": 1, )"
      R"("a": 2, "b": 3, "\u2581a": 4, "ab": 5, "\u2581ab": 6, "[": 7, "]": 8, "[x]": 9}, "merges": ["\u2581 a", "a b", )"
      R"("\u2581a b"], "unk_token": "<unk>", "fuse_unk": true}, "pre_tokenizer": {"type": "Metaspace", )"
      R"("replacement": "\u2581", "add_prefix_space": true}, "decoder": {"type": "Metaspace", "replacement": "\u2581", )"
      R"("add_prefix_space": true}, "post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, )"
      R"({"type": "BertProcessing", "sep": ["b", 3], "cls": ["a", 2]}]}})");
  put("tokenizer_json", "bad_merge.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "c"]]}})");
  put("tokenizer_json", "wordpiece.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  put("tokenizer_json", "bad_regex.json",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Split", )"
      R"("pattern": {"Regex": "(a"}, "behavior": "Isolated", "invert": false}})");
}

// ---- safetensors -----------------------------------------------------------------

std::string safetensors_file(const std::string &header, const std::string &data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}

template <class T>
std::string bytes_of(std::vector<T> v) {
  std::string s(v.size() * sizeof(T), '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

void safetensors_seeds() {
  std::string data = bytes_of(std::vector<float>{1, -2, 3.5f, 0, 1e-30f, -1e30f});  // F32 [2,3] at 0..24
  data += bytes_of(std::vector<uint16_t>{0x3f80, 0xc000, 0x7f80, 0x7fc1});           // BF16 [4] at 24..32
  data += bytes_of(std::vector<uint16_t>{0x3c00, 0x8001, 0x7c00, 0xfe00});           // F16 [2,2] at 32..40
  data += bytes_of(std::vector<double>{3.141592653589793});                          // F64 [] at 40..48
  data += bytes_of(std::vector<int32_t>{7, -7});                                     // I32 [2] at 48..56
  data += std::string("\x38\xb8", 2);                                                // F8_E4M3 [2] at 56..58
  put("safetensors", "mixed.safetensors",
      safetensors_file(R"({"__metadata__":{"format":"pt"},)"
                       R"("model.embed_tokens.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                       R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},)"
                       R"("h":{"dtype":"F16","shape":[2,2],"data_offsets":[32,40]},)"
                       R"("scalar":{"dtype":"F64","shape":[],"data_offsets":[40,48]},)"
                       R"("ints":{"dtype":"I32","shape":[2],"data_offsets":[48,56]},)"
                       R"("f8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[56,58]},)"
                       R"("empty":{"dtype":"F32","shape":[0,4],"data_offsets":[58,58]}})",
                       data));
  put("safetensors", "unknown_dtype.safetensors",
      safetensors_file(R"({"x":{"dtype":"F4","shape":[1000000,1000000],"data_offsets":[0,2]}})" + std::string(6, ' '),
                       "\x12\x34"));
  put("safetensors", "overlap.safetensors",
      safetensors_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       std::string(12, '\0')));
  put("safetensors", "bad_length.safetensors", std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10));
  put("safetensors", "bf16_large.safetensors",
      safetensors_file(R"({"w":{"dtype":"BF16","shape":[64,40],"data_offsets":[0,5120]}})",
                       std::string(5120, '\x3f')));
}

// ---- config.json -----------------------------------------------------------------

const char kLlamaConfig[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2,
  "head_dim": 64, "hidden_act": "silu", "hidden_size": 384, "intermediate_size": 1024,
  "max_position_embeddings": 1024, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 6,
  "num_hidden_layers": 6, "num_key_value_heads": 2, "pad_token_id": null, "rms_norm_eps": 1e-05,
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "vocab_size": 32000
})";

void hf_config_seeds() {
  const std::string sep = llm::fuzz::kHfConfigSeparator;
  put("hf_config", "llama_only_config", kLlamaConfig);
  put("hf_config", "llama_all_files",
      std::string(kLlamaConfig) + sep +
          R"({"bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": 0, "do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.9})" +
          sep +
          R"({"add_bos_token": true, "add_eos_token": false, "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "chat_template": [{"name": "default", "template": "{{ messages[0]['content'] }}"}, {"name": "tool_use", "template": "x"}]})" +
          sep + "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}");
  put("hf_config", "llama3_legacy_rope",
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 192,
  "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50257,
  "max_position_embeddings": 4096, "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0,
  "low_freq_factor": 1.0, "original_max_position_embeddings": 256, "rope_type": "llama3"}, "bos_token_id": 50256,
  "eos_token_id": 50256, "tie_word_embeddings": true, "rms_norm_eps": 1e-5, "hidden_act": "silu"})");
  put("hf_config", "qwen2",
      R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 1000,
  "max_position_embeddings": 32768, "max_window_layers": 2, "use_sliding_window": false, "sliding_window": 4096,
  "rope_theta": 1000000.0, "rope_scaling": null, "tie_word_embeddings": false, "rms_norm_eps": 1e-6,
  "bos_token_id": 999, "eos_token_id": [998, 999], "hidden_act": "silu"})" +
          sep + R"({"eos_token_id": 998, "pad_token_id": 997})");
  put("hf_config", "mistral_linear_rope",
      R"({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 32000,
  "max_position_embeddings": 8192, "sliding_window": 48, "rope_theta": 10000.0,
  "rope_scaling": {"type": "linear", "factor": 2.0}, "layer_types": ["full_attention", "full_attention"],
  "quantization_config": null, "hidden_act": "silu"})");
  put("hf_config", "unsupported_gemma",
      R"({"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "hidden_size": 64, "vocab_size": 10})");
  put("hf_config", "invalid_json", "{\"model_type\": \"llama\", \"hidden_size\": ");
}

// ---- chat templates ----------------------------------------------------------------

// One seed per published template of tests/data/chat_templates.json (those
// without a '/' in their name; the others are interpreter unit cases), on a
// three-turn conversation, plus a few hostile or broken templates.
void chat_template_seeds(const std::string &cases_json) {
  const nlohmann::json doc = nlohmann::json::parse(read_file(cases_json));
  const std::string sep = llm::fuzz::kHfConfigSeparator;
  const std::string conversation = sep + '\0' + "You are terse." + sep + '\1' + "Hello!" + sep + '\2' +
                                   "Hi. How can I help?" + sep + '\1' + "caf\xc3\xa9 \xff <s>";
  for (const auto &[name, tmpl] : doc.at("templates").items()) {
    if (name.find('/') != std::string::npos) continue;
    put("chat_template", name, std::string(1, '\1') + tmpl.get<std::string>() + conversation);
  }
  put("chat_template", "macro_recursion",
      std::string(1, '\0') + "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}" + conversation);
  put("chat_template", "loop_filters",
      std::string(1, '\1') +
          "{% for m in messages | selectattr('role', 'equalto', 'user') %}{{ loop.index }}:{{ m.content | upper "
          "| replace('L', 'l') | trim }}{% if not loop.last %}, {% endif %}{% endfor %}{{ messages | length }}"
          "{{ (messages[0].content * 3)[2:9] }}{{ {'a': [1, 2.5, none, true]} | tojson }}"
          "{% set ns = namespace(x=0) %}{% for i in range(5) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}" +
          conversation);
  put("chat_template", "raise", std::string(1, '\0') +
                                   "{% if messages[0].role != 'user' %}{{ raise_exception('roles must "
                                   "alternate') }}{% endif %}" + conversation);
  put("chat_template", "unterminated", std::string(1, '\0') + "{% for m in messages %}{{ m.content " + conversation);
  put("chat_template", "strftime", std::string(1, '\3') + "{{ strftime_now('%d %b %Y') }}{{ bos_token }}" + sep);
}

}  // namespace

// Valid session states of every cache type, empty to nearly full.
void session_state_seeds() {
  for (int kv = 0; kv < 5; ++kv)
    for (int n : {0, 5, 40}) {
      const std::vector<uint8_t> b = llm::fuzz::session_state_seed(kv, n);
      put("session_state", "kv" + std::to_string(kv) + "_" + std::to_string(n) + "_tokens",
          std::string(b.begin(), b.end()));
    }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR CHAT_TEMPLATES_JSON (e.g. fuzz/corpus tests/data/chat_templates.json)\n",
                 argv[0]);
    return 2;
  }
  g_out = argv[1];
  chat_template_seeds(argv[2]);
  model_seeds();
  tokenizer_seeds();
  tokenizer_json_seeds();
  safetensors_seeds();
  hf_config_seeds();
  session_state_seeds();
  // Every seed must replay cleanly through its entry point.
  for (const llm::fuzz::Target &t : llm::fuzz::targets()) {
    for (const auto &entry : fs::directory_iterator(fs::path(g_out) / t.name)) {
      const std::string bytes = read_file(entry.path().string());
      t.entry(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
    }
  }
  std::printf("seeds written to %s\n", g_out.c_str());
  return 0;
}
