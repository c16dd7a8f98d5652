#include "format/model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstddef>
#include <cstring>

#include <xxhash.h>

#include "format/error.h"
#include "format/llm_model_generated.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the model file is little-endian and is mapped directly");

namespace llm {
namespace {

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// ---- metadata -> FlatBuffer -------------------------------------------------

flatbuffers::Offset<fb::HParams> build_hparams(flatbuffers::FlatBufferBuilder &b, const HParams &h) {
  auto rope = fb::CreateRopeScaling(b, static_cast<fb::RopeType>(h.rope_scaling.type),
                                    h.rope_scaling.factor, h.rope_scaling.low_freq_factor,
                                    h.rope_scaling.high_freq_factor,
                                    h.rope_scaling.original_max_position);
  return fb::CreateHParams(b, h.vocab_size, h.hidden_size, h.num_layers, h.num_heads,
                           h.num_kv_heads, h.head_dim, h.intermediate_size, h.max_context,
                           h.rms_norm_eps, h.rope_theta, rope, h.tie_word_embeddings,
                           h.attention_bias, h.sliding_window);
}

void put_varint(std::vector<uint8_t> &out, uint32_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

flatbuffers::Offset<fb::Tokenizer> build_tokenizer(flatbuffers::FlatBufferBuilder &b,
                                                   const TokenizerSpec &t) {
  std::vector<uint8_t> bytes, lengths, merges;
  lengths.reserve(t.vocab.size());
  for (const std::string &piece : t.vocab) {
    bytes.insert(bytes.end(), piece.begin(), piece.end());
    put_varint(lengths, static_cast<uint32_t>(piece.size()));
  }
  merges.reserve(t.merges.size() * 4);
  for (const MergeSpec &m : t.merges) {
    if (m.left < 0 || m.right < 0) fail(LLM_ERR_INTERNAL, "tokenizer merge with a negative id");
    put_varint(merges, static_cast<uint32_t>(m.left));
    put_varint(merges, static_cast<uint32_t>(m.right));
  }
  auto bytes_v = b.CreateVector(bytes);
  auto lengths_v = b.CreateVector(lengths);
  auto merges_v = b.CreateVector(merges);

  std::vector<flatbuffers::Offset<fb::AddedToken>> added;
  for (const AddedTokenSpec &a : t.added_tokens) {
    auto content = b.CreateString(a.content);
    fb::AddedTokenBuilder ab(b);
    ab.add_id(a.id);
    ab.add_content(content);
    ab.add_special(a.special);
    ab.add_lstrip(a.lstrip);
    ab.add_rstrip(a.rstrip);
    ab.add_normalized(a.normalized);
    ab.add_single_word(a.single_word);
    added.push_back(ab.Finish());
  }
  auto added_v = b.CreateVector(added);

  std::vector<flatbuffers::Offset<fb::NormalizerStep>> norms;
  for (const NormalizerSpec &n : t.normalizers)
    norms.push_back(fb::CreateNormalizerStepDirect(
        b, static_cast<fb::NormalizerKind>(n.kind), n.pattern.c_str(), n.content.c_str(),
        n.left, n.right));
  auto norms_v = b.CreateVector(norms);

  std::vector<flatbuffers::Offset<fb::PreTokenizerStep>> pres;
  for (const PreTokenizerSpec &p : t.pre_tokenizers) {
    auto pattern = b.CreateString(p.pattern);
    auto replacement = b.CreateString(p.replacement);
    fb::PreTokenizerStepBuilder pb(b);
    pb.add_kind(static_cast<fb::PreTokenizerKind>(p.kind));
    pb.add_pattern(pattern);
    pb.add_is_regex(p.is_regex);
    pb.add_behavior(static_cast<fb::SplitBehavior>(p.behavior));
    pb.add_invert(p.invert);
    pb.add_add_prefix_space(p.add_prefix_space);
    pb.add_use_regex(p.use_regex);
    pb.add_replacement(replacement);
    pb.add_prepend_scheme(p.prepend_scheme);
    pb.add_split(p.split);
    pb.add_individual_digits(p.individual_digits);
    pres.push_back(pb.Finish());
  }
  auto pres_v = b.CreateVector(pres);

  std::vector<flatbuffers::Offset<fb::DecoderStep>> decs;
  for (const DecoderSpec &d : t.decoders) {
    auto pattern = b.CreateString(d.pattern);
    auto content = b.CreateString(d.content);
    auto replacement = b.CreateString(d.replacement);
    fb::DecoderStepBuilder db(b);
    db.add_kind(static_cast<fb::DecoderKind>(d.kind));
    db.add_pattern(pattern);
    db.add_content(content);
    db.add_start(d.start);
    db.add_stop(d.stop);
    db.add_replacement(replacement);
    db.add_prepend_scheme(d.prepend_scheme);
    db.add_split(d.split);
    decs.push_back(db.Finish());
  }
  auto decs_v = b.CreateVector(decs);
  auto prefix = b.CreateVector(t.prefix_ids);
  auto suffix = b.CreateVector(t.suffix_ids);
  auto cont = b.CreateString(t.continuing_subword_prefix);
  auto eow = b.CreateString(t.end_of_word_suffix);

  fb::TokenizerBuilder tb(b);
  tb.add_model(fb::TokenizerModel::BPE);
  tb.add_vocab_bytes(bytes_v);
  tb.add_vocab_lengths(lengths_v);
  tb.add_merges_packed(merges_v);
  tb.add_added_tokens(added_v);
  tb.add_unk_id(t.unk_id);
  tb.add_byte_fallback(t.byte_fallback);
  tb.add_fuse_unk(t.fuse_unk);
  tb.add_ignore_merges(t.ignore_merges);
  tb.add_continuing_subword_prefix(cont);
  tb.add_end_of_word_suffix(eow);
  tb.add_normalizers(norms_v);
  tb.add_pre_tokenizers(pres_v);
  tb.add_decoders(decs_v);
  tb.add_prefix_ids(prefix);
  tb.add_suffix_ids(suffix);
  return tb.Finish();
}

flatbuffers::Offset<fb::Generation> build_generation(flatbuffers::FlatBufferBuilder &b,
                                                     const GenerationConfig &g) {
  auto eos = b.CreateVector(g.eos_ids);
  auto tmpl = b.CreateString(g.chat_template);
  fb::GenerationBuilder gb(b);
  gb.add_bos_id(g.bos_id);
  gb.add_eos_ids(eos);
  gb.add_pad_id(g.pad_id);
  gb.add_chat_template(tmpl);
  gb.add_temperature(g.temperature);
  gb.add_top_k(g.top_k);
  gb.add_top_p(g.top_p);
  gb.add_do_sample(g.do_sample);
  return gb.Finish();
}

flatbuffers::Offset<fb::Tensor> build_tensor(flatbuffers::FlatBufferBuilder &b, const TensorInfo &t) {
  auto name = b.CreateString(t.name);
  auto shape = b.CreateVector(t.shape);
  flatbuffers::Offset<fb::QuantParams> quant = 0;
  if (t.quant.group_size != 0) {
    fb::Segment scales(t.quant.scales_offset, t.quant.scales_size);
    fb::Segment zeros(t.quant.zeros_offset, t.quant.zeros_size);
    quant = fb::CreateQuantParams(b, t.quant.group_size,
                                  static_cast<fb::DType>(t.quant.scale_dtype), &scales, &zeros);
  }
  fb::Segment data(t.offset, t.size);
  return fb::CreateTensor(b, name, shape, static_cast<fb::DType>(t.dtype), &data, quant, 0,
                          t.checksum);
}

// ---- FlatBuffer -> metadata (after verification) ----------------------------

std::string str(const flatbuffers::String *s) { return s ? s->str() : std::string(); }

template <class T>
std::vector<T> vec(const flatbuffers::Vector<T> *v) {
  return v ? std::vector<T>(v->begin(), v->end()) : std::vector<T>();
}

HParams read_hparams(const fb::HParams *h) {
  HParams p;
  p.vocab_size = h->vocab_size();
  p.hidden_size = h->hidden_size();
  p.num_layers = h->num_layers();
  p.num_heads = h->num_heads();
  p.num_kv_heads = h->num_kv_heads();
  p.head_dim = h->head_dim();
  p.intermediate_size = h->intermediate_size();
  p.max_context = h->max_context();
  p.rms_norm_eps = h->rms_norm_eps();
  p.rope_theta = h->rope_theta();
  if (const fb::RopeScaling *r = h->rope_scaling()) {
    if (r->type() > fb::RopeType::MAX)
      fail_format("unknown RoPE type " + std::to_string(static_cast<int>(r->type())));
    p.rope_scaling.type = static_cast<RopeType>(r->type());
    p.rope_scaling.factor = r->factor();
    p.rope_scaling.low_freq_factor = r->low_freq_factor();
    p.rope_scaling.high_freq_factor = r->high_freq_factor();
    p.rope_scaling.original_max_position = r->original_max_position();
  }
  p.tie_word_embeddings = h->tie_word_embeddings();
  p.attention_bias = h->attention_bias();
  p.sliding_window = h->sliding_window();
  return p;
}

template <class Enum>
Enum checked_enum(Enum v, Enum max, const char *what) {
  if (static_cast<int>(v) > static_cast<int>(max))
    fail_format(std::string("unknown ") + what + " " + std::to_string(static_cast<int>(v)) +
                " (file written by a newer converter?)");
  return v;
}

// Reads one unsigned LEB128 varint of at most 32 bits from [*p, end).
uint32_t get_varint(const uint8_t *&p, const uint8_t *end, const char *what) {
  uint32_t v = 0;
  for (int shift = 0;; shift += 7) {
    if (p == end) fail_format(std::string("tokenizer ") + what + ": varint runs past the end");
    const uint8_t byte = *p++;
    if (shift == 28) {  // the fifth byte holds bits 28..31 and ends the varint
      if (byte & 0x80) fail_format(std::string("tokenizer ") + what + ": varint longer than 5 bytes");
      if (byte > 0x0f) fail_format(std::string("tokenizer ") + what + ": varint exceeds 32 bits");
    }
    v |= static_cast<uint32_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return v;
  }
}

// max_vocab: the model's vocabulary size; a tokenizer with more ids is
// rejected before anything is allocated for them.
TokenizerSpec read_tokenizer(const fb::Tokenizer *t, uint16_t format_major, uint64_t max_vocab) {
  TokenizerSpec s;
  const auto too_many = [&] {
    fail_format("tokenizer has more tokens than the model's vocabulary of " + std::to_string(max_vocab));
  };
  // (left, right) pairs; the merged ids are looked up below.
  std::vector<std::pair<uint32_t, uint32_t>> pairs;
  if (format_major == 1) {
    if (!t->vocab()) fail_format("tokenizer has no vocabulary");
    if (t->vocab_bytes() || t->vocab_lengths() || t->merges_packed())
      fail_format("format 1 file carries the packed tokenizer fields of format 2");
    if (t->vocab()->size() > max_vocab) too_many();
    s.vocab.reserve(t->vocab()->size());
    for (const flatbuffers::String *piece : *t->vocab()) s.vocab.push_back(str(piece));
    if (t->merges()) {
      pairs.reserve(t->merges()->size());
      for (const fb::Merge *m : *t->merges()) {
        if (m->left() < 0 || m->right() < 0)
          fail_format("tokenizer merge (" + std::to_string(m->left()) + ", " + std::to_string(m->right()) +
                      ") refers to ids outside the vocabulary");
        pairs.emplace_back(static_cast<uint32_t>(m->left()), static_cast<uint32_t>(m->right()));
      }
    }
  } else {
    if (t->vocab() || t->merges()) fail_format("format 2 file carries the unpacked tokenizer fields of format 1");
    if (!t->vocab_lengths() || !t->vocab_bytes()) fail_format("tokenizer has no vocabulary");
    const uint8_t *p = t->vocab_lengths()->data(), *end = p + t->vocab_lengths()->size();
    const uint8_t *bytes = t->vocab_bytes()->data();
    const size_t n_bytes = t->vocab_bytes()->size();
    size_t used = 0;
    s.vocab.reserve(std::min<uint64_t>(t->vocab_lengths()->size(), max_vocab));
    while (p != end) {
      if (s.vocab.size() == max_vocab) too_many();
      const uint32_t len = get_varint(p, end, "vocabulary lengths");
      if (len > n_bytes - used)
        fail_format("tokenizer vocabulary: entry " + std::to_string(s.vocab.size()) + " of " +
                    std::to_string(len) + " bytes runs past the " + std::to_string(n_bytes) + " vocabulary bytes");
      s.vocab.emplace_back(reinterpret_cast<const char *>(bytes + used), len);
      used += len;
    }
    if (used != n_bytes)
      fail_format("tokenizer vocabulary: lengths cover " + std::to_string(used) + " of " +
                  std::to_string(n_bytes) + " bytes");
    if (t->merges_packed()) {
      p = t->merges_packed()->data();
      end = p + t->merges_packed()->size();
      pairs.reserve(t->merges_packed()->size() / 4);
      while (p != end) {
        const uint32_t left = get_varint(p, end, "merges");
        const uint32_t right = get_varint(p, end, "merges");
        pairs.emplace_back(left, right);
      }
    }
  }
  if (s.vocab.size() > static_cast<size_t>(INT32_MAX)) fail_format("tokenizer vocabulary is too large");
  s.continuing_subword_prefix = str(t->continuing_subword_prefix());
  if (!pairs.empty()) {
    // The merged token of each pair is the vocabulary entry spelled left +
    // right, less the right part's continuing-subword prefix (as HF names it).
    const size_t prefix_len = s.continuing_subword_prefix.size();
    std::unordered_map<std::string, int32_t> ids;
    ids.reserve(s.vocab.size());
    for (size_t i = 0; i < s.vocab.size(); ++i) ids.emplace(s.vocab[i], static_cast<int32_t>(i));
    const uint64_t n_vocab = s.vocab.size();
    s.merges.reserve(pairs.size());
    std::string joined;
    for (const auto &[left, right] : pairs) {
      if (left >= n_vocab || right >= n_vocab)
        fail_format("tokenizer merge (" + std::to_string(left) + ", " + std::to_string(right) +
                    ") refers to ids outside the vocabulary");
      const std::string &r = s.vocab[right];
      if (r.size() < prefix_len) fail_format("tokenizer merge part shorter than the subword prefix");
      joined.assign(s.vocab[left]).append(r, prefix_len, std::string::npos);
      auto it = ids.find(joined);
      if (it == ids.end())
        fail_format("tokenizer merge of ids " + std::to_string(left) + " and " + std::to_string(right) +
                    " yields a token missing from the vocabulary");
      s.merges.push_back({static_cast<int32_t>(left), static_cast<int32_t>(right), it->second});
    }
  }
  if (t->added_tokens()) {
    for (const fb::AddedToken *a : *t->added_tokens()) {
      AddedTokenSpec x;
      x.id = a->id();
      x.content = str(a->content());
      x.special = a->special();
      x.lstrip = a->lstrip();
      x.rstrip = a->rstrip();
      x.normalized = a->normalized();
      x.single_word = a->single_word();
      s.added_tokens.push_back(std::move(x));
    }
  }
  s.unk_id = t->unk_id();
  s.byte_fallback = t->byte_fallback();
  s.fuse_unk = t->fuse_unk();
  s.ignore_merges = t->ignore_merges();
  s.end_of_word_suffix = str(t->end_of_word_suffix());
  if (t->normalizers()) {
    for (const fb::NormalizerStep *n : *t->normalizers()) {
      NormalizerSpec x;
      x.kind = static_cast<NormalizerSpec::Kind>(
          checked_enum(n->kind(), fb::NormalizerKind::MAX, "normalizer kind"));
      x.pattern = str(n->pattern());
      x.content = str(n->content());
      x.left = n->left();
      x.right = n->right();
      s.normalizers.push_back(std::move(x));
    }
  }
  if (t->pre_tokenizers()) {
    for (const fb::PreTokenizerStep *p : *t->pre_tokenizers()) {
      PreTokenizerSpec x;
      x.kind = static_cast<PreTokenizerSpec::Kind>(
          checked_enum(p->kind(), fb::PreTokenizerKind::MAX, "pre-tokenizer kind"));
      x.pattern = str(p->pattern());
      x.is_regex = p->is_regex();
      x.behavior = static_cast<PreTokenizerSpec::Behavior>(
          checked_enum(p->behavior(), fb::SplitBehavior::MAX, "split behavior"));
      x.invert = p->invert();
      x.add_prefix_space = p->add_prefix_space();
      x.use_regex = p->use_regex();
      x.replacement = str(p->replacement());
      x.prepend_scheme = p->prepend_scheme();
      x.split = p->split();
      x.individual_digits = p->individual_digits();
      s.pre_tokenizers.push_back(std::move(x));
    }
  }
  if (t->decoders()) {
    for (const fb::DecoderStep *d : *t->decoders()) {
      DecoderSpec x;
      x.kind = static_cast<DecoderSpec::Kind>(
          checked_enum(d->kind(), fb::DecoderKind::MAX, "decoder kind"));
      x.pattern = str(d->pattern());
      x.content = str(d->content());
      x.start = d->start();
      x.stop = d->stop();
      x.replacement = str(d->replacement());
      x.prepend_scheme = d->prepend_scheme();
      x.split = d->split();
      s.decoders.push_back(std::move(x));
    }
  }
  s.prefix_ids = vec(t->prefix_ids());
  s.suffix_ids = vec(t->suffix_ids());
  return s;
}

GenerationConfig read_generation(const fb::Generation *g) {
  GenerationConfig c;
  if (!g) return c;
  c.bos_id = g->bos_id();
  c.eos_ids = vec(g->eos_ids());
  c.pad_id = g->pad_id();
  c.chat_template = str(g->chat_template());
  c.temperature = g->temperature();
  c.top_k = g->top_k();
  c.top_p = g->top_p();
  c.do_sample = g->do_sample();
  return c;
}

// Checks that [offset, offset + size) lies inside [lo, hi) without overflow.
void check_range(const std::string &what, uint64_t offset, uint64_t size, uint64_t lo,
                 uint64_t hi, uint64_t file_size) {
  if (offset < lo || offset > hi || size > hi - offset)
    fail_format(what + ": bytes " + hex(offset) + " + " + std::to_string(size) +
                " lie outside the data region [" + hex(lo) + ", " + hex(hi) + ") of a " +
                std::to_string(file_size) + "-byte file");
}

uint64_t hash_segment(const uint8_t *base, const TensorInfo &t) {
  XXH3_state_t *state = XXH3_createState();
  if (!state) throw std::bad_alloc();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, base + t.offset, t.size);
  if (t.quant.scales_size) XXH3_64bits_update(state, base + t.quant.scales_offset, t.quant.scales_size);
  if (t.quant.zeros_size) XXH3_64bits_update(state, base + t.quant.zeros_offset, t.quant.zeros_size);
  uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

// Validates the quantization parameters of a tensor (or their absence).
void read_quant(const fb::Tensor *ft, TensorInfo &t, uint64_t lo, uint64_t hi, uint64_t file_size) {
  const bool quantized = t.dtype == DType::I8 || t.dtype == DType::I4;
  const fb::QuantParams *q = ft->quant();
  if (!quantized) {
    if (q && q->group_size() != 0) fail_format("tensor " + t.name + ": float tensor with quantization parameters");
    return;
  }
  if (!q || q->group_size() == 0) fail_format("tensor " + t.name + ": quantized tensor without group size");
  const uint32_t g = q->group_size();
  if (t.shape.size() != 2 || g % 32 != 0 || g > (1u << 16) || t.shape[1] % g != 0)
    fail_format("tensor " + t.name + ": group size " + std::to_string(g) +
                " must be a multiple of 32 dividing the columns of a 2-D tensor");
  if (q->scale_dtype() != fb::DType::F16)
    fail(LLM_ERR_UNSUPPORTED, "tensor " + t.name + ": scale type " + std::to_string(static_cast<int>(q->scale_dtype())) +
                                  " is not supported by this reader (f16 only)");
  t.quant.group_size = g;
  t.quant.scale_dtype = DType::F16;
  if (!q->scales()) fail_format("tensor " + t.name + ": no scales segment");
  t.quant.scales_offset = q->scales()->offset();
  t.quant.scales_size = q->scales()->size();
  if (q->zeros()) {
    t.quant.zeros_offset = q->zeros()->offset();
    t.quant.zeros_size = q->zeros()->size();
  }
  check_range("scales of tensor " + t.name, t.quant.scales_offset, t.quant.scales_size, lo, hi, file_size);
  if (t.quant.zeros_size != 0)
    check_range("zero points of tensor " + t.name, t.quant.zeros_offset, t.quant.zeros_size, lo, hi, file_size);
  if (t.quant.scales_size != quant_scales_bytes(t.shape[0], t.shape[1], g))
    fail_format("tensor " + t.name + ": scales segment has " + std::to_string(t.quant.scales_size) + " bytes, expected " +
                std::to_string(quant_scales_bytes(t.shape[0], t.shape[1], g)));
  if (t.quant.zeros_size != 0 && t.quant.zeros_size != quant_zeros_bytes(t.shape[0], t.shape[1], g))
    fail_format("tensor " + t.name + ": zero-point segment has " + std::to_string(t.quant.zeros_size) + " bytes");
  if (t.quant.scales_offset % 2 != 0) fail_format("tensor " + t.name + ": scales are not 2-byte aligned");
}

}  // namespace

uint64_t quant_scales_bytes(int64_t rows, int64_t cols, uint32_t group_size) {
  return group_size ? static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols / group_size) * 2 : 0;
}

uint64_t quant_zeros_bytes(int64_t rows, int64_t cols, uint32_t group_size) {
  return group_size ? static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols / group_size) : 0;
}

uint64_t TensorInfo::elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

// ---- ModelWriter --------------------------------------------------------------

ModelWriter::ModelWriter(const std::string &path) : path_(path), tmp_path_(path + ".tmp" + std::to_string(getpid())) {
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_) fail(LLM_ERR_IO, "cannot create " + tmp_path_ + ": " + std::strerror(errno));
  hash_state_ = XXH3_createState();
  if (!hash_state_) throw std::bad_alloc();
  FileHeader placeholder{};
  write_raw(&placeholder, sizeof placeholder);
}

ModelWriter::~ModelWriter() {
  if (file_) std::fclose(file_);
  if (!finished_) std::remove(tmp_path_.c_str());
  XXH3_freeState(static_cast<XXH3_state_t *>(hash_state_));
}

void ModelWriter::write_raw(const void *data, size_t bytes) {
  if (bytes && std::fwrite(data, 1, bytes, file_) != bytes)
    fail(LLM_ERR_IO, "cannot write " + tmp_path_ + ": " + std::strerror(errno));
  pos_ += bytes;
}

void ModelWriter::pad_to(uint64_t alignment) {
  static const uint8_t zeros[4096] = {};
  uint64_t target = align_up(pos_, alignment);
  while (pos_ < target) write_raw(zeros, static_cast<size_t>(std::min<uint64_t>(target - pos_, sizeof zeros)));
}

void ModelWriter::begin_tensor(const std::string &name, DType dtype, std::vector<int64_t> shape,
                               QuantSpec quant) {
  if (in_tensor_) fail(LLM_ERR_INTERNAL, "begin_tensor(" + name + ") inside another tensor");
  for (const TensorInfo &t : tensors_)
    if (t.name == name) fail(LLM_ERR_INTERNAL, "tensor " + name + " written twice");
  const bool quantized = dtype == DType::I8 || dtype == DType::I4;
  if (quantized != (quant.group_size != 0))
    fail(LLM_ERR_INTERNAL, "tensor " + name + ": group size given for a float type or missing for " +
                               dtype_name(dtype));
  if (quantized && (shape.size() != 2 || quant.group_size % 32 != 0 || shape[1] % quant.group_size != 0))
    fail(LLM_ERR_INTERNAL, "tensor " + name + ": quantized tensors are 2-D with rows divisible into groups "
                           "that are a multiple of 32");
  pad_to(kTensorAlignment);
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.offset = pos_;
  t.quant.group_size = quant.group_size;
  tensors_.push_back(std::move(t));
  XXH3_64bits_reset(static_cast<XXH3_state_t *>(hash_state_));
  in_tensor_ = true;
  part_ = Part::Data;
  zero_points_ = quant.zero_points;
}

void ModelWriter::write(const void *data, size_t bytes) {
  if (!in_tensor_) fail(LLM_ERR_INTERNAL, "ModelWriter::write outside a tensor");
  XXH3_64bits_update(static_cast<XXH3_state_t *>(hash_state_), data, bytes);
  write_raw(data, bytes);
}

// Records the size of the part just written and checks it against the shape.
void ModelWriter::close_part() {
  TensorInfo &t = tensors_.back();
  uint64_t expected = 0, got = 0;
  const int64_t rows = t.shape.empty() ? 0 : t.shape[0], cols = t.shape.size() > 1 ? t.shape[1] : 1;
  switch (part_) {
    case Part::Data:
      t.size = got = pos_ - t.offset;
      expected = dtype_bytes(t.dtype, t.elements());
      break;
    case Part::Scales:
      t.quant.scales_size = got = pos_ - t.quant.scales_offset;
      expected = quant_scales_bytes(rows, cols, t.quant.group_size);
      break;
    case Part::Zeros:
      t.quant.zeros_size = got = pos_ - t.quant.zeros_offset;
      expected = quant_zeros_bytes(rows, cols, t.quant.group_size);
      break;
  }
  if (got != expected)
    fail(LLM_ERR_INTERNAL, "tensor " + t.name + ": wrote " + std::to_string(got) + " bytes of a part that needs " +
                               std::to_string(expected));
}

void ModelWriter::begin_scales() {
  if (!in_tensor_ || part_ != Part::Data || tensors_.back().quant.group_size == 0)
    fail(LLM_ERR_INTERNAL, "begin_scales() outside a quantized tensor's data");
  close_part();
  pad_to(64);
  tensors_.back().quant.scales_offset = pos_;
  part_ = Part::Scales;
}

void ModelWriter::begin_zeros() {
  if (!in_tensor_ || part_ != Part::Scales || !zero_points_)
    fail(LLM_ERR_INTERNAL, "begin_zeros() must follow the scales of an asymmetric tensor");
  close_part();
  pad_to(64);
  tensors_.back().quant.zeros_offset = pos_;
  part_ = Part::Zeros;
}

void ModelWriter::end_tensor() {
  if (!in_tensor_) fail(LLM_ERR_INTERNAL, "end_tensor() outside a tensor");
  TensorInfo &t = tensors_.back();
  const Part last = t.quant.group_size == 0 ? Part::Data : zero_points_ ? Part::Zeros : Part::Scales;
  if (part_ != last) fail(LLM_ERR_INTERNAL, "tensor " + t.name + ": scales or zero points missing");
  close_part();
  t.checksum = XXH3_64bits_digest(static_cast<XXH3_state_t *>(hash_state_));
  in_tensor_ = false;
}

void ModelWriter::finish(const ModelMetadata &meta, const TokenizerSpec &tokenizer) {
  if (in_tensor_) fail(LLM_ERR_INTERNAL, "finish() inside a tensor");
  uint64_t data_offset = tensors_.empty() ? align_up(sizeof(FileHeader), 64) : tensors_.front().offset;
  uint64_t data_end = pos_;

  flatbuffers::FlatBufferBuilder b(1 << 20);
  auto hparams = build_hparams(b, meta.hparams);
  auto tok = build_tokenizer(b, tokenizer);
  auto gen = build_generation(b, meta.generation);
  std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
  for (const TensorInfo &t : tensors_) tensors.push_back(build_tensor(b, t));
  auto tensors_v = b.CreateVector(tensors);
  auto producer = b.CreateString(meta.producer);
  auto name = b.CreateString(meta.name);
  fb::ModelBuilder mb(b);
  mb.add_format_major(kFormatMajor);
  mb.add_format_minor(kFormatMinor);
  mb.add_producer(producer);
  mb.add_name(name);
  mb.add_arch(static_cast<fb::Arch>(meta.arch));
  mb.add_hparams(hparams);
  mb.add_tokenizer(tok);
  mb.add_generation(gen);
  mb.add_tensors(tensors_v);
  mb.add_vocab_only(meta.vocab_only);
  mb.add_parameter_count(meta.parameter_count);
  fb::FinishModelBuffer(b, mb.Finish());

  pad_to(64);
  FileHeader h{};
  std::memcpy(h.magic, kFileMagic, 4);
  h.format_major = kFormatMajor;
  h.format_minor = kFormatMinor;
  h.metadata_offset = pos_;
  h.metadata_size = b.GetSize();
  h.data_offset = data_offset;
  h.data_size = data_end - data_offset;
  write_raw(b.GetBufferPointer(), b.GetSize());
  h.file_size = pos_;
  h.metadata_checksum = XXH3_64bits(b.GetBufferPointer(), b.GetSize());
  h.header_checksum = XXH3_64bits(&h, offsetof(FileHeader, header_checksum));

  if (std::fseek(file_, 0, SEEK_SET) != 0 || std::fwrite(&h, sizeof h, 1, file_) != 1 ||
      std::fflush(file_) != 0)
    fail(LLM_ERR_IO, "cannot write header of " + tmp_path_ + ": " + std::strerror(errno));
  int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) fail(LLM_ERR_IO, "cannot close " + tmp_path_ + ": " + std::strerror(errno));
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    fail(LLM_ERR_IO, "cannot rename " + tmp_path_ + " to " + path_ + ": " + std::strerror(errno));
  finished_ = true;
}

// ---- ModelFile ------------------------------------------------------------------

std::unique_ptr<ModelFile> ModelFile::open(const std::string &path, Verify verify) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(LLM_ERR_IO, "cannot open model file " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(LLM_ERR_IO, "cannot stat " + path + ": " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(LLM_ERR_IO, path + " is not a regular file");
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < sizeof(FileHeader)) {
    ::close(fd);
    fail_format(path + ": file is " + std::to_string(size) +
                " bytes, too small to be a libllm model (truncated?)");
  }
  void *p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) fail(LLM_ERR_IO, "cannot map " + path + ": " + std::strerror(e));

  std::unique_ptr<ModelFile> f(new ModelFile());
  f->base_ = static_cast<const uint8_t *>(p);
  f->size_ = size;
  f->mapped_ = true;
  try {
    f->parse(verify);
  } catch (const Error &err) {
    throw Error(err.status(), path + ": " + err.what());
  }
  return f;
}

std::unique_ptr<ModelFile> ModelFile::from_memory(const uint8_t *data, size_t size, Verify verify) {
  std::unique_ptr<ModelFile> f(new ModelFile());
  f->base_ = data;
  f->size_ = size;
  if (!data || size < sizeof(FileHeader))
    fail_format("buffer of " + std::to_string(size) + " bytes is too small to be a libllm model");
  if (reinterpret_cast<uintptr_t>(data) % alignof(uint64_t) != 0)
    fail(LLM_ERR_INVALID_ARGUMENT, "model buffer is not 8-byte aligned");
  f->parse(verify);
  return f;
}

ModelFile::~ModelFile() {
  if (mapped_) munmap(const_cast<uint8_t *>(base_), size_);
}

const TensorInfo *ModelFile::find(const std::string &name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void ModelFile::parse(Verify verify) {
  FileHeader h;
  std::memcpy(&h, base_, sizeof h);
  if (std::memcmp(h.magic, kFileMagic, 4) != 0)
    fail_format("not a libllm model file (magic bytes are not \"LLMF\")");
  if (h.format_major < kOldestReadableMajor || h.format_major > kFormatMajor)
    fail_format("format version " + std::to_string(h.format_major) + "." +
                std::to_string(h.format_minor) + " is not supported by this reader (supports " +
                std::to_string(kOldestReadableMajor) + ".x to " + std::to_string(kFormatMajor) +
                ".x); convert the model again with a matching llm-convert");
  if (XXH3_64bits(&h, offsetof(FileHeader, header_checksum)) != h.header_checksum)
    fail_format("file header checksum mismatch (corrupt header)");
  if (h.file_size != size_)
    fail_format("header says the file is " + std::to_string(h.file_size) + " bytes but it is " +
                std::to_string(size_) + (size_ < h.file_size ? " (truncated)" : " (trailing data)"));
  check_range("metadata", h.metadata_offset, h.metadata_size, sizeof(FileHeader), size_, size_);
  check_range("tensor data", h.data_offset, h.data_size, sizeof(FileHeader), size_, size_);
  if (h.metadata_offset % 8 != 0) fail_format("metadata offset " + hex(h.metadata_offset) + " is not 8-byte aligned");

  const uint8_t *meta_ptr = base_ + h.metadata_offset;
  if (XXH3_64bits(meta_ptr, h.metadata_size) != h.metadata_checksum)
    fail_format("metadata checksum mismatch (corrupt metadata)");
  flatbuffers::Verifier verifier(meta_ptr, static_cast<size_t>(h.metadata_size));
  if (!fb::VerifyModelBuffer(verifier))
    fail_format("metadata FlatBuffer failed verification (corrupt or not identifier \"LLMF\")");
  const fb::Model *m = fb::GetModel(meta_ptr);
  if (m->format_major() != h.format_major || m->format_minor() != h.format_minor)
    fail_format("metadata format version disagrees with the header");
  if (m->arch() > fb::Arch::MAX)
    fail_format("unknown architecture id " + std::to_string(static_cast<int>(m->arch())) +
                " (file written by a newer converter?)");

  meta_.name = str(m->name());
  meta_.producer = str(m->producer());
  meta_.arch = static_cast<Arch>(m->arch());
  meta_.hparams = read_hparams(m->hparams());
  meta_.generation = read_generation(m->generation());
  meta_.vocab_only = m->vocab_only();
  meta_.parameter_count = m->parameter_count();
  if (!m->tokenizer()) fail_format("metadata has no tokenizer");
  tokenizer_ = read_tokenizer(m->tokenizer(), h.format_major, meta_.hparams.vocab_size);

  uint64_t data_end = h.data_offset + h.data_size;
  if (m->tensors()) {
    tensors_.reserve(m->tensors()->size());
    for (const fb::Tensor *ft : *m->tensors()) {
      TensorInfo t;
      t.name = ft->name()->str();
      if (ft->dtype() > fb::DType::MAX)
        fail_format("tensor " + t.name + ": unknown storage type " +
                    std::to_string(static_cast<int>(ft->dtype())));
      t.dtype = static_cast<DType>(ft->dtype());
      if (ft->sparsity() && ft->sparsity()->kind() != fb::Sparsity::Dense)
        fail(LLM_ERR_UNSUPPORTED, "tensor " + t.name + ": sparse storage is not supported by this reader");
      // The verifier of the FlatBuffers release we build against checks only
      // the 4-byte alignment of a vector's length, so a crafted file can place
      // the int64 elements of `shape` at 4 mod 8. The builder never does.
      if (reinterpret_cast<uintptr_t>(ft->shape()->data()) % alignof(int64_t) != 0)
        fail_format("tensor " + t.name + ": shape vector is not 8-byte aligned");
      t.shape = vec(ft->shape());
      if (t.shape.empty() || t.shape.size() > 4)
        fail_format("tensor " + t.name + ": rank " + std::to_string(t.shape.size()) + " is not 1..4");
      uint64_t elements = 1;
      for (int64_t d : t.shape) {
        if (d <= 0 || d > (int64_t{1} << 32) || elements > (uint64_t{1} << 40) / static_cast<uint64_t>(d))
          fail_format("tensor " + t.name + ": invalid shape");
        elements *= static_cast<uint64_t>(d);
      }
      if (!ft->data()) fail_format("tensor " + t.name + ": no data segment");
      t.offset = ft->data()->offset();
      t.size = ft->data()->size();
      t.checksum = ft->checksum();
      check_range("tensor " + t.name, t.offset, t.size, h.data_offset, data_end, size_);
      if (t.offset % 64 != 0) fail_format("tensor " + t.name + ": offset " + hex(t.offset) + " is not 64-byte aligned");
      read_quant(ft, t, h.data_offset, data_end, size_);
      uint64_t expected = dtype_bytes(t.dtype, elements);
      if (t.size != expected)
        fail_format("tensor " + t.name + ": " + std::to_string(t.size) + " bytes, but shape and type need " +
                    std::to_string(expected));
      if (!by_name_.emplace(t.name, tensors_.size()).second)
        fail_format("tensor " + t.name + " appears twice in the tensor table");
      weights_bytes_ += t.size + t.quant.scales_size + t.quant.zeros_size;
      tensors_.push_back(std::move(t));
    }
  }
  // Segments must not overlap: a crafted file could otherwise alias them.
  struct Seg {
    uint64_t offset, size;
    const std::string *name;
  };
  std::vector<Seg> segs;
  for (const TensorInfo &t : tensors_) {
    segs.push_back({t.offset, t.size, &t.name});
    if (t.quant.scales_size) segs.push_back({t.quant.scales_offset, t.quant.scales_size, &t.name});
    if (t.quant.zeros_size) segs.push_back({t.quant.zeros_offset, t.quant.zeros_size, &t.name});
  }
  std::sort(segs.begin(), segs.end(), [](const Seg &a, const Seg &b) { return a.offset < b.offset; });
  for (size_t i = 1; i < segs.size(); ++i)
    if (segs[i - 1].offset + segs[i - 1].size > segs[i].offset)
      fail_format("tensors " + *segs[i - 1].name + " and " + *segs[i].name + " overlap");

  if (verify == Verify::Full) verify_checksums();
}

void ModelFile::verify_checksums() const {
  for (const TensorInfo &t : tensors_) {
    uint64_t h = hash_segment(base_, t);
    if (h != t.checksum)
      fail_format("tensor " + t.name + ": checksum mismatch (stored " + hex(t.checksum) +
                  ", computed " + hex(h) + "); the file is corrupt");
  }
}

}  // namespace llm
