// Causal grouped-query attention over a KV cache, one task per
// (query, head) pair. Scores live in the running thread's scratch region.
#include <algorithm>

#include "kernels/cpu/kernels_impl.h"
#include "runtime/thread_pool.h"

namespace llm::cpu {

namespace {

using DotFn = float (*)(const float *, const float *, int64_t);
using AxpyFn = void (*)(float, const float *, float *, int64_t);
using SoftmaxFn = void (*)(float *, int64_t);

struct AttentionJob {
  const float *q;
  int64_t q_stride, n_heads, group, head_dim;
  const float *k, *v;
  int64_t cache_capacity, pos0, window;
  float scale;
  float *out;
  int64_t out_stride;
  float *scratch;
  int64_t scratch_stride;
  // Chosen once per call so the inner loops do not re-read the ISA setting.
  DotFn dot;
  AxpyFn axpy;
  SoftmaxFn softmax;
};

void attention_task(const AttentionJob &a, int64_t task, int thread) {
  const int64_t i = task / a.n_heads, h = task % a.n_heads;
  const int64_t p = a.pos0 + i;
  const int64_t j0 = a.window > 0 ? std::max<int64_t>(0, p - a.window + 1) : 0;  // p - j < window
  const int64_t count = p - j0 + 1;
  const int64_t kvh = h / a.group;
  const int64_t hd = a.head_dim;
  const float *qh = a.q + i * a.q_stride + h * hd;
  const float *kj = a.k + (kvh * a.cache_capacity + j0) * hd;
  const float *vj = a.v + (kvh * a.cache_capacity + j0) * hd;
  float *scores = a.scratch + thread * a.scratch_stride;

  for (int64_t j = 0; j < count; ++j) scores[j] = a.dot(qh, kj + j * hd, hd) * a.scale;
  a.softmax(scores, count);
  float *o = a.out + i * a.out_stride + h * hd;
  std::fill(o, o + hd, 0.0f);
  for (int64_t j = 0; j < count; ++j) a.axpy(scores[j], vj + j * hd, o, hd);
}

}  // namespace

void attention(ThreadPool &pool, const float *q, int64_t n_q, int64_t q_stride,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
               const float *k, const float *v, int64_t cache_capacity,
               int64_t pos0, int64_t window, float scale,
               float *out, int64_t out_stride, float *scratch, int64_t scratch_stride) {
  if (n_q <= 0 || n_heads <= 0) return;
  AttentionJob job{q, q_stride, n_heads, n_heads / n_kv_heads, head_dim, k, v,
                   cache_capacity, pos0, window, scale, out, out_stride, scratch, scratch_stride,
                   detail::dot_scalar, detail::axpy_scalar, detail::softmax_scalar};
#if defined(LLM_HAVE_X86)
  if (detail::use_avx2()) {
    job.dot = detail::dot_avx2;
    job.axpy = detail::axpy_avx2;
    job.softmax = detail::softmax_avx2;
  }
#endif
  // Task order puts a query's heads next to each other, so the heads that
  // share a KV head (GQA) run close together while its rows are in cache.
  pool.run(n_q * n_heads, [](void *ctx, int64_t task, int thread) {
    attention_task(*static_cast<const AttentionJob *>(ctx), task, thread);
  }, &job);
}

}  // namespace llm::cpu
