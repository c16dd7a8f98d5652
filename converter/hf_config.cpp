#include "converter/hf_config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/error.h"

namespace llm::convert {

namespace {

using nlohmann::json;

// Sizes above 2^24 are not a real model's; they are a corrupt or hostile
// config, and keeping below it lets products of two sizes fit in 64 bits.
constexpr uint64_t kMaxSize = 1u << 24;
// Layer and head counts are far smaller in practice than kMaxSize.
constexpr uint64_t kMaxCount = 1u << 16;
// tokenizer_config.json can carry megabytes of added tokens and templates.
constexpr size_t kMaxJsonBytes = 256u << 20;

// transformers' GenerationConfig default; it applies whenever sampling is on
// and the files do not say otherwise.
constexpr int32_t kHfDefaultTopK = 50;

std::string join(const std::string &dir, const char *name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

// Whole text of a small file; nullopt when it does not exist and !required.
std::optional<std::string> read_text(const std::string &path, bool required) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (!required && errno == ENOENT) return std::nullopt;
    fail(LLM_ERR_IO, "cannot open " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) fail(LLM_ERR_IO, "cannot read " + path + ": not a regular file");
  if (uint64_t(st.st_size) > kMaxJsonBytes)
    fail_format(path + ": too large (" + std::to_string(st.st_size) + " bytes)");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (!in || !(text << in.rdbuf())) fail(LLM_ERR_IO, "cannot read " + path);
  return text.str();
}

json parse_object(const std::string &path, const std::string &text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail_format(path + ": not valid JSON");
  if (!j.is_object()) fail_format(path + ": not a JSON object");
  return j;
}

// One JSON object of a config file. Accessors check type and range and
// fail naming the file and the key (with its parent keys).
class Obj {
 public:
  Obj(const std::string &file, const json &j, std::string prefix = "")
      : file_(&file), json_(&j), prefix_(std::move(prefix)) {}

  const std::string &file() const { return *file_; }
  const json &value() const { return *json_; }

  // nullptr when absent or null: transformers treats both as "not set".
  const json *find(const char *key) const {
    const auto it = json_->find(key);
    return it == json_->end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const char *key) const { return find(key) != nullptr; }

  [[noreturn]] void fail_key(llm_status status, const std::string &key, const std::string &what) const {
    fail(status, file() + ": '" + prefix_ + key + "' " + what);
  }

  const json &require(const char *key) const {
    const json *v = find(key);
    if (!v) fail_key(LLM_ERR_FORMAT, key, "is missing");
    return *v;
  }

  uint32_t u32(const char *key, uint64_t lo, uint64_t hi) const { return to_u32(require(key), key, lo, hi); }
  uint32_t u32_or(const char *key, uint64_t lo, uint64_t hi, uint32_t dflt) const {
    const json *v = find(key);
    return v ? to_u32(*v, key, lo, hi) : dflt;
  }

  // A finite number in [lo, hi].
  float num(const char *key, double lo, double hi) const { return to_num(require(key), key, lo, hi, false); }
  float num_or(const char *key, double lo, double hi, float dflt) const {
    const json *v = find(key);
    return v ? to_num(*v, key, lo, hi, false) : dflt;
  }
  // A finite number in (0, hi].
  float positive(const char *key, double hi) const { return to_num(require(key), key, 0, hi, true); }
  float positive_or(const char *key, double hi, float dflt) const {
    const json *v = find(key);
    return v ? to_num(*v, key, 0, hi, true) : dflt;
  }

  bool flag_or(const char *key, bool dflt) const {
    const json *v = find(key);
    if (!v) return dflt;
    if (!v->is_boolean()) fail_key(LLM_ERR_FORMAT, key, "must be true or false");
    return v->get<bool>();
  }

  std::string str_or(const char *key, const std::string &dflt) const {
    const json *v = find(key);
    if (!v) return dflt;
    if (!v->is_string()) fail_key(LLM_ERR_FORMAT, key, "must be a string");
    return v->get<std::string>();
  }

  Obj child(const char *key) const {
    const json &v = require(key);
    if (!v.is_object()) fail_key(LLM_ERR_FORMAT, key, "must be a JSON object");
    return Obj(file(), v, prefix_ + key + ".");
  }

  // Token id(s): an integer or a list of integers, each in [0, vocab).
  std::vector<int32_t> token_ids(const char *key, uint32_t vocab) const {
    const json &v = require(key);
    std::vector<int32_t> ids;
    if (!v.is_array()) return {int32_t(to_u32(v, key, 0, vocab - 1))};
    for (const json &id : v) ids.push_back(int32_t(to_u32(id, key, 0, vocab - 1)));
    return ids;
  }

 private:
  uint32_t to_u32(const json &v, const std::string &key, uint64_t lo, uint64_t hi) const {
    const bool in_range = v.is_number_unsigned() && v.get<uint64_t>() >= lo && v.get<uint64_t>() <= hi;
    if (!in_range) {
      fail_key(LLM_ERR_FORMAT, key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                        "], got " + v.dump());
    }
    return uint32_t(v.get<uint64_t>());
  }

  float to_num(const json &v, const std::string &key, double lo, double hi, bool lo_open) const {
    const double x = v.is_number() ? v.get<double>() : NAN;
    const bool above_lo = lo_open ? x > lo : x >= lo;
    if (!std::isfinite(x) || !above_lo || x > hi) {
      std::ostringstream range;
      range << (lo_open ? "(" : "[") << lo << ", " << hi << "]";
      fail_key(LLM_ERR_FORMAT, key, "must be a number in " + range.str() + ", got " + v.dump());
    }
    return float(x);
  }

  const std::string *file_;
  const json *json_;
  std::string prefix_;
};

// ---- architecture -------------------------------------------------------------

struct ArchEntry {
  const char *model_type;
  const char *class_name;
  Arch arch;
};

constexpr ArchEntry kArchs[] = {
    {"llama", "LlamaForCausalLM", Arch::Llama},
    {"mistral", "MistralForCausalLM", Arch::Llama},  // Llama plus a sliding window
    {"qwen2", "Qwen2ForCausalLM", Arch::Qwen2},
};

const ArchEntry *find_arch(const std::string &model_type, const std::string &class_name) {
  for (const ArchEntry &e : kArchs)
    if ((!model_type.empty() && model_type == e.model_type) || (!class_name.empty() && class_name == e.class_name))
      return &e;
  return nullptr;
}

[[noreturn]] void fail_arch(const std::string &file, const std::string &class_name, const std::string &model_type) {
  std::string supported;
  for (const ArchEntry &e : kArchs)
    supported += std::string(supported.empty() ? "" : ", ") + e.class_name + " (" + e.model_type + ")";
  fail(LLM_ERR_UNSUPPORTED, file + ": architecture " + (class_name.empty() ? "?" : class_name) + " (model_type " +
                                (model_type.empty() ? "?" : model_type) + ") is not supported; supported: " +
                                supported);
}

// Sets out->arch, model_type and architecture from model_type and the
// architectures list; every listed class must be a supported causal LM.
void resolve_arch(const Obj &cfg, HfModelConfig *out) {
  const std::string model_type = cfg.str_or("model_type", "");
  std::vector<std::string> classes;
  if (const json *list = cfg.find("architectures")) {
    if (!list->is_array()) cfg.fail_key(LLM_ERR_FORMAT, "architectures", "must be a list of strings");
    for (const json &c : *list) {
      if (!c.is_string()) cfg.fail_key(LLM_ERR_FORMAT, "architectures", "must be a list of strings");
      classes.push_back(c.get<std::string>());
    }
  }
  if (model_type.empty() && classes.empty())
    cfg.fail_key(LLM_ERR_FORMAT, "model_type", "is missing (and so is 'architectures')");

  const ArchEntry *by_type = model_type.empty() ? nullptr : find_arch(model_type, "");
  if (!model_type.empty() && !by_type) fail_arch(cfg.file(), classes.empty() ? "" : classes[0], model_type);
  for (const std::string &c : classes) {
    const ArchEntry *by_class = find_arch("", c);
    if (!by_class) fail_arch(cfg.file(), c, model_type);
    if (by_type && by_class->arch != by_type->arch)
      cfg.fail_key(LLM_ERR_FORMAT, "architectures", "lists " + c + ", which does not match model_type " + model_type);
    if (!by_type) by_type = by_class;
  }
  out->arch = by_type->arch;
  out->model_type = by_type->model_type;
  out->architecture = classes.empty() ? "" : classes[0];
}

// Features of the checkpoint that the runtime has no way to run.
void check_supported_features(const Obj &cfg, const std::string &model_type) {
  if (const json *q = cfg.find("quantization_config")) {
    const std::string method = q->is_object() && q->contains("quant_method") ? q->at("quant_method").dump() : "?";
    cfg.fail_key(LLM_ERR_UNSUPPORTED, "quantization_config",
                 "is set (quant_method " + method + "): pre-quantized checkpoints are not supported");
  }
  // transformers maps "swish" to the same SiLU function.
  const std::string act = cfg.str_or("hidden_act", "silu");
  if (act != "silu" && act != "swish")
    cfg.fail_key(LLM_ERR_UNSUPPORTED, "hidden_act", "is " + act + "; only silu is supported");
  // Only LlamaMLP reads mlp_bias; Mistral and Qwen2 ignore the key.
  if (model_type == "llama" && cfg.flag_or("mlp_bias", false))
    cfg.fail_key(LLM_ERR_UNSUPPORTED, "mlp_bias", "is true; MLP biases are not supported");
}

// ---- sizes --------------------------------------------------------------------

void read_sizes(const Obj &cfg, HParams *hp) {
  hp->vocab_size = cfg.u32("vocab_size", 1, kMaxSize);
  hp->hidden_size = cfg.u32("hidden_size", 1, kMaxSize);
  hp->intermediate_size = cfg.u32("intermediate_size", 1, kMaxSize);
  hp->num_layers = cfg.u32("num_hidden_layers", 1, kMaxCount);
  hp->num_heads = cfg.u32("num_attention_heads", 1, kMaxCount);
  hp->num_kv_heads = cfg.u32_or("num_key_value_heads", 1, kMaxCount, hp->num_heads);
  if (hp->num_heads % hp->num_kv_heads != 0) {
    cfg.fail_key(LLM_ERR_FORMAT, "num_key_value_heads",
                 "(" + std::to_string(hp->num_kv_heads) + ") must divide num_attention_heads (" +
                     std::to_string(hp->num_heads) + ")");
  }
  if (cfg.has("head_dim")) {
    hp->head_dim = cfg.u32("head_dim", 1, kMaxCount);
  } else if (hp->hidden_size % hp->num_heads == 0) {
    hp->head_dim = hp->hidden_size / hp->num_heads;
  } else {
    cfg.fail_key(LLM_ERR_FORMAT, "hidden_size",
                 "(" + std::to_string(hp->hidden_size) + ") is not a multiple of num_attention_heads (" +
                     std::to_string(hp->num_heads) + ") and head_dim is not given");
  }
  hp->max_context = cfg.u32("max_position_embeddings", 1, kMaxSize);
  // 1e-6 is the LlamaConfig / MistralConfig / Qwen2Config default.
  hp->rms_norm_eps = cfg.positive_or("rms_norm_eps", 1.0, 1e-6f);
  hp->tie_word_embeddings = cfg.flag_or("tie_word_embeddings", false);
}

// ---- RoPE ---------------------------------------------------------------------

RopeScaling parse_rope_scaling(const Obj &rope) {
  // Older configs name the type "type", newer ones "rope_type".
  const std::string type = rope.has("rope_type") ? rope.str_or("rope_type", "") : rope.str_or("type", "default");
  RopeScaling s;
  if (type == "default") return s;
  if (type == "linear") {
    s.type = RopeType::Linear;
    s.factor = rope.positive("factor", 1e6);
    return s;
  }
  if (type == "llama3") {
    s.type = RopeType::Llama3;
    s.factor = rope.positive("factor", 1e6);
    s.low_freq_factor = rope.positive("low_freq_factor", 1e6);
    s.high_freq_factor = rope.positive("high_freq_factor", 1e6);
    s.original_max_position = rope.u32("original_max_position_embeddings", 1, kMaxSize);
    // The llama3 formula divides by (high - low).
    if (s.high_freq_factor <= s.low_freq_factor)
      rope.fail_key(LLM_ERR_FORMAT, "high_freq_factor", "must be greater than low_freq_factor");
    return s;
  }
  rope.fail_key(LLM_ERR_UNSUPPORTED, rope.has("rope_type") ? "rope_type" : "type",
                "is " + type + ": this RoPE type is not supported (supported: default, linear, llama3)");
}

// transformers v5 may key rope_parameters by layer type ("full_attention",
// "sliding_attention"); one set shared by all layers is all we can store.
Obj select_rope_parameters(const Obj &cfg) {
  const Obj rp = cfg.child("rope_parameters");
  const json &v = rp.value();
  const bool per_layer_type = !v.empty() && !v.contains("rope_type") && !v.contains("type") &&
                              !v.contains("rope_theta") && v.begin()->is_object();
  if (!per_layer_type) return rp;
  for (const auto &item : v.items()) {
    if (item.value() != *v.begin())
      cfg.fail_key(LLM_ERR_UNSUPPORTED, "rope_parameters", "differ between layer types; this is not supported");
  }
  return rp.child(v.begin().key().c_str());
}

void read_rope(const Obj &cfg, HParams *hp) {
  constexpr float kDefaultTheta = 10000.0f;
  const float top_theta = cfg.positive_or("rope_theta", 1e12, kDefaultTheta);
  if (cfg.has("rope_parameters")) {
    const Obj rp = select_rope_parameters(cfg);
    hp->rope_theta = rp.positive_or("rope_theta", 1e12, top_theta);
    hp->rope_scaling = parse_rope_scaling(rp);
    // Partial rotary embeddings would need the rotated width in the model file.
    if (rp.num_or("partial_rotary_factor", 0, 1, 1.0f) != 1.0f)
      rp.fail_key(LLM_ERR_UNSUPPORTED, "partial_rotary_factor", "is not 1; partial RoPE is not supported");
  } else {
    hp->rope_theta = top_theta;
    if (cfg.has("rope_scaling")) hp->rope_scaling = parse_rope_scaling(cfg.child("rope_scaling"));
  }
}

// ---- sliding window ---------------------------------------------------------

// Whether each layer uses sliding-window attention, for Qwen2: from the
// explicit layer_types list when present, else transformers' rule that
// layers from max_window_layers on slide.
std::vector<bool> qwen2_sliding_layers(const Obj &cfg, uint32_t num_layers) {
  std::vector<bool> sliding(num_layers);
  if (const json *types = cfg.find("layer_types")) {
    if (!types->is_array() || types->size() != num_layers)
      cfg.fail_key(LLM_ERR_FORMAT, "layer_types", "must list one type per layer");
    for (uint32_t i = 0; i < num_layers; ++i) {
      const json &t = (*types)[i];
      if (t != "full_attention" && t != "sliding_attention")
        cfg.fail_key(LLM_ERR_UNSUPPORTED, "layer_types", "holds " + t.dump() + "; only full_attention and sliding_attention are known");
      sliding[i] = t == "sliding_attention";
    }
    return sliding;
  }
  const uint32_t first_sliding = cfg.u32_or("max_window_layers", 0, kMaxCount, 28);  // Qwen2Config default
  for (uint32_t i = first_sliding; i < num_layers; ++i) sliding[i] = true;
  return sliding;
}

// The window (0 = full attention) when it applies to every layer; a mix of
// full and sliding layers cannot be described by one HParams::sliding_window.
uint32_t read_sliding_window(const Obj &cfg, const std::string &model_type, const HParams &hp) {
  uint32_t window = 0;
  if (model_type == "mistral") {
    window = cfg.u32_or("sliding_window", 0, kMaxSize, 0);
  } else if (model_type == "qwen2" && cfg.flag_or("use_sliding_window", false)) {
    const std::vector<bool> sliding = qwen2_sliding_layers(cfg, hp.num_layers);
    const size_t n_sliding = size_t(std::count(sliding.begin(), sliding.end(), true));
    if (n_sliding != 0 && n_sliding != sliding.size()) {
      cfg.fail_key(LLM_ERR_UNSUPPORTED, "use_sliding_window",
                   "gives " + std::to_string(n_sliding) + " of " + std::to_string(sliding.size()) +
                       " layers a sliding window; mixed full/sliding layers are not supported");
    }
    if (n_sliding != 0) window = cfg.u32("sliding_window", 1, kMaxSize);
  }
  // A window covering the whole context changes nothing.
  return window < hp.max_context ? window : 0;
}

// ---- generation -------------------------------------------------------------

// The first of the files (generation_config.json, then config.json) that
// sets `key`, as transformers builds its GenerationConfig.
const Obj *source_of(const char *key, const Obj *gen, const Obj &cfg) {
  if (gen && gen->has(key)) return gen;
  return cfg.has(key) ? &cfg : nullptr;
}

void read_generation(const Obj &cfg, const Obj *gen, uint32_t vocab, GenerationConfig *g) {
  if (const Obj *src = source_of("bos_token_id", gen, cfg)) {
    const std::vector<int32_t> ids = src->token_ids("bos_token_id", vocab);
    if (ids.size() != 1) src->fail_key(LLM_ERR_FORMAT, "bos_token_id", "must be a single id");
    g->bos_id = ids[0];
  }
  if (const Obj *src = source_of("eos_token_id", gen, cfg)) g->eos_ids = src->token_ids("eos_token_id", vocab);
  // Old Llama configs write pad_token_id -1 for "none".
  const Obj *pad_src = source_of("pad_token_id", gen, cfg);
  const json *pad = pad_src ? pad_src->find("pad_token_id") : nullptr;
  if (pad && !(pad->is_number_integer() && !pad->is_number_unsigned())) {
    const std::vector<int32_t> ids = pad_src->token_ids("pad_token_id", vocab);
    if (ids.size() != 1) pad_src->fail_key(LLM_ERR_FORMAT, "pad_token_id", "must be a single id");
    g->pad_id = ids[0];
  }
  g->top_k = kHfDefaultTopK;
  if (!gen) return;
  g->temperature = gen->num_or("temperature", 0, 1e6, g->temperature);
  g->top_k = int32_t(gen->u32_or("top_k", 0, kMaxSize, uint32_t(g->top_k)));
  g->top_p = gen->num_or("top_p", 0, 1, g->top_p);
  g->do_sample = gen->flag_or("do_sample", g->do_sample);
}

// ---- tokenizer_config.json ----------------------------------------------------

// bos_token / eos_token are strings or AddedToken objects {"content": ...}.
std::string token_string(const Obj &tc, const char *key) {
  const json *v = tc.find(key);
  if (!v) return "";
  if (v->is_string()) return v->get<std::string>();
  if (v->is_object()) return tc.child(key).str_or("content", "");
  tc.fail_key(LLM_ERR_FORMAT, key, "must be a string or an object with 'content'");
}

// chat_template is a string, or a list of {"name", "template"} of which
// "default" is the one transformers applies when none is named.
std::string chat_template(const Obj &tc) {
  const json *v = tc.find("chat_template");
  if (!v) return "";
  if (v->is_string()) return v->get<std::string>();
  if (!v->is_array()) tc.fail_key(LLM_ERR_FORMAT, "chat_template", "must be a string or a list of named templates");
  for (const json &entry : *v) {
    const bool valid = entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
                       entry.contains("template") && entry["template"].is_string();
    if (!valid) tc.fail_key(LLM_ERR_FORMAT, "chat_template", "list entries must be {\"name\", \"template\"} strings");
    if (entry["name"] == "default") return entry["template"].get<std::string>();
  }
  return "";
}

std::optional<bool> optional_flag(const Obj &tc, const char *key) {
  if (!tc.has(key)) return std::nullopt;
  return tc.flag_or(key, false);
}

void read_tokenizer_files(const std::string &dir, HfModelConfig *out) {
  const std::string path = join(dir, "tokenizer_config.json");
  if (const std::optional<std::string> text = read_text(path, false)) {
    const json root = parse_object(path, *text);
    const Obj tc(path, root);
    out->generation.chat_template = chat_template(tc);
    out->add_bos_token = optional_flag(tc, "add_bos_token");
    out->add_eos_token = optional_flag(tc, "add_eos_token");
    out->bos_token = token_string(tc, "bos_token");
    out->eos_token = token_string(tc, "eos_token");
  }
  // Newer transformers save the template beside the config, and a template
  // file clobbers the config's entry when a tokenizer is loaded.
  if (std::optional<std::string> text = read_text(join(dir, "chat_template.jinja"), false))
    out->generation.chat_template = std::move(*text);
}

}  // namespace

HfModelConfig read_hf_config(const std::string &dir) {
  const std::string config_path = join(dir, "config.json");
  const json config_root = parse_object(config_path, *read_text(config_path, true));
  const Obj cfg(config_path, config_root);

  HfModelConfig out;
  resolve_arch(cfg, &out);
  check_supported_features(cfg, out.model_type);
  read_sizes(cfg, &out.hparams);
  read_rope(cfg, &out.hparams);
  out.hparams.sliding_window = read_sliding_window(cfg, out.model_type, out.hparams);
  // Qwen2 always has q/k/v biases; MistralAttention never has any.
  out.hparams.attention_bias = out.arch == Arch::Qwen2 ||
                               (out.model_type == "llama" && cfg.flag_or("attention_bias", false));

  const std::string gen_path = join(dir, "generation_config.json");
  const std::optional<std::string> gen_text = read_text(gen_path, false);
  const json gen_root = gen_text ? parse_object(gen_path, *gen_text) : json::object();
  const Obj gen(gen_path, gen_root);
  read_generation(cfg, gen_text ? &gen : nullptr, out.hparams.vocab_size, &out.generation);

  read_tokenizer_files(dir, &out);
  return out;
}

}  // namespace llm::convert
