/* The smallest multi-turn chat: one user message per line of stdin, replies
 * streamed to stdout. One session keeps the conversation; each turn renders
 * the messages with the model's chat template and evaluates only the text
 * after what was rendered before.  Usage: chat MODEL.llm < questions.txt */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"

#define MAX_MESSAGES 64
#define MAX_TEXT 16384

static char reply[MAX_TEXT];
static size_t reply_len;

static char *copy(const char *s) {
  size_t len = strlen(s) + 1;
  char *p = malloc(len);
  if (p) memcpy(p, s, len);
  return p;
}

static int print_piece(const char *piece, size_t len, llm_token token, void *user) {
  (void)token;
  (void)user;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  if (reply_len + len < MAX_TEXT) {
    memcpy(reply + reply_len, piece, len);
    reply_len += len;
  }
  return 0;
}

int main(int argc, char **argv) {
  static char line[1024], rendered[MAX_TEXT], done[MAX_TEXT];
  static char *contents[MAX_MESSAGES];
  llm_chat_message messages[MAX_MESSAGES];
  size_t n = 0, done_len = 0, len = 0;
  llm_model *model = NULL;
  llm_session *session = NULL;
  llm_generate_params gp;
  llm_status st = LLM_OK;
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.llm < questions.txt\n", argv[0]);
    return 2;
  }
  if (llm_model_load(argv[1], NULL, &model) != LLM_OK ||
      llm_session_create(model, NULL, &session) != LLM_OK) {
    fprintf(stderr, "error: %s\n", llm_last_error());
    llm_model_free(model);
    return 1;
  }
  llm_generate_params_init(&gp);
  gp.max_tokens = 128;
  while (n + 2 <= MAX_MESSAGES && fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0') continue;
    if (!(contents[n] = copy(line))) break;
    messages[n].role = "user";
    messages[n].content = contents[n];
    ++n;
    /* The whole conversation, then the new part of it: what follows `done`. */
    st = llm_chat_apply_template(model, messages, n, 1, rendered, sizeof rendered, &len);
    if (st != LLM_OK) break;
    if (len < done_len || memcmp(rendered, done, done_len) != 0) {
      st = llm_session_reset(session); /* the template rewrote earlier turns */
      done_len = 0;
    }
    printf("> %s\n", line);
    reply_len = 0;
    if (st == LLM_OK) st = llm_generate(session, rendered + done_len, &gp, print_piece, NULL);
    putchar('\n');
    if (st != LLM_OK) break;
    /* The session now holds the rendered prompt and the reply. */
    memcpy(done, rendered, len);
    done_len = len;
    if (done_len + reply_len < MAX_TEXT) {
      memcpy(done + done_len, reply, reply_len);
      done_len += reply_len;
    }
    reply[reply_len] = '\0';
    if (!(contents[n] = copy(reply))) break;
    messages[n].role = "assistant";
    messages[n].content = contents[n];
    ++n;
  }
  if (st != LLM_OK) fprintf(stderr, "error: %s\n", llm_last_error());
  while (n > 0) free(contents[--n]);
  llm_session_free(session);
  llm_model_free(model);
  return st == LLM_OK ? 0 : 1;
}
