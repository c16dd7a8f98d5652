#include "runtime/host_memory.h"

#include <atomic>
#include <cstdlib>

#if defined(LLM_USE_MIMALLOC)
#include <mimalloc.h>
#endif

namespace llm {

static std::atomic<uint64_t> g_alloc_count{0};

void *host_alloc(size_t bytes, size_t alignment) {
  g_alloc_count.fetch_add(1, std::memory_order_relaxed);
  if (bytes == 0) bytes = alignment;
#if defined(LLM_USE_MIMALLOC)
  return mi_malloc_aligned(bytes, alignment);
#else
  size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  return std::aligned_alloc(alignment, rounded);
#endif
}

void host_free(void *p) {
#if defined(LLM_USE_MIMALLOC)
  mi_free(p);
#else
  std::free(p);
#endif
}

uint64_t host_alloc_count() { return g_alloc_count.load(std::memory_order_relaxed); }

}  // namespace llm
