// llm-convert: Hugging Face checkpoint folder -> libllm model file.
#include <cstdio>
#include <cstring>
#include <string>

#include "converter/convert.h"
#include "format/error.h"

namespace {

void usage(FILE *out) {
  std::fputs(
      "usage: llm-convert HF_DIR -o OUT.llm [--dtype f32|f16|bf16] [--vocab-only] [--name NAME] [-v]\n"
      "\n"
      "Converts a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json,\n"
      "tokenizer_config.json, generation_config.json) into one libllm model file.\n"
      "  --dtype       storage of weight matrices (default bf16); norms and biases stay f32\n"
      "  --vocab-only  write only the tokenizer and metadata (for tokenization tools and tests)\n"
      "  --name        model name stored in the file (default: the folder name)\n"
      "  -v            list every tensor as it is written\n",
      out);
}

bool parse_dtype(const char *s, llm::DType *out) {
  if (!std::strcmp(s, "f32")) *out = llm::DType::F32;
  else if (!std::strcmp(s, "f16")) *out = llm::DType::F16;
  else if (!std::strcmp(s, "bf16")) *out = llm::DType::BF16;
  else return false;
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  llm::convert::ConvertOptions o;
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
      if (!parse_dtype(v, &o.dtype)) {
        std::fprintf(stderr, "llm-convert: unknown --dtype %s (f32, f16 or bf16)\n", v);
        return 2;
      }
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
