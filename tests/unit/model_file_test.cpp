// Model file format and loader: round trip, and rejection of malformed files
// (truncated, flipped bytes, wrong identifier or version, inconsistent
// shapes) with LLM_ERR_FORMAT, through the C API.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <cstddef>
#include <functional>
#include <memory>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "format/error.h"
#include "format/llm_model_generated.h"
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

// The file `bytes` (metadata last) with its metadata replaced by `meta`,
// under header `h` with the sizes and checksums made consistent again.
std::vector<char> with_metadata(const std::vector<char> &bytes, llm::FileHeader h, const void *meta, size_t size) {
  std::vector<char> out(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(h.metadata_offset));
  const char *m = static_cast<const char *>(meta);
  out.insert(out.end(), m, m + size);
  h.metadata_size = size;
  h.file_size = out.size();
  h.metadata_checksum = XXH3_64bits(meta, size);
  h.header_checksum = XXH3_64bits(&h, offsetof(llm::FileHeader, header_checksum));
  std::memcpy(out.data(), &h, sizeof h);
  return out;
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

// The verifier of the FlatBuffers release in use checks a vector's length
// word for 4-byte alignment only; a crafted file can put the int64 values of
// a tensor's shape at 4 mod 8, which the reader must refuse rather than load
// unaligned (a fuzzing finding). The shape of the first tensor is moved to a
// copy appended to the metadata, once 8-aligned (loads) and once 4 mod 8.
TEST_F(ModelFileTest, MisalignedShapeVectorIsRejected) {
  const llm::FileHeader &h = header_;
  ASSERT_EQ(h.metadata_offset + h.metadata_size, bytes_.size()) << "the metadata is expected last";
  auto moved_shape = [&](bool misaligned) {
    const uint8_t *meta = reinterpret_cast<const uint8_t *>(bytes_.data() + h.metadata_offset);
    const llm::fb::Tensor *t = llm::fb::GetModel(meta)->tensors()->Get(0);
    // The table's first word is the signed distance back to its vtable, whose
    // entry at VT_SHAPE is the field's offset inside the table.
    const size_t table = static_cast<size_t>(reinterpret_cast<const uint8_t *>(t) - meta);
    int32_t to_vtable;
    std::memcpy(&to_vtable, meta + table, 4);
    uint16_t in_table;
    std::memcpy(&in_table, meta + table - to_vtable + llm::fb::Tensor::VT_SHAPE, 2);
    EXPECT_NE(in_table, 0);
    const size_t field = table + in_table;
    std::vector<int64_t> shape(t->shape()->begin(), t->shape()->end());
    std::vector<char> m(bytes_.begin() + static_cast<std::ptrdiff_t>(h.metadata_offset), bytes_.end());
    while (m.size() % 8 != (misaligned ? 0u : 4u)) m.push_back(0);
    const uint32_t n = static_cast<uint32_t>(shape.size());
    const uint32_t rel = static_cast<uint32_t>(m.size() - field);
    std::memcpy(m.data() + field, &rel, 4);
    m.insert(m.end(), reinterpret_cast<const char *>(&n), reinterpret_cast<const char *>(&n) + 4);
    m.insert(m.end(), reinterpret_cast<const char *>(shape.data()),
             reinterpret_cast<const char *>(shape.data() + shape.size()));
    return with_metadata(bytes_, h, m.data(), m.size());
  };
  const std::string p = temp_path("moved_shape.llm");
  std::vector<char> b = moved_shape(false);
  write_all(p, b.data(), b.size());
  EXPECT_EQ(try_load(p), LLM_OK) << llm_last_error();
  b = moved_shape(true);
  write_all(p, b.data(), b.size());
  EXPECT_EQ(try_load(p), LLM_ERR_FORMAT);
  EXPECT_NE(std::string(llm_last_error()).find("shape vector is not 8-byte aligned"), std::string::npos)
      << llm_last_error();
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

// ---- the tokenizer's packed encoding (format 2) and format 1 files ----------

// The byte tokenizer plus merged tokens whose ids need two-byte varints, and
// a 200-byte token whose length does too.
llm::TokenizerSpec merging_tokenizer() {
  llm::TokenizerSpec t = llm::test::byte_tokenizer();
  auto add = [&](const std::string &piece) {
    t.vocab.push_back(piece);
    return static_cast<int32_t>(t.vocab.size() - 1);
  };
  const int32_t ab = add("<0x41><0x42>");           // 'A' = id 3 + 0x41
  const int32_t hi = add("<0xF0><0xF1>");           // ids above 127
  const int32_t abab = add("<0x41><0x42><0x41><0x42>");
  t.merges = {{3 + 0x41, 3 + 0x42, ab}, {3 + 0xF0, 3 + 0xF1, hi}, {ab, ab, abab}};
  add(std::string(200, 'x'));
  add("");  // a hole
  return t;
}

llm::HParams merging_hparams() {
  llm::HParams h = tiny_hparams();
  h.vocab_size = 300;
  return h;
}

// Test-side LEB128 encoder, written independently of the writer's.
void varint(std::vector<uint8_t> &out, uint64_t v) {
  do {
    uint8_t byte = v & 0x7f;
    v >>= 7;
    out.push_back(static_cast<uint8_t>(byte | (v ? 0x80 : 0)));
  } while (v);
}

// Unpacks the metadata of `bytes`, applies `edit`, and writes the file back
// with a consistent header (sizes, checksums, `major` in header and table).
std::vector<char> rewrite_metadata(const std::vector<char> &bytes, uint16_t major,
                                   const std::function<void(llm::fb::ModelT &)> &edit) {
  llm::FileHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  std::unique_ptr<llm::fb::ModelT> m(llm::fb::GetModel(bytes.data() + h.metadata_offset)->UnPack());
  m->format_major = major;
  edit(*m);
  flatbuffers::FlatBufferBuilder b;
  llm::fb::FinishModelBuffer(b, llm::fb::Model::Pack(b, m.get()));
  h.format_major = major;
  return with_metadata(bytes, h, b.GetBufferPointer(), b.GetSize());
}

// Turns the packed tokenizer of a format 2 file into format 1's strings and structs.
void unpack_to_format1(llm::fb::ModelT &m, const llm::TokenizerSpec &t) {
  llm::fb::TokenizerT &tok = *m.tokenizer;
  tok.vocab_bytes.clear();
  tok.vocab_lengths.clear();
  tok.merges_packed.clear();
  tok.vocab = t.vocab;
  for (const llm::MergeSpec &x : t.merges) tok.merges.emplace_back(x.left, x.right);
}

class PackedTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = temp_path("merging.llm");
    write_synthetic_model(path_, merging_hparams(), llm::DType::F32, false, 1, merging_tokenizer());
    bytes_ = read_all(path_);
  }
  // Loads `bytes` through the C API; returns the status.
  llm_status load(const std::vector<char> &bytes) {
    const std::string p = temp_path("edited.llm");
    write_all(p, bytes.data(), bytes.size());
    return try_load(p);
  }
  std::string path_;
  std::vector<char> bytes_;
};

TEST_F(PackedTokenizerTest, RoundTripsVocabularyAndMerges) {
  auto f = llm::ModelFile::open(path_, llm::ModelFile::Verify::Full);
  const llm::TokenizerSpec want = merging_tokenizer();
  EXPECT_EQ(f->tokenizer().vocab, want.vocab);
  ASSERT_EQ(f->tokenizer().merges.size(), want.merges.size());
  for (size_t i = 0; i < want.merges.size(); ++i) {
    EXPECT_EQ(f->tokenizer().merges[i].left, want.merges[i].left);
    EXPECT_EQ(f->tokenizer().merges[i].right, want.merges[i].right);
    EXPECT_EQ(f->tokenizer().merges[i].result, want.merges[i].result);
  }
  EXPECT_EQ(try_load(path_), LLM_OK) << llm_last_error();

  // The stored bytes are exactly the test's own encoding of the same data.
  llm::FileHeader h;
  std::memcpy(&h, bytes_.data(), sizeof h);
  EXPECT_EQ(h.format_major, 2);
  const llm::fb::Tokenizer *tok = llm::fb::GetModel(bytes_.data() + h.metadata_offset)->tokenizer();
  EXPECT_EQ(tok->vocab(), nullptr);
  EXPECT_EQ(tok->merges(), nullptr);
  std::vector<uint8_t> lengths, merges;
  std::string joined;
  for (const std::string &v : want.vocab) {
    varint(lengths, v.size());
    joined += v;
  }
  for (const llm::MergeSpec &m : want.merges) {
    varint(merges, static_cast<uint64_t>(m.left));
    varint(merges, static_cast<uint64_t>(m.right));
  }
  ASSERT_NE(tok->vocab_lengths(), nullptr);
  EXPECT_EQ(std::vector<uint8_t>(tok->vocab_lengths()->begin(), tok->vocab_lengths()->end()), lengths);
  EXPECT_EQ(std::string(tok->vocab_bytes()->begin(), tok->vocab_bytes()->end()), joined);
  EXPECT_EQ(std::vector<uint8_t>(tok->merges_packed()->begin(), tok->merges_packed()->end()), merges);
}

TEST_F(PackedTokenizerTest, Format1FilesStillLoad) {
  const llm::TokenizerSpec want = merging_tokenizer();
  const std::vector<char> v1 = rewrite_metadata(bytes_, 1, [&](llm::fb::ModelT &m) { unpack_to_format1(m, want); });
  const std::string p = temp_path("format1.llm");
  write_all(p, v1.data(), v1.size());
  auto f = llm::ModelFile::open(p, llm::ModelFile::Verify::Full);
  EXPECT_EQ(f->tokenizer().vocab, want.vocab);
  ASSERT_EQ(f->tokenizer().merges.size(), want.merges.size());
  EXPECT_EQ(f->tokenizer().merges[2].result, want.merges[2].result);
  EXPECT_EQ(try_load(p), LLM_OK) << llm_last_error();
  // Format 1 is the bigger encoding: the point of format 2.
  EXPECT_GT(v1.size(), bytes_.size());
}

TEST_F(PackedTokenizerTest, DamagedPackedFieldsAreRejected) {
  struct Case {
    const char *what;
    uint16_t major;
    std::function<void(llm::fb::TokenizerT &)> edit;
    const char *message;
  };
  const llm::TokenizerSpec want = merging_tokenizer();
  const std::vector<Case> cases = {
      {"length varint of six bytes", 2,
       [](llm::fb::TokenizerT &t) { t.vocab_lengths.insert(t.vocab_lengths.end(), {0x80, 0x80, 0x80, 0x80, 0x80, 0x00}); },
       "varint longer than 5 bytes"},
      {"length varint above 32 bits", 2,
       [](llm::fb::TokenizerT &t) { t.vocab_lengths.insert(t.vocab_lengths.end(), {0xff, 0xff, 0xff, 0xff, 0x1f}); },
       "varint exceeds 32 bits"},
      {"length varint cut short", 2, [](llm::fb::TokenizerT &t) { t.vocab_lengths.push_back(0x81); },
       "vocabulary lengths: varint runs past the end"},
      {"length past the bytes", 2, [](llm::fb::TokenizerT &t) { t.vocab_lengths.push_back(5); },
       "runs past the"},
      {"bytes not covered", 2, [](llm::fb::TokenizerT &t) { t.vocab_bytes.push_back('z'); }, "lengths cover"},
      {"odd number of merge ids", 2, [](llm::fb::TokenizerT &t) { t.merges_packed.push_back(3); },
       "merges: varint runs past the end"},
      {"merge id outside the vocabulary", 2,
       [](llm::fb::TokenizerT &t) { t.merges_packed.insert(t.merges_packed.end(), {0xe8, 0x07, 0x03}); },
       "refers to ids outside the vocabulary"},
      {"merge yields no token", 2, [](llm::fb::TokenizerT &t) { t.merges_packed.insert(t.merges_packed.end(), {3, 4}); },
       "yields a token missing from the vocabulary"},
      {"more tokens than the model's vocabulary", 2,
       [](llm::fb::TokenizerT &t) { t.vocab_lengths.insert(t.vocab_lengths.end(), 100, 0); },
       "tokenizer has more tokens than the model's vocabulary of 300"},
      {"format 1: more tokens than the model's vocabulary", 1,
       [&](llm::fb::TokenizerT &t) {
         t.vocab_lengths.clear();
         t.vocab_bytes.clear();
         t.merges_packed.clear();
         t.vocab = want.vocab;
         t.vocab.resize(301);
       },
       "tokenizer has more tokens than the model's vocabulary of 300"},
      {"no vocabulary", 2,
       [](llm::fb::TokenizerT &t) {
         t.vocab_lengths.clear();
         t.vocab_bytes.clear();
       },
       "tokenizer has no vocabulary"},
      {"format 2 with format 1 strings", 2, [](llm::fb::TokenizerT &t) { t.vocab = {"a"}; },
       "format 2 file carries the unpacked tokenizer fields of format 1"},
      {"format 1 with packed fields", 1, [](llm::fb::TokenizerT &t) { t.vocab = {"a"}; },
       "format 1 file carries the packed tokenizer fields of format 2"},
      {"format 1 without vocabulary", 1,
       [](llm::fb::TokenizerT &t) {
         t.vocab_lengths.clear();
         t.vocab_bytes.clear();
         t.merges_packed.clear();
       },
       "tokenizer has no vocabulary"},
      {"format 1 negative merge id", 1,
       [&](llm::fb::TokenizerT &t) {
         t.vocab_lengths.clear();
         t.vocab_bytes.clear();
         t.merges_packed.clear();
         t.vocab = want.vocab;
         t.merges = {llm::fb::Merge(-1, 4)};
       },
       "refers to ids outside the vocabulary"},
  };
  for (const Case &c : cases) {
    const std::vector<char> b =
        rewrite_metadata(bytes_, c.major, [&](llm::fb::ModelT &m) { c.edit(*m.tokenizer); });
    EXPECT_EQ(load(b), LLM_ERR_FORMAT) << c.what;
    EXPECT_NE(std::string(llm_last_error()).find(c.message), std::string::npos)
        << c.what << ": " << llm_last_error();
  }
  // The unedited rewrite loads: the cases fail for their edit, not the rewrite.
  EXPECT_EQ(load(rewrite_metadata(bytes_, 2, [](llm::fb::ModelT &) {})), LLM_OK) << llm_last_error();
}

}  // namespace
