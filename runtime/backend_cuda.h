// Introspection of the CUDA backend, for tests and tools.
#pragma once

#include <cstdint>

#include "runtime/backend.h"

namespace llm {

struct CudaStats {
  uint64_t device_allocs = 0;   // cudaMalloc calls made by the backend
  uint64_t graph_captures = 0;  // decode steps recorded as CUDA graphs
  uint64_t graph_launches = 0;  // graph launches (the capture's first run included)
  uint64_t graph_kernels = 0;   // kernels in the decode step recorded last
};

// False when `backend` is not the CUDA backend (or CUDA is not built).
bool cuda_backend_stats(const Backend &backend, CudaStats *out);
// CUDA devices this process can use (0 without CUDA or without a device).
int cuda_device_count();

}  // namespace llm
