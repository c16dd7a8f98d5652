// The paged KV cache.
//
// KV memory is made of pages of kPageTokens positions. A page holds those
// positions for every layer, K and V, every KV head, in one of the row
// formats of kernels/cpu/kv.h:
//   page = [layer][K, V][kv_head][kPageTokens rows of row_bytes]
// Pages come from a KvPool: one block of backend memory reserved when the
// pool is created. A session owns a pool of its own by default; sessions
// created on a shared pool (llm_kv_pool) can share the pages of a common
// prefix copy-on-write.
//
// Memory is never allocated lazily. Every sequence commits, when it is
// created, the pages it may still need to reach its context length; taking a
// page later draws on that commitment and cannot fail. A pool keeps
//   pages in use + pages committed <= pages in the pool
// so the sum of all promises is always backed. Sharing a prefix lowers the
// commitment of the sequence that shares it; an operation that raises a
// commitment (truncating into a shared page, which must then be copied
// before it is written) checks the pool first and fails cleanly, changing
// nothing, when the pool cannot back it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/cpu/kv.h"

namespace llm {

class Backend;
using KvType = cpu::KvType;

constexpr int64_t kPageTokens = 16;

struct KvGeometry {
  KvType type = KvType::F16;
  int64_t n_layers = 0, n_kv_heads = 0, head_dim = 0;

  size_t row_bytes() const { return cpu::kv_row_bytes(type, head_dim); }
  size_t head_stride() const { return static_cast<size_t>(kPageTokens) * row_bytes(); }
  size_t kind_stride() const { return static_cast<size_t>(n_kv_heads) * head_stride(); }
  size_t layer_stride() const { return 2 * kind_stride(); }
  size_t page_bytes() const { return static_cast<size_t>(n_layers) * layer_stride(); }
  // KV bytes of one position (all layers, K and V).
  uint64_t bytes_per_token() const { return 2ull * n_layers * n_kv_heads * row_bytes(); }
  bool operator==(const KvGeometry &o) const {
    return type == o.type && n_layers == o.n_layers && n_kv_heads == o.n_kv_heads && head_dim == o.head_dim;
  }
  bool operator!=(const KvGeometry &o) const { return !(*this == o); }
};

inline int64_t pages_for(int64_t n_tokens) { return (n_tokens + kPageTokens - 1) / kPageTokens; }

class KvPool {
 public:
  // Reserves n_pages pages of backend memory. Throws llm::Error
  // (LLM_ERR_OUT_OF_MEMORY) when the memory cannot be had.
  KvPool(Backend &backend, const KvGeometry &geometry, int64_t n_pages);
  ~KvPool();
  KvPool(const KvPool &) = delete;
  KvPool &operator=(const KvPool &) = delete;

  Backend &backend() const { return backend_; }
  const KvGeometry &geometry() const { return geo_; }
  uint8_t *base() const { return base_; }
  int64_t n_pages() const { return n_pages_; }
  uint64_t bytes() const { return static_cast<uint64_t>(n_pages_) * geo_.page_bytes(); }
  uint8_t *page(int32_t p) const { return base_ + static_cast<size_t>(p) * geo_.page_bytes(); }

  struct Usage {
    int64_t used = 0, committed = 0, shared = 0;
  };
  Usage usage() const;

  // --- accounting; all thread-safe ---
  // Commits n future pages; false (nothing changed) when the pool cannot back them.
  bool try_commit(int64_t n);
  void uncommit(int64_t n);
  // A page drawn from the caller's commitment, with one reference.
  int32_t take();
  void retain(int32_t page);
  void release(int32_t page);
  bool shared(int32_t page) const;  // more than one reference
  // Releases `pages` and changes the commitment by `commit_delta` as one
  // step; false (nothing changed) when the result would not be backed.
  bool release_and_commit(const int32_t *pages, int64_t n, int64_t commit_delta);

 private:
  void release_locked(int32_t page);

  Backend &backend_;
  KvGeometry geo_;
  int64_t n_pages_ = 0;
  uint8_t *base_ = nullptr;
  mutable std::mutex mu_;
  std::vector<int32_t> refs_;   // per page
  std::vector<int32_t> free_;   // stack of free pages
  int64_t used_ = 0, committed_ = 0;
};

// One session's view of the cache: the pages holding its positions.
class KvSequence {
 public:
  // A sequence that can grow to n_ctx positions, holding a copy of the first
  // n_prefix positions of `prefix` when that is given. `shareable`: pages may
  // be shared with other sequences of the pool (a sequence that shifts its
  // context never shares). The prefix's full pages are shared when both
  // sequences are shareable and in one pool; the rest is copied. Commits the
  // pages the sequence may still need to reach n_ctx; throws llm::Error
  // (LLM_ERR_OUT_OF_MEMORY) naming the pool's state when the pool cannot
  // back them.
  KvSequence(std::shared_ptr<KvPool> pool, int64_t n_ctx, bool shareable, const KvSequence *prefix = nullptr,
             int64_t n_prefix = 0);
  ~KvSequence();
  KvSequence(const KvSequence &) = delete;
  KvSequence &operator=(const KvSequence &) = delete;

  KvPool &pool() const { return *pool_; }
  const std::shared_ptr<KvPool> &pool_ptr() const { return pool_; }
  const KvGeometry &geometry() const { return pool_->geometry(); }
  int64_t n_ctx() const { return n_ctx_; }
  const int32_t *pages() const { return pages_.data(); }
  int64_t n_pages() const { return n_pages_; }

  // Makes positions [first, first + n) writable (first = tokens held now):
  // takes pages and copies a shared page before it is written. Never fails.
  void prepare_write(int64_t first, int64_t n);
  // Forget positions >= n_tokens (n_tokens <= held). Throws
  // LLM_ERR_OUT_OF_MEMORY, changing nothing, if a page that must be copied
  // before the next write cannot be committed.
  void truncate(int64_t held, int64_t n_tokens);
  // Address of the row of (layer, kind 0=K/1=V, head) at position pos.
  uint8_t *row(int64_t layer, int kind, int64_t head, int64_t pos) const {
    const KvGeometry &g = pool_->geometry();
    return pool_->page(pages_[pos / kPageTokens]) + layer * g.layer_stride() + kind * g.kind_stride() +
           head * g.head_stride() + static_cast<size_t>(pos % kPageTokens) * g.row_bytes();
  }
  cpu::KvLayerView layer_view(int64_t layer) const;

 private:
  int64_t needed_commitment(int64_t held) const;
  void make_private(int64_t page_index);

  std::shared_ptr<KvPool> pool_;
  int64_t n_ctx_ = 0;
  bool shareable_ = true;
  std::vector<int32_t> pages_;  // pages_for(n_ctx) entries, first n_pages_ valid
  int64_t n_pages_ = 0;
  int64_t committed_ = 0;
};

}  // namespace llm
