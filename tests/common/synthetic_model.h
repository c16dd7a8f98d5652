// Writes small random-weight model files with a byte-level toy tokenizer, so
// tests of the format, loader and sessions need no external checkpoint.
#pragma once

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "format/model_file.h"
#include "kernels/cpu/kernels.h"

namespace llm::test {

// Vocabulary: <unk>, <s>, </s>, then the 256 byte tokens <0x00>..<0xFF>.
inline TokenizerSpec byte_tokenizer() {
  TokenizerSpec t;
  t.vocab = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    t.vocab.push_back(buf);
  }
  t.unk_id = 0;
  t.byte_fallback = true;
  for (int id = 0; id < 3; ++id) {
    AddedTokenSpec a;
    a.id = id;
    a.content = t.vocab[id];
    a.special = true;
    t.added_tokens.push_back(a);
  }
  DecoderSpec fallback;
  fallback.kind = DecoderSpec::ByteFallback;
  DecoderSpec fuse;
  fuse.kind = DecoderSpec::Fuse;
  t.decoders = {fallback, fuse};
  t.prefix_ids = {1};
  return t;
}

inline HParams tiny_hparams() {
  HParams h;
  h.vocab_size = 259;
  h.hidden_size = 32;
  h.num_layers = 2;
  h.num_heads = 4;
  h.num_kv_heads = 2;
  h.head_dim = 8;
  h.intermediate_size = 48;
  h.max_context = 128;
  return h;
}

inline void write_weight(ModelWriter &w, const std::string &name, std::vector<int64_t> shape, DType dtype,
                         std::mt19937 &rng, float scale, float offset = 0) {
  std::normal_distribution<float> dist(0.0f, scale);
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  w.begin_tensor(name, dtype, shape);
  for (uint64_t i = 0; i < n; ++i) {
    float v = dist(rng) + offset;
    if (dtype == DType::F32) {
      w.write(&v, 4);
    } else {
      uint16_t h = dtype == DType::BF16 ? cpu::f32_to_bf16(v) : cpu::f32_to_f16(v);
      w.write(&h, 2);
    }
  }
  w.end_tensor();
}

inline void write_synthetic_model(const std::string &path, const HParams &h, DType dtype = DType::F32,
                                  bool vocab_only = false, uint32_t seed = 1,
                                  const TokenizerSpec &tokenizer = byte_tokenizer()) {
  std::mt19937 rng(seed);
  ModelWriter w(path);
  ModelMetadata meta;
  meta.name = "synthetic";
  meta.producer = "tests";
  meta.hparams = h;
  meta.generation.bos_id = 1;
  meta.generation.eos_ids = {2};
  meta.vocab_only = vocab_only;
  if (!vocab_only) {
    const int64_t d = h.hidden_size, q = int64_t{h.num_heads} * h.head_dim,
                  kv = int64_t{h.num_kv_heads} * h.head_dim, f = h.intermediate_size, v = h.vocab_size;
    const float s = 0.3f;
    write_weight(w, "token_embd.weight", {v, d}, dtype, rng, 1.0f);
    write_weight(w, "output_norm.weight", {d}, DType::F32, rng, 0.1f, 1.0f);
    if (!h.tie_word_embeddings) write_weight(w, "output.weight", {v, d}, dtype, rng, s);
    for (uint32_t l = 0; l < h.num_layers; ++l) {
      std::string p = "blk." + std::to_string(l) + ".";
      write_weight(w, p + "attn_norm.weight", {d}, DType::F32, rng, 0.1f, 1.0f);
      write_weight(w, p + "attn_q.weight", {q, d}, dtype, rng, s);
      write_weight(w, p + "attn_k.weight", {kv, d}, dtype, rng, s);
      write_weight(w, p + "attn_v.weight", {kv, d}, dtype, rng, s);
      if (h.attention_bias) {
        write_weight(w, p + "attn_q.bias", {q}, DType::F32, rng, s);
        write_weight(w, p + "attn_k.bias", {kv}, DType::F32, rng, s);
        write_weight(w, p + "attn_v.bias", {kv}, DType::F32, rng, s);
      }
      write_weight(w, p + "attn_output.weight", {d, q}, dtype, rng, s);
      write_weight(w, p + "ffn_norm.weight", {d}, DType::F32, rng, 0.1f, 1.0f);
      write_weight(w, p + "ffn_gate.weight", {f, d}, dtype, rng, s);
      write_weight(w, p + "ffn_up.weight", {f, d}, dtype, rng, s);
      write_weight(w, p + "ffn_down.weight", {d, f}, dtype, rng, s);
    }
  }
  w.finish(meta, tokenizer);
}

}  // namespace llm::test
