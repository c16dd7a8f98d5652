// libFuzzer target: see llm::fuzz::session_state in fuzz/fuzz_targets.h.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llm::fuzz::session_state(data, size);
  return 0;
}
