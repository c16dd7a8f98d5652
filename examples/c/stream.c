/* The smallest streaming program: load a model, generate from a prompt, print
 * text as it arrives.  Usage: stream MODEL.llm [PROMPT] */
#include <stdio.h>

#include "llm.h"

static int print_piece(const char *piece, size_t len, llm_token token, void *user) {
  (void)token;
  (void)user;
  fwrite(piece, 1, len, stdout); /* always complete UTF-8 */
  fflush(stdout);
  return 0; /* non-zero stops generation */
}

int main(int argc, char **argv) {
  const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
  llm_model *model = NULL;
  llm_session *session = NULL;
  llm_generate_params gp;
  llm_status st;
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.llm [PROMPT]\n", argv[0]);
    return 2;
  }
  if (llm_model_load(argv[1], NULL, &model) != LLM_OK ||
      llm_session_create(model, NULL, &session) != LLM_OK) {
    fprintf(stderr, "error: %s\n", llm_last_error());
    llm_model_free(model);
    return 1;
  }
  llm_generate_params_init(&gp);
  gp.max_tokens = 64;
  fputs(prompt, stdout);
  st = llm_generate(session, prompt, &gp, print_piece, NULL);
  putchar('\n');
  if (st != LLM_OK) fprintf(stderr, "error: %s\n", llm_last_error());
  llm_session_free(session);
  llm_model_free(model);
  return st == LLM_OK ? 0 : 1;
}
