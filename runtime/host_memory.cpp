#include "runtime/host_memory.h"

#include <atomic>
#include <cstdlib>


namespace llm {

static std::atomic<uint64_t> g_alloc_count{0};

void *host_alloc(size_t bytes, size_t alignment) {
  g_alloc_count.fetch_add(1, std::memory_order_relaxed);
  if (bytes == 0) bytes = alignment;
  const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  if (rounded < bytes) return nullptr;  // overflow
  return std::aligned_alloc(alignment, rounded);
}

void host_free(void *p) {
  std::free(p);
}

uint64_t host_alloc_count() { return g_alloc_count.load(std::memory_order_relaxed); }

}  // namespace llm
