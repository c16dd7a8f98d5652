// Forward pass of the Llama family (Llama 2/3, Mistral, Qwen2 with q/k/v
// biases): pre-norm decoder blocks with grouped-query attention and a SwiGLU
// MLP. Written as a sequence of backend operations; runs n tokens at
// positions pos0.. and leaves logits in logits_dev_ (all n rows, or the last).
#include <algorithm>
#include <cmath>

#include "format/error.h"
#include "runtime/session.h"

namespace llm {

void Session::observe(int layer, ActivationObserver::Site site, const Act &a) {
  if (observer_) observer_->observe(layer, site, a.data, a.rows, a.cols, a.stride);
}

namespace {
// Ends a backend step on every way out of the forward pass.
class StepScope {
 public:
  explicit StepScope(Backend &be) : be_(be) {}
  ~StepScope() {
    if (!ended_) be_.end_step(false);
  }
  void end() {
    ended_ = true;
    be_.end_step(true);
  }

 private:
  Backend &be_;
  bool ended_ = false;
};
}  // namespace

void Session::forward(const int32_t *tokens, int64_t n, const Segment *segments, size_t n_segments,
                      bool want_all_logits, bool cancellable) {
  const HParams &h = model_.hparams();
  const ModelWeights &w = model_.weights();
  Backend &be = backend_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(h.head_dim));
  const int64_t half = h.head_dim / 2;

  Act x = x_.slice_rows(0, n), xb = xb_.slice_rows(0, n), q = q_.slice_rows(0, n),
      k = k_.slice_rows(0, n), v = v_.slice_rows(0, n), att = att_.slice_rows(0, n),
      gate = gate_.slice_rows(0, n), up = up_.slice_rows(0, n);

  for (size_t s = 0; s < n_segments; ++s) {
    const Segment &sg = segments[s];
    compute_rope_tables(sg.row0, sg.pos0, sg.n);
    step_segments_[s] = StepSegment{sg.session->backend_block_, sg.session->kv_.get(), sg.row0, sg.n, sg.pos0};
  }
  const Step step{backend_block_, tokens, n, rope_cos_, rope_sin_, half, step_segments_, n_segments};
  if (cancellable && cancelled()) fail(LLM_ERR_CANCELLED, "evaluation cancelled");
  StepScope scope(be);
  if (be.begin_step(step)) {  // replayed: the logits are in logits_dev_
    scope.end();
    return;
  }
  be.embed(w.token_embd, tokens, n, x);

  for (uint32_t il = 0; il < h.num_layers; ++il) {
    if (cancellable && cancelled()) fail(LLM_ERR_CANCELLED, "evaluation cancelled");
    const LayerWeights &l = w.layers[il];

    // Attention block. The products run over all rows at once; the cache is
    // per session.
    be.rmsnorm(x, l.attn_norm, h.rms_norm_eps, xb, mm_scratch_);
    observe(il, ActivationObserver::AttnInput, xb);
    const Product qkv[3] = {{&l.wq, &l.bq, q}, {&l.wk, &l.bk, k}, {&l.wv, &l.bv, v}};
    be.matmuls(xb, qkv, 3, mm_scratch_);
    for (size_t s = 0; s < n_segments; ++s) {
      const Segment &sg = segments[s];
      const KvSequence &kv = *sg.session->kv_;
      be.rope_store_kv(kv, il, sg.pos0, q.slice_rows(sg.row0, sg.n), k.slice_rows(sg.row0, sg.n),
                       v.slice_rows(sg.row0, sg.n), h.num_heads, h.head_dim, rope_cos_ + sg.row0 * half,
                       rope_sin_ + sg.row0 * half);
      be.attention(kv, il, q.slice_rows(sg.row0, sg.n), h.num_heads, sg.pos0, h.sliding_window, scale,
                   att.slice_rows(sg.row0, sg.n), sg.session->att_scratch_, mm_scratch_);
    }
    observe(il, ActivationObserver::AttnOutput, att);
    be.matmul_add(att, l.wo, x, xb, mm_scratch_);

    // MLP block: down(silu(gate(x)) * up(x)).
    be.rmsnorm(x, l.ffn_norm, h.rms_norm_eps, xb, mm_scratch_);
    observe(il, ActivationObserver::FfnInput, xb);
    const Product gate_up[2] = {{&l.gate, nullptr, gate}, {&l.up, nullptr, up}};
    be.matmuls(xb, gate_up, 2, mm_scratch_);
    be.silu_mul(gate, up, mm_scratch_);
    observe(il, ActivationObserver::FfnDownInput, gate);
    be.matmul_add(gate, l.down, x, xb, mm_scratch_);
  }

  if (n_segments == 1) {
    // Output head over the rows whose logits are wanted.
    Act rows = want_all_logits ? x : x.slice_rows(n - 1, 1);
    Act normed = xb.slice_rows(0, rows.rows);
    be.rmsnorm(rows, w.output_norm, h.rms_norm_eps, normed, mm_scratch_);
    observe(-1, ActivationObserver::HeadInput, normed);
    be.matmul(normed, w.output, nullptr, logits_dev_.slice_rows(0, rows.rows), mm_scratch_);
    scope.end();
    return;
  }
  // Several sessions, one row each: the head runs over all rows at once (one
  // pass over its weights) in slices of the vocabulary small enough for the
  // (now free) MLP buffer; each row's slice goes to its session's logits in
  // backend memory (decode_batch marks them as an eval does).
  const int64_t vocab = h.vocab_size;
  Act normed = xb.slice_rows(0, n);
  be.rmsnorm(x, w.output_norm, h.rms_norm_eps, normed, mm_scratch_);
  const int64_t room = gate_.rows * gate_.stride / n;  // floats per row
  const int64_t slice = std::max<int64_t>(1, std::min(vocab, room));
  for (int64_t v0 = 0; v0 < vocab; v0 += slice) {
    const int64_t m = std::min(slice, vocab - v0);
    Act out{gate_.data, n, m, m};
    be.matmul(normed, w.output.rows_view(v0, m), nullptr, out, mm_scratch_);
    for (int64_t i = 0; i < n; ++i)
      be.copy(segments[i].session->logits_dev_.data + v0, out.data + i * out.stride,
              static_cast<size_t>(m) * sizeof(float));
  }
  scope.end();
}

}  // namespace llm
