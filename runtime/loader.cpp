// Model loading: map the file, check hyper-parameters and every tensor's
// shape against them, bind weights to the backend, build the tokenizer.
#include <cmath>
#include <map>

#include "format/error.h"
#include "runtime/model.h"

namespace llm {
namespace {

constexpr uint32_t kMaxDim = 1u << 20;       // hidden/intermediate size sanity bound
constexpr uint32_t kMaxVocab = 1u << 24;
constexpr uint32_t kMaxLayers = 1024;
constexpr uint32_t kMaxContext = 1u << 24;

void require(bool ok, const std::string &message) {
  if (!ok) fail_format(message);
}

}  // namespace

std::string layer_tensor_name(uint32_t layer, const char *suffix) {
  return "blk." + std::to_string(layer) + "." + suffix;
}

// "cpu" -> -1; "cuda" / "cuda:N" -> N (0 by default).
static int parse_device(const std::string &device) {
  if (device == "cpu") return -1;
  const std::string built = cuda_backend_built() ? "cpu, cuda, cuda:N" : "cpu";
  if (device.rfind("cuda", 0) == 0 && cuda_backend_built()) {
    if (device.size() == 4) return 0;
    if (device[4] == ':' && device.size() > 5 && device.size() <= 8 &&
        device.find_first_not_of("0123456789", 5) == std::string::npos)
      return std::stoi(device.substr(5));
  }
  fail(LLM_ERR_UNSUPPORTED, "device \"" + device + "\" is not available (this build has: " + built + ")");
}

std::unique_ptr<Model> Model::load(const std::string &path, const ModelOptions &options) {
  const int cuda_ordinal = parse_device(options.device);
  std::unique_ptr<Model> m(new Model());
  m->file_ = ModelFile::open(path, options.verify);
  try {
    m->validate_hparams();
    m->tokenizer_ = std::make_unique<Tokenizer>(m->file_->tokenizer());
    if (static_cast<uint32_t>(m->tokenizer_->vocab_size()) > m->hparams().vocab_size)
      fail_format("tokenizer has " + std::to_string(m->tokenizer_->vocab_size()) +
                  " tokens but the model's vocabulary is " + std::to_string(m->hparams().vocab_size));
    m->pool_ = std::make_unique<ThreadPool>(options.n_threads);
    m->backend_ = cuda_ordinal < 0 ? make_cpu_backend(*m->pool_) : make_cuda_backend(cuda_ordinal, *m->file_);
    if (!m->vocab_only()) {  // a vocab-only file's head_dim is unchecked and unused
      m->bind_weights();
      m->account_weights();
      m->compute_rope_frequencies();
    }
  } catch (const Error &e) {
    throw Error(e.status(), path + ": " + e.what());
  }
  return m;
}

Model::~Model() = default;

bool Model::is_eog(int32_t token) const {
  for (int32_t id : meta().generation.eos_ids)
    if (id == token) return true;
  return false;
}

void Model::validate_hparams() const {
  const HParams &h = hparams();
  require(h.vocab_size > 0 && h.vocab_size <= kMaxVocab, "vocab_size " + std::to_string(h.vocab_size) + " out of range");
  require(h.max_context > 0 && h.max_context <= kMaxContext, "max_context " + std::to_string(h.max_context) + " out of range");
  for (int32_t id : meta().generation.eos_ids)
    require(id >= 0 && static_cast<uint32_t>(id) < h.vocab_size, "eos id " + std::to_string(id) + " outside the vocabulary");
  require(meta().generation.bos_id < static_cast<int64_t>(h.vocab_size), "bos id outside the vocabulary");
  if (vocab_only()) return;
  require(h.hidden_size > 0 && h.hidden_size <= kMaxDim, "hidden_size out of range");
  require(h.intermediate_size > 0 && h.intermediate_size <= kMaxDim, "intermediate_size out of range");
  require(h.num_layers > 0 && h.num_layers <= kMaxLayers, "num_layers out of range");
  require(h.num_heads > 0 && h.num_kv_heads > 0 && h.num_heads % h.num_kv_heads == 0,
          "num_heads " + std::to_string(h.num_heads) + " is not a multiple of num_kv_heads " +
              std::to_string(h.num_kv_heads));
  require(h.head_dim > 0 && h.head_dim % 2 == 0 && h.head_dim <= 1024, "head_dim must be even and at most 1024");
  require(static_cast<uint64_t>(h.num_heads) * h.head_dim <= kMaxDim, "num_heads * head_dim out of range");
  require(std::isfinite(h.rms_norm_eps) && h.rms_norm_eps > 0, "rms_norm_eps must be positive");
  require(std::isfinite(h.rope_theta) && h.rope_theta > 1, "rope_theta must be > 1");
  const RopeScaling &r = h.rope_scaling;
  if (r.type != RopeType::Default)
    require(std::isfinite(r.factor) && r.factor >= 1, "rope scaling factor must be >= 1");
  if (r.type == RopeType::Llama3)
    require(r.original_max_position > 0 && r.high_freq_factor > r.low_freq_factor && r.low_freq_factor > 0,
            "llama3 rope scaling parameters out of range");
}

void Model::bind_weights() {
  const HParams &h = hparams();
  const int64_t d = h.hidden_size, q_dim = int64_t{h.num_heads} * h.head_dim,
                kv_dim = int64_t{h.num_kv_heads} * h.head_dim, ffn = h.intermediate_size,
                vocab = h.vocab_size;

  // Looks a tensor up and checks its shape; float types only for vectors.
  auto get = [&](const std::string &name, int64_t rows, int64_t cols, bool required = true) -> Weight {
    const TensorInfo *t = file_->find(name);
    if (!t) {
      if (required) fail_format("missing tensor " + name);
      return Weight{};
    }
    bool vector = cols == 0;
    bool ok = vector ? (t->shape.size() == 1 && t->shape[0] == rows)
                     : (t->shape.size() == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
      std::string got;
      for (int64_t s : t->shape) got += (got.empty() ? "" : ", ") + std::to_string(s);
      fail_format("tensor " + name + " has shape [" + got + "], expected [" + std::to_string(rows) +
                  (vector ? "" : ", " + std::to_string(cols)) + "] from the hyper-parameters");
    }
    if (vector && t->dtype != DType::F32)
      fail_format("tensor " + name + ": vectors must be stored as f32, found " + dtype_name(t->dtype));
    return backend_->prepare_weight(*file_, *t);
  };

  weights_.token_embd = get("token_embd.weight", vocab, d);
  weights_.output_norm = get("output_norm.weight", d, 0);
  if (h.tie_word_embeddings) {
    if (file_->find("output.weight")) fail_format("tied embeddings, yet the file has output.weight");
    weights_.output = weights_.token_embd;
  } else {
    weights_.output = get("output.weight", vocab, d);
  }
  weights_.layers.resize(h.num_layers);
  for (uint32_t i = 0; i < h.num_layers; ++i) {
    LayerWeights &l = weights_.layers[i];
    auto name = [&](const char *suffix) { return layer_tensor_name(i, suffix); };
    l.attn_norm = get(name("attn_norm.weight"), d, 0);
    l.wq = get(name("attn_q.weight"), q_dim, d);
    l.wk = get(name("attn_k.weight"), kv_dim, d);
    l.wv = get(name("attn_v.weight"), kv_dim, d);
    l.wo = get(name("attn_output.weight"), d, q_dim);
    if (h.attention_bias) {
      l.bq = get(name("attn_q.bias"), q_dim, 0);
      l.bk = get(name("attn_k.bias"), kv_dim, 0);
      l.bv = get(name("attn_v.bias"), kv_dim, 0);
    }
    l.ffn_norm = get(name("ffn_norm.weight"), d, 0);
    l.gate = get(name("ffn_gate.weight"), ffn, d);
    l.up = get(name("ffn_up.weight"), ffn, d);
    l.down = get(name("ffn_down.weight"), d, ffn);
  }
}

void Model::account_weights() {
  std::map<DType, uint64_t> by_type;
  uint64_t total = 0;
  for (const TensorInfo &t : file_->tensors()) {
    const uint64_t bytes = t.size + t.quant.scales_size + t.quant.zeros_size;
    by_type[t.dtype] += bytes;
    total += bytes;
    if (t.name == "token_embd.weight" && !hparams().tie_word_embeddings)
      total -= bytes - bytes / static_cast<uint64_t>(t.shape[0]);  // one row is read per token
  }
  decode_bytes_per_token_ = total;
  uint64_t most = 0;
  for (const auto &[type, bytes] : by_type)
    if (bytes > most) {
      most = bytes;
      weights_type_ = dtype_name(type);
    }
}

// Inverse frequencies as Hugging Face computes them (in double here, to stay
// closer to the exact values than the fp32 reference).
void Model::compute_rope_frequencies() {
  const HParams &h = hparams();
  const int64_t half = h.head_dim / 2;
  rope_inv_freq_.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    rope_inv_freq_[i] = 1.0 / std::pow(static_cast<double>(h.rope_theta), (2.0 * i) / h.head_dim);
  const RopeScaling &r = h.rope_scaling;
  if (r.type == RopeType::Linear) {
    rope_position_scale_ = 1.0 / r.factor;
  } else if (r.type == RopeType::Llama3) {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and
    // the band in between interpolated smoothly.
    const double low_wavelen = r.original_max_position / r.low_freq_factor;
    const double high_wavelen = r.original_max_position / r.high_freq_factor;
    for (double &f : rope_inv_freq_) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / r.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (r.original_max_position / wavelen - r.low_freq_factor) /
                              (r.high_freq_factor - r.low_freq_factor);
        f = (1.0 - smooth) * f / r.factor + smooth * f;
      }
    }
  }
}

}  // namespace llm
