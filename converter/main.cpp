// llm-convert: Hugging Face checkpoint folder -> libllm model file.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "converter/convert.h"
#include "converter/synthetic.h"
#include "format/error.h"

namespace {

void usage(FILE *out) {
  std::fputs(
      "usage: llm-convert HF_DIR -o OUT.llm [options]\n"
      "       llm-convert --synthetic CONFIG.json -o OUT_DIR [--seed N]\n"
      "\n"
      "Converts a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json,\n"
      "tokenizer_config.json, generation_config.json) into one libllm model file.\n"
      "  --dtype f32|f16|bf16      float storage of weight matrices (default bf16); norms and\n"
      "                            biases always stay f32\n"
      "  --weights int8|int4       quantize every weight matrix (embeddings and output head too)\n"
      "  --group-size 32|64|128    elements sharing one scale (default 32)\n"
      "  --symmetric               zero point fixed (default)\n"
      "  --asymmetric              one zero point per group\n"
      "  --no-search               round to nearest instead of searching each group's scale\n"
      "  --calibrate TEXT_FILE     weight the scale search by activation statistics gathered\n"
      "                            by running the model over this text\n"
      "  --calibrate-tokens N      tokens of calibration text used (default 16384)\n"
      "  --keep-f16 PATTERN        store matching tensors as f16 (glob, repeatable),\n"
      "                            e.g. --keep-f16 'token_embd.*'\n"
      "  --weights-for PAT=TYPE    storage for matching tensors: f32, f16, bf16, int8 or int4\n"
      "                            (repeatable; the last match wins)\n"
      "  --report                  print each tensor's reconstruction error\n"
      "  --vocab-only              write only the tokenizer and metadata\n"
      "  --name NAME               model name stored in the file (default: the folder name)\n"
      "  -t, --threads N           threads for quantization (default: all cores)\n"
      "  -v                        list every tensor as it is written\n"
      "  --synthetic CONFIG.json   instead of converting, write a Hugging Face checkpoint with\n"
      "                            random weights of the shape CONFIG.json describes (for\n"
      "                            benchmarks); see bench/configs/\n",
      out);
}

bool parse_dtype(const char *s, llm::DType *out) {
  if (!std::strcmp(s, "f32")) *out = llm::DType::F32;
  else if (!std::strcmp(s, "f16")) *out = llm::DType::F16;
  else if (!std::strcmp(s, "bf16")) *out = llm::DType::BF16;
  else if (!std::strcmp(s, "int8")) *out = llm::DType::I8;
  else if (!std::strcmp(s, "int4")) *out = llm::DType::I4;
  else return false;
  return true;
}

bool is_float(llm::DType t) { return t == llm::DType::F32 || t == llm::DType::F16 || t == llm::DType::BF16; }

}  // namespace

int main(int argc, char **argv) {
  llm::convert::ConvertOptions o;
  std::string synthetic;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "llm-convert: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "-o" || a == "--output") {
      o.output_path = value();
    } else if (a == "--dtype") {
      const char *v = value();
      if (!parse_dtype(v, &o.dtype) || !is_float(o.dtype)) {
        std::fprintf(stderr, "llm-convert: unknown --dtype %s (f32, f16 or bf16)\n", v);
        return 2;
      }
    } else if (a == "--weights") {
      const char *v = value();
      if (!parse_dtype(v, &o.weights) || is_float(o.weights)) {
        std::fprintf(stderr, "llm-convert: unknown --weights %s (int8 or int4)\n", v);
        return 2;
      }
    } else if (a == "--group-size") {
      o.group_size = static_cast<uint32_t>(std::strtoul(value(), nullptr, 10));
    } else if (a == "--symmetric") {
      o.asymmetric = false;
    } else if (a == "--asymmetric") {
      o.asymmetric = true;
    } else if (a == "--no-search") {
      o.search = false;
    } else if (a == "--calibrate") {
      o.calibrate_path = value();
    } else if (a == "--calibrate-tokens") {
      o.calibrate_tokens = std::strtoll(value(), nullptr, 10);
    } else if (a == "--keep-f16") {
      o.keep_f16.push_back(value());
    } else if (a == "--weights-for") {
      std::string spec = value();
      size_t eq = spec.rfind('=');
      llm::DType t;
      if (eq == std::string::npos || !parse_dtype(spec.c_str() + eq + 1, &t)) {
        std::fprintf(stderr, "llm-convert: --weights-for needs PATTERN=TYPE (f32, f16, bf16, int8, int4)\n");
        return 2;
      }
      o.weights_for.emplace_back(spec.substr(0, eq), t);
    } else if (a == "--synthetic") {
      synthetic = value();
    } else if (a == "--seed") {
      seed = std::strtoull(value(), nullptr, 10);
    } else if (a == "--report") {
      o.report = true;
    } else if (a == "-t" || a == "--threads") {
      o.n_threads = std::atoi(value());
    } else if (a == "--vocab-only") {
      o.vocab_only = true;
    } else if (a == "--name") {
      o.name = value();
    } else if (a == "-v" || a == "--verbose") {
      o.verbose = true;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "llm-convert: unknown option %s\n", a.c_str());
      usage(stderr);
      return 2;
    } else if (o.input_dir.empty()) {
      o.input_dir = a;
    } else {
      std::fprintf(stderr, "llm-convert: more than one input folder given\n");
      return 2;
    }
  }
  if (!synthetic.empty()) {
    if (o.output_path.empty()) {
      usage(stderr);
      return 2;
    }
    try {
      llm::convert::write_synthetic_checkpoint(synthetic, o.output_path, seed);
      std::fprintf(stderr, "llm-convert: wrote a synthetic checkpoint to %s\n", o.output_path.c_str());
      return 0;
    } catch (const std::exception &e) {
      std::fprintf(stderr, "llm-convert: error: %s\n", e.what());
      return 1;
    }
  }
  if (o.input_dir.empty() || o.output_path.empty()) {
    usage(stderr);
    return 2;
  }
  try {
    llm::convert::ConvertStats s = llm::convert::convert(o);
    std::fprintf(stderr, "llm-convert: wrote %s: %llu tensors, %llu parameters, %.1f MB\n",
                 o.output_path.c_str(), static_cast<unsigned long long>(s.tensors),
                 static_cast<unsigned long long>(s.parameters), s.bytes / 1e6);
    return 0;
  } catch (const llm::Error &e) {
    std::fprintf(stderr, "llm-convert: error (%s): %s\n", llm_status_string(e.status()), e.what());
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "llm-convert: error: %s\n", e.what());
    return 1;
  }
}
