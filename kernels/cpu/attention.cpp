// Causal grouped-query attention over a paged, possibly quantized KV cache
// (kv.h). One task handles one query against the query heads of one KV head
// (all of them, or a share when there would be fewer tasks than threads): it
// decodes the KV head's rows in blocks of kKvBlockRows into its thread's
// scratch and runs every one of its query heads over each block, so a row is
// decoded once per group rather than once per query head. Scores, the rotated
// queries and the outputs also live in the thread's scratch region.
#include <algorithm>

#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/kv.h"
#include "runtime/thread_pool.h"

namespace llm::cpu {

namespace {

using SoftmaxFn = void (*)(float *, int64_t);

// Query heads one task handles at most: bounds the scores held per thread.
constexpr int64_t kMaxTaskHeads = 16;

int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

struct AttentionJob {
  const float *q;
  int64_t q_stride, n_heads, n_kv_heads, group;
  int64_t task_heads, parts;  // query heads per task; tasks per (query, KV head)
  const KvLayerView *kv;
  int64_t pos0, window;
  float scale;
  float *out;
  int64_t out_stride;
  float *scratch;
  int64_t scratch_stride;
  // Chosen once per call so the inner loops do not re-read the ISA setting.
  detail::KvRowOps ops;
  SoftmaxFn softmax;
};

void attention_task(const AttentionJob &a, int64_t task, int thread) {
  const KvLayerView &kv = *a.kv;
  const int64_t i = task / (a.n_kv_heads * a.parts);
  const int64_t kvh = task / a.parts % a.n_kv_heads, part = task % a.parts;
  const int64_t h0 = kvh * a.group + part * a.task_heads;
  const int64_t nh = std::min(a.task_heads, (kvh + 1) * a.group - h0);
  const int64_t p = a.pos0 + i;
  const int64_t j0 = a.window > 0 ? std::max<int64_t>(0, p - a.window + 1) : 0;  // p - j < window
  const int64_t count = p - j0 + 1;
  const int64_t hd = kv.head_dim, hd_pad = kv_padded_dim(hd);
  const int64_t B = kv.page_tokens;
  const bool rotated = kv_rotated(kv.type);

  // Scratch: queries and outputs [nh][hd_pad], one block of decoded rows,
  // scores [nh][s_stride].
  float *qs = a.scratch + thread * a.scratch_stride;
  float *os = qs + a.task_heads * hd_pad;
  float *rows = os + a.task_heads * hd_pad;
  float *scores = rows + kKvBlockRows * hd_pad;
  const int64_t s_stride = round16(count);

  for (int64_t g = 0; g < nh; ++g) {
    const float *src = a.q + i * a.q_stride + (h0 + g) * hd;
    float *dst = qs + g * hd_pad;
    std::copy(src, src + hd, dst);
    std::fill(dst + hd, dst + hd_pad, 0.0f);
    if (rotated) kv_rotate(dst, hd);  // into the rows' basis (kv.h)
  }
  std::fill(os, os + nh * hd_pad, 0.0f);

  // Decodes positions [j, j + n) of K or V into `rows`, page run by page run.
  auto decode = [&](const uint8_t *(KvLayerView::*row)(int64_t, int64_t) const, int64_t j, int64_t n) {
    for (int64_t t = 0; t < n;) {
      const int64_t run = std::min(B - (j + t) % B, n - t);
      a.ops.decode_rows((kv.*row)(kvh, j + t), kv.row_bytes, run, hd, rows + t * hd_pad);
      t += run;
    }
  };
  for (int64_t j = j0; j <= p; j += kKvBlockRows) {
    const int64_t n = std::min(kKvBlockRows, p + 1 - j);
    decode(&KvLayerView::k_row, j, n);
    a.ops.scores(qs, nh, rows, n, hd_pad, a.scale, scores + (j - j0), s_stride);
  }
  for (int64_t g = 0; g < nh; ++g) a.softmax(scores + g * s_stride, count);
  for (int64_t j = j0; j <= p; j += kKvBlockRows) {
    const int64_t n = std::min(kKvBlockRows, p + 1 - j);
    decode(&KvLayerView::v_row, j, n);
    a.ops.accumulate(scores + (j - j0), s_stride, nh, rows, n, hd_pad, os);
  }
  for (int64_t g = 0; g < nh; ++g) {
    float *o = os + g * hd_pad;
    if (rotated) kv_rotate(o, hd);  // back from the rows' basis
    std::copy(o, o + hd, a.out + i * a.out_stride + (h0 + g) * hd);
  }
}

// Query heads per task for groups of `group` heads.
int64_t task_heads_for(int64_t group) { return std::min(group, kMaxTaskHeads); }

}  // namespace

int64_t paged_attention_scratch_stride(int64_t n_ctx, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  const int64_t heads = task_heads_for(n_heads / std::max<int64_t>(n_kv_heads, 1));
  const int64_t hd_pad = kv_padded_dim(head_dim);
  return heads * (2 * hd_pad + round16(n_ctx)) + kKvBlockRows * hd_pad;
}

void paged_attention(ThreadPool &pool, const float *q, int64_t n_q, int64_t q_stride, int64_t n_heads,
                     int64_t n_kv_heads, const KvLayerView &kv, int64_t pos0, int64_t window, float scale,
                     float *out, int64_t out_stride, float *scratch, int64_t scratch_stride) {
  if (n_q <= 0 || n_heads <= 0) return;
  const int64_t group = n_heads / n_kv_heads;
  // Whole groups per task unless that leaves threads idle; then the group's
  // heads are shared out (each share decodes the rows again).
  int64_t parts = (group + kMaxTaskHeads - 1) / kMaxTaskHeads;
  const int64_t per_part = n_q * n_kv_heads;
  parts = std::min(group, std::max(parts, (pool.size() + per_part - 1) / per_part));
  const int64_t task_heads = (group + parts - 1) / parts;
  parts = (group + task_heads - 1) / task_heads;
  AttentionJob job{q, q_stride, n_heads, n_kv_heads, group, task_heads, parts, &kv, pos0, window, scale,
                   out, out_stride, scratch, scratch_stride, detail::kv_row_ops(kv.type), detail::softmax_scalar};
#if defined(LLM_HAVE_X86)
  if (detail::use_avx2()) job.softmax = detail::softmax_avx2;
#endif
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) job.softmax = detail::softmax_neon;
#endif
  pool.run(n_q * n_kv_heads * parts, [](void *ctx, int64_t task, int thread) {
    attention_task(*static_cast<const AttentionJob *>(ctx), task, thread);
  }, &job);
}

}  // namespace llm::cpu
