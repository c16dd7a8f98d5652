#include "converter/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "format/error.h"

// Tensor bytes are little-endian and converted with memcpy.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors reader assumes a little-endian host");

namespace llm::convert {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The reference implementation refuses headers above 100 MB; a larger one is
// a corrupt length field, not a real checkpoint.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// An index.json is a small name -> file map; the cap only stops a wrong file.
constexpr uint64_t kMaxIndexBytes = 256ull << 20;

struct DTypeName {
  const char *name;
  SrcDType dtype;
  size_t size;
};

constexpr DTypeName kDTypes[] = {
    {"BOOL", SrcDType::Bool, 1},        {"U8", SrcDType::U8, 1},
    {"I8", SrcDType::I8, 1},            {"F8_E4M3", SrcDType::F8_E4M3, 1},
    {"F8_E5M2", SrcDType::F8_E5M2, 1},  {"F8_E8M0", SrcDType::F8_E8M0, 1},
    {"U16", SrcDType::U16, 2},          {"I16", SrcDType::I16, 2},
    {"F16", SrcDType::F16, 2},          {"BF16", SrcDType::BF16, 2},
    {"U32", SrcDType::U32, 4},          {"I32", SrcDType::I32, 4},
    {"F32", SrcDType::F32, 4},          {"U64", SrcDType::U64, 8},
    {"I64", SrcDType::I64, 8},          {"F64", SrcDType::F64, 8},
};

SrcDType parse_dtype(const std::string &name) {
  for (const DTypeName &d : kDTypes)
    if (name == d.name) return d.dtype;
  return SrcDType::Unknown;
}

[[noreturn]] void fail_tensor(const std::string &file, const std::string &tensor,
                              const std::string &what) {
  fail_format(file + ": tensor '" + tensor + "': " + what);
}

std::string errno_text() { return std::strerror(errno); }

// IEEE binary16 -> binary32. Every half value is exactly representable.
float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, or NaN keeping its payload
  } else if (exponent != 0) {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else {
    // Zero or subnormal: mantissa * 2^-24, exact in float (a 10-bit integer
    // times a power of two).
    float magnitude = float(mantissa) * 0x1p-24f;
    std::memcpy(&bits, &magnitude, 4);
    bits |= sign;
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// bfloat16 is the top half of a binary32.
float bf16_to_f32(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

template <class Src, class Convert>
void convert_range(const uint8_t *src, uint64_t count, float *dst, Convert convert) {
  for (uint64_t i = 0; i < count; ++i) {
    Src v;
    std::memcpy(&v, src + i * sizeof(Src), sizeof(Src));  // src may be unaligned
    dst[i] = convert(v);
  }
}

uint64_t read_u64_le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A non-negative JSON integer, or fail.
uint64_t json_uint(const json &v, const std::string &file, const std::string &tensor,
                   const char *what) {
  if (!v.is_number_unsigned()) fail_tensor(file, tensor, std::string(what) + " must be non-negative integers");
  return v.get<uint64_t>();
}

}  // namespace

size_t src_dtype_size(SrcDType dtype) {
  for (const DTypeName &d : kDTypes)
    if (d.dtype == dtype) return d.size;
  return 0;
}

// A read-only mapping of a whole file, unmapped on destruction.
class Checkpoint::Mapping {
 public:
  explicit Mapping(const std::string &path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(LLM_ERR_IO, "cannot open " + path + ": " + errno_text());
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(LLM_ERR_IO, "cannot read " + path + ": not a regular file");
    }
    size_ = uint64_t(st.st_size);
    if (size_ < 8) {
      ::close(fd);
      fail_format(path + ": file is " + std::to_string(size_) +
                  " bytes, too small for a safetensors header");
    }
    void *p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);  // the mapping keeps the file referenced
    if (p == MAP_FAILED) fail(LLM_ERR_IO, "cannot map " + path + ": " + errno_text());
    base_ = static_cast<const uint8_t *>(p);
  }
  ~Mapping() { ::munmap(const_cast<uint8_t *>(base_), size_); }
  Mapping(const Mapping &) = delete;
  Mapping &operator=(const Mapping &) = delete;

  const std::string &path() const { return path_; }
  const uint8_t *base() const { return base_; }
  uint64_t size() const { return size_; }

 private:
  std::string path_;
  const uint8_t *base_ = nullptr;
  uint64_t size_ = 0;
};

namespace {

// What the parsing helpers need of a mapped file.
struct FileView {
  const std::string &path;
  const uint8_t *base;
  uint64_t size;
};

// Checks the length prefix and parses the JSON header; sets *data_start to
// the file offset of the data section.
json parse_header(const FileView &f, uint64_t *data_start) {
  const uint64_t len = read_u64_le(f.base);
  if (len > f.size - 8 || len > kMaxHeaderBytes) {
    fail_format(f.path + ": header length " + std::to_string(len) + " exceeds " +
                (len > kMaxHeaderBytes ? "the 100 MB limit" : "the file size " + std::to_string(f.size)) +
                " (not a safetensors file?)");
  }
  const char *text = reinterpret_cast<const char *>(f.base + 8);
  // The format requires the header to be a JSON object, so it starts with '{'.
  json header = json::parse(text, text + len, nullptr, /*allow_exceptions=*/false);
  if (len == 0 || text[0] != '{' || header.is_discarded() || !header.is_object())
    fail_format(f.path + ": header is not a JSON object (not a safetensors file?)");
  *data_start = 8 + len;
  return header;
}

// Element count of `shape`, failing on negative dimensions or overflow.
uint64_t shape_numel(const json &shape, const std::string &file, const std::string &name,
                     std::vector<int64_t> *dims) {
  if (!shape.is_array()) fail_tensor(file, name, "'shape' must be an array");
  uint64_t numel = 1;
  for (const json &d : shape) {
    const uint64_t dim = json_uint(d, file, name, "'shape' entries");
    if (dim > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(numel, dim, &numel))
      fail_tensor(file, name, "element count of shape " + shape.dump() + " overflows");
    dims->push_back(int64_t(dim));
  }
  return numel;
}

// One header entry, validated against the data section [data_start, f.size).
SrcTensor parse_entry(const FileView &f, uint64_t data_start, const std::string &name,
                      const json &entry) {
  if (!entry.is_object()) fail_tensor(f.path, name, "entry is not a JSON object");
  for (const char *key : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(key)) fail_tensor(f.path, name, std::string("'") + key + "' is missing");
  const json &dtype = entry["dtype"];
  if (!dtype.is_string()) fail_tensor(f.path, name, "'dtype' must be a string");

  SrcTensor t;
  t.name = name;
  t.file = f.path;
  t.dtype_name = dtype.get<std::string>();
  t.dtype = parse_dtype(t.dtype_name);
  t.numel = shape_numel(entry["shape"], f.path, name, &t.shape);

  const json &offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    fail_tensor(f.path, name, "'data_offsets' must be [begin, end]");
  const uint64_t begin = json_uint(offsets[0], f.path, name, "'data_offsets'");
  const uint64_t end = json_uint(offsets[1], f.path, name, "'data_offsets'");
  const uint64_t data_size = f.size - data_start;
  const std::string span = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
  if (begin > end) fail_tensor(f.path, name, span + " end before they begin");
  if (end > data_size)
    fail_tensor(f.path, name, span + " lie outside the data section of " + std::to_string(data_size) + " bytes");
  t.size = end - begin;
  // Sizes of unknown dtypes cannot be checked; they are refused at conversion.
  const uint64_t elem = src_dtype_size(t.dtype);
  uint64_t expected = 0;
  if (elem != 0 && (__builtin_mul_overflow(t.numel, elem, &expected) || expected != t.size)) {
    fail_tensor(f.path, name, "data_offsets span " + std::to_string(t.size) + " bytes but " + t.dtype_name +
                                  " shape " + entry["shape"].dump() + " needs " +
                                  (expected ? std::to_string(expected) : std::string("more than 2^64")));
  }
  t.data = f.base + data_start + begin;
  return t;
}

// Overlapping byte ranges are never written by a real serializer; they would
// let one corrupt file alias tensors.
void check_no_overlap(const std::string &file, std::vector<std::pair<uint64_t, const SrcTensor *>> spans) {
  std::sort(spans.begin(), spans.end(),
            [](const auto &a, const auto &b) { return a.first < b.first; });
  for (size_t i = 1; i < spans.size(); ++i) {
    const SrcTensor &prev = *spans[i - 1].second;
    if (spans[i - 1].first + prev.size > spans[i].first)
      fail_format(file + ": tensors '" + prev.name + "' and '" + spans[i].second->name + "' overlap");
  }
}

std::string read_small_file(const std::string &path, uint64_t cap) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(LLM_ERR_IO, "cannot open " + path + ": " + errno_text());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail(LLM_ERR_IO, "cannot read " + path);
  std::string s = text.str();
  if (s.size() > cap) fail_format(path + ": " + std::to_string(s.size()) + " bytes is too large");
  return s;
}

// Shard file name -> ok to open: a relative path that stays inside the folder.
void check_shard_name(const std::string &index_path, const std::string &tensor, const std::string &file) {
  const fs::path p(file);
  bool escapes = file.empty() || p.is_absolute();
  for (const fs::path &part : p) escapes = escapes || part == "..";
  if (escapes)
    fail_format(index_path + ": weight_map['" + tensor + "'] = '" + file + "' is not a file name in the folder");
}

// weight_map of a sharded checkpoint's index (tensor name -> shard file).
std::map<std::string, std::string> read_weight_map(const std::string &index_path) {
  const json index = json::parse(read_small_file(index_path, kMaxIndexBytes), nullptr, false);
  if (index.is_discarded() || !index.is_object()) fail_format(index_path + ": not a JSON object");
  const auto it = index.find("weight_map");
  if (it == index.end() || !it->is_object() || it->empty())
    fail_format(index_path + ": 'weight_map' is missing or not a non-empty object");
  std::map<std::string, std::string> map;
  for (const auto &[tensor, file] : it->items()) {
    if (!file.is_string()) fail_format(index_path + ": weight_map['" + tensor + "'] is not a string");
    check_shard_name(index_path, tensor, file.get<std::string>());
    map[tensor] = file.get<std::string>();
  }
  return map;
}

bool is_regular(const fs::path &p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool ends_with(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Checkpoint::Checkpoint(Checkpoint &&) noexcept = default;
Checkpoint &Checkpoint::operator=(Checkpoint &&) noexcept = default;
Checkpoint::~Checkpoint() = default;

void Checkpoint::add_file(const std::string &file) {
  mappings_.push_back(std::make_unique<Mapping>(file));
  const Mapping &m = *mappings_.back();
  const FileView view{m.path(), m.base(), m.size()};
  uint64_t data_start = 0;
  const json header = parse_header(view, &data_start);

  std::vector<std::pair<uint64_t, const SrcTensor *>> spans;
  for (const auto &[name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail_format(file + ": '__metadata__' is not a JSON object");
      continue;
    }
    SrcTensor t = parse_entry(view, data_start, name, entry);
    const auto [it, inserted] = tensors_.emplace(name, std::move(t));
    if (!inserted) fail_format("tensor '" + name + "' is in both " + it->second.file + " and " + file);
    if (it->second.size > 0) spans.emplace_back(uint64_t(it->second.data - m.base()), &it->second);
  }
  check_no_overlap(file, std::move(spans));
}

Checkpoint Checkpoint::open(const std::string &path) {
  Checkpoint ckpt;
  ckpt.path_ = path;
  const fs::path p(path);
  std::string single, index;
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (is_regular(p / "model.safetensors")) single = (p / "model.safetensors").string();
    else if (is_regular(p / "model.safetensors.index.json")) index = (p / "model.safetensors.index.json").string();
    else fail(LLM_ERR_IO, path + ": neither model.safetensors nor model.safetensors.index.json found");
  } else if (is_regular(p)) {
    (ends_with(path, ".index.json") ? index : single) = path;
  } else {
    fail(LLM_ERR_IO, "cannot open checkpoint " + path + ": no such file or folder");
  }

  if (!single.empty()) {
    ckpt.add_file(single);
    return ckpt;
  }
  const std::map<std::string, std::string> weight_map = read_weight_map(index);
  const fs::path folder = fs::path(index).parent_path();
  std::set<std::string> shards;
  for (const auto &[tensor, file] : weight_map) shards.insert((folder / file).string());
  for (const std::string &shard : shards) ckpt.add_file(shard);
  // The index is what tools trust to find a tensor; a disagreement means the
  // folder mixes files of different checkpoints.
  for (const auto &[tensor, file] : weight_map) {
    const auto it = ckpt.tensors_.find(tensor);
    const std::string shard = (folder / file).string();
    if (it == ckpt.tensors_.end() || it->second.file != shard)
      fail_format(index + ": weight_map puts tensor '" + tensor + "' in " + file + ", which does not hold it");
  }
  return ckpt;
}

bool Checkpoint::has(const std::string &name) const { return tensors_.count(name) != 0; }

const SrcTensor &Checkpoint::get(const std::string &name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) fail_format("missing tensor " + name + " in " + path_);
  return it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto &entry : tensors_) out.push_back(entry.first);
  return out;
}

void Checkpoint::read_f32(const SrcTensor &t, uint64_t first, uint64_t count, float *dst) const {
  if (first > t.numel || count > t.numel - first) {
    fail_argument("tensor " + t.name + ": elements [" + std::to_string(first) + ", +" + std::to_string(count) +
                  ") outside its " + std::to_string(t.numel) + " elements");
  }
  const size_t elem = src_dtype_size(t.dtype);
  const uint8_t *src = t.data + first * elem;
  switch (t.dtype) {
    case SrcDType::F32: std::memcpy(dst, src, count * 4); break;
    case SrcDType::F16: convert_range<uint16_t>(src, count, dst, f16_to_f32); break;
    case SrcDType::BF16: convert_range<uint16_t>(src, count, dst, bf16_to_f32); break;
    case SrcDType::F64:
      convert_range<double>(src, count, dst, [](double v) { return static_cast<float>(v); });
      break;
    default:
      fail(LLM_ERR_UNSUPPORTED, t.file + ": tensor '" + t.name + "' has dtype " + t.dtype_name +
                                    ", which cannot be converted (supported: F32, F16, BF16, F64)");
  }
}

void Checkpoint::release(const SrcTensor &t) const { release(t, 0, t.numel); }

void Checkpoint::release(const SrcTensor &t, uint64_t first, uint64_t count) const {
  if (t.size == 0 || t.numel == 0 || first >= t.numel) return;
  count = std::min(count, t.numel - first);
  const uint64_t elem = t.size / t.numel;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data) + first * elem) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(t.data) + (first + count) * elem;
  // Advisory only: on failure the pages simply stay resident.
  ::madvise(reinterpret_cast<void *>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace llm::convert
