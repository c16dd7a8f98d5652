// Host memory for libllm's large, long-lived blocks (session arenas), from the
// process's own aligned allocator: the library never imposes an allocator on
// its host (the llm tools link mimalloc, which then serves these too). Every
// call is counted so tests can prove that token generation allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llm {

void *host_alloc(size_t bytes, size_t alignment = 64);  // nullptr on failure
void host_free(void *p);
uint64_t host_alloc_count();  // total host_alloc calls so far (all threads)

}  // namespace llm
