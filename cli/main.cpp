// llm: command-line front end to libllm, written against the public C API only.
//   llm generate | info | tokenize | perplexity | bench   (see usage() below)
//   llm chat (cli/chat.cpp)
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
#include <thread>
#include <vector>

#include "llm.h"
#if defined(LLM_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

int cmd_chat(int argc, char **argv);  // cli/chat.cpp

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
  static std::string device;
  device = a.str("--device", "cpu");
  mp.device = device.c_str();
  llm_model *model = nullptr;
  check(llm_model_load(path.c_str(), &mp, &model), "loading the model");
  return model;
}

// --kv f32|f16|bf16|int8|int4 (default `def`).
int32_t kv_type_arg(const Args &a, const char *key = "--kv", const char *def = "f16") {
  const std::string v = a.str(key, def);
  if (v == "f32") return LLM_KV_F32;
  if (v == "f16") return LLM_KV_F16;
  if (v == "bf16") return LLM_KV_BF16;
  if (v == "int8") return LLM_KV_INT8;
  if (v == "int4") return LLM_KV_INT4;
  die(("invalid KV type for " + std::string(key) + ": " + v + " (f32, f16, bf16, int8 or int4)").c_str());
}

const char *kv_type_label(int32_t t) {
  switch (t) {
    case LLM_KV_F32: return "f32";
    case LLM_KV_BF16: return "bf16";
    case LLM_KV_INT8: return "int8";
    case LLM_KV_INT4: return "int4";
    default: return "f16";
  }
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
  sp.kv_type = kv_type_arg(a);
  if (a.has("--context-shift")) {
    sp.context_policy = LLM_CONTEXT_SHIFT;
    sp.n_keep = static_cast<int32_t>(a.integer("--keep", 0));
  }
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

// log-softmax of one row of logits, in double.
void log_softmax(const float *logits, int32_t vocab, std::vector<double> &out) {
  double mx = logits[0];
  for (int32_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (int32_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = std::log(sum) + mx;
  out.resize(static_cast<size_t>(vocab));
  for (int32_t i = 0; i < vocab; ++i) out[i] = logits[i] - lse;
}

int32_t argmax(const float *x, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

llm_session *logits_session(llm_model *model, long long ctx, int32_t kv_type) {
  llm_session_params sp;
  llm_session_params_init(&sp);
  sp.n_ctx = static_cast<int32_t>(ctx);
  sp.kv_type = kv_type;
  sp.n_batch = static_cast<int32_t>(ctx);
  sp.logits_all = 1;
  llm_session *session = nullptr;
  check(llm_session_create(model, &sp, &session), "creating the session");
  return session;
}

// Scores a text window by window. Default windowing (as the reference files):
// windows of --ctx ids starting every --stride ids, each evaluated from an
// empty context, scoring only targets no earlier window scored.
// --score-second-half (llama.cpp's perplexity tool): non-overlapping windows
// of --ctx ids, the first id of each replaced by BOS, scoring only the second
// half of each window. With --kld-ref, the same windows run through a
// reference model too, and the KL divergence KL(ref || model) of the next-token
// distributions and the agreement of their top-1 tokens are reported.
int cmd_perplexity(const Args &a) {
  llm_model *model = load_model(a);
  if (!a.has("-f")) die("-f TEXT is required");
  std::vector<llm_token> ids = tokenize(model, read_file(a.str("-f")), true, LLM_TOKENIZE_DEFAULT);
  long long max_tokens = a.integer("--max-tokens", 0);
  if (max_tokens > 0 && ids.size() > static_cast<size_t>(max_tokens)) ids.resize(static_cast<size_t>(max_tokens));
  const bool second_half = a.has("--score-second-half");
  const long long ctx = a.integer("--ctx", 512);
  const long long stride = second_half ? ctx : a.integer("--stride", ctx - 1);
  const long long max_windows = a.integer("--chunks", 0);
  if (ctx < 4 || stride < 1 || (!second_half && stride > ctx - 1)) die("need --ctx >= 4 and 1 <= --stride <= ctx - 1");
  if (ids.size() < 2) die("the text is too short to score");

  llm_model_info info;
  info.struct_size = sizeof info;
  check(llm_model_get_info(model, &info), "model info");
  llm_session *session = logits_session(model, ctx, kv_type_arg(a));
  llm_model *ref = nullptr;
  llm_session *ref_session = nullptr;
  if (a.has("--kld-ref")) {
    llm_model_params mp;
    llm_model_params_init(&mp);
    mp.n_threads = static_cast<int32_t>(a.integer("--threads", a.integer("-t", 0)));
    check(llm_model_load(a.str("--kld-ref").c_str(), &mp, &ref), "loading the reference model");
    llm_model_info ri;
    ri.struct_size = sizeof ri;
    check(llm_model_get_info(ref, &ri), "reference model info");
    if (ri.vocab_size != info.vocab_size) die("--kld-ref: the reference model has another vocabulary");
    ref_session = logits_session(ref, ctx, kv_type_arg(a, "--ref-kv"));
  }

  double total = 0, ref_total = 0;
  std::vector<double> kld;
  size_t scored = 0, windows = 0, same_top1 = 0;
  long long next_target = 1;
  std::vector<double> lp, lq;
  std::vector<llm_token> window;
  auto t0 = Clock::now();
  for (size_t start = 0; start + 1 < ids.size(); start += static_cast<size_t>(stride)) {
    if (max_windows > 0 && static_cast<long long>(windows) >= max_windows) break;
    const size_t len = std::min(static_cast<size_t>(ctx), ids.size() - start);
    if (second_half && len < static_cast<size_t>(ctx)) break;  // whole windows only, as llama.cpp
    window.assign(ids.begin() + static_cast<long>(start), ids.begin() + static_cast<long>(start + len));
    if (second_half && info.bos_token >= 0) window[0] = info.bos_token;
    check(llm_session_reset(session), "reset");
    check(llm_session_eval(session, window.data(), len), "eval");
    if (ref_session) {
      check(llm_session_reset(ref_session), "reset");
      check(llm_session_eval(ref_session, window.data(), len), "eval (reference)");
    }
    for (size_t j = 0; j + 1 < len; ++j) {
      const long long target = static_cast<long long>(start + j + 1);
      if (second_half ? j < len / 2 : target < next_target) continue;
      const float *logits = llm_session_logits_at(session, static_cast<int32_t>(j));
      const llm_token want = ids[start + j + 1];
      log_softmax(logits, info.vocab_size, lq);
      total -= lq[want];
      if (ref_session) {
        const float *ref_logits = llm_session_logits_at(ref_session, static_cast<int32_t>(j));
        log_softmax(ref_logits, info.vocab_size, lp);
        ref_total -= lp[want];
        double kl = 0;
        for (int32_t v = 0; v < info.vocab_size; ++v) kl += std::exp(lp[v]) * (lp[v] - lq[v]);
        kld.push_back(std::max(kl, 0.0));
        same_top1 += argmax(logits, info.vocab_size) == argmax(ref_logits, info.vocab_size);
      }
      ++scored;
      next_target = target + 1;
    }
    ++windows;
    if (start + len >= ids.size()) break;
  }
  if (scored == 0) die("no tokens scored (text shorter than one window?)");
  const double dt = seconds_since(t0);
  const double ppl = std::exp(total / static_cast<double>(scored));
  double kld_mean = 0, kld_p99 = 0, top1 = 0, ref_ppl = 0;
  if (ref_session) {
    for (double k : kld) kld_mean += k;
    kld_mean /= static_cast<double>(kld.size());
    std::vector<double> sorted = kld;
    std::sort(sorted.begin(), sorted.end());
    kld_p99 = sorted[std::min(sorted.size() - 1, static_cast<size_t>(0.99 * static_cast<double>(sorted.size())))];
    top1 = static_cast<double>(same_top1) / static_cast<double>(scored);
    ref_ppl = std::exp(ref_total / static_cast<double>(scored));
  }
  if (a.has("--json")) {
    std::printf("{\"perplexity\": %.6f, \"mean_nll\": %.8f, \"tokens_scored\": %zu, \"windows\": %zu, "
                "\"seconds\": %.3f", ppl, total / static_cast<double>(scored), scored, windows, dt);
    if (ref_session)
      std::printf(", \"ref_perplexity\": %.6f, \"kld_mean\": %.6g, \"kld_p99\": %.6g, \"top1_agreement\": %.6f",
                  ref_ppl, kld_mean, kld_p99, top1);
    std::printf("}\n");
  } else {
    std::printf("perplexity: %.4f (%zu tokens scored in %zu windows of %lld, %.1f s)\n", ppl, scored, windows, ctx, dt);
    if (ref_session)
      std::printf("reference perplexity: %.4f\nKL divergence vs reference: mean %.6f, p99 %.6f\n"
                  "same top-1 token: %.2f%%\n", ref_ppl, kld_mean, kld_p99, 100 * top1);
  }
  llm_session_free(ref_session);
  llm_model_free(ref);
  llm_session_free(session);
  llm_model_free(model);
  return 0;
}

// ---- bench -------------------------------------------------------------------------

#if defined(LLM_HAVE_CUDA)
// Device-to-device copy bandwidth of a CUDA device, counting the bytes read
// and the bytes written; the best of a few copies of 1 GiB. 0 on failure.
double measure_cuda_copy_bandwidth(int ordinal) {
  const size_t bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  double best = 0;
  if (cudaSetDevice(ordinal) == cudaSuccess && cudaMalloc(&a, bytes) == cudaSuccess &&
      cudaMalloc(&b, bytes) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess &&
      cudaEventCreate(&e1) == cudaSuccess) {
    cudaMemset(a, 1, bytes);
    for (int pass = 0; pass < 6; ++pass) {
      cudaEventRecord(e0);
      cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float ms = 0;
      if (pass > 0 && cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms > 0)
        best = std::max(best, 2.0 * static_cast<double>(bytes) / (ms * 1e-3));
    }
  }
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  cudaGetLastError();
  return best;
}
#endif

// Read bandwidth of this machine with n threads: each thread sums its part of
// a buffer much larger than the caches; the best of a few passes counts,
// passes with and without software prefetch 8 KiB ahead into L2 (what the
// decode products do; it reads a few per cent faster on some machines).
double measure_read_bandwidth(int n_threads) {
  const size_t bytes = size_t{1} << 30;
  const size_t words = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(words);
  for (size_t i = 0; i < words; i += 512) buf[i] = i;  // touch every page
  std::vector<uint64_t> sink(static_cast<size_t>(n_threads) * 8);
  double best = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const bool prefetch = pass % 2 == 1;
    auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < n_threads; ++t) {
      threads.emplace_back([&, t] {
        const size_t lo = words / n_threads * t, hi = t + 1 == n_threads ? words : words / n_threads * (t + 1);
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = lo; i + 4 <= hi; i += 4) {
          if (prefetch && i % 8 == 0 && i + 1024 < hi) __builtin_prefetch(&buf[i + 1024], 0, 2);
          s0 += buf[i];
          s1 += buf[i + 1];
          s2 += buf[i + 2];
          s3 += buf[i + 3];
        }
        sink[static_cast<size_t>(t) * 8] = s0 + s1 + s2 + s3;
      });
    }
    for (std::thread &th : threads) th.join();
    best = std::max(best, static_cast<double>(bytes) / seconds_since(t0));
  }
  return best;
}

int cmd_bench(const Args &a) {
  auto t_load = Clock::now();
  llm_model *model = load_model(a);
  double load_s = seconds_since(t_load);
  const long long n_prompt = a.integer("-p", 128), n_gen = a.integer("-n", 64);
  if (n_prompt < 1 || n_gen < 1) die("-p and -n must be at least 1");
  llm_model_info info;
  info.struct_size = sizeof info;
  check(llm_model_get_info(model, &info), "model info");
  if (n_prompt + n_gen > info.context_length) die("-p + -n exceeds the model's context length");
  const long long n_sessions = a.integer("--sessions", 1);
  if (n_sessions < 1 || n_sessions > 512) die("--sessions must be between 1 and 512");
  llm_session_params sp;
  llm_session_params_init(&sp);
  sp.n_ctx = static_cast<int32_t>(a.integer("--ctx", n_prompt + n_gen));
  if (sp.n_ctx < n_prompt + n_gen) die("--ctx must hold -p + -n tokens");
  sp.kv_type = kv_type_arg(a);
  llm_session *session = nullptr;
  check(llm_session_create(model, &sp, &session), "creating the session");
  llm_session_info si;
  si.struct_size = sizeof si;
  check(llm_session_get_info(session, &si), "session info");

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

  // One prefill of the same prompt first, timed on its own: the first pass
  // after loading also pays one-time costs (the memory-mapped weights are
  // paged in; on a GPU, CUDA's lazy module loading). That is the time to first
  // token of the first prompt after load; the measured prefill below is the
  // steady rate.
  double first_prefill_s = 0;
  {
    llm_session *warm = nullptr;
    check(llm_session_create(model, &sp, &warm), "creating the session");
    const auto tw = Clock::now();
    check(llm_session_eval(warm, prompt.data(), prompt.size()), "warm-up prefill");
    first_prefill_s = seconds_since(tw);
    llm_session_free(warm);
  }
  auto t0 = Clock::now();
  check(llm_session_eval(session, prompt.data(), prompt.size()), "prefill");
  llm_token tok = 0;
  check(llm_session_sample(session, &gp, &tok), "sample");
  const double prefill_s = seconds_since(t0);
  // n_gen greedy decode steps of `session`, timed: tokens per second.
  const auto decode = [&] {
    const auto t = Clock::now();
    for (long long i = 0; i < n_gen; ++i) {
      check(llm_session_eval(session, &tok, 1), "decode");
      check(llm_session_sample(session, &gp, &tok), "sample");
    }
    return n_gen / seconds_since(t);
  };
  const double decode_tps = decode();
  const double prefill_tps = n_prompt / prefill_s;

  // Session state: saving the prompt's state and restoring it into another
  // session, against evaluating the prompt (the prefill above).
  double save_s = 0, restore_s = 0;
  size_t state_bytes = 0;
  {
    llm_session *copy = nullptr;
    check(llm_session_create(model, &sp, &copy), "creating the session");
    check(llm_session_truncate(session, static_cast<size_t>(n_prompt)), "truncate");
    check(llm_session_state_size(session, &state_bytes), "state size");
    std::vector<uint8_t> state(state_bytes);
    auto ts = Clock::now();
    check(llm_session_save(session, state.data(), state.size(), &state_bytes), "save");
    save_s = seconds_since(ts);
    ts = Clock::now();
    check(llm_session_restore(copy, state.data(), state_bytes), "restore");
    restore_s = seconds_since(ts);
    llm_session_free(copy);
  }

  // Batched decode: n_sessions sessions holding the same prompt (forks of a
  // fresh prefill, so they share nothing but the model), one token each per
  // step through llm_decode_batch.
  double batch_tps = 0;
  if (n_sessions > 1) {
    llm_session *base = nullptr;
    check(llm_session_create(model, &sp, &base), "creating the session");
    check(llm_session_eval(base, prompt.data(), prompt.size()), "prefill");
    std::vector<llm_session *> sessions(static_cast<size_t>(n_sessions));
    for (llm_session *&s : sessions) check(llm_session_fork(base, &sp, &s), "forking the session");
    std::vector<llm_token> toks(sessions.size());
    for (size_t i = 0; i < sessions.size(); ++i) check(llm_session_sample(sessions[i], &gp, &toks[i]), "sample");
    auto t2 = Clock::now();
    for (long long step = 0; step < n_gen; ++step) {
      check(llm_decode_batch(sessions.data(), toks.data(), sessions.size()), "batched decode");
      for (size_t i = 0; i < sessions.size(); ++i) check(llm_session_sample(sessions[i], &gp, &toks[i]), "sample");
    }
    batch_tps = static_cast<double>(n_sessions * n_gen) / seconds_since(t2);
    for (llm_session *s : sessions) llm_session_free(s);
    llm_session_free(base);
  }
  const uint64_t peak = peak_rss_bytes();
  // Roofline: bytes that must be read per decoded token (weights, plus the KV
  // cache at the mean context length) against the machine's read bandwidth.
  const int threads = static_cast<int>(a.integer("--threads", a.integer("-t", 0)));
  const int bw_threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const double kv_read = static_cast<double>(si.kv_bytes) * (n_prompt + n_gen / 2.0) / static_cast<double>(si.n_ctx);
  const double bytes_per_token = static_cast<double>(info.decode_bytes_per_token) + kv_read;
  // On a GPU: the device's copy bandwidth (bytes read + written per second).
  const std::string device = a.str("--device", "cpu");
  const bool on_gpu = device.rfind("cuda", 0) == 0;
  // The bandwidth of a shared machine drifts with other tenants' load, so
  // the roofline's decode is timed again between two bandwidth passes (after
  // the peak resident memory is read: the CPU pass allocates 1 GiB) and set
  // against the larger of the two.
  double bandwidth = 0, roofline_tps = 0;
  if (!a.has("--no-bandwidth")) {
    const auto measure = [&] {
#if defined(LLM_HAVE_CUDA)
      if (on_gpu) return measure_cuda_copy_bandwidth(device.size() > 5 ? std::atoi(device.c_str() + 5) : 0);
#endif
      return on_gpu ? 0.0 : measure_read_bandwidth(bw_threads);
    };
    const double before = measure();
    check(llm_session_truncate(session, static_cast<size_t>(n_prompt)), "truncate");
    roofline_tps = decode();
    bandwidth = std::max(before, measure());
  }
  const double roofline = bandwidth > 0 ? roofline_tps * bytes_per_token / bandwidth : 0;
  if (a.has("--json")) {
    std::printf("{\"model\": \"%s\", \"weights\": \"%s\", \"n_prompt\": %lld, \"n_gen\": %lld, "
                "\"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, \"ttft_ms\": %.2f, \"first_ttft_ms\": %.2f, "
                "\"load_ms\": %.2f, "
                "\"model_bytes\": %" PRIu64 ", \"kv_bytes\": %" PRIu64 ", \"session_bytes\": %" PRIu64
                ", \"peak_rss_bytes\": %" PRIu64 ", \"bytes_per_token\": %.0f, \"read_bandwidth_bytes_s\": %.0f, "
                "\"roofline_decode_tok_s\": %.2f, \"decode_roofline_fraction\": %.4f, \"kv_type\": \"%s\", \"kv_bytes_per_token\": %" PRIu64
                ", \"sessions\": %lld, \"batch_decode_tok_s\": %.2f, \"state_bytes\": %zu, \"state_save_ms\": %.3f, "
                "\"state_restore_ms\": %.3f}\n",
                info.name, info.weights_type, n_prompt, n_gen, prefill_tps, decode_tps, prefill_s * 1e3,
                first_prefill_s * 1e3, load_s * 1e3,
                info.weights_bytes, si.kv_bytes, si.memory_bytes, peak, bytes_per_token, bandwidth, roofline_tps, roofline,
                kv_type_label(si.kv_type), si.kv_bytes_per_token, n_sessions, batch_tps, state_bytes, save_s * 1e3,
                restore_s * 1e3);
  } else {
    std::printf("model %s (%s): prefill %lld tokens %.1f tok/s (time to first token %.1f ms), decode %lld tokens "
                "%.2f tok/s\n", info.name, info.weights_type, n_prompt, prefill_tps, prefill_s * 1e3, n_gen, decode_tps);
    std::printf("first prompt after load: %.1f ms (includes paging in the weights", first_prefill_s * 1e3);
    std::printf("%s)\n", on_gpu ? " and loading the CUDA kernels" : "");
    std::printf("load %.1f ms, weights %.1f MB, KV cache %.1f MB (%s, %" PRIu64 " bytes/token), session %.1f MB, "
                "peak RSS %.1f MB\n", load_s * 1e3, info.weights_bytes / 1e6, si.kv_bytes / 1e6,
                kv_type_label(si.kv_type), si.kv_bytes_per_token, si.memory_bytes / 1e6, peak / 1e6);
    const double ratio = prefill_s / restore_s;
    std::printf("state of the %lld-token prompt: %.2f MB, save %.2f ms, restore %.2f ms (%.*fx %s than prefill)\n",
                n_prompt, state_bytes / 1e6, save_s * 1e3, restore_s * 1e3, ratio >= 1 ? (ratio >= 10 ? 0 : 1) : 1,
                ratio >= 1 ? ratio : 1 / ratio, ratio >= 1 ? "faster" : "slower");
    if (n_sessions > 1)
      std::printf("batched decode of %lld sessions: %.2f tok/s in all (%.2fx the single-session decode)\n", n_sessions,
                  batch_tps, batch_tps / decode_tps);
    if (bandwidth > 0 && on_gpu)
      std::printf("decode reads %.1f MB/token; %s copy bandwidth %.1f GB/s (read + written); decode timed between "
                  "two bandwidth passes %.2f tok/s: %.1f%% of the roofline\n", bytes_per_token / 1e6, device.c_str(),
                  bandwidth / 1e9, roofline_tps, 100 * roofline);
    else if (bandwidth > 0)
      std::printf("decode reads %.1f MB/token; read bandwidth %.2f GB/s (%d threads); decode timed between two "
                  "bandwidth passes %.2f tok/s: %.1f%% of the roofline\n", bytes_per_token / 1e6, bandwidth / 1e9,
                  bw_threads, roofline_tps, 100 * roofline);
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
      "             [--kv f16] [--context-shift [--keep N]]\n"
      "  info       -m MODEL\n"
      "  tokenize   -m MODEL (-p TEXT | -f FILE) [--no-special] [--no-bos] [--pieces]\n"
      "  perplexity -m MODEL -f TEXT [--ctx 512] [--stride 511] [--max-tokens N] [--chunks N]\n"
      "             [--score-second-half] [--kld-ref REF_MODEL [--ref-kv f16]] [--kv f16] [--json]\n"
      "  bench      -m MODEL [-p 128] [-n 64] [--ctx N] [--kv f16] [--sessions N] [--json] [--no-bandwidth]\n"
      "  chat       -m MODEL [--system TEXT] [-n 256] [--temp 0.7] [--seed 0] [--stats] (llm chat --help)\n"
      "KV cache types (--kv, --ref-kv): f32, f16 (default), bf16, int8, int4\n"
      "common: [-t|--threads N] [--no-verify] [--device cpu|cuda|cuda:N]\n",
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
                                          "--ignore-eos", "--no-echo",
                                          "--score-second-half", "--no-bandwidth", "--context-shift"};
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    usage(stdout);
    return 0;
  }
  if (cmd == "chat") return cmd_chat(argc, argv);
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
