// Host memory for libllm's large, long-lived blocks (session arenas). Goes
// through mimalloc when built with LLM_MIMALLOC. Every call is counted so tests
// can prove that token generation allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llm {

void *host_alloc(size_t bytes, size_t alignment = 64);  // nullptr on failure
void host_free(void *p);
uint64_t host_alloc_count();  // total host_alloc calls so far (all threads)

}  // namespace llm
