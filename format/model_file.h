// The libllm model file: the only code that knows its byte layout.
//
//   [0, 64)            FileHeader (little-endian, self-checksummed)
//   [data_offset, ..)  tensor data segments, each starting on a 4096-byte
//                      boundary, referenced by absolute offset
//   [metadata_offset, +metadata_size)
//                      FlatBuffer (schema format/llm_model.fbs, identifier
//                      "LLMF"): hyper-parameters, tokenizer, generation
//                      defaults and the tensor table
//
// The converter writes tensors first (streamed, checksummed with XXH3-64) and
// the metadata last, then fills in the header. The reader maps the file,
// checks the header, verifies the FlatBuffer and every tensor's range, and
// hands out pointers into the mapping (no copies of tensor data).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/model_meta.h"
#include "format/tokenizer_spec.h"

namespace llm {

constexpr uint16_t kFormatMajor = 2;          // what this writer writes
constexpr uint16_t kOldestReadableMajor = 1;  // readers also read 1.x files
constexpr uint16_t kFormatMinor = 0;
constexpr uint64_t kTensorAlignment = 4096;
constexpr char kFileMagic[4] = {'L', 'L', 'M', 'F'};

struct FileHeader {
  char magic[4];
  uint16_t format_major;
  uint16_t format_minor;
  uint64_t metadata_offset;
  uint64_t metadata_size;
  uint64_t data_offset;
  uint64_t data_size;
  uint64_t file_size;
  uint64_t metadata_checksum;  // XXH3-64 of the metadata bytes
  uint64_t header_checksum;    // XXH3-64 of the 56 bytes before this field
};
static_assert(sizeof(FileHeader) == 64, "FileHeader must be 64 bytes");

// Everything in the file except the tokenizer and the tensor table.
struct ModelMetadata {
  std::string name;
  std::string producer;
  Arch arch = Arch::Llama;
  HParams hparams;
  GenerationConfig generation;
  bool vocab_only = false;
  uint64_t parameter_count = 0;
};

struct QuantInfo {
  uint32_t group_size = 0;
  DType scale_dtype = DType::F16;
  uint64_t scales_offset = 0, scales_size = 0;
  uint64_t zeros_offset = 0, zeros_size = 0;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute file offset of the data
  uint64_t size = 0;    // bytes
  uint64_t checksum = 0;
  QuantInfo quant;      // group_size == 0: not quantized

  uint64_t elements() const;
};

// Quantized tensors (I8 / I4): `group_size` elements of a row share one f16
// scale (and, when asymmetric, one zero point). See kernels/cpu/quant.h for
// the byte layout of the values.
struct QuantSpec {
  uint32_t group_size = 0;   // 0: not quantized
  bool zero_points = false;  // asymmetric
};

// Bytes of the scale and zero-point segments of a quantized [rows][cols] tensor.
uint64_t quant_scales_bytes(int64_t rows, int64_t cols, uint32_t group_size);
uint64_t quant_zeros_bytes(int64_t rows, int64_t cols, uint32_t group_size);

// Streams a model file to disk. Usage: open, then for each tensor
// begin_tensor / write (any number of times) / end_tensor, then finish. A
// quantized tensor writes its values, then begin_scales() and the scales, then
// (asymmetric) begin_zeros() and the zero points, each part in any number of
// write() calls.
// Writes to PATH.tmp and renames on finish, so a failed conversion never
// leaves a plausible-looking file behind.
class ModelWriter {
 public:
  explicit ModelWriter(const std::string &path);
  ~ModelWriter();
  ModelWriter(const ModelWriter &) = delete;
  ModelWriter &operator=(const ModelWriter &) = delete;

  void begin_tensor(const std::string &name, DType dtype, std::vector<int64_t> shape,
                    QuantSpec quant = QuantSpec());
  void write(const void *data, size_t bytes);
  void begin_scales();
  void begin_zeros();
  void end_tensor();
  void finish(const ModelMetadata &meta, const TokenizerSpec &tokenizer);

  uint64_t bytes_written() const { return pos_; }

 private:
  void write_raw(const void *data, size_t bytes);
  void pad_to(uint64_t alignment);

  std::string path_, tmp_path_;
  FILE *file_ = nullptr;
  uint64_t pos_ = 0;
  std::vector<TensorInfo> tensors_;
  bool in_tensor_ = false;
  enum class Part { Data, Scales, Zeros } part_ = Part::Data;
  bool zero_points_ = false;
  void close_part();
  void *hash_state_ = nullptr;  // XXH3_state_t
  bool finished_ = false;
};

// A read-only, memory-mapped, fully validated model file.
class ModelFile {
 public:
  enum class Verify { Full, None };

  // Maps and validates `path`. Throws llm::Error: LLM_ERR_IO if it cannot be
  // opened or mapped; LLM_ERR_FORMAT (naming the problem) if anything about
  // it is malformed, truncated, corrupt or of another format version.
  static std::unique_ptr<ModelFile> open(const std::string &path, Verify verify);
  // Same checks on bytes already in memory (not copied; must outlive the
  // ModelFile); `data` must be 8-byte aligned. Used by tests and fuzzing.
  static std::unique_ptr<ModelFile> from_memory(const uint8_t *data, size_t size, Verify verify);
  ~ModelFile();

  const ModelMetadata &meta() const { return meta_; }
  const TokenizerSpec &tokenizer() const { return tokenizer_; }
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  const TensorInfo *find(const std::string &name) const;
  const uint8_t *data(const TensorInfo &t) const { return base_ + t.offset; }
  // Bytes at a validated offset (scales and zero points of quantized tensors).
  const uint8_t *data_at(uint64_t offset) const { return base_ + offset; }
  uint64_t size() const { return size_; }
  uint64_t weights_bytes() const { return weights_bytes_; }

  // Verifies every tensor's checksum (done by open() with Verify::Full).
  void verify_checksums() const;

 private:
  ModelFile() = default;
  void parse(Verify verify);

  const uint8_t *base_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
  ModelMetadata meta_;
  TokenizerSpec tokenizer_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
  uint64_t weights_bytes_ = 0;
};

}  // namespace llm
