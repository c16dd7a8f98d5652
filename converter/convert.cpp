// The conversion pipeline: Hugging Face folder -> libllm model file.
#include "converter/convert.h"

#include <fnmatch.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "converter/hf_config.h"
#include "converter/hf_tokenizer.h"
#include "converter/quantize.h"
#include "converter/safetensors.h"
#include "format/error.h"
#include "format/model_file.h"
#include "kernels/cpu/kernels.h"
#include "runtime/model.h"
#include "runtime/session.h"
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
void write_float_tensor(ModelWriter &w, const Checkpoint &ck, const SrcTensor &src, const std::string &dst,
                        DType dtype) {
  w.begin_tensor(dst, dtype, src.shape);
  const uint64_t total = src.numel;
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

// Quantizes a 2-D tensor a block of rows at a time: values are written as
// they are produced; scales and zero points (1/16 of the f32 size or less)
// are kept until the values are done.
QuantError write_quantized_tensor(ModelWriter &w, const Checkpoint &ck, const SrcTensor &src,
                                  const std::string &dst, const QuantConfig &cfg, const float *importance,
                                  int n_threads) {
  const int64_t rows = src.shape[0], cols = src.shape[1];
  const int64_t groups = cols / cfg.group_size;
  w.begin_tensor(dst, cfg.dtype, src.shape, QuantSpec{cfg.group_size, cfg.asymmetric});
  const int64_t block = std::max<int64_t>(1, (1 << 20) / cols);
  std::vector<float> f32(static_cast<size_t>(block * cols));
  std::vector<uint8_t> q(static_cast<size_t>(block * quant_row_bytes(cfg.dtype, cols)));
  std::vector<uint16_t> scales(static_cast<size_t>(rows * groups));
  std::vector<uint8_t> zeros(cfg.asymmetric ? static_cast<size_t>(rows * groups) : 0);
  QuantError err;
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t n = std::min(block, rows - r0);
    const uint64_t first = static_cast<uint64_t>(r0 * cols), count = static_cast<uint64_t>(n * cols);
    ck.read_f32(src, first, count, f32.data());
    ck.release(src, first, count);
    quantize_rows(f32.data(), n, cols, cfg, importance, q.data(), scales.data() + r0 * groups,
                  cfg.asymmetric ? zeros.data() + r0 * groups : nullptr, n_threads, &err);
    w.write(q.data(), static_cast<size_t>(n * quant_row_bytes(cfg.dtype, cols)));
  }
  w.begin_scales();
  w.write(scales.data(), scales.size() * sizeof(uint16_t));
  if (cfg.asymmetric) {
    w.begin_zeros();
    w.write(zeros.data(), zeros.size());
  }
  w.end_tensor();
  return err;
}

bool matches(const std::string &pattern, const std::string &name) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

// Storage type of a tensor after the defaults and the per-tensor overrides.
DType storage_for(const ConvertOptions &o, const std::string &name, const std::vector<int64_t> &shape) {
  if (shape.size() != 2) return DType::F32;  // norms and biases: tiny, precision-sensitive
  DType t = o.weights != DType::F32 ? o.weights : o.dtype;
  for (const std::string &p : o.keep_f16)
    if (matches(p, name)) t = DType::F16;
  for (const auto &[p, type] : o.weights_for)
    if (matches(p, name)) t = type;
  return t;
}

// Largest supported group size not above the requested one that divides the
// row length; 0 if none does.
uint32_t group_for(uint32_t requested, int64_t cols) {
  for (uint32_t g = requested; g >= 32; g /= 2)
    if (cols % g == 0 && g % 32 == 0) return g;
  return 0;
}

// Mean square of each input column of every matrix product, gathered by
// running the model over calibration text.
class ImportanceCollector : public ActivationObserver {
 public:
  void observe(int layer, Site site, const float *x, int64_t rows, int64_t cols, int64_t stride) override {
    Stats &s = stats_[{layer, site}];
    if (s.sum.empty()) s.sum.assign(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) s.sum[c] += static_cast<double>(x[r * stride + c]) * x[r * stride + c];
    s.rows += rows;
  }
  // Importance of the columns feeding tensor `name`, or empty if unknown.
  std::vector<float> for_tensor(const std::string &name, bool tied) const {
    int layer = -1;
    Site site;
    if (name == "output.weight" || (tied && name == "token_embd.weight")) {
      site = HeadInput;
    } else if (std::sscanf(name.c_str(), "blk.%d.", &layer) == 1) {
      if (name.find("attn_q.") != std::string::npos || name.find("attn_k.") != std::string::npos ||
          name.find("attn_v.") != std::string::npos) site = AttnInput;
      else if (name.find("attn_output.") != std::string::npos) site = AttnOutput;
      else if (name.find("ffn_gate.") != std::string::npos || name.find("ffn_up.") != std::string::npos) site = FfnInput;
      else if (name.find("ffn_down.") != std::string::npos) site = FfnDownInput;
      else return {};
    } else {
      return {};
    }
    auto it = stats_.find({layer, site});
    if (it == stats_.end() || it->second.rows == 0) return {};
    std::vector<float> imp(it->second.sum.size());
    for (size_t c = 0; c < imp.size(); ++c)
      imp[c] = static_cast<float>(it->second.sum[c] / static_cast<double>(it->second.rows)) + 1e-8f;
    return imp;
  }

 private:
  struct Stats {
    std::vector<double> sum;
    int64_t rows = 0;
  };
  std::map<std::pair<int, Site>, Stats> stats_;
};

void collect_importance(const std::string &model_path, const std::string &text_path, int64_t max_tokens,
                        ImportanceCollector &collector) {
  ModelOptions mo;
  mo.verify = ModelFile::Verify::None;
  std::unique_ptr<Model> model = Model::load(model_path, mo);
  std::vector<int32_t> ids = model->tokenizer().encode(read_text_file(text_path), true);
  if (static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(static_cast<size_t>(max_tokens));
  if (ids.size() < 16) fail_argument("calibration text " + text_path + " is too short (" + std::to_string(ids.size()) + " tokens)");
  SessionOptions so;
  so.n_ctx = std::min<int64_t>(512, model->hparams().max_context);
  so.n_batch = so.n_ctx;
  Session session(*model, so);
  session.set_observer(&collector);
  for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(so.n_ctx)) {
    session.reset();
    session.eval(ids.data() + start, std::min(ids.size() - start, static_cast<size_t>(so.n_ctx)));
  }
  std::fprintf(stderr, "llm-convert: calibrated on %zu tokens of %s\n", ids.size(), text_path.c_str());
}

}  // namespace

ConvertStats convert(const ConvertOptions &options) {
  if (options.dtype != DType::F32 && options.dtype != DType::F16 && options.dtype != DType::BF16)
    fail_argument(std::string("--dtype ") + dtype_name(options.dtype) + " is not a float type");
  if (options.weights != DType::F32 && options.weights != DType::I8 && options.weights != DType::I4)
    fail_argument("--weights must be int8 or int4");
  if (options.group_size != 32 && options.group_size != 64 && options.group_size != 128)
    fail_argument("--group-size must be 32, 64 or 128");
  const std::string &dir = options.input_dir;
  HfModelConfig cfg = read_hf_config(dir);
  TokenizerSpec tokenizer = parse_hf_tokenizer(read_text_file(dir + "/tokenizer.json"));
  {
    Tokenizer check(tokenizer);  // rejects an inconsistent tokenizer before writing anything
    if (static_cast<uint32_t>(check.vocab_size()) > cfg.hparams.vocab_size)
      fail_format("tokenizer.json has " + std::to_string(check.vocab_size()) +
                  " tokens but config.json says vocab_size " + std::to_string(cfg.hparams.vocab_size));
  }
  const int n_threads = options.n_threads > 0 ? options.n_threads
                                              : std::max(1u, std::thread::hardware_concurrency());

  // Calibration runs the model in float first, from a temporary conversion.
  ImportanceCollector importance;
  if (!options.calibrate_path.empty() && !options.vocab_only) {
    ConvertOptions f = options;
    f.output_path = options.output_path + ".calib.tmp";
    f.weights = DType::F32;
    f.keep_f16.clear();
    f.weights_for.clear();
    f.calibrate_path.clear();
    f.report = f.verbose = false;
    convert(f);
    try {
      collect_importance(f.output_path, options.calibrate_path, options.calibrate_tokens, importance);
    } catch (...) {
      std::remove(f.output_path.c_str());
      throw;
    }
    std::remove(f.output_path.c_str());
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
  if (options.report)
    std::fprintf(stderr, "%-28s %-6s %5s %12s %12s\n", "tensor", "type", "group", "rel. RMSE", "max |err|");
  if (!options.vocab_only) {
    Checkpoint ck = Checkpoint::open(dir);
    for (const Mapping &m : map_tensors(cfg.hparams, ck)) {
      const SrcTensor &src = ck.get(m.src);
      DType dtype = storage_for(options, m.dst, src.shape);
      uint32_t group = 0;
      if (dtype == DType::I8 || dtype == DType::I4) {
        group = group_for(options.group_size, src.shape[1]);
        if (group == 0) {
          std::fprintf(stderr, "llm-convert: %s: %lld columns are not a multiple of 32; kept as %s\n",
                       m.dst.c_str(), static_cast<long long>(src.shape[1]), dtype_name(options.dtype));
          dtype = options.dtype;
        }
      }
      if (group) {
        QuantConfig qc{dtype, group, options.asymmetric, options.search};
        std::vector<float> imp = importance.for_tensor(m.dst, cfg.hparams.tie_word_embeddings);
        QuantError err = write_quantized_tensor(writer, ck, src, m.dst, qc, imp.empty() ? nullptr : imp.data(),
                                                n_threads);
        if (options.report)
          std::fprintf(stderr, "%-28s %-6s %5u %12.6f %12.6f%s\n", m.dst.c_str(), dtype_name(dtype), group,
                       err.relative_rmse(), err.max_abs, imp.empty() ? "" : "  (calibrated)");
      } else {
        write_float_tensor(writer, ck, src, m.dst, dtype);
        if (options.report) std::fprintf(stderr, "%-28s %-6s %5s %12s %12s\n", m.dst.c_str(), dtype_name(dtype), "-", "-", "-");
      }
      meta.parameter_count += src.numel;
      ++stats.tensors;
      if (options.verbose && !options.report)
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
