// The failure catalogue (docs/failures.md): one test per documented case of
// bad input or exhausted limit, each checking the status code and the key
// part of the message the user gets. docs/failures.md names these tests;
// change both together.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "converter/convert.h"
#include "converter/hf_config.h"
#include "converter/hf_tokenizer.h"
#include "converter/safetensors.h"
#include "converter/synthetic.h"
#include "format/error.h"
#include "format/model_file.h"
#include "llm.h"
#include "runtime/tokenizer.h"
#include "tests/common/synthetic_model.h"

namespace fs = std::filesystem;

namespace {

// ---- helpers ------------------------------------------------------------------

// ctest runs each test in its own process, several at once: every process
// writes its own files, and removes them when its tests are done.
std::vector<std::string> &temp_paths() {
  static std::vector<std::string> paths;
  return paths;
}

class RemoveTempFiles : public testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    for (const std::string &p : temp_paths()) fs::remove_all(p, ec);
    temp_paths().clear();
  }
};
testing::Environment *const remove_temp_files = testing::AddGlobalTestEnvironment(new RemoveTempFiles);

std::string temp_path(const std::string &name) {
  std::string p = testing::TempDir() + "llm_catalogue_" + std::to_string(::getpid()) + "_" + name;
  temp_paths().push_back(p);
  return p;
}

std::string read_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_file(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

// llm_model_load's status; the message is llm_last_error().
llm_status load(const std::string &path, int verify = LLM_VERIFY_FULL) {
  llm_model_params p;
  llm_model_params_init(&p);
  p.n_threads = 1;
  p.verify = verify;
  llm_model *m = nullptr;
  const llm_status st = llm_model_load(path.c_str(), &p, &m);
  EXPECT_EQ(st == LLM_OK, m != nullptr);
  llm_model_free(m);
  return st;
}

// Runs f; returns the status of the llm::Error it throws (LLM_OK if none) and
// its message.
template <class F>
llm_status status_of(F &&f, std::string *message) {
  try {
    f();
  } catch (const llm::Error &e) {
    *message = e.what();
    return e.status();
  }
  message->clear();
  return LLM_OK;
}

#define EXPECT_MESSAGE(needle) EXPECT_PRED2(contains, std::string(llm_last_error()), needle)

// A good synthetic model file (tiny Llama, byte tokenizer) written once.
const std::string &good_model() {
  static const std::string path = [] {
    const std::string p = temp_path("good.llm");
    llm::test::write_synthetic_model(p, llm::test::tiny_hparams());
    return p;
  }();
  return path;
}

// A model file converted by llm-convert's code from a synthetic Hugging Face
// checkpoint (the converter computes the tensor checksums).
const std::string &converted_model() {
  static const std::string path = [] {
    const std::string dir = temp_path("hf");
    fs::create_directories(dir);
    const nlohmann::json config = {{"hidden_size", 32},          {"num_hidden_layers", 2},
                                   {"num_attention_heads", 4},   {"num_key_value_heads", 2},
                                   {"intermediate_size", 48},    {"vocab_size", 300},
                                   {"max_position_embeddings", 64}};
    write_file(dir + "/synthetic.json", config.dump());
    llm::convert::write_synthetic_checkpoint(dir + "/synthetic.json", dir + "/ckpt", 7);
    llm::convert::ConvertOptions o;
    o.input_dir = dir + "/ckpt";
    o.output_path = temp_path("converted.llm");
    o.dtype = llm::DType::F32;
    o.n_threads = 1;
    llm::convert::convert(o);
    return o.output_path;
  }();
  return path;
}

class CatalogueModel : public ::testing::Test {
 protected:
  void SetUp() override {
    llm_model_params p;
    llm_model_params_init(&p);
    p.n_threads = 1;
    ASSERT_EQ(llm_model_load(good_model().c_str(), &p, &model_), LLM_OK) << llm_last_error();
  }
  void TearDown() override {
    llm_session_free(session_);
    llm_model_free(model_);
  }
  llm_session *session(int n_ctx = 0) {
    llm_session_params sp;
    llm_session_params_init(&sp);
    sp.n_ctx = n_ctx;
    EXPECT_EQ(llm_session_create(model_, &sp, &session_), LLM_OK) << llm_last_error();
    return session_;
  }
  llm_model *model_ = nullptr;
  llm_session *session_ = nullptr;
};

// A copy of the good model file with `edit` applied to its bytes.
template <class F>
std::string edited_model(const std::string &name, F edit) {
  std::string bytes = read_file(good_model());
  edit(bytes);
  const std::string p = temp_path(name);
  write_file(p, bytes);
  return p;
}

llm::FileHeader header_of(const std::string &bytes) {
  llm::FileHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  return h;
}

// ---- model files --------------------------------------------------------------

TEST(Catalogue, ModelFileMissing) {
  EXPECT_EQ(load("/nonexistent/model.llm"), LLM_ERR_IO);
  EXPECT_MESSAGE("cannot open model file /nonexistent/model.llm");
}

TEST(Catalogue, ModelPathIsAFolder) {
  EXPECT_EQ(load(testing::TempDir()), LLM_ERR_IO);
  EXPECT_MESSAGE("is not a regular file");
}

TEST(Catalogue, ModelFileEmpty) {
  const std::string p = temp_path("empty.llm");
  write_file(p, "");
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("file is 0 bytes, too small to be a libllm model");
}

TEST(Catalogue, ModelFileTruncated) {
  const std::string p = edited_model("truncated.llm", [](std::string &b) { b.resize(b.size() - 100); });
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("(truncated)");
  EXPECT_MESSAGE(p);
}

TEST(Catalogue, ModelFileTrailingData) {
  const std::string p = edited_model("trailing.llm", [](std::string &b) { b += "extra"; });
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("(trailing data)");
}

TEST(Catalogue, ModelFileWrongMagic) {
  const std::string p = edited_model("gguf.llm", [](std::string &b) { std::memcpy(&b[0], "GGUF", 4); });
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("not a libllm model file (magic bytes are not \"LLMF\")");
}

TEST(Catalogue, ModelFileNewerFormatVersion) {
  const std::string p = edited_model("v2.llm", [](std::string &b) {
    const uint16_t major = llm::kFormatMajor + 1;
    std::memcpy(&b[4], &major, 2);
  });
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("format version " + std::to_string(llm::kFormatMajor + 1) + ".");
  EXPECT_MESSAGE("is not supported by this reader");
}

TEST(Catalogue, ModelFileHeaderCorrupt) {
  const std::string p = edited_model("header.llm", [](std::string &b) { b[offsetof(llm::FileHeader, data_offset)] ^= 1; });
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("file header checksum mismatch (corrupt header)");
}

TEST(Catalogue, ModelFileMetadataCorrupt) {
  const std::string p = edited_model("meta.llm", [](std::string &b) {
    const llm::FileHeader h = header_of(b);
    b[h.metadata_offset + h.metadata_size / 2] ^= 0x10;
  });
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("metadata checksum mismatch (corrupt metadata)");
}

// The integrity check of the issue: the converter stores every tensor's
// checksum, and one flipped bit in the weights is reported naming the tensor.
TEST(Catalogue, FlippedWeightBitNamesTheTensor) {
  const std::string good = converted_model();
  ASSERT_EQ(load(good), LLM_OK) << llm_last_error();
  auto f = llm::ModelFile::open(good, llm::ModelFile::Verify::None);
  for (const char *name : {"token_embd.weight", "blk.1.ffn_down.weight", "output_norm.weight"}) {
    const llm::TensorInfo *t = f->find(name);
    ASSERT_NE(t, nullptr) << name;
    std::string bytes = read_file(good);
    bytes[t->offset + t->size / 2] ^= 0x04;
    const std::string p = temp_path("flipped.llm");
    write_file(p, bytes);
    EXPECT_EQ(load(p), LLM_ERR_FORMAT) << name;
    EXPECT_MESSAGE(std::string("tensor ") + name + ": checksum mismatch");
    EXPECT_MESSAGE("the file is corrupt");
  }
}

TEST(Catalogue, FlippedWeightBitLoadsWithVerifyNone) {
  auto f = llm::ModelFile::open(converted_model(), llm::ModelFile::Verify::None);
  const llm::TensorInfo *t = f->find("blk.0.attn_q.weight");
  ASSERT_NE(t, nullptr);
  std::string bytes = read_file(converted_model());
  bytes[t->offset + 3] ^= 0x01;
  const std::string p = temp_path("flipped_none.llm");
  write_file(p, bytes);
  EXPECT_EQ(load(p, LLM_VERIFY_NONE), LLM_OK) << llm_last_error();
}

TEST(Catalogue, TensorShapeDisagreesWithHyperParameters) {
  auto f = llm::ModelFile::open(good_model(), llm::ModelFile::Verify::None);
  const std::string p = temp_path("shape.llm");
  {
    llm::ModelWriter w(p);
    for (const llm::TensorInfo &t : f->tensors()) {
      w.begin_tensor(t.name, t.dtype, t.shape);
      w.write(f->data(t), t.size);
      w.end_tensor();
    }
    llm::ModelMetadata meta = f->meta();
    meta.hparams.intermediate_size = 64;
    w.finish(meta, f->tokenizer());
  }
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("tensor blk.0.ffn_gate.weight has shape [48, 32], expected [64, 32]");
}

TEST(Catalogue, RequiredTensorMissing) {
  auto f = llm::ModelFile::open(good_model(), llm::ModelFile::Verify::None);
  const std::string p = temp_path("missing.llm");
  {
    llm::ModelWriter w(p);
    for (const llm::TensorInfo &t : f->tensors()) {
      if (t.name == "blk.1.attn_v.weight") continue;
      w.begin_tensor(t.name, t.dtype, t.shape);
      w.write(f->data(t), t.size);
      w.end_tensor();
    }
    w.finish(f->meta(), f->tokenizer());
  }
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("missing tensor blk.1.attn_v.weight");
}

TEST(Catalogue, TokenizerWithExponentialPipeline) {
  // A model file whose tokenizer chains 48 ByteLevel pre-tokenizers (each
  // doubles non-ASCII text): refused at load instead of hanging on encode.
  auto f = llm::ModelFile::open(good_model(), llm::ModelFile::Verify::None);
  llm::TokenizerSpec tok = f->tokenizer();
  tok.pre_tokenizers.assign(48, llm::PreTokenizerSpec{});
  const std::string p = temp_path("exp.llm");
  {
    llm::ModelWriter w(p);
    for (const llm::TensorInfo &t : f->tensors()) {
      w.begin_tensor(t.name, t.dtype, t.shape);
      w.write(f->data(t), t.size);
      w.end_tensor();
    }
    w.finish(f->meta(), tok);
  }
  EXPECT_EQ(load(p), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("tokenizer: 48 pre-tokenizers; at most 16 are supported");
}

// ---- C API arguments ------------------------------------------------------------

TEST(Catalogue, NullArguments) {
  llm_model *m = reinterpret_cast<llm_model *>(1);
  EXPECT_EQ(llm_model_load(nullptr, nullptr, &m), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("path is NULL");
  EXPECT_EQ(m, nullptr);
  EXPECT_EQ(llm_model_load(good_model().c_str(), nullptr, nullptr), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("out is NULL");
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(nullptr, nullptr, &s), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("model is NULL");
  EXPECT_EQ(llm_session_eval(nullptr, nullptr, 0), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("session is NULL");
}

TEST(Catalogue, StructSizeNotInitialised) {
  llm_model_params p;
  llm_model_params_init(&p);
  p.struct_size = 3;
  llm_model *m = nullptr;
  EXPECT_EQ(llm_model_load(good_model().c_str(), &p, &m), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("struct_size is 3");
  EXPECT_MESSAGE("llm_model_params_init");
}

TEST(Catalogue, VerifyNotAnEnumValue) {
  EXPECT_EQ(load(good_model(), 7), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("verify must be an llm_verify value");
}

TEST(Catalogue, ThreadCountOutOfRange) {
  llm_model_params p;
  llm_model_params_init(&p);
  p.n_threads = -1;
  llm_model *m = nullptr;
  EXPECT_EQ(llm_model_load(good_model().c_str(), &p, &m), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("n_threads must be in [0, 1024]");
}

TEST(Catalogue, UnknownDevice) {
  llm_model_params p;
  llm_model_params_init(&p);
  p.device = "tpu:7";
  llm_model *m = nullptr;
  EXPECT_EQ(llm_model_load(good_model().c_str(), &p, &m), LLM_ERR_UNSUPPORTED);
  EXPECT_MESSAGE("device \"tpu:7\" is not available (this build has: cpu");
}

TEST_F(CatalogueModel, UnknownTokenizeFlags) {
  size_t n = 0;
  EXPECT_EQ(llm_tokenize_ex(model_, "a", 1, 0, 0x40, nullptr, 0, &n), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("unknown tokenize flags");
}

TEST_F(CatalogueModel, GenerateParamsInvalid) {
  llm_session *s = session(64);
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.temperature = std::nanf("");
  EXPECT_EQ(llm_generate(s, "a", &gp, nullptr, nullptr), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("temperature is NaN");
  llm_generate_params_init(&gp);
  gp.n_stop = LLM_MAX_STOP_STRINGS + 1;
  EXPECT_EQ(llm_generate(s, "a", &gp, nullptr, nullptr), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("n_stop out of range");
  llm_generate_params_init(&gp);
  gp.repeat_penalty = 0;
  EXPECT_EQ(llm_generate(s, "a", &gp, nullptr, nullptr), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("repeat_penalty must be > 0");
}

TEST_F(CatalogueModel, StopStringInvalidUtf8) {
  llm_session *s = session(64);
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.stop[0] = "\xff\xfe";
  gp.n_stop = 1;
  EXPECT_EQ(llm_generate(s, "a", &gp, nullptr, nullptr), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("stop strings must be valid UTF-8");
}

TEST_F(CatalogueModel, NothingToGenerateFrom) {
  llm_session *s = session(64);
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.add_special = 0;
  EXPECT_EQ(llm_generate(s, "", &gp, nullptr, nullptr), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("nothing to generate from: the prompt is empty and the session holds no tokens");
}

TEST_F(CatalogueModel, SampleBeforeEvaluating) {
  llm_session *s = session(64);
  llm_token t = -1;
  EXPECT_EQ(llm_session_sample(s, nullptr, &t), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("no logits: evaluate tokens first");
}

// ---- limits and session state ----------------------------------------------------

TEST(Catalogue, SessionOnVocabOnlyModel) {
  const std::string p = temp_path("vocab_only.llm");
  llm::test::write_synthetic_model(p, llm::test::tiny_hparams(), llm::DType::F32, /*vocab_only=*/true);
  llm_model *m = nullptr;
  ASSERT_EQ(llm_model_load(p.c_str(), nullptr, &m), LLM_OK) << llm_last_error();
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(m, nullptr, &s), LLM_ERR_UNSUPPORTED);
  EXPECT_MESSAGE("the model file is vocab-only (no weights); sessions need weights");
  llm_model_free(m);
}

TEST_F(CatalogueModel, MemoryBudgetExceeded) {
  llm_session_params sp;
  llm_session_params_init(&sp);
  sp.n_ctx = 64;
  uint64_t need = 0;
  ASSERT_EQ(llm_session_memory_required(model_, &sp, &need), LLM_OK);
  sp.memory_limit = need - 1;
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(model_, &sp, &s), LLM_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(s, nullptr);
  EXPECT_MESSAGE("session needs " + std::to_string(need) + " bytes");
  EXPECT_MESSAGE("memory_limit is " + std::to_string(need - 1));
  sp.memory_limit = need;  // exactly the plan: accepted
  EXPECT_EQ(llm_session_create(model_, &sp, &s), LLM_OK) << llm_last_error();
  llm_session_free(s);
}

TEST_F(CatalogueModel, ContextLongerThanTheModel) {
  llm_session_params sp;
  llm_session_params_init(&sp);
  sp.n_ctx = 1 << 30;
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(model_, &sp, &s), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("n_ctx 1073741824 exceeds the model's context length 128");
  sp.n_ctx = -1;
  EXPECT_EQ(llm_session_create(model_, &sp, &s), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("n_ctx and n_batch must not be negative");
}

TEST_F(CatalogueModel, ContextFull) {
  llm_session *s = session(8);
  std::vector<llm_token> ids(9, 5);
  EXPECT_EQ(llm_session_eval(s, ids.data(), ids.size()), LLM_ERR_CONTEXT_FULL);
  EXPECT_MESSAGE("cannot evaluate 9 tokens: the context holds 0 of 8");
  size_t n = 1;
  llm_session_n_tokens(s, &n);
  EXPECT_EQ(n, 0u);  // nothing appended
}

TEST_F(CatalogueModel, TokenOutsideTheVocabulary) {
  llm_session *s = session(8);
  const llm_token bad = 1 << 20;
  EXPECT_EQ(llm_session_eval(s, &bad, 1), LLM_ERR_INVALID_TOKEN);
  EXPECT_MESSAGE("token 1048576 at index 0 is outside the vocabulary [0, 259)");
  char buf[16];
  size_t len = 0;
  const llm_token neg = -3;
  EXPECT_EQ(llm_detokenize(model_, &neg, 1, buf, sizeof buf, &len), LLM_ERR_INVALID_TOKEN);
  EXPECT_MESSAGE("decode: token id -3 is outside the vocabulary of 259 ids");
  EXPECT_EQ(llm_token_to_piece(model_, 259, buf, sizeof buf, &len), LLM_ERR_INVALID_TOKEN);
  EXPECT_MESSAGE("token 259 is outside the vocabulary");
}

TEST_F(CatalogueModel, OutputBufferTooSmall) {
  llm_token ids[2];
  size_t n = 0;
  EXPECT_EQ(llm_tokenize(model_, "hello", 5, 1, ids, 2, &n), LLM_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(n, 6u);  // the required count: BOS + 5 bytes
  EXPECT_MESSAGE("need room for 6 tokens, capacity is 2");
  const llm_token text[3] = {3 + 'a', 3 + 'b', 3 + 'c'};
  char buf[2];
  size_t len = 0;
  EXPECT_EQ(llm_detokenize(model_, text, 3, buf, sizeof buf, &len), LLM_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(len, 3u);
  EXPECT_MESSAGE("need room for 3 bytes");
}

int cancel_after_two(const char *, size_t, llm_token, void *user) {
  auto *s = static_cast<llm_session *>(user);
  static thread_local int pieces = 0;
  if (++pieces == 2) llm_session_cancel(s);
  return 0;
}

TEST_F(CatalogueModel, GenerationCancelled) {
  llm_session *s = session(64);
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.max_tokens = 40;
  gp.ignore_eos = 1;
  EXPECT_EQ(llm_generate(s, "abc", &gp, cancel_after_two, s), LLM_ERR_CANCELLED);
  EXPECT_MESSAGE("generation cancelled");
  size_t n = 0;
  llm_session_n_tokens(s, &n);
  EXPECT_EQ(n, 4u + 2u);  // BOS + prompt + the two delivered tokens stay
  gp.max_tokens = 2;      // and the session goes on
  EXPECT_EQ(llm_generate(s, nullptr, &gp, nullptr, nullptr), LLM_OK) << llm_last_error();
}

// ---- text --------------------------------------------------------------------------

TEST_F(CatalogueModel, InvalidUtf8IsTokenizedNotRejected) {
  llm_token ids[8];
  size_t n = 0;
  EXPECT_EQ(llm_tokenize(model_, "\xff\xc3", 2, 0, ids, 8, &n), LLM_OK) << llm_last_error();
  EXPECT_GT(n, 0u);
}

// ---- chat templates --------------------------------------------------------------------

std::string model_with_template(const std::string &name, const std::string &tmpl) {
  auto f = llm::ModelFile::open(good_model(), llm::ModelFile::Verify::None);
  const std::string p = temp_path(name);
  llm::ModelWriter w(p);
  for (const llm::TensorInfo &t : f->tensors()) {
    w.begin_tensor(t.name, t.dtype, t.shape);
    w.write(f->data(t), t.size);
    w.end_tensor();
  }
  llm::ModelMetadata meta = f->meta();
  meta.generation.chat_template = tmpl;
  w.finish(meta, f->tokenizer());
  return p;
}

llm_status apply_template(const std::string &model_path, size_t capacity = 4096) {
  llm_model *m = nullptr;
  EXPECT_EQ(llm_model_load(model_path.c_str(), nullptr, &m), LLM_OK) << llm_last_error();
  if (!m) return LLM_ERR_INTERNAL;
  const llm_chat_message msgs[2] = {{"assistant", "Hi."}, {"user", "Hello!"}};
  std::vector<char> buf(capacity);
  size_t len = 0;
  const llm_status st = llm_chat_apply_template(m, msgs, 2, 1, buf.data(), capacity, &len);
  llm_model_free(m);  // leaves llm_last_error() alone
  return st;
}

TEST(Catalogue, ChatTemplateMissing) {
  EXPECT_EQ(apply_template(good_model()), LLM_ERR_UNSUPPORTED);
  EXPECT_MESSAGE("the model has no chat template");
}

TEST(Catalogue, ChatTemplateRaisesAnError) {
  const std::string p = model_with_template(
      "raise.llm", "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}");
  EXPECT_EQ(apply_template(p), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("Conversation roles must alternate");
}

TEST(Catalogue, ChatTemplateSyntaxError) {
  const std::string p = model_with_template("syntax.llm", "{% for m in messages %}{{ m.content }");
  EXPECT_EQ(apply_template(p), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("chat template error: syntax error on line 1");
}

TEST(Catalogue, ChatTemplateRunawayRecursion) {
  const std::string p = model_with_template("recursion.llm", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_EQ(apply_template(p), LLM_ERR_UNSUPPORTED);
  EXPECT_MESSAGE("chat template exceeds the macro recursion depth limit");
}

TEST(Catalogue, ChatTemplateOutputTooSmall) {
  const std::string p = model_with_template("small.llm", "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}");
  EXPECT_EQ(apply_template(p, 4), LLM_ERR_BUFFER_TOO_SMALL);
  EXPECT_MESSAGE("need room for");
}

// ---- converter inputs ----------------------------------------------------------------

TEST(Catalogue, TokenizerJsonNotJson) {
  std::string msg;
  EXPECT_EQ(status_of([] { llm::parse_hf_tokenizer("{\"model\": "); }, &msg), LLM_ERR_FORMAT);
  EXPECT_PRED2(contains, msg, "tokenizer.json: invalid JSON");
}

TEST(Catalogue, TokenizerJsonUnsupportedModel) {
  std::string msg;
  EXPECT_EQ(status_of([] { llm::parse_hf_tokenizer(R"({"model": {"type": "WordPiece", "vocab": {}}})"); },
                      &msg),
            LLM_ERR_UNSUPPORTED);
  EXPECT_PRED2(contains, msg, "model type \"WordPiece\" is not supported (only BPE)");
}

TEST(Catalogue, TokenizerReplaceChainGrowsTooMuch) {
  // Each Replace doubles every 'a': 16 of them turn text 65536 times longer.
  llm::TokenizerSpec spec = llm::test::byte_tokenizer();
  llm::NormalizerSpec twice;
  twice.kind = llm::NormalizerSpec::Replace;
  twice.pattern = "a";
  twice.content = "aa";
  spec.normalizers.assign(16, twice);
  const llm::Tokenizer tok(spec);
  std::string msg;
  EXPECT_EQ(status_of([&] { (void)tok.encode(std::string(1000, 'a'), false); }, &msg), LLM_ERR_FORMAT);
  EXPECT_PRED2(contains, msg, "tokenizer: the normalizers expand 1000 bytes of text to more than");
  EXPECT_EQ(tok.encode("bbb", false).size(), 3u);  // text without the pattern is unaffected
}

std::string safetensors_bytes(const std::string &header, const std::string &data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(&out[0], &n, 8);
  return out + header + data;
}

TEST(Catalogue, SafetensorsHeaderBeyondTheFile) {
  const std::string dir = temp_path("st_len");
  fs::create_directories(dir);
  std::string bytes(8, '\0');
  const uint64_t n = 1000;
  std::memcpy(&bytes[0], &n, 8);
  write_file(dir + "/model.safetensors", bytes + "{}");
  std::string msg;
  EXPECT_EQ(status_of([&] { llm::convert::Checkpoint::open(dir); }, &msg), LLM_ERR_FORMAT);
  EXPECT_PRED2(contains, msg, dir + "/model.safetensors: header length 1000 exceeds the file size 10");
}

TEST(Catalogue, SafetensorsOverlappingTensors) {
  const std::string dir = temp_path("st_overlap");
  fs::create_directories(dir);
  write_file(dir + "/model.safetensors",
             safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                               std::string(16, '\0')));
  std::string msg;
  EXPECT_EQ(status_of([&] { llm::convert::Checkpoint::open(dir); }, &msg), LLM_ERR_FORMAT);
  EXPECT_PRED2(contains, msg, "tensors 'a' and 'b' overlap");
}

TEST(Catalogue, SafetensorsElementCountOverflows) {
  const std::string dir = temp_path("st_overflow");
  fs::create_directories(dir);
  write_file(dir + "/model.safetensors",
             safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
                               std::string(8, '\0')));
  std::string msg;
  EXPECT_EQ(status_of([&] { llm::convert::Checkpoint::open(dir); }, &msg), LLM_ERR_FORMAT);
  EXPECT_PRED2(contains, msg, "tensor 'a': element count of shape [4294967296,4294967296,16] overflows");
}

TEST(Catalogue, HfConfigMissing) {
  const std::string dir = temp_path("hf_missing");
  fs::create_directories(dir);
  std::string msg;
  EXPECT_EQ(status_of([&] { llm::convert::read_hf_config(dir); }, &msg), LLM_ERR_IO);
  EXPECT_PRED2(contains, msg, dir + "/config.json");
}

TEST(Catalogue, HfConfigValueOutOfRange) {
  const std::string dir = temp_path("hf_range");
  fs::create_directories(dir);
  write_file(dir + "/config.json",
             R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
                 "intermediate_size": 128, "num_hidden_layers": 100000, "num_attention_heads": 4,
                 "vocab_size": 300, "max_position_embeddings": 128, "rms_norm_eps": 1e-5})");
  std::string msg;
  EXPECT_EQ(status_of([&] { llm::convert::read_hf_config(dir); }, &msg), LLM_ERR_FORMAT);
  EXPECT_PRED2(contains, msg, "'num_hidden_layers' must be an integer in");
}

TEST(Catalogue, HfConfigUnsupportedArchitecture) {
  const std::string dir = temp_path("hf_arch");
  fs::create_directories(dir);
  write_file(dir + "/config.json",
             R"({"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "hidden_size": 64, "vocab_size": 10})");
  std::string msg;
  EXPECT_EQ(status_of([&] { llm::convert::read_hf_config(dir); }, &msg), LLM_ERR_UNSUPPORTED);
  EXPECT_PRED2(contains, msg, "architecture GemmaForCausalLM (model_type gemma) is not supported");
}

// ---- the KV cache and session state --------------------------------------------

// A model whose heads (32 values) fit every cache type.
const std::string &kv_model() {
  static const std::string path = [] {
    const std::string p = temp_path("kv.llm");
    llm::HParams h = llm::test::tiny_hparams();
    h.hidden_size = 64;
    h.num_heads = 2;
    h.num_kv_heads = 1;
    h.head_dim = 32;
    h.intermediate_size = 96;
    h.max_context = 256;
    llm::test::write_synthetic_model(p, h);
    return p;
  }();
  return path;
}

struct KvFixture {
  llm_model *model = nullptr;
  std::vector<llm_session *> sessions;
  std::vector<llm_kv_pool *> pools;
  explicit KvFixture(const std::string &path = kv_model()) {
    EXPECT_EQ(llm_model_load(path.c_str(), nullptr, &model), LLM_OK) << llm_last_error();
  }
  ~KvFixture() {
    for (llm_session *s : sessions) llm_session_free(s);
    for (llm_kv_pool *p : pools) llm_kv_pool_free(p);
    llm_model_free(model);
  }
  static llm_session_params params(int n_ctx, int kv = LLM_KV_DEFAULT, llm_kv_pool *pool = nullptr) {
    llm_session_params p;
    llm_session_params_init(&p);
    p.n_ctx = n_ctx;
    p.kv_type = kv;
    p.kv_pool = pool;
    return p;
  }
  llm_session *session(int n_ctx, int kv = LLM_KV_DEFAULT, llm_kv_pool *pool = nullptr, int n_tokens = 0) {
    llm_session_params p = params(n_ctx, kv, pool);
    llm_session *s = nullptr;
    EXPECT_EQ(llm_session_create(model, &p, &s), LLM_OK) << llm_last_error();
    sessions.push_back(s);
    std::vector<llm_token> t;
    for (int i = 0; i < n_tokens; ++i) t.push_back(3 + i % 250);
    if (n_tokens) EXPECT_EQ(llm_session_eval(s, t.data(), t.size()), LLM_OK) << llm_last_error();
    return s;
  }
  llm_kv_pool *pool(int n_tokens) {
    llm_kv_pool_params p;
    llm_kv_pool_params_init(&p);
    p.n_tokens = n_tokens;
    llm_kv_pool *pool = nullptr;
    EXPECT_EQ(llm_kv_pool_create(model, &p, &pool), LLM_OK) << llm_last_error();
    pools.push_back(pool);
    return pool;
  }
  static std::vector<uint8_t> state_of(llm_session *s) {
    size_t size = 0, len = 0;
    EXPECT_EQ(llm_session_state_size(s, &size), LLM_OK);
    std::vector<uint8_t> b(size);
    EXPECT_EQ(llm_session_save(s, b.data(), b.size(), &len), LLM_OK);
    return b;
  }
};

TEST(Catalogue, KvInt4NeedsHeadsOf32) {
  KvFixture f(good_model());  // heads of 8 values
  llm_session_params p = KvFixture::params(16, LLM_KV_INT4);
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(f.model, &p, &s), LLM_ERR_UNSUPPORTED);
  EXPECT_MESSAGE("a KV cache of type int4 cannot hold this model's heads of 8 values");
}

TEST(Catalogue, KvTypeNotAnEnumValue) {
  KvFixture f;
  llm_session_params p = KvFixture::params(16, 42);
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(f.model, &p, &s), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("kv_type is not an llm_kv_type value");
}

TEST(Catalogue, ShiftKeepsEverything) {
  KvFixture f;
  llm_session_params p = KvFixture::params(16);
  p.context_policy = LLM_CONTEXT_SHIFT;
  p.n_keep = 16;
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(f.model, &p, &s), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("n_keep 16 leaves nothing to shift in a context of 16");
}

TEST(Catalogue, KvPoolExhausted) {
  KvFixture f;
  llm_kv_pool *pool = f.pool(64);
  f.session(64, LLM_KV_DEFAULT, pool);
  llm_session_params p = KvFixture::params(16, LLM_KV_DEFAULT, pool);
  llm_session *s = nullptr;
  EXPECT_EQ(llm_session_create(f.model, &p, &s), LLM_ERR_OUT_OF_MEMORY);
  EXPECT_MESSAGE("the KV pool cannot back this session: it needs 1 pages of 16 tokens");
}

TEST(Catalogue, TruncateIntoSharedPageWithFullPool) {
  KvFixture f;
  llm_kv_pool *pool = f.pool(96);
  llm_session *a = f.session(64, LLM_KV_DEFAULT, pool, 32);
  llm_session_params p = KvFixture::params(48, LLM_KV_DEFAULT, pool);
  llm_session *b = nullptr, *c = nullptr;
  ASSERT_EQ(llm_session_fork(a, &p, &b), LLM_OK) << llm_last_error();
  f.sessions.push_back(b);
  ASSERT_EQ(llm_session_fork(a, &p, &c), LLM_OK) << llm_last_error();
  f.sessions.push_back(c);
  EXPECT_EQ(llm_session_truncate(b, 20), LLM_ERR_OUT_OF_MEMORY);
  EXPECT_MESSAGE("cannot truncate to 20 tokens: the shared page there must be copied");
  size_t n = 0;
  llm_session_n_tokens(b, &n);
  EXPECT_EQ(n, 32u);
}

TEST(Catalogue, KvPoolOverMemoryLimit) {
  KvFixture f;
  llm_kv_pool_params p;
  llm_kv_pool_params_init(&p);
  p.n_tokens = 1000;
  p.memory_limit = 1000;
  llm_kv_pool *pool = nullptr;
  EXPECT_EQ(llm_kv_pool_create(f.model, &p, &pool), LLM_ERR_OUT_OF_MEMORY);
  EXPECT_MESSAGE("the KV pool needs");
  EXPECT_MESSAGE("but memory_limit is 1000");
}

TEST(Catalogue, StateTruncated) {
  KvFixture f;
  const std::vector<uint8_t> b = KvFixture::state_of(f.session(64, LLM_KV_DEFAULT, nullptr, 10));
  llm_session *r = f.session(64);
  EXPECT_EQ(llm_session_restore(r, b.data(), 40), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("session state truncated: 40 bytes");
  EXPECT_EQ(llm_session_restore(r, b.data(), b.size() - 1), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("does not match its header");
}

TEST(Catalogue, StateCorrupt) {
  KvFixture f;
  std::vector<uint8_t> b = KvFixture::state_of(f.session(64, LLM_KV_DEFAULT, nullptr, 10));
  b[b.size() - 3] ^= 1;
  llm_session *r = f.session(64, LLM_KV_DEFAULT, nullptr, 5);
  EXPECT_EQ(llm_session_restore(r, b.data(), b.size()), LLM_ERR_FORMAT);
  EXPECT_MESSAGE("session state checksum mismatch (corrupt)");
  size_t n = 0;
  llm_session_n_tokens(r, &n);
  EXPECT_EQ(n, 5u);  // unchanged
}

TEST(Catalogue, StateFromAnotherModel) {
  KvFixture f, g(converted_model());
  const std::vector<uint8_t> b = KvFixture::state_of(f.session(64, LLM_KV_DEFAULT, nullptr, 10));
  llm_session *r = g.session(64);
  EXPECT_EQ(llm_session_restore(r, b.data(), b.size()), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("the session state was saved from another model file");
}

TEST(Catalogue, StateOtherKvType) {
  KvFixture f;
  const std::vector<uint8_t> b = KvFixture::state_of(f.session(64, LLM_KV_F16, nullptr, 10));
  llm_session *r = f.session(64, LLM_KV_INT8);
  EXPECT_EQ(llm_session_restore(r, b.data(), b.size()), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("the session state holds a f16 KV cache but this session's is int8");
}

TEST(Catalogue, StateLongerThanContext) {
  KvFixture f;
  const std::vector<uint8_t> b = KvFixture::state_of(f.session(64, LLM_KV_DEFAULT, nullptr, 40));
  llm_session *r = f.session(32);
  EXPECT_EQ(llm_session_restore(r, b.data(), b.size()), LLM_ERR_CONTEXT_FULL);
  EXPECT_MESSAGE("the session state holds 40 tokens but the session's context is 32");
}

TEST(Catalogue, BatchWithDuplicateSession) {
  KvFixture f;
  llm_session *a = f.session(16);
  llm_session *list[2] = {a, a};
  const llm_token t[2] = {5, 6};
  EXPECT_EQ(llm_decode_batch(list, t, 2), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("session 1 appears twice in the batch");
}

TEST(Catalogue, ForkIntoAnotherKvType) {
  KvFixture f;
  llm_session *a = f.session(64, LLM_KV_INT8, nullptr, 10);
  llm_session_params p = KvFixture::params(64, LLM_KV_F16);
  llm_session *b = nullptr;
  EXPECT_EQ(llm_session_fork(a, &p, &b), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_MESSAGE("cannot copy a KV cache of type int8 into one of type f16");
}

}  // namespace
