// A loaded model: the mapped, validated file, its tokenizer, the backend
// holding its weights, and the thread pool the CPU backend computes on.
// Read-only after loading; shared by all of its sessions.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "format/model_file.h"
#include "runtime/backend.h"
#include "runtime/thread_pool.h"
#include "runtime/tokenizer.h"

namespace llm {

struct LayerWeights {
  Weight attn_norm, wq, wk, wv, wo, bq, bk, bv;
  Weight ffn_norm, gate, up, down;
};

struct ModelWeights {
  Weight token_embd, output_norm, output;
  std::vector<LayerWeights> layers;
};

// Canonical tensor names in the model file (the converter maps checkpoint
// names to these).
std::string layer_tensor_name(uint32_t layer, const char *suffix);

struct ModelOptions {
  int n_threads = 0;
  std::string device = "cpu";
  ModelFile::Verify verify = ModelFile::Verify::Full;
};

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string &path, const ModelOptions &options);
  ~Model();

  const ModelMetadata &meta() const { return file_->meta(); }
  const HParams &hparams() const { return file_->meta().hparams; }
  const Tokenizer &tokenizer() const { return *tokenizer_; }
  const ModelFile &file() const { return *file_; }
  const ModelWeights &weights() const { return weights_; }
  Backend &backend() const { return *backend_; }
  ThreadPool &pool() const { return *pool_; }
  bool vocab_only() const { return file_->meta().vocab_only; }
  // Inverse RoPE frequencies (head_dim/2), with the model's scaling applied.
  const std::vector<double> &rope_inv_freq() const { return rope_inv_freq_; }
  // RoPE position multiplier (Linear scaling divides positions by its factor).
  double rope_position_scale() const { return rope_position_scale_; }
  bool is_eog(int32_t token) const;
  // Weight bytes read to decode one token: every matrix, but a single row of
  // an untied embedding table.
  uint64_t decode_bytes_per_token() const { return decode_bytes_per_token_; }
  // Storage type holding most weight bytes ("bf16", "int4", ...).
  const char *weights_type() const { return weights_type_; }

 private:
  Model() = default;
  void validate_hparams() const;
  void bind_weights();
  void account_weights();
  void compute_rope_frequencies();

  std::unique_ptr<ModelFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Backend> backend_;
  ModelWeights weights_;
  std::vector<double> rope_inv_freq_;
  double rope_position_scale_ = 1.0;
  uint64_t decode_bytes_per_token_ = 0;
  const char *weights_type_ = "none";
};

}  // namespace llm
