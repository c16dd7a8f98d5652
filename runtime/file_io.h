// Whole-file reads and atomic writes for small library-owned files (session
// states). Failures throw llm::Error(LLM_ERR_IO) naming the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace llm {

std::vector<uint8_t> read_whole_file(const std::string &path);
// Writes to a temporary file beside `path`, then renames it over `path`, so a
// reader never sees a partial file.
void write_file_atomically(const std::string &path, const uint8_t *data, size_t size);

}  // namespace llm
