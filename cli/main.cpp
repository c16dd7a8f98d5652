// llm: command-line front end to libllm, written against the public C API only.
//   llm generate   -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
//   llm info       -m MODEL
//   llm tokenize   -m MODEL (-p TEXT | -f FILE) [--no-special] [--no-bos] [--pieces]
//   llm perplexity -m MODEL -f TEXT [--ctx 512] [--stride 511] [--max-tokens N] [--json]
//   llm bench      -m MODEL [-p 128] [-n 64] [--json]
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "llm.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

[[noreturn]] void die(const char *what) {
  std::fprintf(stderr, "llm: %s\n", what);
  std::exit(1);
}

void check(llm_status st, const char *what) {
  if (st != LLM_OK) {
    std::fprintf(stderr, "llm: %s failed: %s: %s\n", what, llm_status_string(st), llm_last_error());
    std::exit(1);
  }
}

// Parsed "--key value" / "-k value" / "--flag" arguments.
struct Args {
  std::map<std::string, std::string> values;
  std::vector<std::string> flags;

  bool has(const std::string &k) const {
    return values.count(k) || std::find(flags.begin(), flags.end(), k) != flags.end();
  }
  std::string str(const std::string &k, const std::string &def = "") const {
    auto it = values.find(k);
    return it == values.end() ? def : it->second;
  }
  long long integer(const std::string &k, long long def) const {
    auto it = values.find(k);
    if (it == values.end()) return def;
    char *end = nullptr;
    long long v = std::strtoll(it->second.c_str(), &end, 10);
    if (!end || *end) die(("invalid integer for " + k + ": " + it->second).c_str());
    return v;
  }
  double real(const std::string &k, double def) const {
    auto it = values.find(k);
    if (it == values.end()) return def;
    char *end = nullptr;
    double v = std::strtod(it->second.c_str(), &end);
    if (!end || *end) die(("invalid number for " + k + ": " + it->second).c_str());
    return v;
  }
};

Args parse_args(int argc, char **argv, int first, const std::vector<std::string> &flag_names) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string k = argv[i];
    if (std::find(flag_names.begin(), flag_names.end(), k) != flag_names.end()) {
      a.flags.push_back(k);
    } else if (k.size() > 1 && k[0] == '-') {
      if (i + 1 >= argc) die(("option " + k + " needs a value").c_str());
      a.values[k] = argv[++i];
    } else {
      die(("unexpected argument: " + k).c_str());
    }
  }
  return a;
}

std::string read_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) die(("cannot read " + path).c_str());
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Peak resident set size of this process in bytes (Linux), or 0.
uint64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  return 0;
}

llm_model *load_model(const Args &a) {
  std::string path = a.str("-m", a.str("--model"));
  if (path.empty()) die("-m MODEL is required");
  llm_model_params mp;
  llm_model_params_init(&mp);
  mp.n_threads = static_cast<int32_t>(a.integer("--threads", a.integer("-t", 0)));
  if (a.has("--no-verify")) mp.verify = LLM_VERIFY_NONE;
  llm_model *model = nullptr;
  check(llm_model_load(path.c_str(), &mp, &model), "loading the model");
  return model;
}

std::vector<llm_token> tokenize(llm_model *model, const std::string &text, bool add_special, int flags) {
  size_t n = 0;
  llm_status st = llm_tokenize_ex(model, text.data(), text.size(), add_special, flags, nullptr, 0, &n);
  if (st != LLM_OK && st != LLM_ERR_BUFFER_TOO_SMALL) check(st, "tokenize");
  std::vector<llm_token> ids(n);
  check(llm_tokenize_ex(model, text.data(), text.size(), add_special, flags, ids.data(), ids.size(), &n),
        "tokenize");
  return ids;
}

void json_string(FILE *out, const std::string &s) {
  std::fputc('"', out);
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') std::fprintf(out, "\\%c", c);
    else if (c < 0x20) std::fprintf(out, "\\u%04x", c);
    else std::fputc(c, out);
  }
  std::fputc('"', out);
}

// ---- generate --------------------------------------------------------------------

int stream_to_stdout(const char *piece, size_t len, llm_token, void *) {
  std::fwrite(piece, 1, len, stdout);
  std::fflush(stdout);
  return 0;
}

int cmd_generate(const Args &a) {
  llm_model *model = load_model(a);
  std::string prompt = a.has("-f") ? read_file(a.str("-f")) : a.str("-p");
  llm_session_params sp;
  llm_session_params_init(&sp);
  sp.n_ctx = static_cast<int32_t>(a.integer("--ctx", 0));
  llm_session *session = nullptr;
  check(llm_session_create(model, &sp, &session), "creating the session");

  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.max_tokens = static_cast<int32_t>(a.integer("-n", 128));
  gp.temperature = static_cast<float>(a.real("--temp", 0.8));
  gp.top_k = static_cast<int32_t>(a.integer("--top-k", 40));
  gp.top_p = static_cast<float>(a.real("--top-p", 0.95));
  gp.min_p = static_cast<float>(a.real("--min-p", 0.05));
  gp.repeat_penalty = static_cast<float>(a.real("--repeat-penalty", 1.0));
  gp.seed = static_cast<uint64_t>(a.integer("--seed", 0));
  gp.ignore_eos = a.has("--ignore-eos");
  std::string stop = a.str("--stop");
  if (!stop.empty()) {
    gp.stop[0] = stop.c_str();
    gp.n_stop = 1;
  }
  if (!a.has("--no-echo")) {
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
  }
  auto t0 = Clock::now();
  check(llm_generate(session, prompt.c_str(), &gp, stream_to_stdout, nullptr), "generate");
  double dt = seconds_since(t0);
  size_t n_tokens = 0;
  llm_session_n_tokens(session, &n_tokens);
  std::printf("\n");
  std::fprintf(stderr, "llm: %zu tokens in context, %.2f s (stop reason %d)\n", n_tokens, dt,
               llm_session_stop_reason(session));
  llm_session_free(session);
  llm_model_free(model);
  return 0;
}

// ---- info -----------------------------------------------------------------------

int cmd_info(const Args &a) {
  llm_model *model = load_model(a);
  llm_model_info info;
  info.struct_size = sizeof info;
  check(llm_model_get_info(model, &info), "model info");
  std::printf("name:           %s\n", info.name);
  std::printf("architecture:   %s\n", info.architecture);
  std::printf("parameters:     %" PRIu64 "\n", info.n_params);
  std::printf("weights bytes:  %" PRIu64 "\n", info.weights_bytes);
  std::printf("vocab size:     %d\n", info.vocab_size);
  std::printf("context length: %d\n", info.context_length);
  std::printf("layers:         %d\n", info.n_layers);
  std::printf("hidden size:    %d\n", info.hidden_size);
  std::printf("heads:          %d (kv %d)\n", info.n_heads, info.n_kv_heads);
  std::printf("bos / eos:      %d / %d\n", info.bos_token, info.eos_token);
  std::printf("vocab only:     %s\n", info.vocab_only ? "yes" : "no");
  if (!info.vocab_only) {
    uint64_t bytes = 0;
    check(llm_session_memory_required(model, nullptr, &bytes), "session memory");
    std::printf("session memory: %" PRIu64 " bytes at full context\n", bytes);
  }
  llm_model_free(model);
  return 0;
}

// ---- tokenize -------------------------------------------------------------------

int cmd_tokenize(const Args &a) {
  llm_model *model = load_model(a);
  std::string text = a.has("-f") ? read_file(a.str("-f")) : a.str("-p");
  int flags = a.has("--no-special") ? LLM_TOKENIZE_PARSE_SPECIAL_OFF : LLM_TOKENIZE_DEFAULT;
  std::vector<llm_token> ids = tokenize(model, text, !a.has("--no-bos"), flags);
  std::printf("[");
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? ", %d" : "%d", ids[i]);
  std::printf("]\n");
  if (a.has("--pieces")) {
    std::printf("[");
    for (size_t i = 0; i < ids.size(); ++i) {
      char buf[512];
      size_t len = 0;
      llm_status st = llm_token_to_piece(model, ids[i], buf, sizeof buf, &len);
      std::string piece = st == LLM_OK ? std::string(buf, len) : std::string("?");
      if (i) std::printf(", ");
      json_string(stdout, piece);
    }
    std::printf("]\n");
  }
  llm_model_free(model);
  return 0;
}

// ---- perplexity -------------------------------------------------------------------

// Negative log-likelihood of `target` under the softmax of `logits` (double).
double nll(const float *logits, int32_t vocab, llm_token target) {
  double mx = logits[0];
  for (int32_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (int32_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return std::log(sum) + mx - logits[target];
}

int cmd_perplexity(const Args &a) {
  llm_model *model = load_model(a);
  if (!a.has("-f")) die("-f TEXT is required");
  std::vector<llm_token> ids = tokenize(model, read_file(a.str("-f")), true, LLM_TOKENIZE_DEFAULT);
  long long max_tokens = a.integer("--max-tokens", 0);
  if (max_tokens > 0 && ids.size() > static_cast<size_t>(max_tokens)) ids.resize(static_cast<size_t>(max_tokens));
  const long long ctx = a.integer("--ctx", 512), stride = a.integer("--stride", ctx - 1);
  if (ctx < 2 || stride < 1 || stride > ctx - 1) die("need --ctx >= 2 and 1 <= --stride <= ctx - 1");
  if (ids.size() < 2) die("the text is too short to score");

  llm_model_info info;
  info.struct_size = sizeof info;
  check(llm_model_get_info(model, &info), "model info");
  llm_session_params sp;
  llm_session_params_init(&sp);
  sp.n_ctx = static_cast<int32_t>(ctx);
  sp.n_batch = static_cast<int32_t>(ctx);
  sp.logits_all = 1;
  llm_session *session = nullptr;
  check(llm_session_create(model, &sp, &session), "creating the session");

  // Windows start at 0, stride, 2*stride, ...; each is evaluated from an empty
  // context and scores only targets no earlier window scored.
  double total = 0;
  size_t scored = 0, windows = 0;
  long long next_target = 1;
  auto t0 = Clock::now();
  for (size_t start = 0; start + 1 < ids.size(); start += static_cast<size_t>(stride)) {
    size_t len = std::min(static_cast<size_t>(ctx), ids.size() - start);
    check(llm_session_reset(session), "reset");
    check(llm_session_eval(session, ids.data() + start, len), "eval");
    for (size_t j = 0; j + 1 < len; ++j) {
      long long target = static_cast<long long>(start + j + 1);
      if (target < next_target) continue;
      total += nll(llm_session_logits_at(session, static_cast<int32_t>(j)), info.vocab_size, ids[start + j + 1]);
      ++scored;
      next_target = target + 1;
    }
    ++windows;
    if (start + len >= ids.size()) break;
  }
  double dt = seconds_since(t0);
  double ppl = std::exp(total / static_cast<double>(scored));
  if (a.has("--json")) {
    std::printf("{\"perplexity\": %.6f, \"mean_nll\": %.8f, \"tokens_scored\": %zu, \"windows\": %zu, "
                "\"seconds\": %.3f}\n", ppl, total / scored, scored, windows, dt);
  } else {
    std::printf("perplexity: %.4f (%zu tokens scored in %zu windows of %lld, %.1f s, %.0f tok/s)\n", ppl,
                scored, windows, ctx, dt, (windows * ctx) / dt);
  }
  llm_session_free(session);
  llm_model_free(model);
  return 0;
}

// ---- bench -------------------------------------------------------------------------

int cmd_bench(const Args &a) {
  auto t_load = Clock::now();
  llm_model *model = load_model(a);
  double load_s = seconds_since(t_load);
  const long long n_prompt = a.integer("-p", 128), n_gen = a.integer("-n", 64);
  if (n_prompt < 1 || n_gen < 1) die("-p and -n must be at least 1");
  llm_model_info info;
  info.struct_size = sizeof info;
  check(llm_model_get_info(model, &info), "model info");
  llm_session_params sp;
  llm_session_params_init(&sp);
  sp.n_ctx = static_cast<int32_t>(std::min<long long>(n_prompt + n_gen, info.context_length));
  if (n_prompt + n_gen > info.context_length) die("-p + -n exceeds the model's context length");
  uint64_t session_bytes = 0;
  check(llm_session_memory_required(model, &sp, &session_bytes), "session memory");
  llm_session *session = nullptr;
  check(llm_session_create(model, &sp, &session), "creating the session");

  // Deterministic pseudo-random prompt ids (content does not change speed).
  std::vector<llm_token> prompt(static_cast<size_t>(n_prompt));
  uint64_t x = 12345;
  for (llm_token &t : prompt) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = static_cast<llm_token>((x >> 33) % static_cast<uint64_t>(info.vocab_size));
  }
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.temperature = 0;  // greedy: sampling cost stays negligible and fixed

  auto t0 = Clock::now();
  check(llm_session_eval(session, prompt.data(), prompt.size()), "prefill");
  llm_token tok = 0;
  check(llm_session_sample(session, &gp, &tok), "sample");
  double prefill_s = seconds_since(t0);
  auto t1 = Clock::now();
  for (long long i = 0; i < n_gen; ++i) {
    check(llm_session_eval(session, &tok, 1), "decode");
    check(llm_session_sample(session, &gp, &tok), "sample");
  }
  double decode_s = seconds_since(t1);
  double prefill_tps = n_prompt / prefill_s, decode_tps = n_gen / decode_s;
  uint64_t peak = peak_rss_bytes();
  if (a.has("--json")) {
    std::printf("{\"model\": \"%s\", \"n_prompt\": %lld, \"n_gen\": %lld, \"prefill_tok_s\": %.2f, "
                "\"decode_tok_s\": %.2f, \"ttft_ms\": %.2f, \"load_ms\": %.2f, \"model_bytes\": %" PRIu64
                ", \"session_bytes\": %" PRIu64 ", \"peak_rss_bytes\": %" PRIu64 "}\n",
                info.name, n_prompt, n_gen, prefill_tps, decode_tps, prefill_s * 1e3, load_s * 1e3,
                info.weights_bytes, session_bytes, peak);
  } else {
    std::printf("model %s: prefill %lld tokens %.1f tok/s (time to first token %.1f ms), decode %lld tokens "
                "%.2f tok/s\nload %.1f ms, weights %.1f MB, session %.1f MB, peak RSS %.1f MB\n",
                info.name, n_prompt, prefill_tps, prefill_s * 1e3, n_gen, decode_tps, load_s * 1e3,
                info.weights_bytes / 1e6, session_bytes / 1e6, peak / 1e6);
  }
  llm_session_free(session);
  llm_model_free(model);
  return 0;
}

void usage(FILE *out) {
  std::fputs(
      "usage: llm COMMAND [options]\n"
      "  generate   -m MODEL (-p PROMPT | -f FILE) [-n 128] [--temp 0.8] [--top-k 40] [--top-p 0.95]\n"
      "             [--min-p 0.05] [--repeat-penalty 1.0] [--seed 0] [--stop STR] [--ctx N] [--no-echo]\n"
      "  info       -m MODEL\n"
      "  tokenize   -m MODEL (-p TEXT | -f FILE) [--no-special] [--no-bos] [--pieces]\n"
      "  perplexity -m MODEL -f TEXT [--ctx 512] [--stride 511] [--max-tokens N] [--json]\n"
      "  bench      -m MODEL [-p 128] [-n 64] [--json]\n"
      "common: [-t|--threads N] [--no-verify]\n",
      out);
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  const std::vector<std::string> flags = {"--json", "--no-special", "--no-bos", "--pieces", "--no-verify",
                                          "--ignore-eos", "--no-echo"};
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    usage(stdout);
    return 0;
  }
  Args a = parse_args(argc, argv, 2, flags);
  if (cmd == "generate") return cmd_generate(a);
  if (cmd == "info") return cmd_info(a);
  if (cmd == "tokenize") return cmd_tokenize(a);
  if (cmd == "perplexity") return cmd_perplexity(a);
  if (cmd == "bench") return cmd_bench(a);
  std::fprintf(stderr, "llm: unknown command %s\n", cmd.c_str());
  usage(stderr);
  return 2;
}
