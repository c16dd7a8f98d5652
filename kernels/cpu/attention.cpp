// Causal grouped-query attention over a paged, possibly quantized KV cache
// (kv.h), one task per (query, head) pair. Rows are read where they live:
// runs of consecutive positions within a page are handed to the row
// operations of the cache's type, which dequantize in registers. Scores live
// in the running thread's scratch region.
#include <algorithm>

#include "kernels/cpu/kernels_impl.h"
#include "kernels/cpu/kv.h"
#include "runtime/thread_pool.h"

namespace llm::cpu {

namespace {

using SoftmaxFn = void (*)(float *, int64_t);

struct AttentionJob {
  const float *q;
  int64_t q_stride, n_heads, group;
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
  const int64_t i = task / a.n_heads, h = task % a.n_heads;
  const int64_t p = a.pos0 + i;
  const int64_t j0 = a.window > 0 ? std::max<int64_t>(0, p - a.window + 1) : 0;  // p - j < window
  const int64_t count = p - j0 + 1;
  const int64_t kvh = h / a.group;
  const int64_t hd = kv.head_dim;
  const int64_t B = kv.page_tokens;
  const float *qh = a.q + i * a.q_stride + h * hd;
  float *scores = a.scratch + thread * a.scratch_stride;
  // Rotated row types (kv.h): rotate the query into the rows' basis.
  const bool rotated = kv_rotated(kv.type);
  float q_rot[512];
  if (rotated) {
    std::copy(qh, qh + hd, q_rot);
    kv_rotate(q_rot, hd);
    qh = q_rot;
  }

  // Visits [j0, p] as runs of consecutive positions inside one page.
  auto for_runs = [&](auto &&fn) {
    for (int64_t j = j0; j <= p;) {
      const int64_t run = std::min(B - j % B, p + 1 - j);
      fn(j, run);
      j += run;
    }
  };
  for_runs([&](int64_t j, int64_t run) {
    a.ops.dot_rows(qh, kv.k_row(kvh, j), kv.row_bytes, run, hd, a.scale, scores + (j - j0));
  });
  a.softmax(scores, count);
  float *o = a.out + i * a.out_stride + h * hd;
  std::fill(o, o + hd, 0.0f);
  for_runs([&](int64_t j, int64_t run) {
    a.ops.axpy_rows(scores + (j - j0), kv.v_row(kvh, j), kv.row_bytes, run, hd, o);
  });
  if (rotated) kv_rotate(o, hd);  // back from the rows' basis
}

}  // namespace

void paged_attention(ThreadPool &pool, const float *q, int64_t n_q, int64_t q_stride, int64_t n_heads,
                     int64_t n_kv_heads, const KvLayerView &kv, int64_t pos0, int64_t window, float scale,
                     float *out, int64_t out_stride, float *scratch, int64_t scratch_stride) {
  if (n_q <= 0 || n_heads <= 0) return;
  AttentionJob job{q, q_stride, n_heads, n_heads / n_kv_heads, &kv, pos0, window, scale,
                   out, out_stride, scratch, scratch_stride, detail::kv_row_ops(kv.type),
                   detail::softmax_scalar};
#if defined(LLM_HAVE_X86)
  if (detail::use_avx2()) job.softmax = detail::softmax_avx2;
#endif
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) job.softmax = detail::softmax_neon;
#endif
  // Task order puts a query's heads next to each other, so the heads that
  // share a KV head (GQA) run close together while its rows are in cache.
  pool.run(n_q * n_heads, [](void *ctx, int64_t task, int thread) {
    attention_task(*static_cast<const AttentionJob *>(ctx), task, thread);
  }, &job);
}

}  // namespace llm::cpu
