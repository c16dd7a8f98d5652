# Generates the synthetic-pipeline expectations embedded in
# tests/unit/tokenizer_test.cpp (the kSyntheticConfigs table) with Hugging Face
# tokenizers 0.23.2: `pip install tokenizers==0.23.2 && python3
# scripts/gen_tokenizer_cases.py > table.inc`, then paste the table over the
# one in the test. Developer tool only; CI does not run it.
import json
from tokenizers import Tokenizer

CHARS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-_[]<>/\u2581\u0120\u010a"
MERGES = [("h","e"),("l","l"),("\u2581","h"),("he","ll"),("hell","o"),("a","b"),("ab","c"),("b","c"),
          ("\u2581","a"),("1","2"),("o","r"),("w","or"),("wor","l"),("worl","d"),("\u2581","world"),
          ("\u0120","h"),("\u0120h","ello"),("e","l"),("el","l"),("ell","o"),("\u2581","hello"),("\u0120","world")]

def base_model(opts):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256): vocab["<0x%02X>" % b] = len(vocab)
    for ch in CHARS: vocab.setdefault(ch, len(vocab))
    for a, b in MERGES: vocab.setdefault(a + b, len(vocab))
    vocab.setdefault("bca", len(vocab))
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
             "vocab": vocab, "merges": [list(m) for m in MERGES]}
    model.update(opts)
    return model

def build(config):
    cfg = dict(config)
    model = cfg.pop("model", None) or base_model(cfg.pop("model_options", {}))
    doc = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": None, "post_processor": None, "decoder": None, "model": model}
    doc.update(cfg)
    return json.dumps(doc)

S = lambda c, **kw: dict({"id": len(c), "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}, **kw)
BOS = {"id": 1, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
EOS = dict(BOS, id=2, content="</s>")
TEMPLATE = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
WS_SPLIT = {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False}
def split(behavior, pattern={"Regex": "[0-9]+"}, invert=False):
    return {"type": "Split", "pattern": pattern, "behavior": behavior, "invert": invert}
def meta(scheme, split=True):
    return {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}

CONFIGS = [
  ("metaspace_first", {"model_options": {"byte_fallback": True, "fuse_unk": True}, "added_tokens": [BOS, EOS],
     "pre_tokenizer": meta("first"), "post_processor": TEMPLATE,
     "decoder": {"type": "Sequence", "decoders": [meta("first"), {"type": "ByteFallback"}, {"type": "Fuse"}]}},
   ["hello world", " hello", "<s>hello  abc</s>", "abc<s> hello", "h\u00e9llo w\u00f6rld", "", "a\u00e9\u20ac\U0001F600", "<s>", "hello\u2581world"]),
  ("metaspace_always_nosplit_fused", {"model_options": {"byte_fallback": True}, "added_tokens": [BOS],
     "pre_tokenizer": meta("always", split=False),
     "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}, meta("always")]}},
   ["hello world", "<s>hello world", "abc \u00e9"]),
  ("metaspace_never", {"pre_tokenizer": meta("never"), "decoder": meta("never")}, ["hello world", " abc"]),
  ("legacy_metaspace", {"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True},
     "decoder": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}}, ["hello  world"]),
] + [
  ("split_" + b, {"pre_tokenizer": split(b)}, ["ab12cd345e", "12ab", "a1b22", "9"])
  for b in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]
] + [
  ("split_invert", {"pre_tokenizer": split("MergedWithPrevious", invert=True)}, ["ab12cd345e", "12ab"]),
  ("split_string", {"pre_tokenizer": split("Removed", {"String": "-"})}, ["a-b--c", "-abc-"]),
  ("split_anchor", {"pre_tokenizer": split("Isolated", {"Regex": "^ab|c$"})}, ["abcab\nabc\nc"]),
  ("split_empty_matches", {"pre_tokenizer": split("Isolated", {"Regex": "x*"})}, ["abxxc", "xx"]),
  ("split_word_class", {"pre_tokenizer": split("Isolated", {"Regex": "\\w+|[^\\w\\s]+"})}, ["ab_c\u00e9\u0301 \u2167x-!", "a\u0663b"]),
  ("digits_individual", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [WS_SPLIT, {"type": "Digits", "individual_digits": True}]}},
   ["abc 12345 x9y", "\u0663\u00b2"]),
  ("digits_grouped", {"pre_tokenizer": {"type": "Digits", "individual_digits": False}}, ["abc 12345 x9y", "1a2"]),
  ("normalizers", {"normalizer": {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": True, "strip_right": True},
      {"type": "Lowercase"}, {"type": "NFKC"}, {"type": "Replace", "pattern": {"String": "ll"}, "content": "l"},
      {"type": "Prepend", "prepend": "\u2581"}]}},
   ["  HeLLo \ufb01  ", "\u00c5B", "\u0130", "   ", "\u2167"]),
  ("nfd_lowercase", {"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}]}, "model_options": {"byte_fallback": True}},
   ["\u00c9a", "\u01c5"]),
  ("nfkd_strip_left", {"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Strip", "strip_left": True, "strip_right": False}]}},
   ["  \ufb01 x ", "\u00a0\u2003a"]),
  ("added_options", {"normalizer": {"type": "Lowercase"}, "added_tokens": [
      S("[x]", id=300 + 0, lstrip=True, special=False), S("[y]", id=301, rstrip=True, special=False),
      S("ab", id=302, single_word=True, special=False), BOS, S("HE", id=303, normalized=True, special=False)],
     "pre_tokenizer": WS_SPLIT},
   ["a [x] b", "a [y]  b", "a[y]  [x]b", "ab abc xab ab", "HE he He", "<s>ab", " [x][y] ", "\u00e9ab_ab"]),
  ("normalized_added_prepend", {"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"}, {"type": "Lowercase"}]},
     "added_tokens": [S("<X>", id=400, normalized=True, special=False), S("<Y>", id=401, normalized=True, special=True)]},
   ["a<X>b", "<X>", "a <x>", "<Y>c", "<y>"]),
  ("unk_fused", {"model_options": {"fuse_unk": True}}, ["a\u00e9\u20acb", "\u00e9\u00e9\u00e9"]),
  ("unk_not_fused", {"model_options": {"fuse_unk": False}}, ["a\u00e9\u20acb", "\u00e9\u00e9\u00e9"]),
  ("no_unk", {"model_options": {"unk_token": None}}, ["a\u00e9b"]),
  ("ignore_merges", {"model_options": {"ignore_merges": True}, "pre_tokenizer": WS_SPLIT}, ["bca abc hello"]),
  ("merges_by_rank", {"pre_tokenizer": WS_SPLIT}, ["bca abc hello"]),
  ("subword_prefix", {"model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": "##",
      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
      "vocab": {"<unk>": 0, "a": 1, "##b": 2, "##c": 3, "ab": 4, "abc": 5, "b": 6, "c": 7, "##a": 8},
      "merges": [["a", "##b"], ["ab", "##c"]]}, "pre_tokenizer": WS_SPLIT}, ["abc cab ab c", "abd"]),
  ("word_suffix", {"model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
      "end_of_word_suffix": "</w>", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
      "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "a</w>": 4, "b</w>": 5, "c</w>": 6, "ab</w>": 7, "ab": 8},
      "merges": ["a b</w>", "a b"]}, "pre_tokenizer": WS_SPLIT}, ["ab abab ba c"]),
  ("byte_level_prefix_space", {"added_tokens": [BOS], "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
     "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}},
   ["hello world", "<s>hello", "a\nb  c", " hello"]),
  ("byte_level_no_regex", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
     "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}, ["hello world", "ab c"]),
  ("strip_replace_decoders", {"pre_tokenizer": meta("always"), "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "Strip", "content": "d", "start": 0, "stop": 1}]}},
   ["hello world", "abc dd", "ddd"]),
  ("strip_after_fuse", {"pre_tokenizer": meta("always"), "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 3, "stop": 2}]}},
   ["  hello world  ", "abc"]),
  ("roberta", {"added_tokens": [BOS, EOS], "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1], "trim_offsets": True, "add_prefix_space": True}},
   ["abc"]),
  ("bert_sequence", {"added_tokens": [BOS, EOS], "post_processor": {"type": "Sequence", "processors": [
      {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
      {"type": "BertProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]}]}}, ["abc"]),
  ("empty_decoder_sequence", {"decoder": {"type": "Sequence", "decoders": []}}, ["ab c"]),
]

def cstr(s):
    out = '"'
    for b in s.encode('utf-8'):
        c = chr(b)
        if c == '"' or c == '\\': out += '\\' + c
        elif 32 <= b < 127 and c != '?': out += c
        else: out += '\\%03o' % b
    return out + '"'

print("// Generated with Hugging Face tokenizers 0.23.2.")
print("const SyntheticConfig kSyntheticConfigs[] = {")
for name, cfg, texts in CONFIGS:
    j = build(cfg)
    try:
        tok = Tokenizer.from_str(j)
    except Exception as e:
        raise SystemExit(name + ": " + str(e))
    cfg_json = json.dumps(cfg)  # only the overrides: the test rebuilds the base vocabulary
    print("    {%s,\n     R\"json(%s)json\",\n     {" % (cstr(name), cfg_json))
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        ids_s = tok.encode(t, add_special_tokens=True).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        print("         {%s, {%s}, {%s}, %s}," % (cstr(t), ", ".join(map(str, ids)), ", ".join(map(str, ids_s)), cstr(dec)))
    print("     }},")
print("};")
