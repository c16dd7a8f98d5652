#include "runtime/kv_cache.h"

#include <algorithm>
#include <string>

#include "format/error.h"
#include "runtime/backend.h"

namespace llm {

// ---- KvPool -------------------------------------------------------------------

KvPool::KvPool(Backend &backend, const KvGeometry &geometry, int64_t n_pages)
    : backend_(backend), geo_(geometry), n_pages_(n_pages) {
  if (n_pages <= 0 || n_pages > INT32_MAX) fail_argument("a KV pool needs between 1 and 2^31-1 pages");
  const uint64_t total = static_cast<uint64_t>(n_pages) * geo_.page_bytes();
  if (total / static_cast<uint64_t>(n_pages) != geo_.page_bytes() || total > SIZE_MAX)
    fail(LLM_ERR_OUT_OF_MEMORY, "KV pool of " + std::to_string(n_pages) + " pages overflows the address space");
  refs_.assign(static_cast<size_t>(n_pages), 0);
  free_.resize(static_cast<size_t>(n_pages));
  // Lowest page numbers first, so a fresh sequence's pages are contiguous.
  for (int64_t i = 0; i < n_pages; ++i) free_[static_cast<size_t>(i)] = static_cast<int32_t>(n_pages - 1 - i);
  base_ = static_cast<uint8_t *>(backend_.alloc(static_cast<size_t>(total)));
}

KvPool::~KvPool() { backend_.free(base_); }

KvPool::Usage KvPool::usage() const {
  std::lock_guard<std::mutex> lock(mu_);
  Usage u;
  u.used = used_;
  u.committed = committed_;
  for (int32_t r : refs_) u.shared += r > 1;
  return u;
}

bool KvPool::try_commit(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ + committed_ + n > n_pages_) return false;
  committed_ += n;
  return true;
}

void KvPool::uncommit(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  committed_ -= n;
}

int32_t KvPool::take() {
  std::lock_guard<std::mutex> lock(mu_);
  // The caller's commitment guarantees a free page.
  if (free_.empty() || committed_ <= 0) fail(LLM_ERR_INTERNAL, "KV pool: page taken without a commitment");
  const int32_t p = free_.back();
  free_.pop_back();
  refs_[static_cast<size_t>(p)] = 1;
  ++used_;
  --committed_;
  return p;
}

void KvPool::retain(int32_t page) {
  std::lock_guard<std::mutex> lock(mu_);
  ++refs_[static_cast<size_t>(page)];
}

void KvPool::release_locked(int32_t page) {
  if (--refs_[static_cast<size_t>(page)] == 0) {
    free_.push_back(page);
    --used_;
  }
}

void KvPool::release(int32_t page) {
  std::lock_guard<std::mutex> lock(mu_);
  release_locked(page);
}

bool KvPool::shared(int32_t page) const {
  std::lock_guard<std::mutex> lock(mu_);
  return refs_[static_cast<size_t>(page)] > 1;
}

bool KvPool::release_and_commit(const int32_t *pages, int64_t n, int64_t commit_delta) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t freed = 0;
  for (int64_t i = 0; i < n; ++i) freed += refs_[static_cast<size_t>(pages[i])] == 1;
  if (commit_delta > 0 && used_ - freed + committed_ + commit_delta > n_pages_) return false;
  for (int64_t i = 0; i < n; ++i) release_locked(pages[i]);
  committed_ += commit_delta;
  return true;
}

// ---- KvSequence ---------------------------------------------------------------

KvSequence::KvSequence(std::shared_ptr<KvPool> pool, int64_t n_ctx, bool shareable, const KvSequence *prefix,
                       int64_t n_prefix)
    : pool_(std::move(pool)), n_ctx_(n_ctx), shareable_(shareable) {
  const int64_t capacity = pages_for(n_ctx);
  pages_.assign(static_cast<size_t>(capacity), -1);
  if (prefix) {
    if (prefix->geometry() != geometry())
      fail_argument(std::string("cannot copy a KV cache of type ") + cpu::kv_type_name(prefix->geometry().type) +
                    " into one of type " + cpu::kv_type_name(geometry().type));
    if (n_prefix > n_ctx) fail_argument("the prefix is longer than the context");
  } else {
    n_prefix = 0;
  }
  const bool share = prefix && shareable_ && prefix->shareable_ && prefix->pool_ == pool_;
  const int64_t n_shared = share ? n_prefix / kPageTokens : 0;
  const int64_t commitment = capacity - n_shared;
  if (!pool_->try_commit(commitment)) {
    const KvPool::Usage u = pool_->usage();
    fail(LLM_ERR_OUT_OF_MEMORY,
         "the KV pool cannot back this session: it needs " + std::to_string(commitment) + " pages of " +
             std::to_string(kPageTokens) + " tokens (" + std::to_string(commitment * geometry().page_bytes()) +
             " bytes) but the pool has " + std::to_string(pool_->n_pages() - u.used - u.committed) +
             " of its " + std::to_string(pool_->n_pages()) + " pages free");
  }
  committed_ = commitment;
  for (int64_t i = 0; i < n_shared; ++i) {
    pages_[static_cast<size_t>(i)] = prefix->pages_[static_cast<size_t>(i)];
    pool_->retain(pages_[static_cast<size_t>(i)]);
  }
  n_pages_ = n_shared;
  const size_t page_bytes = geometry().page_bytes();
  for (int64_t i = n_shared; i < pages_for(n_prefix); ++i) {
    pages_[static_cast<size_t>(i)] = pool_->take();
    --committed_;
    ++n_pages_;
    pool_->backend().copy(pool_->page(pages_[static_cast<size_t>(i)]),
                          prefix->pool().page(prefix->pages_[static_cast<size_t>(i)]), page_bytes);
  }
}

KvSequence::~KvSequence() {
  pool_->release_and_commit(pages_.data(), n_pages_, -committed_);
}

int64_t KvSequence::needed_commitment(int64_t held) const {
  int64_t need = pages_for(n_ctx_) - n_pages_;
  const int64_t next = held / kPageTokens;
  if (held % kPageTokens != 0 && next < n_pages_ && pool_->shared(pages_[static_cast<size_t>(next)])) ++need;
  return need;
}

void KvSequence::make_private(int64_t index) {
  int32_t &slot = pages_[static_cast<size_t>(index)];
  if (!pool_->shared(slot)) return;
  const int32_t copy = pool_->take();
  --committed_;
  pool_->backend().copy(pool_->page(copy), pool_->page(slot), geometry().page_bytes());
  pool_->release(slot);
  slot = copy;
}

void KvSequence::prepare_write(int64_t first, int64_t n) {
  if (n <= 0) return;
  const int64_t last = (first + n - 1) / kPageTokens;
  // Only the page holding `first` can be shared: pages past it were never
  // handed to another sequence (see the constructor and truncate).
  if (first / kPageTokens < n_pages_) make_private(first / kPageTokens);
  while (n_pages_ <= last) {
    pages_[static_cast<size_t>(n_pages_)] = pool_->take();
    --committed_;
    ++n_pages_;
  }
}

void KvSequence::truncate(int64_t held, int64_t n_tokens) {
  if (n_tokens >= held) return;
  const int64_t keep = pages_for(n_tokens);
  const int64_t drop = std::max<int64_t>(0, n_pages_ - keep);
  // Commitment after the change: the dropped pages come back as future pages,
  // plus one if the page that the next write lands in is shared.
  int64_t need = pages_for(n_ctx_) - (n_pages_ - drop);
  const int64_t next = n_tokens / kPageTokens;
  if (n_tokens % kPageTokens != 0 && next < keep && pool_->shared(pages_[static_cast<size_t>(next)])) ++need;
  if (!pool_->release_and_commit(pages_.data() + keep, drop, need - committed_))
    fail(LLM_ERR_OUT_OF_MEMORY,
         "cannot truncate to " + std::to_string(n_tokens) +
             " tokens: the shared page there must be copied before it is written, and the KV pool has no "
             "page left to commit");
  n_pages_ -= drop;
  committed_ = need;
  (void)held;
}

cpu::KvLayerView KvSequence::layer_view(int64_t layer) const {
  const KvGeometry &g = geometry();
  cpu::KvLayerView v;
  v.type = g.type;
  v.head_dim = g.head_dim;
  v.row_bytes = g.row_bytes();
  v.k_base = pool_->base() + layer * g.layer_stride();
  v.v_base = v.k_base + g.kind_stride();
  v.pages = pages_.data();
  v.page_tokens = kPageTokens;
  v.page_stride = g.page_bytes();
  v.head_stride = g.head_stride();
  return v;
}

}  // namespace llm
