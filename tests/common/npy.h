// Minimal reader for the little-endian, C-ordered .npy arrays used as
// reference data (float32 / int32 / int64). Test-only.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm::test {

struct NpyArray {
  std::string dtype;             // "<f4", "<i4", "<i8"
  std::vector<int64_t> shape;
  std::vector<char> bytes;

  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  template <class T>
  const T *as() const { return reinterpret_cast<const T *>(bytes.data()); }
  // Values as int64 regardless of stored integer width.
  std::vector<int64_t> ints() const {
    std::vector<int64_t> out(size());
    for (int64_t i = 0; i < size(); ++i)
      out[i] = dtype == "<i4" ? as<int32_t>()[i] : as<int64_t>()[i];
    return out;
  }
};

inline NpyArray load_npy(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error("not npy: " + path);
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t h;
    f.read(reinterpret_cast<char *>(&h), 2);
    header_len = h;
  } else {
    f.read(reinterpret_cast<char *>(&header_len), 4);
  }
  std::string header(header_len, '\0');
  f.read(header.data(), header_len);
  NpyArray a;
  auto field = [&](const std::string &key) {
    size_t p = header.find("'" + key + "'");
    if (p == std::string::npos) throw std::runtime_error("npy header lacks " + key);
    return header.substr(header.find(':', p) + 1);
  };
  std::string d = field("descr");
  a.dtype = d.substr(d.find('\'') + 1, 3);
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    throw std::runtime_error("fortran order npy not supported");
  std::string s = field("shape");
  s = s.substr(s.find('(') + 1, s.find(')') - s.find('(') - 1);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    std::string tok = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (tok.find_first_of("0123456789") != std::string::npos) a.shape.push_back(std::stoll(tok));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  size_t elem = a.dtype == "<i8" ? 8 : 4;
  a.bytes.resize(static_cast<size_t>(a.size()) * elem);
  f.read(a.bytes.data(), static_cast<std::streamsize>(a.bytes.size()));
  if (!f) throw std::runtime_error("truncated npy: " + path);
  return a;
}

}  // namespace llm::test
