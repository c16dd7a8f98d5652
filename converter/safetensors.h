// Reader for Hugging Face safetensors checkpoints: one `model.safetensors` or
// shards listed by `model.safetensors.index.json`. Files are memory-mapped
// read-only; tensor data is never copied to the heap except through
// read_f32(), which converts a caller-chosen range so that large tensors can
// be streamed in chunks.
//
// File layout (https://github.com/huggingface/safetensors): u64 little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, ...,
// "__metadata__": {...}}, then the data section; data_offsets are relative to
// the start of the data section. Everything read from the file is validated
// when the checkpoint is opened; an unknown dtype is only an error when the
// tensor is converted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llm::convert {

// Element types a safetensors file can declare. Unknown covers names this
// reader does not know (sub-byte float formats and future additions); such
// tensors can be listed but not converted.
enum class SrcDType : uint8_t {
  Bool, U8, I8, F8_E4M3, F8_E5M2, F8_E8M0, U16, I16, F16, BF16,
  U32, I32, F32, U64, I64, F64, Unknown
};

// Bytes per element; 0 for Unknown.
size_t src_dtype_size(SrcDType dtype);

struct SrcTensor {
  std::string name;
  SrcDType dtype = SrcDType::Unknown;
  std::string dtype_name;       // as written in the file, e.g. "BF16"
  std::vector<int64_t> shape;   // empty for a scalar
  uint64_t numel = 0;           // product of shape (1 for a scalar)
  const uint8_t *data = nullptr;  // into the mapping; NOT aligned: use memcpy
  uint64_t size = 0;            // bytes (numel * element size for known dtypes)
  std::string file;             // path of the file holding it
};

// All tensors of one checkpoint. Move-only; the mappings (and so every
// SrcTensor::data pointer) live as long as the Checkpoint.
class Checkpoint {
 public:
  // `path` is a checkpoint folder (model.safetensors is preferred, as
  // transformers does, then model.safetensors.index.json), a .safetensors
  // file or a *.index.json file. Errors (llm::Error): LLM_ERR_IO when nothing
  // can be found or opened, LLM_ERR_FORMAT for malformed files, naming the
  // file and tensor.
  static Checkpoint open(const std::string &path);

  Checkpoint(Checkpoint &&) noexcept;
  Checkpoint &operator=(Checkpoint &&) noexcept;
  Checkpoint(const Checkpoint &) = delete;
  Checkpoint &operator=(const Checkpoint &) = delete;
  ~Checkpoint();

  const std::string &path() const { return path_; }
  bool has(const std::string &name) const;
  // Throws llm::Error(LLM_ERR_FORMAT, "missing tensor X in PATH").
  const SrcTensor &get(const std::string &name) const;
  std::vector<std::string> names() const;  // sorted
  size_t size() const { return tensors_.size(); }

  // Converts elements [first, first + count) of `t` (row-major order) to
  // float into dst. F32/F16/BF16 are exact, F64 rounds to nearest.
  // LLM_ERR_UNSUPPORTED for other dtypes, LLM_ERR_INVALID_ARGUMENT for a
  // range outside the tensor.
  void read_f32(const SrcTensor &t, uint64_t first, uint64_t count, float *dst) const;

  // Drops the tensor's pages from this process's resident memory (they are
  // read again from the file if used later), so converting a checkpoint
  // tensor by tensor keeps peak memory far below the checkpoint size.
  void release(const SrcTensor &t) const;
  // Same for elements [first, first + count) of the tensor.
  void release(const SrcTensor &t, uint64_t first, uint64_t count) const;

 private:
  class Mapping;
  Checkpoint() = default;
  void add_file(const std::string &file);

  std::string path_;
  std::vector<std::unique_ptr<Mapping>> mappings_;
  std::map<std::string, SrcTensor> tensors_;
};

}  // namespace llm::convert
