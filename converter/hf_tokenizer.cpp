// tokenizer.json → TokenizerSpec. The field names and defaults follow the
// serde definitions of Hugging Face `tokenizers`; anything the runtime cannot
// reproduce exactly is rejected with LLM_ERR_UNSUPPORTED rather than dropped.

#include "converter/hf_tokenizer.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <unordered_map>
#include <vector>

#include "format/error.h"

namespace llm {

namespace {

using json = nlohmann::json;
using Vocab = std::unordered_map<std::string, int32_t>;

[[noreturn]] void malformed(const std::string &message) { fail_format("tokenizer.json: " + message); }
[[noreturn]] void unsupported(const std::string &message) {
  fail(LLM_ERR_UNSUPPORTED, "tokenizer.json: " + message);
}

// ------------------------------------------------------------ field access

const json *find(const json &obj, const char *key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

const json &require(const json &obj, const char *key, const std::string &where) {
  const json *v = find(obj, key);
  if (v == nullptr) malformed(where + " lacks \"" + key + "\"");
  return *v;
}

std::string as_string(const json &v, const std::string &what) {
  if (!v.is_string()) malformed(what + " must be a string");
  return v.get<std::string>();
}

std::string string_or(const json &obj, const char *key, const std::string &where, const std::string &fallback) {
  const json *v = find(obj, key);
  return v ? as_string(*v, where + "." + key) : fallback;
}

bool bool_or(const json &obj, const char *key, const std::string &where, bool fallback) {
  const json *v = find(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) malformed(where + "." + key + " must be true or false");
  return v->get<bool>();
}

int64_t as_int(const json &v, const std::string &what, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) malformed(what + " must be an integer");
  int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi) ? hi + 1 : v.get<int64_t>();
  if (x < lo || x > hi)
    malformed(what + " = " + v.dump() + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

// Token ids stay below 2^22 (4,194,304; 16 times the largest published
// vocabularies): the vocabulary table is indexed by id, so a file with one
// huge id would otherwise have it sized by that id (gigabytes).
constexpr int64_t kMaxTokenId = (int64_t{1} << 22) - 1;

int32_t as_id(const json &v, const std::string &what) {
  return static_cast<int32_t>(as_int(v, what, 0, kMaxTokenId));
}

const json &as_array(const json &v, const std::string &what) {
  if (!v.is_array()) malformed(what + " must be an array");
  return v;
}

// The "type" of a component object.
std::string type_of(const json &component, const std::string &where) {
  if (!component.is_object()) malformed(where + " must be an object");
  return as_string(require(component, "type", where), where + ".type");
}

// A {"String": "..."} / {"Regex": "..."} pattern object.
struct Pattern {
  std::string text;
  bool is_regex;
};

Pattern parse_pattern(const json &obj, const std::string &where) {
  const json &p = require(obj, "pattern", where);
  if (p.is_object()) {
    if (const json *s = find(p, "String")) return {as_string(*s, where + ".pattern.String"), false};
    if (const json *r = find(p, "Regex")) return {as_string(*r, where + ".pattern.Regex"), true};
  }
  malformed(where + ".pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

// A regex without metacharacters matches itself literally.
bool regex_is_literal(const std::string &regex) {
  return regex.find_first_of("\\.^$|?*+()[]{}") == std::string::npos;
}

// A literal pattern for Replace steps, which the runtime implements only for
// plain strings.
std::string literal_pattern(const json &obj, const std::string &where) {
  Pattern p = parse_pattern(obj, where);
  if (p.is_regex && !regex_is_literal(p.text))
    unsupported(where + ": Replace with a regular expression (/" + p.text + "/) is not supported");
  if (p.text.empty()) malformed(where + ": Replace with an empty pattern");
  return p.text;
}

// Metaspace's prepend scheme: 0 always, 1 first, 2 never. Older files carry
// only add_prefix_space (false meaning "never").
uint8_t parse_prepend_scheme(const json &obj, const std::string &where) {
  if (const json *scheme = find(obj, "prepend_scheme")) {
    std::string s = as_string(*scheme, where + ".prepend_scheme");
    if (s == "always") return 0;
    if (s == "first") return 1;
    if (s == "never") return 2;
    malformed(where + ".prepend_scheme \"" + s + "\" is not always/first/never");
  }
  return bool_or(obj, "add_prefix_space", where, true) ? 0 : 2;
}

std::string parse_replacement(const json &obj, const std::string &where) {
  std::string r = string_or(obj, "replacement", where, "\xE2\x96\x81");  // U+2581
  if (r.empty()) malformed(where + ".replacement is empty");
  return r;
}

// ------------------------------------------------------------ model

std::vector<std::string> split_on_spaces(const std::string &s) {
  std::vector<std::string> parts(1);
  for (char c : s) {
    if (c == ' ')
      parts.emplace_back();
    else
      parts.back() += c;
  }
  return parts;
}

int32_t vocab_id(const Vocab &vocab, const std::string &token) {
  auto it = vocab.find(token);
  return it == vocab.end() ? -1 : it->second;
}

// HF names a merge's result as left + right without the continuing-subword
// prefix of the right part.
std::string merge_result(const std::string &left, const std::string &right, size_t prefix_len,
                         const std::string &where) {
  if (right.size() < prefix_len) malformed(where + ": \"" + right + "\" is shorter than the subword prefix");
  return left + right.substr(prefix_len);
}

// Splits a legacy "a b" merge. Tokens containing spaces make it ambiguous;
// then the one split whose parts and result are all in the vocabulary wins.
std::pair<std::string, std::string> split_legacy_merge(const std::string &line, const Vocab &vocab,
                                                       size_t prefix_len, const std::string &where) {
  std::vector<std::string> parts = split_on_spaces(line);
  if (parts.size() == 2) return {parts[0], parts[1]};
  std::vector<std::pair<std::string, std::string>> candidates;
  for (size_t pos = line.find(' '); pos != std::string::npos; pos = line.find(' ', pos + 1)) {
    std::string a = line.substr(0, pos), b = line.substr(pos + 1);
    if (vocab.count(a) && vocab.count(b) && b.size() >= prefix_len &&
        vocab.count(merge_result(a, b, prefix_len, where)))
      candidates.emplace_back(a, b);
  }
  if (candidates.size() != 1)
    malformed(where + " \"" + line + "\" is not two space-separated tokens of the vocabulary");
  return candidates[0];
}

MergeSpec parse_merge(const json &entry, const Vocab &vocab, size_t prefix_len, const std::string &where) {
  std::pair<std::string, std::string> parts;
  if (entry.is_string()) {
    parts = split_legacy_merge(entry.get<std::string>(), vocab, prefix_len, where);
  } else if (entry.is_array() && entry.size() == 2) {
    parts = {as_string(entry[0], where + "[0]"), as_string(entry[1], where + "[1]")};
  } else {
    malformed(where + " must be \"a b\" or [\"a\", \"b\"]");
  }
  std::string result = merge_result(parts.first, parts.second, prefix_len, where);
  auto id_of = [&](const std::string &token) {
    int32_t id = vocab_id(vocab, token);
    if (id < 0)
      malformed(where + " (\"" + parts.first + "\" + \"" + parts.second + "\") uses \"" + token +
                "\", which is not in the vocabulary");
    return id;
  };
  MergeSpec m;
  m.left = id_of(parts.first);
  m.right = id_of(parts.second);
  m.result = id_of(result);
  return m;
}

void parse_vocab(const json &model, TokenizerSpec &spec, Vocab &vocab) {
  const json &v = require(model, "vocab", "model");
  if (!v.is_object()) malformed("model.vocab must be an object mapping tokens to ids");
  int32_t max_id = -1;
  std::vector<std::pair<int32_t, std::string>> entries;
  entries.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it) {
    int32_t id = as_id(it.value(), "model.vocab[\"" + it.key() + "\"]");
    entries.emplace_back(id, it.key());
    vocab.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  spec.vocab.assign(static_cast<size_t>(max_id + 1), std::string());
  std::vector<bool> used(spec.vocab.size(), false);
  for (auto &[id, token] : entries) {
    std::string &slot = spec.vocab[static_cast<size_t>(id)];
    if (used[static_cast<size_t>(id)])
      malformed("model.vocab gives id " + std::to_string(id) + " to both \"" + slot + "\" and \"" + token + "\"");
    used[static_cast<size_t>(id)] = true;
    slot = std::move(token);
  }
}

void parse_model(const json &root, TokenizerSpec &spec, Vocab &vocab) {
  const json &model = require(root, "model", "the file");
  if (!model.is_object()) malformed("model must be an object");
  // Old files may omit the type; a BPE model is recognised by its merges.
  std::string type = find(model, "type") ? type_of(model, "model") : (find(model, "merges") ? "BPE" : "?");
  if (type != "BPE") unsupported("model type \"" + type + "\" is not supported (only BPE)");
  if (const json *dropout = find(model, "dropout")) {
    if (!dropout->is_number()) malformed("model.dropout must be a number");
    if (dropout->get<double>() > 0.0) unsupported("BPE dropout (random merges) is not supported");
  }
  parse_vocab(model, spec, vocab);
  spec.continuing_subword_prefix = string_or(model, "continuing_subword_prefix", "model", "");
  spec.end_of_word_suffix = string_or(model, "end_of_word_suffix", "model", "");
  spec.fuse_unk = bool_or(model, "fuse_unk", "model", false);
  spec.byte_fallback = bool_or(model, "byte_fallback", "model", false);
  spec.ignore_merges = bool_or(model, "ignore_merges", "model", false);
  if (const json *unk = find(model, "unk_token")) {
    std::string name = as_string(*unk, "model.unk_token");
    spec.unk_id = vocab_id(vocab, name);
    if (spec.unk_id < 0) malformed("model.unk_token \"" + name + "\" is not in the vocabulary");
  }
  const json &merges = as_array(require(model, "merges", "model"), "model.merges");
  spec.merges.reserve(merges.size());
  size_t prefix_len = spec.continuing_subword_prefix.size();
  for (size_t i = 0; i < merges.size(); ++i)
    spec.merges.push_back(parse_merge(merges[i], vocab, prefix_len, "model.merges[" + std::to_string(i) + "]"));
}

// ------------------------------------------------------------ added tokens

AddedTokenSpec parse_added_token(const json &t, const std::string &where) {
  if (!t.is_object()) malformed(where + " must be an object");
  AddedTokenSpec a;
  a.id = as_id(require(t, "id", where), where + ".id");
  a.content = as_string(require(t, "content", where), where + ".content");
  a.single_word = bool_or(t, "single_word", where, false);
  a.lstrip = bool_or(t, "lstrip", where, false);
  a.rstrip = bool_or(t, "rstrip", where, false);
  a.normalized = bool_or(t, "normalized", where, true);
  a.special = bool_or(t, "special", where, false);
  return a;
}

bool same_token(const AddedTokenSpec &a, const AddedTokenSpec &b) {
  return a.content == b.content && a.special == b.special && a.lstrip == b.lstrip && a.rstrip == b.rstrip &&
         a.normalized == b.normalized && a.single_word == b.single_word;
}

// Ids exactly as HF's AddedVocabulary::add_tokens assigns them, in file
// order: a token already known (model vocabulary or an earlier added token)
// keeps that id; a new one gets the model's vocabulary size, or one past the
// largest added id once that reaches it. The "id" field of the file is not
// used (HF only warns when it differs), so that a file whose ids disagree
// gets the ids HF would give it.
class AddedTokenIds {
 public:
  explicit AddedTokenIds(const Vocab &vocab) : vocab_(vocab) {}

  int32_t assign(const std::string &content) {
    auto known = added_.find(content);
    int32_t id = known != added_.end() ? known->second : vocab_id(vocab_, content);
    if (id < 0) {
      const int64_t model_size = static_cast<int64_t>(vocab_.size());
      bool past_model = max_id_ >= model_size || model_size == 0;
      id = static_cast<int32_t>(max_id_ < 0 ? model_size : (past_model ? max_id_ + 1 : model_size));
    }
    added_.emplace(content, id);
    max_id_ = std::max<int64_t>(max_id_, id);
    return id;
  }

 private:
  const Vocab &vocab_;
  std::unordered_map<std::string, int32_t> added_;
  int64_t max_id_ = -1;
};

void parse_added_tokens(const json &root, TokenizerSpec &spec, const Vocab &vocab) {
  const json *list = find(root, "added_tokens");
  if (list == nullptr) return;
  as_array(*list, "added_tokens");
  AddedTokenIds ids(vocab);
  std::unordered_map<std::string, size_t> seen;  // content → index in spec.added_tokens
  for (size_t i = 0; i < list->size(); ++i) {
    std::string where = "added_tokens[" + std::to_string(i) + "]";
    AddedTokenSpec a = parse_added_token((*list)[i], where);
    if (a.content.empty()) continue;  // HF ignores empty added tokens
    auto dup = seen.find(a.content);
    if (dup != seen.end()) {
      if (same_token(spec.added_tokens[dup->second], a)) continue;  // HF skips exact repeats
      malformed(where + " repeats \"" + a.content + "\" with different options");
    }
    a.id = ids.assign(a.content);
    if (static_cast<size_t>(a.id) >= spec.vocab.size()) spec.vocab.resize(static_cast<size_t>(a.id) + 1);
    std::string &slot = spec.vocab[static_cast<size_t>(a.id)];
    if (!slot.empty() && slot != a.content)  // possible when the model's ids have gaps
      malformed(where + " \"" + a.content + "\" gets id " + std::to_string(a.id) + ", which the model gives to \"" +
                slot + "\"");
    slot = a.content;
    seen.emplace(a.content, spec.added_tokens.size());
    spec.added_tokens.push_back(std::move(a));
  }
}

// ------------------------------------------------------------ normalizers

void parse_normalizer(const json &n, const std::string &where, std::vector<NormalizerSpec> &out) {
  std::string type = type_of(n, where);
  NormalizerSpec s;
  if (type == "Sequence") {
    const json &list = as_array(require(n, "normalizers", where), where + ".normalizers");
    for (size_t i = 0; i < list.size(); ++i)
      parse_normalizer(list[i], where + ".normalizers[" + std::to_string(i) + "]", out);
    return;
  } else if (type == "Prepend") {
    s.kind = NormalizerSpec::Prepend;
    s.content = as_string(require(n, "prepend", where), where + ".prepend");
  } else if (type == "Replace") {
    s.kind = NormalizerSpec::Replace;
    s.pattern = literal_pattern(n, where);
    s.content = as_string(require(n, "content", where), where + ".content");
  } else if (type == "NFC") {
    s.kind = NormalizerSpec::NFC;
  } else if (type == "NFKC") {
    s.kind = NormalizerSpec::NFKC;
  } else if (type == "NFD") {
    s.kind = NormalizerSpec::NFD;
  } else if (type == "NFKD") {
    s.kind = NormalizerSpec::NFKD;
  } else if (type == "Lowercase") {
    s.kind = NormalizerSpec::Lowercase;
  } else if (type == "Strip") {
    s.kind = NormalizerSpec::Strip;
    s.left = bool_or(n, "strip_left", where, true);
    s.right = bool_or(n, "strip_right", where, true);
  } else {
    unsupported(where + ": normalizer \"" + type + "\" is not supported");
  }
  out.push_back(std::move(s));
}

// ------------------------------------------------------------ pre-tokenizers

PreTokenizerSpec::Behavior parse_behavior(const json &p, const std::string &where) {
  std::string b = as_string(require(p, "behavior", where), where + ".behavior");
  if (b == "Removed") return PreTokenizerSpec::Removed;
  if (b == "Isolated") return PreTokenizerSpec::Isolated;
  if (b == "MergedWithPrevious") return PreTokenizerSpec::MergedWithPrevious;
  if (b == "MergedWithNext") return PreTokenizerSpec::MergedWithNext;
  if (b == "Contiguous") return PreTokenizerSpec::Contiguous;
  malformed(where + ".behavior \"" + b + "\" is unknown");
}

void parse_pre_tokenizer(const json &p, const std::string &where, std::vector<PreTokenizerSpec> &out) {
  std::string type = type_of(p, where);
  PreTokenizerSpec s;
  if (type == "Sequence") {
    const json &list = as_array(require(p, "pretokenizers", where), where + ".pretokenizers");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(list[i], where + ".pretokenizers[" + std::to_string(i) + "]", out);
    return;
  } else if (type == "ByteLevel") {
    s.kind = PreTokenizerSpec::ByteLevel;
    s.add_prefix_space = bool_or(p, "add_prefix_space", where, true);
    s.use_regex = bool_or(p, "use_regex", where, true);
  } else if (type == "Split") {
    s.kind = PreTokenizerSpec::Split;
    Pattern pattern = parse_pattern(p, where);
    if (pattern.text.empty()) malformed(where + ": Split with an empty pattern");
    s.pattern = pattern.text;
    s.is_regex = pattern.is_regex;
    s.behavior = parse_behavior(p, where);
    s.invert = bool_or(p, "invert", where, false);
  } else if (type == "Metaspace") {
    s.kind = PreTokenizerSpec::Metaspace;
    s.replacement = parse_replacement(p, where);
    s.prepend_scheme = parse_prepend_scheme(p, where);
    s.split = bool_or(p, "split", where, true);
  } else if (type == "Digits") {
    s.kind = PreTokenizerSpec::Digits;
    s.individual_digits = bool_or(p, "individual_digits", where, false);
  } else {
    unsupported(where + ": pre-tokenizer \"" + type + "\" is not supported");
  }
  out.push_back(std::move(s));
}

// ------------------------------------------------------------ decoders

void parse_decoder(const json &d, const std::string &where, std::vector<DecoderSpec> &out) {
  std::string type = type_of(d, where);
  DecoderSpec s;
  if (type == "Sequence") {
    const json &list = as_array(require(d, "decoders", where), where + ".decoders");
    for (size_t i = 0; i < list.size(); ++i)
      parse_decoder(list[i], where + ".decoders[" + std::to_string(i) + "]", out);
    return;
  } else if (type == "ByteLevel") {
    s.kind = DecoderSpec::ByteLevel;
  } else if (type == "Replace") {
    s.kind = DecoderSpec::Replace;
    s.pattern = literal_pattern(d, where);
    s.content = as_string(require(d, "content", where), where + ".content");
  } else if (type == "ByteFallback") {
    s.kind = DecoderSpec::ByteFallback;
  } else if (type == "Fuse") {
    s.kind = DecoderSpec::Fuse;
  } else if (type == "Strip") {
    s.kind = DecoderSpec::Strip;
    s.content = as_string(require(d, "content", where), where + ".content");
    s.start = static_cast<uint32_t>(as_int(require(d, "start", where), where + ".start", 0, UINT32_MAX));
    s.stop = static_cast<uint32_t>(as_int(require(d, "stop", where), where + ".stop", 0, UINT32_MAX));
  } else if (type == "Metaspace") {
    s.kind = DecoderSpec::Metaspace;
    s.replacement = parse_replacement(d, where);
    s.prepend_scheme = parse_prepend_scheme(d, where);
    s.split = bool_or(d, "split", where, true);
  } else {
    unsupported(where + ": decoder \"" + type + "\" is not supported");
  }
  out.push_back(std::move(s));
}

// ------------------------------------------------------------ post-processor

struct SpecialIds {
  std::vector<int32_t> prefix, suffix;
};

// TemplateProcessing: the single-sequence template "X.. $A Y.." gives the ids
// of X.. as prefix and of Y.. as suffix.
SpecialIds parse_template(const json &p, const std::string &where) {
  const json &single = as_array(require(p, "single", where), where + ".single");
  const json *specials = find(p, "special_tokens");
  SpecialIds ids;
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    std::string item_where = where + ".single[" + std::to_string(i) + "]";
    const json &item = single[i];
    if (const json *seq = item.is_object() ? find(item, "Sequence") : nullptr) {
      std::string which = seq->is_object() ? string_or(*seq, "id", item_where, "A") : "A";
      if (which != "A" || seen_sequence) malformed(item_where + ": the single template must hold $A exactly once");
      seen_sequence = true;
      continue;
    }
    const json *tok = item.is_object() ? find(item, "SpecialToken") : nullptr;
    if (tok == nullptr || !tok->is_object()) malformed(item_where + " is neither a Sequence nor a SpecialToken");
    std::string name = as_string(require(*tok, "id", item_where), item_where + ".id");
    const json *entry = specials && specials->is_object() ? find(*specials, name.c_str()) : nullptr;
    if (entry == nullptr || !entry->is_object())
      malformed(item_where + ": special token \"" + name + "\" is missing from special_tokens");
    const json &list = as_array(require(*entry, "ids", item_where), where + ".special_tokens[\"" + name + "\"].ids");
    for (const json &id : list) (seen_sequence ? ids.suffix : ids.prefix).push_back(as_id(id, item_where + " id"));
  }
  if (!seen_sequence) malformed(where + ".single lacks the $A sequence");
  return ids;
}

// RobertaProcessing / BertProcessing: cls $A sep, with [token, id] pairs.
SpecialIds parse_cls_sep(const json &p, const std::string &where) {
  auto id_of = [&](const char *key) {
    const json &pair = require(p, key, where);
    if (!pair.is_array() || pair.size() != 2) malformed(where + "." + key + " must be [token, id]");
    return as_id(pair[1], where + "." + key + "[1]");
  };
  return SpecialIds{{id_of("cls")}, {id_of("sep")}};
}

void parse_post_processor(const json &p, const std::string &where, SpecialIds &ids) {
  std::string type = type_of(p, where);
  SpecialIds added;
  if (type == "Sequence") {
    const json &list = as_array(require(p, "processors", where), where + ".processors");
    for (size_t i = 0; i < list.size(); ++i)
      parse_post_processor(list[i], where + ".processors[" + std::to_string(i) + "]", ids);
    return;
  } else if (type == "ByteLevel") {
    return;  // only adjusts offsets
  } else if (type == "TemplateProcessing") {
    added = parse_template(p, where);
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    added = parse_cls_sep(p, where);
  } else {
    unsupported(where + ": post-processor \"" + type + "\" is not supported");
  }
  // A later processor wraps what the earlier ones produced.
  ids.prefix.insert(ids.prefix.begin(), added.prefix.begin(), added.prefix.end());
  ids.suffix.insert(ids.suffix.end(), added.suffix.begin(), added.suffix.end());
}

json parse_json(const std::string &text) {
  try {
    return json::parse(text);
  } catch (const json::exception &e) {
    malformed(std::string("invalid JSON: ") + e.what());
  }
}

}  // namespace

TokenizerSpec parse_hf_tokenizer(const std::string &tokenizer_json_text) {
  json root = parse_json(tokenizer_json_text);
  if (!root.is_object()) malformed("the top level must be an object");
  TokenizerSpec spec;
  try {
    Vocab vocab;
    parse_model(root, spec, vocab);
    parse_added_tokens(root, spec, vocab);
    if (const json *n = find(root, "normalizer")) parse_normalizer(*n, "normalizer", spec.normalizers);
    if (const json *p = find(root, "pre_tokenizer")) parse_pre_tokenizer(*p, "pre_tokenizer", spec.pre_tokenizers);
    if (const json *d = find(root, "decoder")) {
      parse_decoder(*d, "decoder", spec.decoders);
      // A decoder that does nothing still joins tokens without spaces (no
      // decoder at all joins them with spaces); Fuse says exactly that.
      if (spec.decoders.empty()) {
        DecoderSpec fuse;
        fuse.kind = DecoderSpec::Fuse;
        spec.decoders.push_back(fuse);
      }
    }
    if (const json *p = find(root, "post_processor")) {
      SpecialIds ids;
      parse_post_processor(*p, "post_processor", ids);
      spec.prefix_ids = std::move(ids.prefix);
      spec.suffix_ids = std::move(ids.suffix);
    }
  } catch (const json::exception &e) {  // a value of an unexpected type somewhere
    malformed(std::string("unexpected content: ") + e.what());
  }
  return spec;
}

}  // namespace llm
