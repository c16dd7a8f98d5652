/*
 * llm.h - the public C API of libllm, an on-device LLM inference runtime.
 *
 * Conventions
 *  - Plain C11. Objects are opaque handles created by llm_*_load/create and
 *    released by llm_*_free (which accept NULL).
 *  - Every fallible function returns an llm_status. On failure a message is
 *    recorded for the calling thread and can be read with llm_last_error().
 *  - Parameter structs begin with `struct_size`; fill them with the matching
 *    llm_*_params_init() before changing fields. A NULL params pointer means
 *    the defaults. New fields are only ever appended.
 *  - Strings are UTF-8. Lengths are in bytes.
 *  - Thread safety: a model is read-only after loading and may be shared by
 *    any number of threads and sessions. A session must be used by one thread
 *    at a time; llm_session_cancel() is the exception and may be called from
 *    any thread.
 */
#ifndef LLM_H
#define LLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  if defined(LLM_BUILDING_LIBRARY)
#    define LLM_API __declspec(dllexport)
#  elif defined(LLM_SHARED)
#    define LLM_API __declspec(dllimport)
#  else
#    define LLM_API
#  endif
#else
#  define LLM_API __attribute__((visibility("default")))
#endif

/* ---- Versions ------------------------------------------------------------ */

#define LLM_VERSION_MAJOR 0
#define LLM_VERSION_MINOR 1
#define LLM_VERSION_PATCH 0
/* Incremented on every change to this header's ABI (only additions while the
 * major version stays the same). */
#define LLM_API_VERSION 2

/* "MAJOR.MINOR.PATCH" of the library actually loaded. */
LLM_API const char *llm_version(void);
/* LLM_API_VERSION of the library actually loaded. */
LLM_API int llm_api_version(void);

/* ---- Status codes -------------------------------------------------------- */

typedef enum llm_status {
  LLM_OK = 0,
  LLM_ERR_INVALID_ARGUMENT = 1, /* NULL handle, bad size, bad struct_size... */
  LLM_ERR_IO = 2,               /* file cannot be opened / read / written */
  LLM_ERR_FORMAT = 3,           /* model file malformed, corrupt or wrong version */
  LLM_ERR_UNSUPPORTED = 4,      /* valid input this build cannot handle */
  LLM_ERR_OUT_OF_MEMORY = 5,    /* allocation failed or memory budget exceeded */
  LLM_ERR_CONTEXT_FULL = 6,     /* the session's context cannot hold more tokens */
  LLM_ERR_BUFFER_TOO_SMALL = 7, /* output capacity too small; required size reported */
  LLM_ERR_CANCELLED = 8,        /* llm_session_cancel() was called */
  LLM_ERR_INVALID_TOKEN = 9,    /* token id outside the vocabulary */
  LLM_ERR_INTERNAL = 10         /* a bug in libllm; please report it */
} llm_status;

/* Static name of a status, e.g. "LLM_ERR_FORMAT". Never NULL. */
LLM_API const char *llm_status_string(llm_status status);

/* Message describing the last failure on the calling thread ("" if none).
 * Owned by the library; valid until the next failing call on this thread. */
LLM_API const char *llm_last_error(void);

/* ---- Types --------------------------------------------------------------- */

typedef int32_t llm_token;
typedef struct llm_model llm_model;
typedef struct llm_session llm_session;

/* ---- Model --------------------------------------------------------------- */

typedef enum llm_verify {
  LLM_VERIFY_FULL = 0,   /* check every tensor checksum at load (default) */
  LLM_VERIFY_NONE = 1    /* structure only; fastest load */
} llm_verify;

typedef struct llm_model_params {
  size_t struct_size;
  /* Worker threads for the CPU backend; 0 = number of online cores. */
  int32_t n_threads;
  /* Compute device: NULL or "cpu". */
  const char *device;
  /* llm_verify value. */
  int32_t verify;
} llm_model_params;

LLM_API void llm_model_params_init(llm_model_params *params);

/* Map and validate a model file. On success *out owns the model; release it
 * with llm_model_free after every session using it has been freed.
 * Errors: LLM_ERR_IO, LLM_ERR_FORMAT (names what is wrong), LLM_ERR_UNSUPPORTED,
 * LLM_ERR_OUT_OF_MEMORY. */
LLM_API llm_status llm_model_load(const char *path, const llm_model_params *params,
                                  llm_model **out);
/* Free a model. NULL is ignored. All its sessions must be freed first. */
LLM_API void llm_model_free(llm_model *model);

typedef struct llm_model_info {
  size_t struct_size;
  const char *architecture;   /* "llama", "qwen2"; owned by the model */
  const char *name;           /* model name from the file; owned by the model */
  int32_t vocab_size;
  int32_t context_length;     /* maximum positions the model was trained for */
  int32_t n_layers;
  int32_t hidden_size;
  int32_t n_heads;
  int32_t n_kv_heads;
  uint64_t n_params;          /* parameter count of the original checkpoint */
  uint64_t weights_bytes;     /* bytes of tensor data in the file */
  llm_token bos_token;        /* -1 if none */
  llm_token eos_token;        /* first end-of-sequence token, -1 if none */
  int32_t vocab_only;         /* 1 if the file has no weights */
  uint64_t decode_bytes_per_token; /* weight bytes read to decode one token */
  const char *weights_type;   /* storage of most weight bytes: "f32", "bf16", "int4"...; owned by the model */
} llm_model_info;

/* Fill *info. Set info->struct_size = sizeof *info first: only that many
 * bytes are written, so programs built against an older header keep working.
 * Thread-safe. */
LLM_API llm_status llm_model_get_info(const llm_model *model, llm_model_info *info);

/* Non-zero if `token` ends generation for this model. Thread-safe. */
LLM_API int llm_token_is_eog(const llm_model *model, llm_token token);

/* ---- Tokenizer (thread-safe; needs only the model) ------------------------ */

typedef enum llm_tokenize_flags {
  LLM_TOKENIZE_DEFAULT = 0,
  /* Treat special-token strings such as "<s>" in the text as plain text, so
   * untrusted input cannot inject control tokens. */
  LLM_TOKENIZE_PARSE_SPECIAL_OFF = 1
} llm_tokenize_flags;

/* Tokenize `len` bytes of UTF-8 text. add_special != 0 adds what the
 * tokenizer's post-processor adds (e.g. BOS). Special-token strings in the
 * text are recognised (as Hugging Face does by default); use
 * llm_tokenize_ex with LLM_TOKENIZE_PARSE_SPECIAL_OFF for untrusted text.
 * Writes at most `capacity` ids to `out`; *n_out receives the number of ids
 * the text produces. If capacity is too small, returns
 * LLM_ERR_BUFFER_TOO_SMALL with *n_out set to the required count (out may be
 * NULL when capacity is 0). Invalid UTF-8 is tokenized byte-wise where the
 * vocabulary allows it (byte fallback / byte-level) and never crashes. */
LLM_API llm_status llm_tokenize(const llm_model *model, const char *text, size_t len,
                                int add_special, llm_token *out, size_t capacity,
                                size_t *n_out);
LLM_API llm_status llm_tokenize_ex(const llm_model *model, const char *text, size_t len,
                                   int add_special, int flags, llm_token *out,
                                   size_t capacity, size_t *n_out);

/* Decode ids to UTF-8 text as Hugging Face's decode(ids) does (special tokens
 * kept). Writes at most `capacity` bytes (no terminator is counted in *len_out;
 * one is written when room remains). LLM_ERR_BUFFER_TOO_SMALL reports the
 * required size in *len_out. */
LLM_API llm_status llm_detokenize(const llm_model *model, const llm_token *tokens, size_t n,
                                  char *out, size_t capacity, size_t *len_out);

/* The raw bytes of one token's piece as the decoder renders it in the middle
 * of a text (may be a partial UTF-8 sequence). Same buffer rules as above. */
LLM_API llm_status llm_token_to_piece(const llm_model *model, llm_token token, char *out,
                                      size_t capacity, size_t *len_out);

/* ---- Session ------------------------------------------------------------- */

/* Storage of the KV cache. Sizes per token and layer, for n_kv KV heads of
 * head_dim values, K and V together:
 *   F32  8 * n_kv * head_dim bytes        F16, BF16  4 * n_kv * head_dim
 *   INT8 2 * n_kv * (head_dim + 2)        (int8 values, one f16 scale per head and token)
 *   INT4 2 * n_kv * (head_dim/2 + head_dim/16)  (groups of 32 values, one f16 scale each;
 *                                                head_dim must be a multiple of 32)
 * The cache is allocated in pages of LLM_KV_PAGE_TOKENS positions. */
typedef enum llm_kv_type {
  LLM_KV_DEFAULT = 0, /* F16 */
  LLM_KV_F32 = 1,
  LLM_KV_F16 = 2,
  LLM_KV_BF16 = 3,
  LLM_KV_INT8 = 4,
  LLM_KV_INT4 = 5
} llm_kv_type;

#define LLM_KV_PAGE_TOKENS 16

/* What happens when the context is full. */
typedef enum llm_context_policy {
  /* Evaluation fails with LLM_ERR_CONTEXT_FULL; llm_generate stops with
   * LLM_STOP_CONTEXT_FULL. */
  LLM_CONTEXT_STOP = 0,
  /* The oldest tokens after the first n_keep are dropped (n_discard of them,
   * default half) and the cached keys of the rest are re-rotated to their new
   * positions, so generation continues without recomputation. A leading BOS
   * token is always kept. */
  LLM_CONTEXT_SHIFT = 1
} llm_context_policy;

/* A pool of KV-cache pages shared by several sessions of one model (see
 * llm_kv_pool_create). */
typedef struct llm_kv_pool llm_kv_pool;

typedef struct llm_session_params {
  size_t struct_size;
  /* Context length in tokens; 0 = the model's context length. */
  int32_t n_ctx;
  /* Largest number of tokens evaluated in one forward step (longer inputs are
   * split). 0 = min(512, n_ctx). */
  int32_t n_batch;
  /* Non-zero: keep logits for every position of the last llm_session_eval
   * (read with llm_session_logits_at); costs n_batch * vocab floats. */
  int32_t logits_all;
  /* Upper bound on the bytes the session may reserve; 0 = no limit. */
  uint64_t memory_limit;
  /* --- since API version 2 --- */
  /* llm_kv_type of the cache (ignored when kv_pool is set: the pool's). */
  int32_t kv_type;
  /* llm_context_policy. */
  int32_t context_policy;
  /* LLM_CONTEXT_SHIFT: tokens at the start that are never dropped; must be
   * smaller than n_ctx (LLM_ERR_INVALID_ARGUMENT otherwise). */
  int32_t n_keep;
  /* LLM_CONTEXT_SHIFT: tokens dropped per shift; 0 = half of the droppable.
   * At least what the evaluation needs and at most all droppable tokens are
   * dropped, whatever this says. */
  int32_t n_discard;
  /* NULL: the session reserves a KV cache of its own (counted in
   * llm_session_memory_required). Otherwise its pages come from this pool
   * (which must belong to the same model), and sessions of the pool that use
   * LLM_CONTEXT_STOP share the pages of a common prefix copy-on-write
   * (llm_session_fork). */
  llm_kv_pool *kv_pool;
} llm_session_params;

LLM_API void llm_session_params_init(llm_session_params *params);

/* Bytes llm_session_create would reserve for these parameters: the KV cache
 * (pages_for(n_ctx) pages, where a page holds LLM_KV_PAGE_TOKENS positions;
 * 0 on a shared pool), working buffers, logits and bookkeeping. Thread-safe. */
LLM_API llm_status llm_session_memory_required(const llm_model *model,
                                               const llm_session_params *params,
                                               uint64_t *bytes);

typedef struct llm_kv_pool_params {
  size_t struct_size;
  int32_t kv_type;      /* llm_kv_type */
  int32_t n_tokens;     /* capacity, in positions over all its sessions (rounded up to pages) */
  uint64_t memory_limit; /* 0 = none; LLM_ERR_OUT_OF_MEMORY if the pool would exceed it */
} llm_kv_pool_params;

LLM_API void llm_kv_pool_params_init(llm_kv_pool_params *params);

/* Reserve a pool of KV pages for sessions of `model`. Memory is committed,
 * never allocated lazily: creating a session on the pool reserves, out of
 * the pool, every page the session may still need to fill its context (less
 * the pages it shares), and fails with LLM_ERR_OUT_OF_MEMORY when the pool
 * cannot provide them; generation never runs out of pages. The pool lives
 * until it and all of its sessions are freed. Thread-safe. */
LLM_API llm_status llm_kv_pool_create(llm_model *model, const llm_kv_pool_params *params,
                                      llm_kv_pool **out);
/* Release the caller's reference (sessions keep the pool alive). NULL is ignored. */
LLM_API void llm_kv_pool_free(llm_kv_pool *pool);

typedef struct llm_kv_pool_info {
  size_t struct_size;
  int32_t kv_type;
  int32_t page_tokens;        /* LLM_KV_PAGE_TOKENS */
  int64_t n_pages;
  int64_t pages_used;         /* holding tokens of some session */
  int64_t pages_committed;    /* promised to sessions, not yet used */
  int64_t pages_shared;       /* used by more than one session */
  uint64_t bytes;             /* memory reserved by the pool */
} llm_kv_pool_info;

LLM_API llm_status llm_kv_pool_get_info(const llm_kv_pool *pool, llm_kv_pool_info *info);

/* Create a session: reserves its KV cache and every working buffer now;
 * nothing is allocated later. Fails with LLM_ERR_OUT_OF_MEMORY (stating the
 * bytes needed) if the memory limit or the system cannot provide them. The
 * model must outlive the session. Safe to call concurrently on one model. */
LLM_API llm_status llm_session_create(llm_model *model, const llm_session_params *params,
                                      llm_session **out);
/* Free a session. NULL is ignored. */
LLM_API void llm_session_free(llm_session *session);

/* Forget every token in the context (the reserved memory is kept). */
LLM_API llm_status llm_session_reset(llm_session *session);

typedef struct llm_session_info {
  size_t struct_size;
  int32_t n_ctx;              /* context capacity in tokens */
  int32_t n_batch;            /* largest forward step */
  int32_t n_tokens;           /* tokens in the context now */
  uint64_t kv_bytes;          /* KV cache reserved by the session (0 on a shared pool) */
  uint64_t memory_bytes;      /* everything the session reserved (= llm_session_memory_required) */
  /* --- since API version 2 --- */
  int32_t kv_type;            /* llm_kv_type in use (never LLM_KV_DEFAULT) */
  int32_t context_policy;     /* llm_context_policy */
  uint64_t kv_bytes_per_token; /* KV bytes of one position, all layers */
  uint64_t n_shifts;          /* context shifts so far */
} llm_session_info;

/* Fill *info (set info->struct_size = sizeof *info first, as for
 * llm_model_get_info). */
LLM_API llm_status llm_session_get_info(const llm_session *session, llm_session_info *info);

/* Number of tokens currently in the context. */
LLM_API llm_status llm_session_n_tokens(const llm_session *session, size_t *n_out);

/* Append tokens to the context and run the model over them. On success the
 * logits of the last token are available. LLM_ERR_CONTEXT_FULL if they do not
 * fit (nothing is appended); LLM_ERR_INVALID_TOKEN for ids outside the
 * vocabulary; LLM_ERR_CANCELLED if cancelled (the context then holds the
 * tokens evaluated before the cancellation point, and the session stays
 * usable). */
LLM_API llm_status llm_session_eval(llm_session *session, const llm_token *tokens, size_t n);

/* Keep only the first n_tokens tokens of the context (e.g. to regenerate an
 * answer); the KV cache of the rest is dropped without recomputation. Logits
 * become unavailable until the next evaluation (llm_generate re-evaluates the
 * last token by itself). LLM_ERR_INVALID_ARGUMENT if n_tokens exceeds the
 * context; LLM_ERR_OUT_OF_MEMORY (nothing changed) if the page holding the
 * new end is shared and the pool cannot back its copy. */
LLM_API llm_status llm_session_truncate(llm_session *session, size_t n_tokens);

/* Create a session holding a copy of `src`'s context (tokens, KV cache, last
 * logits), e.g. a system prompt evaluated once and continued by many
 * sessions. With params->kv_pool equal to src's pool (and both using
 * LLM_CONTEXT_STOP) the full pages are shared copy-on-write, not copied;
 * otherwise the cache is copied (params->kv_type must then be src's type or
 * LLM_KV_DEFAULT, which means src's type here). params may be NULL (src's
 * pool and settings). LLM_ERR_CONTEXT_FULL if src holds more tokens than the
 * new context. `src` must not be in use by another thread during the call. */
LLM_API llm_status llm_session_fork(const llm_session *src, const llm_session_params *params,
                                    llm_session **out);

/* Evaluate one token in each of n sessions of one model with a single pass
 * over the weights (decoding n sequences costs about as much memory traffic
 * as one). tokens[i] is appended to sessions[i]; afterwards each session's
 * logits are those of its new token. n must not exceed sessions[0]'s n_batch;
 * sessions must be distinct and not in use elsewhere. A full context is
 * shifted under LLM_CONTEXT_SHIFT, otherwise LLM_ERR_CONTEXT_FULL (nothing
 * evaluated). */
LLM_API llm_status llm_decode_batch(llm_session *const *sessions, const llm_token *tokens, size_t n);

/* ---- Session state ---------------------------------------------------------- */

/* The session's state (tokens, KV cache, last logits) as a versioned,
 * checksummed byte string bound to the model file it was made with.
 * llm_session_state_size gives the bytes llm_session_save writes now. */
LLM_API llm_status llm_session_state_size(const llm_session *session, size_t *bytes);
LLM_API llm_status llm_session_save(const llm_session *session, void *buf, size_t capacity,
                                    size_t *len_out);
/* Replace the session's context with a saved state. LLM_ERR_FORMAT if the
 * bytes are truncated, corrupt or of another version; LLM_ERR_INVALID_ARGUMENT
 * if they come from another model file or a different KV type;
 * LLM_ERR_CONTEXT_FULL if they hold more tokens than the session's context.
 * On failure the session is unchanged. */
LLM_API llm_status llm_session_restore(llm_session *session, const void *buf, size_t len);
/* The same through a file (written atomically: a temporary file renamed). */
LLM_API llm_status llm_session_save_file(const llm_session *session, const char *path);
LLM_API llm_status llm_session_restore_file(llm_session *session, const char *path);

/* vocab_size logits of the last evaluated position, or NULL if nothing has
 * been evaluated. Owned by the session; valid until the next call that
 * changes it (eval, generate, reset, free). On a GPU the logits are copied
 * to host memory on the first call after an eval (llm_session_sample does
 * not need them there); NULL if that copy fails (llm_last_error says why). */
LLM_API const float *llm_session_logits(const llm_session *session);

/* Logits of the i-th token of the last llm_session_eval call (requires
 * logits_all; i < 0 counts from the end). NULL if unavailable. Same lifetime
 * as llm_session_logits. */
LLM_API const float *llm_session_logits_at(const llm_session *session, int32_t i);

/* Ask a running eval/generate on this session to stop at the next step; it
 * returns LLM_ERR_CANCELLED. Safe from any thread. The flag is cleared when
 * the next eval/generate starts. */
LLM_API void llm_session_cancel(llm_session *session);

/* ---- Generation ---------------------------------------------------------- */

/* Called with each piece of generated text. `piece` holds `len` bytes of
 * complete UTF-8 (not NUL-terminated; may be empty when a token produces no
 * text yet, e.g. half of a multi-byte character); `token` is the token just
 * sampled (-1 for text held back until the end, e.g. a partial stop
 * string, delivered when generation finishes). Return non-zero to stop. */
typedef int (*llm_stream_fn)(const char *piece, size_t len, llm_token token, void *user_data);

#define LLM_MAX_STOP_STRINGS 8

typedef struct llm_generate_params {
  size_t struct_size;
  int32_t max_tokens;         /* tokens to generate; default 256; <= 0: until EOS or context end */
  float temperature;          /* <= 0: greedy. Default 0.8 */
  int32_t top_k;              /* 0 = off. Default 40 */
  float top_p;                /* 1 = off. Default 0.95 */
  float min_p;                /* 0 = off. Default 0.05 */
  float repeat_penalty;       /* 1 = off. Default 1.0 */
  int32_t repeat_last_n;      /* tokens considered by repeat_penalty. Default 64 */
  uint64_t seed;              /* same seed, same output. Default 0 */
  int32_t add_special;        /* add BOS etc. when the session is empty. Default 1 */
  int32_t parse_special;      /* recognise special-token strings in the prompt. Default 1 */
  /* Up to LLM_MAX_STOP_STRINGS NUL-terminated strings; generation stops when
   * the text produced contains one (the stop string is not delivered). */
  const char *stop[LLM_MAX_STOP_STRINGS];
  int32_t n_stop;
  int32_t ignore_eos;         /* non-zero: do not stop at end-of-generation tokens */
} llm_generate_params;

LLM_API void llm_generate_params_init(llm_generate_params *params);

typedef enum llm_stop_reason {
  LLM_STOP_NONE = 0,
  LLM_STOP_EOS = 1,
  LLM_STOP_MAX_TOKENS = 2,
  LLM_STOP_STRING = 3,
  LLM_STOP_CALLBACK = 4,
  LLM_STOP_CONTEXT_FULL = 5
} llm_stop_reason;

/* Evaluate `prompt` (NUL-terminated UTF-8, may be NULL or "" to continue from
 * the current context) after what the session holds, then sample tokens and
 * stream their text to on_piece (may be NULL). Stops on an end-of-generation
 * token, a stop string, max_tokens, the callback's request or a full context
 * (LLM_OK in every one of those cases; llm_session_stop_reason() tells which).
 * Every sampled token that was delivered stays in the context. */
LLM_API llm_status llm_generate(llm_session *session, const char *prompt,
                                const llm_generate_params *params, llm_stream_fn on_piece,
                                void *user_data);

/* Why the last llm_generate on this session ended (llm_stop_reason). */
LLM_API int llm_session_stop_reason(const llm_session *session);

/* Sample one token from the current logits with `params`' sampling fields
 * (temperature, top_k, top_p, min_p, repetition penalty over the context).
 * On a GPU, greedy and top-k sampling select their candidates on the device
 * when top_k (1 when greedy) plus the penalty's window is at most 256 and
 * repeat_penalty >= 1: only those reach the host, and the token drawn is the
 * one the whole row gives.
 * The session's random generator is seeded from params->seed by the first
 * call after creation or reset (and by every llm_generate); later calls
 * continue its sequence. */
LLM_API llm_status llm_session_sample(llm_session *session, const llm_generate_params *params,
                                      llm_token *out);

/* ---- Chat templates -------------------------------------------------------- */

typedef struct llm_chat_message {
  const char *role;     /* "system", "user", "assistant", ... (NUL-terminated UTF-8) */
  const char *content;  /* NUL-terminated UTF-8 */
} llm_chat_message;

/* Render `messages` with the model's chat template (the Jinja template stored
 * from tokenizer_config.json), as transformers' apply_chat_template does;
 * add_generation_prompt != 0 appends the assistant turn's opening. Buffer
 * rules as llm_detokenize (LLM_ERR_BUFFER_TOO_SMALL reports the size needed).
 * LLM_ERR_UNSUPPORTED if the model has no template or it uses Jinja features
 * outside the supported subset; LLM_ERR_INVALID_ARGUMENT if the template
 * raises an error (e.g. roles in the wrong order). Thread-safe. */
LLM_API llm_status llm_chat_apply_template(const llm_model *model, const llm_chat_message *messages,
                                           size_t n, int add_generation_prompt, char *buf,
                                           size_t capacity, size_t *len_out);

#ifdef __cplusplus
}
#endif

#endif /* LLM_H */
