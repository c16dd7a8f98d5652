/* The C API driven from C11: load -> tokenize -> eval -> logits -> generate,
 * and misuse (NULL handles, bad sizes, wrong struct_size) returning errors.
 * Usage: llm_c_api_test MODEL.llm   (exit 77 = skipped: model absent) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    ++checks;                                                              \
    if (!(cond)) {                                                         \
      ++failures;                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n",        \
              __FILE__, __LINE__, #cond, llm_last_error());                \
    }                                                                      \
  } while (0)

struct collected {
  char text[4096];
  size_t len;
  int pieces;
  int stop_after;
};

static int on_piece(const char *piece, size_t len, llm_token token, void *user) {
  struct collected *c = (struct collected *)user;
  (void)token;
  if (c->len + len < sizeof c->text) {
    memcpy(c->text + c->len, piece, len);
    c->len += len;
    c->text[c->len] = '\0';
  }
  c->pieces++;
  return c->stop_after > 0 && c->pieces >= c->stop_after;
}

static void test_misuse(llm_model *model) {
  llm_model *m = (llm_model *)1;
  llm_session *s = NULL;
  llm_model_params mp;
  llm_session_params sp;
  llm_token ids[4];
  size_t n = 0;
  uint64_t bytes = 0;

  CHECK(llm_model_load(NULL, NULL, &m) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(m == NULL);
  CHECK(strlen(llm_last_error()) > 0);
  CHECK(llm_model_load("x.llm", NULL, NULL) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_model_load("/nonexistent/model.llm", NULL, &m) == LLM_ERR_IO);
  CHECK(strstr(llm_last_error(), "/nonexistent/model.llm") != NULL);

  llm_model_params_init(&mp);
  mp.struct_size = 3;
  CHECK(llm_model_load("x.llm", &mp, &m) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(strstr(llm_last_error(), "struct_size") != NULL);
  llm_model_params_init(&mp);
  mp.struct_size = sizeof mp + 64; /* from a newer header */
  CHECK(llm_model_load("x.llm", &mp, &m) == LLM_ERR_INVALID_ARGUMENT);
  llm_model_params_init(&mp);
  mp.n_threads = -5;
  CHECK(llm_model_load("x.llm", &mp, &m) == LLM_ERR_INVALID_ARGUMENT);
  llm_model_params_init(&mp);
  mp.device = "tpu:7";
  CHECK(llm_model_load("x.llm", &mp, &m) != LLM_OK);

  CHECK(llm_session_create(NULL, NULL, &s) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_session_create(model, NULL, NULL) == LLM_ERR_INVALID_ARGUMENT);
  llm_session_params_init(&sp);
  sp.struct_size = 0;
  CHECK(llm_session_create(model, &sp, &s) == LLM_ERR_INVALID_ARGUMENT);
  llm_session_params_init(&sp);
  sp.n_ctx = -1;
  CHECK(llm_session_create(model, &sp, &s) == LLM_ERR_INVALID_ARGUMENT);
  llm_session_params_init(&sp);
  sp.n_ctx = 1 << 30;
  CHECK(llm_session_create(model, &sp, &s) == LLM_ERR_INVALID_ARGUMENT);
  llm_session_params_init(&sp);
  sp.memory_limit = 1024;
  CHECK(llm_session_create(model, &sp, &s) == LLM_ERR_OUT_OF_MEMORY);
  CHECK(strstr(llm_last_error(), "memory_limit") != NULL);
  CHECK(s == NULL);
  CHECK(llm_session_memory_required(model, NULL, NULL) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_session_memory_required(model, NULL, &bytes) == LLM_OK && bytes > 0);

  CHECK(llm_tokenize(NULL, "a", 1, 1, ids, 4, &n) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_tokenize(model, NULL, 5, 1, ids, 4, &n) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_tokenize(model, "a", 1, 1, NULL, 4, &n) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_tokenize(model, "a", 1, 1, ids, 4, NULL) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_tokenize(model, "hello world, hello world", 24, 1, ids, 2, &n) == LLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n > 2);
  CHECK(llm_tokenize_ex(model, "a", 1, 1, 1234, ids, 4, &n) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_detokenize(model, ids, 1, NULL, 8, &n) == LLM_ERR_INVALID_ARGUMENT);
  ids[0] = -3;
  CHECK(llm_detokenize(model, ids, 1, NULL, 0, &n) == LLM_ERR_INVALID_TOKEN);
  CHECK(llm_token_to_piece(model, 1 << 30, NULL, 0, &n) == LLM_ERR_INVALID_TOKEN);

  CHECK(llm_session_eval(NULL, ids, 1) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_session_logits(NULL) == NULL);
  CHECK(llm_session_logits_at(NULL, 0) == NULL);
  CHECK(llm_generate(NULL, "x", NULL, NULL, NULL) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_session_reset(NULL) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(llm_model_get_info(NULL, NULL) == LLM_ERR_INVALID_ARGUMENT);
  llm_session_cancel(NULL);
  llm_session_free(NULL);
  llm_model_free(NULL);
  CHECK(strcmp(llm_status_string(LLM_ERR_FORMAT), "LLM_ERR_FORMAT") == 0);
  CHECK(llm_status_string((llm_status)999) != NULL);
}

static void test_session(llm_model *model) {
  llm_model_info info;
  llm_session_params sp;
  llm_session *s = NULL;
  llm_generate_params gp;
  llm_token ids[64], bad;
  size_t n = 0, n_ctx_tokens = 0;
  const float *logits;
  struct collected c;
  int i, argmax = 0;
  char text[256];

  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  CHECK(llm_model_get_info(model, &info) == LLM_OK);
  CHECK(info.vocab_size == 32000);
  CHECK(strcmp(info.architecture, "llama") == 0);
  CHECK(info.n_params > 20000000u);
  CHECK(info.bos_token == 1 && info.eos_token == 2);
  CHECK(llm_token_is_eog(model, 2) == 1 && llm_token_is_eog(model, 5) == 0);

  CHECK(llm_tokenize(model, "def add(a, b):", 14, 1, ids, 64, &n) == LLM_OK);
  CHECK(n > 3 && ids[0] == 1);
  CHECK(llm_detokenize(model, ids + 1, n - 1, text, sizeof text, &n_ctx_tokens) == LLM_OK);
  CHECK(strcmp(text, "def add(a, b):") == 0);
  /* Special-token strings: parsed by default, plain text on request. */
  CHECK(llm_tokenize(model, "</s>", 4, 0, ids, 64, &n) == LLM_OK && n == 1 && ids[0] == 2);
  CHECK(llm_tokenize_ex(model, "</s>", 4, 0, LLM_TOKENIZE_PARSE_SPECIAL_OFF, ids, 64, &n) == LLM_OK);
  CHECK(n > 1);
  for (i = 0; i < (int)n; ++i) CHECK(ids[i] != 2);

  llm_session_params_init(&sp);
  sp.n_ctx = 64;
  CHECK(llm_session_create(model, &sp, &s) == LLM_OK && s != NULL);
  CHECK(llm_session_logits(s) == NULL);
  CHECK(llm_tokenize(model, "The committee said", 18, 1, ids, 64, &n) == LLM_OK);
  CHECK(llm_session_eval(s, ids, n) == LLM_OK);
  logits = llm_session_logits(s);
  CHECK(logits != NULL);
  for (i = 1; logits && i < info.vocab_size; ++i) {
    CHECK(isfinite(logits[i]));
    if (logits[i] > logits[argmax]) argmax = i;
  }
  /* A bad token is rejected and nothing is appended. */
  bad = 1 << 20;
  CHECK(llm_session_eval(s, &bad, 1) == LLM_ERR_INVALID_TOKEN);
  CHECK(llm_session_n_tokens(s, &n_ctx_tokens) == LLM_OK && n_ctx_tokens == n);

  /* Greedy generation agrees with the argmax of the logits. */
  memset(&c, 0, sizeof c);
  llm_generate_params_init(&gp);
  gp.temperature = 0;
  gp.max_tokens = 8;
  CHECK(llm_generate(s, NULL, &gp, on_piece, &c) == LLM_OK);
  CHECK(c.len > 0);
  CHECK(llm_session_n_tokens(s, &n_ctx_tokens) == LLM_OK && n_ctx_tokens == n + 8);
  {
    llm_token first = -1;
    llm_session_reset(s);
    CHECK(llm_session_eval(s, ids, n) == LLM_OK);
    CHECK(llm_session_sample(s, &gp, &first) == LLM_OK);
    CHECK(first == argmax);
  }

  /* The callback can stop generation. */
  memset(&c, 0, sizeof c);
  c.stop_after = 2;
  gp.max_tokens = 20;
  CHECK(llm_generate(s, " and", &gp, on_piece, &c) == LLM_OK);
  CHECK(c.pieces == 2);
  CHECK(llm_session_stop_reason(s) == LLM_STOP_CALLBACK);

  /* Filling the context: generation stops with CONTEXT_FULL, an oversized
   * eval fails with LLM_ERR_CONTEXT_FULL. */
  memset(&c, 0, sizeof c);
  gp.max_tokens = 1000;
  gp.ignore_eos = 1;
  CHECK(llm_generate(s, NULL, &gp, on_piece, &c) == LLM_OK);
  CHECK(llm_session_stop_reason(s) == LLM_STOP_CONTEXT_FULL);
  CHECK(llm_session_n_tokens(s, &n_ctx_tokens) == LLM_OK && n_ctx_tokens == 64);
  CHECK(llm_session_eval(s, ids, 1) == LLM_ERR_CONTEXT_FULL);
  CHECK(llm_generate(s, "more text", &gp, on_piece, &c) == LLM_ERR_CONTEXT_FULL);

  /* Sampling with a seed is reproducible. */
  {
    struct collected a, b;
    llm_generate_params_init(&gp);
    gp.max_tokens = 12;
    gp.seed = 42;
    gp.temperature = 1.0f;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    llm_session_reset(s);
    CHECK(llm_generate(s, "import os", &gp, on_piece, &a) == LLM_OK);
    llm_session_reset(s);
    CHECK(llm_generate(s, "import os", &gp, on_piece, &b) == LLM_OK);
    CHECK(a.len == b.len && memcmp(a.text, b.text, a.len) == 0);
  }
  /* Wrong struct_size on generate params. */
  llm_generate_params_init(&gp);
  gp.struct_size = 8;
  CHECK(llm_generate(s, "x", &gp, NULL, NULL) == LLM_ERR_INVALID_ARGUMENT);
  llm_session_free(s);
}

int main(int argc, char **argv) {
  llm_model *model = NULL;
  FILE *f;
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.llm\n", argv[0]);
    return 2;
  }
  f = fopen(argv[1], "rb");
  if (!f) {
    printf("SKIPPED: %s not found (../shared models absent?)\n", argv[1]);
    return 77;
  }
  fclose(f);
  printf("libllm %s, API %d\n", llm_version(), llm_api_version());
  if (llm_api_version() != LLM_API_VERSION) return 1;
  if (llm_model_load(argv[1], NULL, &model) != LLM_OK) {
    fprintf(stderr, "load failed: %s\n", llm_last_error());
    return 1;
  }
  test_misuse(model);
  test_session(model);
  llm_model_free(model);
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
