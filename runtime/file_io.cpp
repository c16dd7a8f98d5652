#include "runtime/file_io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <unistd.h>

#include "format/error.h"

namespace llm {
namespace {

struct FileCloser {
  void operator()(std::FILE *f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

[[noreturn]] void fail_io(const std::string &what, const std::string &path) {
  fail(LLM_ERR_IO, what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

std::vector<uint8_t> read_whole_file(const std::string &path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) fail_io("cannot open", path);
  if (std::fseek(f.get(), 0, SEEK_END) != 0) fail_io("cannot seek in", path);
  const long size = std::ftell(f.get());
  if (size < 0) fail_io("cannot tell the size of", path);
  std::rewind(f.get());
  std::vector<uint8_t> data(static_cast<size_t>(size));
  if (size > 0 && std::fread(data.data(), 1, data.size(), f.get()) != data.size()) fail_io("cannot read", path);
  return data;
}

void write_file_atomically(const std::string &path, const uint8_t *data, size_t size) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    File f(std::fopen(tmp.c_str(), "wb"));
    if (!f) fail_io("cannot create", tmp);
    const bool ok = (size == 0 || std::fwrite(data, 1, size, f.get()) == size) && std::fflush(f.get()) == 0 &&
                    ::fsync(::fileno(f.get())) == 0;
    if (!ok) {
      const int err = errno;
      f.reset();
      std::remove(tmp.c_str());
      errno = err;
      fail_io("cannot write", tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    errno = err;
    fail_io("cannot rename the state file onto", path);
  }
}

}  // namespace llm
