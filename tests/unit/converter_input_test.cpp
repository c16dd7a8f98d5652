// Tests of the converter's input side: the safetensors reader and the
// Hugging Face config parser, on synthetic files written here and on the
// checkpoints in LLM_SHARED_DIR.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "converter/hf_config.h"
#include "converter/safetensors.h"
#include "format/error.h"

namespace fs = std::filesystem;
using llm::convert::Checkpoint;
using llm::convert::HfModelConfig;
using llm::convert::read_hf_config;
using llm::convert::SrcDType;
using llm::convert::SrcTensor;
using nlohmann::json;

namespace {

// ---- helpers ------------------------------------------------------------------

// Status of the llm::Error thrown by fn (LLM_OK when nothing is thrown); the
// message is kept for assertions on its content.
llm_status status_of(const std::function<void()> &fn, std::string *message = nullptr) {
  try {
    fn();
  } catch (const llm::Error &e) {
    if (message) *message = e.what();
    return e.status();
  }
  return LLM_OK;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "llm_convert_input_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string &path() const { return path_; }
  std::string file(const std::string &name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

template <class T>
std::string bytes_of(const std::vector<T> &values) {
  std::string s(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
  return s;
}

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a raw header text and data section.
std::string raw_safetensors(const std::string &header, const std::string &data) {
  return u64_le(header.size()) + header + data;
}

struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// A well-formed safetensors file holding `entries` back to back.
std::string safetensors(const std::vector<Entry> &entries) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const Entry &e : entries) {
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {data.size(), data.size() + e.bytes.size()}}};
    data += e.bytes;
  }
  return raw_safetensors(header.dump(), data);
}

uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

std::vector<float> read_all(const Checkpoint &ck, const std::string &name) {
  const SrcTensor &t = ck.get(name);
  std::vector<float> out(t.numel);
  ck.read_f32(t, 0, t.numel, out.data());
  return out;
}

// ---- safetensors: well-formed files ---------------------------------------------

TEST(Safetensors, SingleFileValuesAndShapes) {
  TempDir dir;
  // Expected floats are written out by hand from the IEEE encodings.
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400,
                                     0x8000, 0x7C00, 0xFC00, 0x3555, 0x7E00, 0x0000};
  const std::vector<float> f16_expected = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f,
                                           -0.0f, INFINITY, -INFINITY, 0.333251953125f, NAN, 0.0f};
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC0A0, 0x7F7F, 0x0001, 0x8000, 0x3EAB};
  const std::vector<float> f32 = {1.5f, -3.25f, 1e-30f, 7.0f, 8.0f, 9.0f};
  const std::vector<double> f64 = {0.1, -2.5};
  write_file(dir.file("model.safetensors"),
             safetensors({{"a.f16", "F16", {3, 4}, bytes_of(f16)},
                          {"b.bf16", "BF16", {6}, bytes_of(bf16)},
                          {"c.f32", "F32", {2, 1, 3}, bytes_of(f32)},
                          {"d.f64", "F64", {2}, bytes_of(f64)},
                          {"e.scalar", "F32", {}, bytes_of(std::vector<float>{42.0f})},
                          {"f.empty", "F16", {0, 5}, ""}}));
  const Checkpoint ck = Checkpoint::open(dir.path());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"a.f16", "b.bf16", "c.f32", "d.f64", "e.scalar", "f.empty"}));

  const SrcTensor &a = ck.get("a.f16");
  EXPECT_EQ(a.dtype, SrcDType::F16);
  EXPECT_EQ(a.dtype_name, "F16");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(a.numel, 12u);
  EXPECT_EQ(a.size, 24u);
  EXPECT_EQ(a.file, dir.file("model.safetensors"));
  const std::vector<float> got = read_all(ck, "a.f16");
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(f16_expected[i])) EXPECT_TRUE(std::isnan(got[i])) << i;
    else EXPECT_EQ(float_bits(got[i]), float_bits(f16_expected[i])) << i;  // bits: tells -0 from +0
  }

  const std::vector<uint32_t> bf16_expected = {0x3F800000, 0xC0A00000, 0x7F7F0000, 0x00010000, 0x80000000,
                                               0x3EAB0000};
  const std::vector<float> b = read_all(ck, "b.bf16");
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(float_bits(b[i]), bf16_expected[i]) << i;
  EXPECT_EQ(b[1], -5.0f);

  EXPECT_EQ(read_all(ck, "c.f32"), f32);
  EXPECT_EQ(read_all(ck, "d.f64"), (std::vector<float>{0.1f, -2.5f}));
  EXPECT_EQ(ck.get("e.scalar").shape.size(), 0u);
  EXPECT_EQ(read_all(ck, "e.scalar"), std::vector<float>{42.0f});
  EXPECT_EQ(ck.get("f.empty").numel, 0u);
  EXPECT_TRUE(read_all(ck, "f.empty").empty());
}

TEST(Safetensors, ChunkedReads) {
  TempDir dir;
  std::vector<uint16_t> bf16(100);
  for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = uint16_t(0x4000 + i);  // 2.0, 2.0078125, ...
  write_file(dir.file("model.safetensors"), safetensors({{"w", "BF16", {10, 10}, bytes_of(bf16)}}));
  const Checkpoint ck = Checkpoint::open(dir.file("model.safetensors"));  // a file path works too
  const SrcTensor &t = ck.get("w");
  std::vector<float> chunk(7);
  ck.read_f32(t, 93, 7, chunk.data());
  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(float_bits(chunk[i]), uint32_t(0x4000 + 93 + i) << 16);
  ck.read_f32(t, 100, 0, chunk.data());  // empty range at the end is fine
  EXPECT_EQ(status_of([&] { ck.read_f32(t, 95, 6, chunk.data()); }), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { ck.read_f32(t, 101, 0, chunk.data()); }), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { ck.read_f32(t, UINT64_MAX, 2, chunk.data()); }), LLM_ERR_INVALID_ARGUMENT);
}

TEST(Safetensors, UnconvertibleDtypesFailAtUse) {
  TempDir dir;
  write_file(dir.file("model.safetensors"),
             safetensors({{"i8", "I8", {4}, "\x01\x02\x03\x04"},
                          {"fp4", "F4", {8}, "abcd"},  // unknown here: size unchecked
                          {"ok", "F32", {1}, bytes_of(std::vector<float>{1.0f})}}));
  const Checkpoint ck = Checkpoint::open(dir.path());
  EXPECT_EQ(ck.get("i8").dtype, SrcDType::I8);
  EXPECT_EQ(ck.get("fp4").dtype, SrcDType::Unknown);
  std::string msg;
  float out[8];
  EXPECT_EQ(status_of([&] { ck.read_f32(ck.get("i8"), 0, 4, out); }, &msg), LLM_ERR_UNSUPPORTED);
  EXPECT_NE(msg.find("'i8'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("I8"), std::string::npos) << msg;
  EXPECT_EQ(status_of([&] { ck.read_f32(ck.get("fp4"), 0, 1, out); }, &msg), LLM_ERR_UNSUPPORTED);
  EXPECT_NE(msg.find("F4"), std::string::npos) << msg;
}

TEST(Safetensors, MissingTensorAndMissingFiles) {
  TempDir dir;
  std::string msg;
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }, &msg), LLM_ERR_IO);
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.file("nope")); }), LLM_ERR_IO);

  write_file(dir.file("model.safetensors"), safetensors({{"x", "F32", {1}, std::string(4, '\0')}}));
  const Checkpoint ck = Checkpoint::open(dir.path());
  EXPECT_TRUE(ck.has("x"));
  EXPECT_FALSE(ck.has("y"));
  EXPECT_EQ(status_of([&] { ck.get("y"); }, &msg), LLM_ERR_FORMAT);
  EXPECT_EQ(msg, "missing tensor y in " + dir.path());
}

// ---- safetensors: malformed files ---------------------------------------------

struct BadFile {
  const char *what;
  std::string bytes;
};

std::string one_tensor_header(const std::string &entry) { return "{\"t\":" + entry + "}"; }

std::vector<BadFile> bad_files() {
  const std::string data16(16, '\0');
  const auto with = [&](const std::string &entry) { return raw_safetensors(one_tensor_header(entry), data16); };
  std::string lying_length = raw_safetensors("{}", "");
  lying_length.replace(0, 8, u64_le(1000));
  return {
      {"shorter than the length prefix", std::string("\x02\0\0", 3)},
      {"header length beyond the file", lying_length},
      {"header is not JSON", raw_safetensors("{\"t\": [", data16)},
      {"header is a JSON array", raw_safetensors("[1, 2]", data16)},
      {"header is empty", raw_safetensors("", data16)},
      {"entry is not an object", with("3")},
      {"dtype missing", with(R"({"shape":[4],"data_offsets":[0,16]})")},
      {"shape missing", with(R"({"dtype":"F32","data_offsets":[0,16]})")},
      {"data_offsets missing", with(R"({"dtype":"F32","shape":[4]})")},
      {"dtype not a string", with(R"({"dtype":4,"shape":[4],"data_offsets":[0,16]})")},
      {"shape not an array", with(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})")},
      {"negative dimension", with(R"({"dtype":"F32","shape":[-4],"data_offsets":[0,16]})")},
      {"fractional dimension", with(R"({"dtype":"F32","shape":[4.0],"data_offsets":[0,16]})")},
      {"element count overflows", with(R"({"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]})")},
      {"byte count overflows", with(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,16]})")},
      {"offsets not a pair", with(R"({"dtype":"F32","shape":[4],"data_offsets":[0]})")},
      {"negative offset", with(R"({"dtype":"F32","shape":[4],"data_offsets":[-16,0]})")},
      {"end before begin", with(R"({"dtype":"F32","shape":[0],"data_offsets":[16,8]})")},
      {"end beyond the data", with(R"({"dtype":"F32","shape":[5],"data_offsets":[0,20]})")},
      {"size mismatch", with(R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})")},
      {"__metadata__ not an object", raw_safetensors(R"({"__metadata__":"x"})", "")},
      {"overlapping tensors",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       data16)},
  };
}

TEST(Safetensors, MalformedHeadersAreFormatErrors) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  for (const BadFile &bad : bad_files()) {
    write_file(path, bad.bytes);
    std::string msg;
    EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }, &msg), LLM_ERR_FORMAT) << bad.what;
    EXPECT_NE(msg.find(path), std::string::npos) << bad.what << ": " << msg;
  }
}

TEST(Safetensors, HeaderLengthCap) {
  // A sparse 130 MB file whose length prefix claims a 120 MB header: within
  // the file, above the 100 MB cap.
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  write_file(path, u64_le(120'000'000) + "{");
  fs::resize_file(path, 130'000'000);
  std::string msg;
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }, &msg), LLM_ERR_FORMAT);
  EXPECT_NE(msg.find("100 MB"), std::string::npos) << msg;
}

TEST(Safetensors, TensorErrorsNameTheTensor) {
  TempDir dir;
  write_file(dir.file("model.safetensors"),
             raw_safetensors(R"({"layers.0.wq":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", std::string(16, 0)));
  std::string msg;
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }, &msg), LLM_ERR_FORMAT);
  EXPECT_NE(msg.find("layers.0.wq"), std::string::npos) << msg;
}

TEST(Safetensors, TrailingHeaderSpacesAndGapsAreAccepted) {
  // The format allows space padding after the JSON; some writers align data.
  TempDir dir;
  const std::string header = R"({"a":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}})" + std::string(5, ' ');
  write_file(dir.file("model.safetensors"), raw_safetensors(header, std::string("\0\0\0\0\x80\x3f", 6)));
  const Checkpoint ck = Checkpoint::open(dir.path());
  EXPECT_EQ(read_all(ck, "a"), std::vector<float>{1.0f});
}

// ---- safetensors: shards ----------------------------------------------------------

void write_index(const TempDir &dir, const json &weight_map) {
  write_file(dir.file("model.safetensors.index.json"),
             json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());
}

TEST(Safetensors, ShardedCheckpoint) {
  TempDir dir;
  write_file(dir.file("model-00001-of-00002.safetensors"),
             safetensors({{"embed", "F16", {2}, bytes_of(std::vector<uint16_t>{0x3C00, 0x4000})},
                          {"l0.w", "BF16", {1}, bytes_of(std::vector<uint16_t>{0x4040})}}));
  write_file(dir.file("model-00002-of-00002.safetensors"),
             safetensors({{"norm", "F32", {1}, bytes_of(std::vector<float>{0.5f})}}));
  write_index(dir, {{"embed", "model-00001-of-00002.safetensors"},
                    {"l0.w", "model-00001-of-00002.safetensors"},
                    {"norm", "model-00002-of-00002.safetensors"}});
  Checkpoint ck = Checkpoint::open(dir.path());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"embed", "l0.w", "norm"}));
  EXPECT_EQ(read_all(ck, "embed"), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(read_all(ck, "l0.w"), std::vector<float>{3.0f});
  EXPECT_EQ(read_all(ck, "norm"), std::vector<float>{0.5f});
  EXPECT_EQ(ck.get("norm").file, dir.file("model-00002-of-00002.safetensors"));

  // Moving the checkpoint keeps the mappings (and the data pointers) alive.
  Checkpoint moved = std::move(ck);
  EXPECT_EQ(read_all(moved, "l0.w"), std::vector<float>{3.0f});
}

TEST(Safetensors, ShardErrors) {
  TempDir dir;
  const std::string one = safetensors({{"a", "F32", {1}, std::string(4, '\0')}});
  write_file(dir.file("s1.safetensors"), one);
  write_file(dir.file("s2.safetensors"), one);
  std::string msg;

  write_index(dir, {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }, &msg), LLM_ERR_FORMAT);
  EXPECT_NE(msg.find("'a'"), std::string::npos) << msg;  // duplicated across shards
  EXPECT_NE(msg.find("s2.safetensors"), std::string::npos) << msg;

  write_index(dir, {{"a", "s1.safetensors"}, {"b", "s3.safetensors"}});
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }, &msg), LLM_ERR_IO);
  EXPECT_NE(msg.find("s3.safetensors"), std::string::npos) << msg;

  write_index(dir, {{"a", "s1.safetensors"}, {"b", "s1.safetensors"}});
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }, &msg), LLM_ERR_FORMAT);
  EXPECT_NE(msg.find("'b'"), std::string::npos) << msg;  // index names a tensor its shard lacks

  write_index(dir, {{"a", "../s1.safetensors"}});
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }), LLM_ERR_FORMAT);
  write_index(dir, {{"a", 7}});
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }), LLM_ERR_FORMAT);
  write_file(dir.file("model.safetensors.index.json"), "{\"weight_map\": {}}");
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }), LLM_ERR_FORMAT);
  write_file(dir.file("model.safetensors.index.json"), "not json");
  EXPECT_EQ(status_of([&] { Checkpoint::open(dir.path()); }), LLM_ERR_FORMAT);
}

// ---- config.json ------------------------------------------------------------------

json llama_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_act", "silu"},
          {"hidden_size", 256},
          {"intermediate_size", 688},
          {"num_hidden_layers", 4},
          {"num_attention_heads", 8},
          {"num_key_value_heads", 2},
          {"max_position_embeddings", 2048},
          {"rms_norm_eps", 1e-5},
          {"vocab_size", 1000},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"tie_word_embeddings", false}};
}

HfModelConfig read_config(const json &config, const TempDir &dir) {
  write_file(dir.file("config.json"), config.dump());
  return read_hf_config(dir.path());
}

llm_status config_status(const json &config, std::string *msg = nullptr) {
  TempDir dir;
  return status_of([&] { read_config(config, dir); }, msg);
}

TEST(HfConfig, LlamaBasics) {
  TempDir dir;
  const HfModelConfig c = read_config(llama_config(), dir);
  EXPECT_EQ(c.arch, llm::Arch::Llama);
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  const llm::HParams &h = c.hparams;
  EXPECT_EQ(h.vocab_size, 1000u);
  EXPECT_EQ(h.hidden_size, 256u);
  EXPECT_EQ(h.intermediate_size, 688u);
  EXPECT_EQ(h.num_layers, 4u);
  EXPECT_EQ(h.num_heads, 8u);
  EXPECT_EQ(h.num_kv_heads, 2u);
  EXPECT_EQ(h.head_dim, 32u);  // derived: 256 / 8
  EXPECT_EQ(h.max_context, 2048u);
  EXPECT_FLOAT_EQ(h.rms_norm_eps, 1e-5f);
  EXPECT_EQ(h.rope_theta, 10000.0f);
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Default);
  EXPECT_FALSE(h.tie_word_embeddings);
  EXPECT_FALSE(h.attention_bias);
  EXPECT_EQ(h.sliding_window, 0u);
  EXPECT_EQ(c.generation.bos_id, 1);
  EXPECT_EQ(c.generation.eos_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c.generation.pad_id, -1);
  EXPECT_FALSE(c.add_bos_token.has_value());
  EXPECT_TRUE(c.generation.chat_template.empty());
}

TEST(HfConfig, HeadDimExplicitAndDerived) {
  json cfg = llama_config();
  cfg["head_dim"] = 64;  // explicit, not hidden / heads
  TempDir dir;
  EXPECT_EQ(read_config(cfg, dir).hparams.head_dim, 64u);
  cfg["head_dim"] = nullptr;  // null means "derive"
  EXPECT_EQ(read_config(cfg, dir).hparams.head_dim, 32u);
  cfg["num_attention_heads"] = 6;  // 256 / 6 does not divide
  cfg["num_key_value_heads"] = 2;
  std::string msg;
  EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_FORMAT);
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;
}

TEST(HfConfig, KvHeads) {
  json cfg = llama_config();
  cfg.erase("num_key_value_heads");
  TempDir dir;
  EXPECT_EQ(read_config(cfg, dir).hparams.num_kv_heads, 8u);
  cfg["num_key_value_heads"] = 3;
  std::string msg;
  EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_FORMAT);
  EXPECT_NE(msg.find("num_key_value_heads"), std::string::npos) << msg;
}

TEST(HfConfig, LegacyRopeLlama3) {
  json cfg = llama_config();
  cfg["rope_theta"] = 500000.0;
  cfg["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};
  TempDir dir;
  const llm::HParams h = read_config(cfg, dir).hparams;
  EXPECT_EQ(h.rope_theta, 500000.0f);
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Llama3);
  EXPECT_EQ(h.rope_scaling.factor, 8.0f);
  EXPECT_EQ(h.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_EQ(h.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(h.rope_scaling.original_max_position, 8192u);

  cfg["rope_scaling"].erase("original_max_position_embeddings");
  std::string msg;
  EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_FORMAT);
  EXPECT_NE(msg.find("rope_scaling.original_max_position_embeddings"), std::string::npos) << msg;
}

TEST(HfConfig, LegacyRopeLinearAndNull) {
  json cfg = llama_config();
  cfg["rope_scaling"] = {{"type", "linear"}, {"factor", 4}};  // old key name, integer factor
  TempDir dir;
  llm::HParams h = read_config(cfg, dir).hparams;
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Linear);
  EXPECT_EQ(h.rope_scaling.factor, 4.0f);
  cfg["rope_scaling"] = nullptr;
  h = read_config(cfg, dir).hparams;
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Default);
  cfg["rope_scaling"] = {{"type", "linear"}, {"factor", 0}};
  EXPECT_EQ(config_status(cfg), LLM_ERR_FORMAT);
}

TEST(HfConfig, RopeParameters) {
  json cfg = llama_config();
  cfg["rope_theta"] = 1.0;  // rope_parameters wins over the legacy key
  cfg["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  TempDir dir;
  llm::HParams h = read_config(cfg, dir).hparams;
  EXPECT_EQ(h.rope_theta, 1000000.0f);
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Default);

  cfg["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0},     {"factor", 32.0},
                            {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  h = read_config(cfg, dir).hparams;
  EXPECT_EQ(h.rope_theta, 500000.0f);
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Llama3);
  EXPECT_EQ(h.rope_scaling.factor, 32.0f);
  EXPECT_EQ(h.rope_scaling.original_max_position, 8192u);

  cfg["rope_parameters"]["high_freq_factor"] = 1.0;  // (high - low) is a divisor
  EXPECT_EQ(config_status(cfg), LLM_ERR_FORMAT);

  cfg["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}};  // theta from the legacy key
  cfg["rope_theta"] = 20000.0;
  h = read_config(cfg, dir).hparams;
  EXPECT_EQ(h.rope_theta, 20000.0f);
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Linear);
  EXPECT_EQ(h.rope_scaling.factor, 2.0f);
}

TEST(HfConfig, UnsupportedRopeTypes) {
  for (const char *type : {"yarn", "dynamic", "longrope"}) {
    json cfg = llama_config();
    cfg["rope_scaling"] = {{"rope_type", type}, {"factor", 4.0}, {"original_max_position_embeddings", 4096}};
    std::string msg;
    EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_UNSUPPORTED) << type;
    EXPECT_NE(msg.find(type), std::string::npos) << msg;
    cfg.erase("rope_scaling");
    cfg["rope_parameters"] = {{"rope_type", type}, {"rope_theta", 10000.0}, {"factor", 4.0}};
    EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_UNSUPPORTED) << type;
    EXPECT_NE(msg.find(type), std::string::npos) << msg;
  }
}

TEST(HfConfig, Qwen2) {
  json cfg = llama_config();
  cfg["model_type"] = "qwen2";
  cfg["architectures"] = {"Qwen2ForCausalLM"};
  cfg["use_sliding_window"] = false;
  cfg["sliding_window"] = 1024;
  cfg["max_window_layers"] = 0;
  cfg["tie_word_embeddings"] = true;
  cfg["rope_theta"] = 1000000.0;
  TempDir dir;
  HfModelConfig c = read_config(cfg, dir);
  EXPECT_EQ(c.arch, llm::Arch::Qwen2);
  EXPECT_TRUE(c.hparams.attention_bias);
  EXPECT_TRUE(c.hparams.tie_word_embeddings);
  EXPECT_EQ(c.hparams.sliding_window, 0u);  // use_sliding_window false
  EXPECT_EQ(c.hparams.rope_theta, 1000000.0f);

  cfg["use_sliding_window"] = true;  // max_window_layers 0: every layer slides
  EXPECT_EQ(read_config(cfg, dir).hparams.sliding_window, 1024u);
  cfg["max_window_layers"] = 2;  // layers 2, 3 slide, 0, 1 do not
  EXPECT_EQ(config_status(cfg), LLM_ERR_UNSUPPORTED);
  cfg["max_window_layers"] = 4;  // no layer slides
  EXPECT_EQ(read_config(cfg, dir).hparams.sliding_window, 0u);
}

TEST(HfConfig, MistralSlidingWindow) {
  json cfg = llama_config();
  cfg["model_type"] = "mistral";
  cfg["architectures"] = {"MistralForCausalLM"};
  cfg["sliding_window"] = 512;
  cfg["attention_bias"] = true;  // MistralAttention has no biases whatever the key says
  TempDir dir;
  HfModelConfig c = read_config(cfg, dir);
  EXPECT_EQ(c.arch, llm::Arch::Llama);
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.hparams.sliding_window, 512u);
  EXPECT_FALSE(c.hparams.attention_bias);
  cfg["sliding_window"] = 4096;  // not smaller than the context: no effect
  EXPECT_EQ(read_config(cfg, dir).hparams.sliding_window, 0u);
  cfg["sliding_window"] = nullptr;
  EXPECT_EQ(read_config(cfg, dir).hparams.sliding_window, 0u);
}

TEST(HfConfig, LlamaBiases) {
  json cfg = llama_config();
  cfg["attention_bias"] = true;
  TempDir dir;
  EXPECT_TRUE(read_config(cfg, dir).hparams.attention_bias);
  cfg["mlp_bias"] = true;
  std::string msg;
  EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_UNSUPPORTED);
  EXPECT_NE(msg.find("mlp_bias"), std::string::npos) << msg;
}

TEST(HfConfig, UnsupportedArchitectures) {
  std::string msg;
  json cfg = llama_config();
  cfg["model_type"] = "gemma";
  cfg["architectures"] = {"GemmaForCausalLM"};
  EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_UNSUPPORTED);
  EXPECT_NE(msg.find("GemmaForCausalLM (model_type gemma) is not supported; supported:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Qwen2ForCausalLM"), std::string::npos) << msg;

  cfg = llama_config();
  cfg["architectures"] = {"LlamaForSequenceClassification"};
  EXPECT_EQ(config_status(cfg), LLM_ERR_UNSUPPORTED);

  cfg = llama_config();
  cfg["hidden_act"] = "gelu";
  EXPECT_EQ(config_status(cfg), LLM_ERR_UNSUPPORTED);

  cfg = llama_config();
  cfg["quantization_config"] = {{"quant_method", "gptq"}};
  EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_UNSUPPORTED);
  EXPECT_NE(msg.find("gptq"), std::string::npos) << msg;

  cfg = llama_config();  // model_type alone, or architectures alone, is enough
  cfg.erase("architectures");
  TempDir dir;
  EXPECT_EQ(read_config(cfg, dir).arch, llm::Arch::Llama);
  cfg = llama_config();
  cfg.erase("model_type");
  cfg["architectures"] = {"Qwen2ForCausalLM"};
  EXPECT_EQ(read_config(cfg, dir).model_type, "qwen2");
  cfg["model_type"] = "llama";  // contradicts the class
  EXPECT_EQ(config_status(cfg), LLM_ERR_FORMAT);
}

TEST(HfConfig, MissingKeysAndBadValues) {
  for (const char *key : {"hidden_size", "vocab_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "max_position_embeddings"}) {
    json cfg = llama_config();
    cfg.erase(key);
    std::string msg;
    EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_FORMAT) << key;
    EXPECT_NE(msg.find(std::string("'") + key + "' is missing"), std::string::npos) << msg;
  }
  const std::vector<std::pair<const char *, json>> bad = {
      {"hidden_size", 0},       {"hidden_size", -1},        {"hidden_size", "256"},
      {"hidden_size", 25.5},    {"vocab_size", 1u << 25},   {"num_hidden_layers", 100000},
      {"rms_norm_eps", 0},      {"rms_norm_eps", "1e-5"},   {"rope_theta", -1.0},
      {"tie_word_embeddings", 1}, {"bos_token_id", 1000},  {"eos_token_id", json::array({2, -3})},
      {"model_type", 7},        {"architectures", "LlamaForCausalLM"}};
  for (const auto &[key, value] : bad) {
    json cfg = llama_config();
    cfg[key] = value;
    std::string msg;
    EXPECT_EQ(config_status(cfg, &msg), LLM_ERR_FORMAT) << key << " = " << value.dump();
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
  }
  TempDir dir;
  EXPECT_EQ(status_of([&] { read_hf_config(dir.path()); }), LLM_ERR_IO);  // no config.json
  write_file(dir.file("config.json"), "{\"model_type\": ");
  EXPECT_EQ(status_of([&] { read_hf_config(dir.path()); }), LLM_ERR_FORMAT);
  write_file(dir.file("config.json"), "[]");
  EXPECT_EQ(status_of([&] { read_hf_config(dir.path()); }), LLM_ERR_FORMAT);
}

TEST(HfConfig, GenerationAndTokenizerConfig) {
  TempDir dir;
  json cfg = llama_config();
  cfg["pad_token_id"] = -1;  // old Llama configs: "none"
  write_file(dir.file("generation_config.json"),
             json{{"bos_token_id", 5}, {"eos_token_id", {2, 7}}, {"temperature", 0.6},
                  {"top_p", 0.9}, {"do_sample", true}}.dump());
  write_file(dir.file("tokenizer_config.json"),
             json{{"add_bos_token", true},
                  {"add_eos_token", false},
                  {"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}},
                  {"eos_token", "</s>"},
                  {"chat_template", json::array({{{"name", "tool_use"}, {"template", "T"}},
                                                 {{"name", "default"}, {"template", "D"}}})}}
                 .dump());
  HfModelConfig c = read_config(cfg, dir);
  EXPECT_EQ(c.generation.bos_id, 5);
  EXPECT_EQ(c.generation.eos_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(c.generation.pad_id, -1);
  EXPECT_FLOAT_EQ(c.generation.temperature, 0.6f);
  EXPECT_FLOAT_EQ(c.generation.top_p, 0.9f);
  EXPECT_EQ(c.generation.top_k, 50);  // transformers' default
  EXPECT_TRUE(c.generation.do_sample);
  EXPECT_EQ(c.add_bos_token, std::optional<bool>(true));
  EXPECT_EQ(c.add_eos_token, std::optional<bool>(false));
  EXPECT_EQ(c.bos_token, "<s>");
  EXPECT_EQ(c.eos_token, "</s>");
  EXPECT_EQ(c.generation.chat_template, "D");

  write_file(dir.file("chat_template.jinja"), "{{ messages }}");  // clobbers tokenizer_config's
  EXPECT_EQ(read_config(cfg, dir).generation.chat_template, "{{ messages }}");

  write_file(dir.file("generation_config.json"), json{{"top_k", 0}, {"pad_token_id", 0}}.dump());
  c = read_config(cfg, dir);
  EXPECT_EQ(c.generation.bos_id, 1);  // falls back to config.json
  EXPECT_EQ(c.generation.eos_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c.generation.top_k, 0);
  EXPECT_EQ(c.generation.pad_id, 0);

  write_file(dir.file("generation_config.json"), json{{"top_p", 1.5}}.dump());
  std::string msg;
  EXPECT_EQ(status_of([&] { read_config(cfg, dir); }, &msg), LLM_ERR_FORMAT);
  EXPECT_NE(msg.find("generation_config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("top_p"), std::string::npos) << msg;
}

// ---- real checkpoints ---------------------------------------------------------------

std::string shared_model(const char *name) { return std::string(LLM_SHARED_DIR) + "/models/" + name; }

#define REQUIRE_MODEL(dir) \
  if (!fs::exists(dir)) GTEST_SKIP() << "checkpoint not found: " << dir

TEST(RealCheckpoints, TinyLlamaCode) {
  const std::string dir = shared_model("tiny-llama-code");
  REQUIRE_MODEL(dir);
  const HfModelConfig c = read_hf_config(dir);
  const llm::HParams &h = c.hparams;
  EXPECT_EQ(c.arch, llm::Arch::Llama);
  EXPECT_EQ(h.hidden_size, 384u);
  EXPECT_EQ(h.num_layers, 6u);
  EXPECT_EQ(h.num_heads, 6u);
  EXPECT_EQ(h.num_kv_heads, 2u);
  EXPECT_EQ(h.head_dim, 64u);
  EXPECT_EQ(h.vocab_size, 32000u);
  EXPECT_EQ(h.intermediate_size, 1024u);
  EXPECT_EQ(h.max_context, 1024u);
  EXPECT_TRUE(h.tie_word_embeddings);
  EXPECT_EQ(h.rope_theta, 10000.0f);
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Default);
  EXPECT_EQ(h.sliding_window, 0u);
  EXPECT_FALSE(h.attention_bias);
  EXPECT_EQ(c.generation.bos_id, 1);
  EXPECT_EQ(c.generation.eos_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c.add_bos_token, std::optional<bool>(true));
  EXPECT_EQ(c.bos_token, "<s>");

  const Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.size(), 2u + 9u * 6u);
  EXPECT_FALSE(ck.has("lm_head.weight"));  // tied
  EXPECT_EQ(ck.get("model.embed_tokens.weight").shape, (std::vector<int64_t>{32000, 384}));
  EXPECT_EQ(ck.get("model.layers.5.self_attn.k_proj.weight").shape, (std::vector<int64_t>{128, 384}));
  EXPECT_EQ(ck.get("model.layers.0.mlp.down_proj.weight").shape, (std::vector<int64_t>{384, 1024}));
  EXPECT_EQ(ck.get("model.norm.weight").dtype, SrcDType::BF16);
  uint64_t params = 0;
  for (const std::string &name : ck.names()) params += ck.get(name).numel;
  EXPECT_EQ(params, 21730176u);  // "params" in reference/reference.json

  // Values read with Python's struct module from the file.
  const SrcTensor &norm = ck.get("model.norm.weight");
  float v[4];
  ck.read_f32(norm, 0, 4, v);
  EXPECT_EQ(std::vector<float>(v, v + 4), (std::vector<float>{2.0625f, 1.9921875f, 1.9453125f, 1.765625f}));
  const SrcTensor &embed = ck.get("model.embed_tokens.weight");
  ck.read_f32(embed, embed.numel - 2, 2, v);
  EXPECT_EQ(v[0], 0.1650390625f);
  EXPECT_EQ(v[1], -0.08740234375f);
}

TEST(RealCheckpoints, TinyRandomLlama3) {
  const std::string dir = shared_model("tiny-random-llama3");
  REQUIRE_MODEL(dir);
  const llm::HParams h = read_hf_config(dir).hparams;
  EXPECT_EQ(h.hidden_size, 64u);
  EXPECT_EQ(h.num_layers, 3u);
  EXPECT_EQ(h.num_heads, 4u);
  EXPECT_EQ(h.num_kv_heads, 2u);
  EXPECT_EQ(h.head_dim, 16u);
  EXPECT_EQ(h.vocab_size, 50257u);
  EXPECT_EQ(h.max_context, 4096u);
  EXPECT_TRUE(h.tie_word_embeddings);
  EXPECT_EQ(h.rope_theta, 500000.0f);
  EXPECT_EQ(h.rope_scaling.type, llm::RopeType::Llama3);
  EXPECT_EQ(h.rope_scaling.factor, 8.0f);
  EXPECT_EQ(h.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_EQ(h.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(h.rope_scaling.original_max_position, 256u);

  const Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.get("model.embed_tokens.weight").shape, (std::vector<int64_t>{50257, 64}));
  EXPECT_EQ(ck.get("model.layers.2.self_attn.v_proj.weight").shape, (std::vector<int64_t>{32, 64}));
  EXPECT_FALSE(ck.has("model.layers.3.self_attn.v_proj.weight"));
}

TEST(RealCheckpoints, TinyRandomMistralSwa) {
  const std::string dir = shared_model("tiny-random-mistral-swa");
  REQUIRE_MODEL(dir);
  const HfModelConfig c = read_hf_config(dir);
  EXPECT_EQ(c.arch, llm::Arch::Llama);
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.hparams.sliding_window, 48u);
  EXPECT_FALSE(c.hparams.tie_word_embeddings);
  EXPECT_EQ(c.hparams.vocab_size, 32000u);
  EXPECT_EQ(c.hparams.head_dim, 16u);

  const Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.size(), 3u + 9u * 3u);
  const SrcTensor &lm_head = ck.get("lm_head.weight");  // untied
  EXPECT_EQ(lm_head.shape, (std::vector<int64_t>{32000, 64}));
  float v[4];
  ck.read_f32(lm_head, 0, 4, v);
  EXPECT_EQ(std::vector<float>(v, v + 4), (std::vector<float>{0.016845703125f, -0.1640625f, -0.0286865234375f, -0.1337890625f}));
}

}  // namespace
