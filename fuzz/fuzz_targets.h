// Entry points shared by the libFuzzer targets (fuzz/fuzz_*.cpp) and the
// regression test that replays saved inputs (tests/regression/). Each entry
// takes arbitrary bytes and must return normally: llm::Error is the only
// exception the library may throw for bad input, and is caught here; any
// other exception escapes (libFuzzer reports it as a crash), and a broken
// documented invariant aborts through invariant_failed().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llm::fuzz {

using Entry = void (*)(const uint8_t *data, size_t size);

// Model file bytes -> ModelFile::from_memory (Verify::Full), the tokenizer,
// then Model::load from a memfd and a short session. Then again with the
// header and metadata checksums (and file/metadata sizes) repaired, so that
// mutations reach the FlatBuffer, tensor table, hyper-parameter and
// tokenizer checks instead of stopping at the checksums.
void model_load(const uint8_t *data, size_t size);

// Byte 0: flags (bit 0 add_special, bit 1 parse_special, bit 2: the rest is
// a list of little-endian 16-bit token ids to decode instead of text).
// Runs every tokenizer of embedded_tokenizer_jsons().
void tokenizer(const uint8_t *data, size_t size);

// tokenizer.json text -> parse_hf_tokenizer -> Tokenizer, then a few
// encodes and decodes on the result.
void tokenizer_json(const uint8_t *data, size_t size);

// A safetensors file -> Checkpoint::open, read_f32 of every tensor (in
// chunks), release().
void safetensors(const uint8_t *data, size_t size);

// Up to four files separated by kHfConfigSeparator: config.json,
// generation_config.json, tokenizer_config.json, chat_template.jinja, in a
// temporary folder -> read_hf_config.
void hf_config(const uint8_t *data, size_t size);
constexpr char kHfConfigSeparator[] = "\n#~#\n";

// Byte 0: flags (bit 0 add_generation_prompt, bit 1 no BOS/EOS text), then
// parts separated by kHfConfigSeparator: the Jinja template, then one message
// per part (its first byte picks the role: system, user, assistant, tool, or
// for values >= 0xF0 the rest of the part up to the first NUL is the role) ->
// render_chat_template with a fixed clock. Only llm::Error with
// LLM_ERR_UNSUPPORTED or LLM_ERR_INVALID_ARGUMENT may come out of it.
void chat_template(const uint8_t *data, size_t size);

// Byte 0: bits 0-2 pick the KV cache type (modulo 5: f32, f16, bf16, int8,
// int4), bit 3 repairs the state's payload checksum (so mutations reach the
// checks behind it). The rest: a session state (llm_session_save) restored
// into a 64-token session of a fixed small random model, which then
// evaluates a token and decodes a few more. Only llm::Error may come out.
void session_state(const uint8_t *data, size_t size);
// The bytes of a valid state for session_state with cache type `kv` (0-4),
// holding `n_tokens` tokens (seed corpus).
std::vector<uint8_t> session_state_seed(int kv, int n_tokens);

struct Target {
  const char *name;  // also the folder name under fuzz/corpus and tests/regression
  Entry entry;
};
const std::vector<Target> &targets();
Entry find_target(const std::string &name);  // nullptr if unknown

// (name, tokenizer.json text) of the small tokenizers fuzz_tokenizer runs:
// Llama-2 style (SentencePiece-like BPE with byte fallback), GPT-2 byte-level,
// Llama-3 style (regex split + byte-level, NFC) and Metaspace with digits.
const std::vector<std::pair<std::string, std::string>> &embedded_tokenizer_jsons();

// Prints what broke and aborts (a crash for libFuzzer and for the tests).
[[noreturn]] void invariant_failed(const char *target, const std::string &what);

}  // namespace llm::fuzz
