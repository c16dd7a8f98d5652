// Model file format and loader: round trip, and rejection of malformed files
// (truncated, flipped bytes, wrong identifier or version, inconsistent
// shapes) with LLM_ERR_FORMAT, through the C API.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "format/error.h"
#include "format/model_file.h"
#include "llm.h"
#include "tests/common/synthetic_model.h"

namespace {

using llm::test::tiny_hparams;
using llm::test::write_synthetic_model;

std::string temp_path(const std::string &name) { return testing::TempDir() + "llm_model_file_" + name; }

std::vector<char> read_all(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

void write_all(const std::string &path, const char *data, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data, static_cast<std::streamsize>(n));
}

llm_status try_load(const std::string &path, int verify = LLM_VERIFY_FULL) {
  llm_model_params p;
  llm_model_params_init(&p);
  p.verify = verify;
  p.n_threads = 1;
  llm_model *m = nullptr;
  llm_status st = llm_model_load(path.c_str(), &p, &m);
  EXPECT_EQ(st == LLM_OK, m != nullptr);
  llm_model_free(m);
  return st;
}

class ModelFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = temp_path("good.llm");
    write_synthetic_model(path_, tiny_hparams());
    bytes_ = read_all(path_);
    ASSERT_GT(bytes_.size(), 4096u);
    std::memcpy(&header_, bytes_.data(), sizeof header_);
  }
  std::string path_;
  std::vector<char> bytes_;
  llm::FileHeader header_;
};

TEST_F(ModelFileTest, RoundTripsMetadataTokenizerAndTensors) {
  auto f = llm::ModelFile::open(path_, llm::ModelFile::Verify::Full);
  EXPECT_EQ(f->meta().hparams.hidden_size, tiny_hparams().hidden_size);
  EXPECT_EQ(f->meta().hparams.num_kv_heads, tiny_hparams().num_kv_heads);
  EXPECT_EQ(f->meta().generation.eos_ids, std::vector<int32_t>{2});
  EXPECT_EQ(f->tokenizer().vocab, llm::test::byte_tokenizer().vocab);
  EXPECT_EQ(f->tensors().size(), 3u + 9u * tiny_hparams().num_layers);
  for (const llm::TensorInfo &t : f->tensors()) {
    EXPECT_EQ(t.offset % llm::kTensorAlignment, 0u) << t.name;
    EXPECT_NE(t.checksum, 0u);
  }
  ASSERT_NE(f->find("blk.1.ffn_down.weight"), nullptr);
  EXPECT_EQ(f->find("blk.1.ffn_down.weight")->shape, (std::vector<int64_t>{32, 48}));
  EXPECT_EQ(try_load(path_), LLM_OK);
}

TEST_F(ModelFileTest, TruncatedFilesAreRejected) {
  std::vector<size_t> cuts = {0, 1, 4, 63, 64, 65, 4095, 4096, 5000, bytes_.size() / 2,
                              header_.metadata_offset, header_.metadata_offset + 17,
                              bytes_.size() - 100, bytes_.size() - 1};
  for (size_t stride = bytes_.size() / 23, c = stride; c < bytes_.size(); c += stride) cuts.push_back(c);
  std::string p = temp_path("truncated.llm");
  for (size_t cut : cuts) {
    write_all(p, bytes_.data(), cut);
    EXPECT_EQ(try_load(p), LLM_ERR_FORMAT) << "truncated at " << cut;
    EXPECT_NE(std::string(llm_last_error()).find(p), std::string::npos);
  }
}

TEST_F(ModelFileTest, FlippedBytesAreRejected) {
  std::string p = temp_path("flipped.llm");
  std::vector<size_t> offsets;
  for (size_t i = 0; i < sizeof(llm::FileHeader); ++i) offsets.push_back(i);
  for (size_t i = header_.metadata_offset; i < bytes_.size(); i += 97) offsets.push_back(i);
  for (size_t i = header_.data_offset; i < header_.data_offset + header_.data_size; i += 4099) {
    // Only bytes inside a tensor (not the zero padding between them) carry data.
    auto f = llm::ModelFile::open(path_, llm::ModelFile::Verify::None);
    for (const llm::TensorInfo &t : f->tensors())
      if (i >= t.offset && i < t.offset + t.size) offsets.push_back(i);
  }
  ASSERT_GT(offsets.size(), 100u);
  for (size_t off : offsets) {
    std::vector<char> b = bytes_;
    b[off] = static_cast<char>(b[off] ^ 0x5a);
    write_all(p, b.data(), b.size());
    EXPECT_EQ(try_load(p), LLM_ERR_FORMAT) << "flipped byte at " << off;
  }
}

TEST_F(ModelFileTest, ChecksumsCanBeSkippedForSpeed) {
  auto f = llm::ModelFile::open(path_, llm::ModelFile::Verify::None);
  const llm::TensorInfo *t = f->find("blk.0.attn_q.weight");
  ASSERT_NE(t, nullptr);
  std::vector<char> b = bytes_;
  b[t->offset + 5] ^= 1;
  std::string p = temp_path("weights_flipped.llm");
  write_all(p, b.data(), b.size());
  EXPECT_EQ(try_load(p, LLM_VERIFY_FULL), LLM_ERR_FORMAT);
  EXPECT_NE(std::string(llm_last_error()).find("blk.0.attn_q.weight"), std::string::npos);
  EXPECT_EQ(try_load(p, LLM_VERIFY_NONE), LLM_OK);
}

TEST_F(ModelFileTest, WrongIdentifierVersionAndGarbage) {
  std::string p = temp_path("bad.llm");
  std::vector<char> b = bytes_;
  std::memcpy(b.data(), "GGUF", 4);
  write_all(p, b.data(), b.size());
  EXPECT_EQ(try_load(p), LLM_ERR_FORMAT);
  EXPECT_NE(std::string(llm_last_error()).find("magic"), std::string::npos);

  b = bytes_;
  uint16_t major = llm::kFormatMajor + 1;
  std::memcpy(b.data() + 4, &major, 2);
  write_all(p, b.data(), b.size());
  EXPECT_EQ(try_load(p), LLM_ERR_FORMAT);
  EXPECT_NE(std::string(llm_last_error()).find("version"), std::string::npos);

  // The FlatBuffer's own identifier is checked too.
  b = bytes_;
  std::memcpy(b.data() + header_.metadata_offset + 4, "XXXX", 4);
  write_all(p, b.data(), b.size());
  EXPECT_EQ(try_load(p), LLM_ERR_FORMAT);

  std::vector<char> garbage(10000);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 7919 % 251);
  write_all(p, garbage.data(), garbage.size());
  EXPECT_EQ(try_load(p), LLM_ERR_FORMAT);
  write_all(p, nullptr, 0);
  EXPECT_EQ(try_load(p), LLM_ERR_FORMAT);
  EXPECT_EQ(try_load(testing::TempDir()), LLM_ERR_IO);  // a directory
}

TEST(ModelFileShapes, ShapesAreCheckedAgainstHyperParameters) {
  std::string p = temp_path("shape.llm");
  llm::HParams h = tiny_hparams();
  write_synthetic_model(p, h);
  // Same tensors, but the file claims a larger hidden size.
  auto f = llm::ModelFile::open(p, llm::ModelFile::Verify::None);
  std::vector<char> bytes = read_all(p);
  std::string lied = temp_path("lied.llm");
  {
    llm::ModelWriter w(lied);
    for (const llm::TensorInfo &t : f->tensors()) {
      w.begin_tensor(t.name, t.dtype, t.shape);
      w.write(f->data(t), t.size);
      w.end_tensor();
    }
    llm::ModelMetadata meta = f->meta();
    meta.hparams.intermediate_size = 64;
    w.finish(meta, f->tokenizer());
  }
  EXPECT_EQ(try_load(lied), LLM_ERR_FORMAT);
  EXPECT_NE(std::string(llm_last_error()).find("blk.0.ffn_gate.weight"), std::string::npos) << llm_last_error();

  // A missing tensor is named.
  std::string missing = temp_path("missing.llm");
  {
    llm::ModelWriter w(missing);
    for (const llm::TensorInfo &t : f->tensors()) {
      if (t.name == "blk.1.attn_v.weight") continue;
      w.begin_tensor(t.name, t.dtype, t.shape);
      w.write(f->data(t), t.size);
      w.end_tensor();
    }
    w.finish(f->meta(), f->tokenizer());
  }
  EXPECT_EQ(try_load(missing), LLM_ERR_FORMAT);
  EXPECT_NE(std::string(llm_last_error()).find("missing tensor blk.1.attn_v.weight"), std::string::npos);
}

TEST(ModelFileShapes, WriterRejectsSizeMismatch) {
  llm::ModelWriter w(temp_path("mismatch.llm"));
  w.begin_tensor("x", llm::DType::F32, {4});
  float v[3] = {1, 2, 3};
  w.write(v, sizeof v);
  EXPECT_THROW(w.end_tensor(), llm::Error);
}

TEST(VocabOnly, LoadsTokenizesButHasNoSessions) {
  std::string p = temp_path("vocab.llm");
  write_synthetic_model(p, tiny_hparams(), llm::DType::F32, /*vocab_only=*/true);
  llm_model *m = nullptr;
  ASSERT_EQ(llm_model_load(p.c_str(), nullptr, &m), LLM_OK) << llm_last_error();
  llm_model_info info;
  info.struct_size = sizeof info;
  ASSERT_EQ(llm_model_get_info(m, &info), LLM_OK);
  EXPECT_EQ(info.vocab_only, 1);
  llm_token ids[8];
  size_t n = 0;
  ASSERT_EQ(llm_tokenize(m, "hi", 2, 1, ids, 8, &n), LLM_OK) << llm_last_error();
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3 + 'h');
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(m, nullptr, &s), LLM_ERR_UNSUPPORTED);
  llm_model_free(m);
}

}  // namespace
