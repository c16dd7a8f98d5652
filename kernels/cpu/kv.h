// KV-cache row formats and attention over a paged KV cache.
//
// A row is one token of one KV head: head_dim values of K (after RoPE) or V.
// Row formats (little-endian):
//   F32   head_dim floats
//   F16   head_dim IEEE half floats
//   BF16  head_dim bfloat16
//   Q8    head_dim int8 q, then one f16 scale d:  x = q * d   (d = max|x| / 127)
//   Q4    head_dim/2 bytes, then head_dim/32 f16 scales, one per group of 32
//         values. Within a group, byte i holds value i in its low nibble and
//         value i + 16 in its high nibble, each stored as q + 8 with q in
//         [-8, 7]; x = q * d, where d = m / -8 for the value m of largest
//         magnitude in the group (so m is represented exactly).
// Q8 and Q4 rows hold R·x rather than x, where R is the orthonormal
// Walsh-Hadamard transform applied to each block of kv_rotation_block(head_dim)
// values. R spreads the few large channels that keys carry after RoPE over the
// whole block, so one scale per group wastes far less range; and since R is
// orthonormal and its own inverse, q·k = (Rq)·(Rk) and sum p·v = R(sum p·Rv):
// attention rotates each query once and each output once, never the cache.
// Attention decodes the rows it reads in blocks of kKvBlockRows into a small
// per-thread buffer, which every query head of the KV head's group then
// reads: each row is decoded once per group, not once per query head. No
// full-precision copy of the cache is ever made.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llm {
class ThreadPool;
}

namespace llm::cpu {

enum class KvType : uint8_t { F32, F16, BF16, Q8, Q4 };

constexpr int64_t kKvQ4Group = 32;

const char *kv_type_name(KvType t);
// Whether rows of this head size can be stored in type t (Q4 needs a multiple
// of 32; every type needs an even, positive head_dim).
bool kv_type_fits(KvType t, int64_t head_dim);
// Bytes of one row of head_dim values.
size_t kv_row_bytes(KvType t, int64_t head_dim);

// Whether rows of type t are stored rotated (Q8, Q4), and the block size of
// the rotation: the largest power of two dividing head_dim.
bool kv_rotated(KvType t);
int64_t kv_rotation_block(int64_t head_dim);
// In place: x = R·x for one row of head_dim values (R is its own inverse).
void kv_rotate(float *x, int64_t head_dim);

// Encodes one row (head_dim floats) into `dst` (kv_row_bytes bytes).
void kv_quantize_row(KvType t, const float *x, int64_t head_dim, void *dst);
// Decodes one row into head_dim floats.
void kv_dequantize_row(KvType t, const void *src, int64_t head_dim, float *dst);

// One layer's K and V as attention reads them. The cache is made of pages of
// `page_tokens` positions; position j lives in page pages[j / page_tokens].
// The row of KV head h at position j is at
//   base + pages[j / page_tokens] * page_stride + h * head_stride
//        + (j % page_tokens) * row_bytes
// with base = k_base or v_base.
struct KvLayerView {
  KvType type = KvType::F32;
  int64_t head_dim = 0;
  size_t row_bytes = 0;
  const uint8_t *k_base = nullptr;
  const uint8_t *v_base = nullptr;
  const int32_t *pages = nullptr;
  int64_t page_tokens = 0;
  size_t page_stride = 0;
  size_t head_stride = 0;
  const uint8_t *k_row(int64_t h, int64_t j) const {
    return k_base + static_cast<size_t>(pages[j / page_tokens]) * page_stride + static_cast<size_t>(h) * head_stride +
           static_cast<size_t>(j % page_tokens) * row_bytes;
  }
  const uint8_t *v_row(int64_t h, int64_t j) const { return k_row(h, j) - k_base + v_base; }
};

// Causal grouped-query attention of n_q new queries against a paged cache.
//  q:   [n_q][n_heads][head_dim], row stride q_stride floats per query
//  Query i sits at position p = pos0 + i and attends to positions j <= p with
//  (window == 0 || p - j < window); positions 0 .. pos0 + n_q - 1 must be
//  stored. Query head h reads KV head h / (n_heads / n_kv_heads).
//  out: [n_q][n_heads][head_dim], row stride out_stride floats per query
//  scratch: pool.size() regions of scratch_stride floats, each at least
//  paged_attention_scratch_stride(n_ctx, n_heads, n_kv_heads, head_dim)
//  floats with n_ctx >= pos0 + n_q.
void paged_attention(ThreadPool &pool, const float *q, int64_t n_q, int64_t q_stride, int64_t n_heads,
                     int64_t n_kv_heads, const KvLayerView &kv, int64_t pos0, int64_t window, float scale,
                     float *out, int64_t out_stride, float *scratch, int64_t scratch_stride);

// Floats of one thread's attention scratch region (a multiple of 16).
int64_t paged_attention_scratch_stride(int64_t n_ctx, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim);

// Rows attention decodes at a time, and the padding of decoded rows.
constexpr int64_t kKvBlockRows = 16;
constexpr int64_t kKvRowPad = 16;
inline int64_t kv_padded_dim(int64_t head_dim) { return (head_dim + kKvRowPad - 1) / kKvRowPad * kKvRowPad; }

namespace detail {
// Decoded rows are hd_pad = kv_padded_dim(hd) floats apart, zero past hd.
struct KvRowOps {
  // n rows, row_bytes apart, into dst (rotated types stay in the rows' basis).
  void (*decode_rows)(const uint8_t *rows, size_t row_bytes, int64_t n, int64_t hd, float *dst);
  // s[g * s_stride + j] = scale * dot(q_g, row j) for n_q queries q_g = q + g * hd_pad.
  void (*scores)(const float *q, int64_t n_q, const float *rows, int64_t n, int64_t hd_pad, float scale,
                 float *s, int64_t s_stride);
  // o_g += sum_j p[g * p_stride + j] * row j for n_q outputs o_g = o + g * hd_pad.
  void (*accumulate)(const float *p, int64_t p_stride, int64_t n_q, const float *rows, int64_t n,
                     int64_t hd_pad, float *o);
};
// Row operations of type t on the active ISA.
KvRowOps kv_row_ops(KvType t);
KvRowOps kv_row_ops_scalar(KvType t);
#if defined(LLM_HAVE_X86)
KvRowOps kv_row_ops_avx2(KvType t);
#endif
#if defined(LLM_HAVE_NEON)
KvRowOps kv_row_ops_neon(KvType t);
#endif
}  // namespace detail

}  // namespace llm::cpu
