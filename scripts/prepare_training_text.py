#!/usr/bin/env python3
"""Builds the training text, the tokenizer and the token stream of the default
model (models/libllm-tiny). Needs only Python 3.11+, the Hugging Face
`tokenizers` package and NumPy; run scripts/prepare_training_text.sh, which
installs the Debian packages it reads.

Sources (all free to use; see models/libllm-tiny/README.md):
  code   Python standard library source (PSF License) and the Python source of
         installed packages whose metadata declares an MIT, BSD or PSF license
  prose  the Python documentation (Debian python3.11-doc, PSF License), HTML
         reduced to text
  chat   question/answer dialogues generated from the docstrings of the code
         above (first paragraph of the docstring answers "what does X do?")

Every document is assigned to train or held-out by a hash of its name, so the
split does not depend on file order or on the machine.

Outputs in OUT_DIR: tokenizer.json, tokenizer_config.json, train.bin (uint16
token ids, documents as <s> text </s>), stats.json, held-out text
eval_{code,prose,chat}.txt (about 200 KB each) and the first 24 KB of each,
heldout_{code,prose,chat}.txt, which ship with the model.
"""
import argparse
import ast
import hashlib
import html.parser
import json
import os
import random
import re
import sys
import sysconfig
from pathlib import Path

import numpy as np

BOS, EOS, IM_START, IM_END = "<s>", "</s>", "<|im_start|>", "<|im_end|>"
SPECIALS = [BOS, EOS, IM_START, IM_END]
# ChatML, the format of Qwen2 and SmolLM.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a helpful assistant that answers questions about Python.",
    "Answer briefly.",
]
HELDOUT_PERCENT = 2


def heldout(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % 100 < HELDOUT_PERCENT


# ---- code -------------------------------------------------------------------------

ALLOWED_LICENSE = re.compile(r"\b(MIT|BSD|PSF|Python Software Foundation)\b", re.I)
# Any file-level or stronger copyleft among a package's licenses excludes it.
# (The shipped checkpoint was trained before MPL was listed here and so saw
# tqdm's 31 files, "MPL-2.0 AND MIT"; see models/libllm-tiny/README.md.)
COPYLEFT_LICENSE = re.compile(r"\b(L?GPL|AGPL|MPL|EPL|CDDL)\b", re.I)


def dist_license(meta: str) -> str:
    out = []
    for line in meta.splitlines():
        if not line.strip():
            break  # the body (long description) follows the headers
        if line.startswith(("License:", "License-Expression:", "Classifier: License ::")):
            out.append(line.split(":", 1)[1].strip())
    return "; ".join(out)


def package_sources(site: Path):
    """(dist name, license, [py files]) of each allowed distribution in site."""
    for info in sorted(site.glob("*.dist-info")):
        meta_path, record = info / "METADATA", info / "RECORD"
        if not meta_path.exists() or not record.exists():
            continue
        meta = meta_path.read_text(errors="replace")
        lic = dist_license(meta)
        if not ALLOWED_LICENSE.search(lic) or COPYLEFT_LICENSE.search(lic):
            continue
        files = []
        for row in record.read_text(errors="replace").splitlines():
            rel = row.split(",", 1)[0]
            if rel.endswith(".py") and not rel.startswith(".."):
                files.append(site / rel)
        if files:
            yield info.name.removesuffix(".dist-info"), lic, files


def stdlib_files(stdlib: Path):
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__", "turtledemo"}
    for p in sorted(stdlib.rglob("*.py")):
        if not skip.intersection(p.relative_to(stdlib).parts):
            yield p


def read_code(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
    if not text.strip() or len(text) > 400_000 or "\x00" in text:
        return None
    return text


# ---- prose: HTML to text ----------------------------------------------------------

class DocText(html.parser.HTMLParser):
    """Text of <div class="body"> of a Sphinx page: blocks on their own lines,
    <pre> kept verbatim, permalink marks dropped."""

    BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "dd", "li", "pre", "tr", "div", "section",
              "blockquote", "table", "dl", "ul", "ol"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0      # div nesting inside the body (0 = outside)
        self.pre = 0
        self.skip = 0
        self.anchors = []  # per open <a>: is it a permalink mark?
        self.out, self.line = [], []

    def flush(self):
        text = "".join(self.line)
        if not self.pre:
            text = re.sub(r"\s+", " ", text).strip()
        if text:
            self.out.append(text)
        self.line = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth == 0:
            if tag == "div" and "body" in (a.get("class") or "").split():
                self.depth = 1
            return
        if tag == "div":
            self.depth += 1
        if tag == "a":
            self.anchors.append("headerlink" in (a.get("class") or ""))
            self.skip += self.anchors[-1]
        if tag in ("script", "style"):
            self.skip += 1
        if tag in self.BLOCKS:
            self.flush()
        if tag == "pre":
            self.pre += 1
        if tag == "br":
            self.flush()

    def handle_endtag(self, tag):
        if self.depth == 0:
            return
        if tag == "a" and self.anchors:
            self.skip -= self.anchors.pop()
        if tag in ("script", "style"):
            self.skip -= 1
        if tag in self.BLOCKS:
            self.flush()
        if tag == "pre":
            self.pre -= 1
        if tag == "div":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth and not self.skip:
            self.line.append(data)


def html_to_text(path: Path) -> str:
    p = DocText()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    p.flush()
    text = "\n".join(p.out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# ---- chat: dialogues from docstrings ----------------------------------------------

def first_paragraph(doc: str) -> str:
    para = doc.strip().split("\n\n", 1)[0]
    para = " ".join(line.strip() for line in para.splitlines())
    return para


def signature(node) -> str:
    try:
        return f"{node.name}({ast.unparse(node.args)})"
    except Exception:
        return node.name + "()"


def qa_pairs(module: str, text: str):
    """(question, answer) pairs about the module and its public functions/classes."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return []
    pairs = []
    doc = ast.get_docstring(tree)
    if doc and 20 <= len(first_paragraph(doc)) <= 600:
        q = random.choice([f"What is the {module} module for?", f"What does the {module} module do?",
                           f"Tell me about {module}."])
        pairs.append((q, f"The `{module}` module: {first_paragraph(doc)}"))
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if node.name.startswith("_"):
            continue
        d = ast.get_docstring(node)
        if not d:
            continue
        para = first_paragraph(d)
        if not 20 <= len(para) <= 600:
            continue
        name = f"{module}.{node.name}"
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        q = random.choice([f"What does {name} do?", f"What is {name}?", f"Explain {name}.",
                           f"How do I use {name}?", f"what does {node.name} in {module} do"])
        if kind == "function":
            a = f"`{module}.{signature(node)}`: {para}"
        else:
            a = f"`{name}` is a class. {para}"
        pairs.append((q, a))
    return pairs


def render_chat(messages) -> str:
    return "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)


def dialogues(pairs, rng):
    """Conversations of 1-3 turns about one module, half with a system prompt."""
    out = []
    i = 0
    while i < len(pairs):
        n = rng.choice([1, 2, 2, 3])
        msgs = []
        if rng.random() < 0.5:
            msgs.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        for q, a in pairs[i:i + n]:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        out.append(render_chat(msgs))
        i += n
    return out


# ---- tokenizer --------------------------------------------------------------------

def train_tokenizer(texts, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return tok


def write_samples(out: Path, chars: int = 24000):
    """heldout_KIND.txt: the first `chars` characters of eval_KIND.txt, cut at
    a line end; shipped with the model for its reference perplexity."""
    for kind in ("code", "prose", "chat"):
        text = (out / f"eval_{kind}.txt").read_text()
        cut = text.rfind("\n", 0, chars)
        (out / f"heldout_{kind}.txt").write_text(text[:cut + 1] if cut > 0 else text[:chars])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--doc-html", default="/usr/share/doc/python3.11/html")
    ap.add_argument("--vocab", type=int, default=6144)
    ap.add_argument("--tokenizer-sample-mb", type=float, default=40)
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    random.seed(1234)

    docs = []            # (kind, name, text)
    sources = []
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    n = 0
    for p in stdlib_files(stdlib):
        t = read_code(p)
        if t:
            docs.append(("code", "stdlib/" + str(p.relative_to(stdlib)), t))
            n += 1
    sources.append({"source": f"Python {sys.version.split()[0]} standard library", "license": "PSF-2.0",
                    "files": n})
    site = Path(sysconfig.get_paths()["purelib"])
    seen = set()
    for dist, lic, files in package_sources(site):
        n = 0
        for p in files:
            rp = p.resolve()
            if rp in seen or not rp.exists():
                continue
            seen.add(rp)
            t = read_code(rp)
            if t:
                docs.append(("code", f"{dist}/{p.relative_to(site)}", t))
                n += 1
        if n:
            sources.append({"source": dist, "license": lic, "files": n})
    html_root = Path(args.doc_html)
    n = 0
    for p in sorted(html_root.rglob("*.html")):
        rel = str(p.relative_to(html_root))
        if rel.startswith(("_", "genindex", "py-modindex", "search")) or "whatsnew/changelog" in rel:
            continue
        t = html_to_text(p)
        if len(t) > 200:
            docs.append(("prose", "pydoc/" + rel, t))
            n += 1
    if n == 0:
        sys.exit(f"no documentation HTML under {html_root}: install python3.11-doc")
    sources.append({"source": "Python 3.11 documentation (Debian python3.11-doc)", "license": "PSF-2.0",
                    "files": n})

    # Dialogues from train-side code only, so held-out code stays unseen.
    chats = []
    for kind, name, text in docs:
        if kind != "code":
            continue
        module = name.split("/", 1)[1].removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        pairs = qa_pairs(module, text)
        for i, c in enumerate(dialogues(pairs, rng)):
            chats.append(("chat", f"{name}#{i}", c))
    docs += chats

    train = [d for d in docs if not heldout(d[1])]
    held = [d for d in docs if heldout(d[1])]
    rng.shuffle(train)

    # Tokenizer: trained on a sample of the training documents, chat included.
    budget = args.tokenizer_sample_mb * 1e6
    sample, size = [], 0
    for d in train:
        if size > budget:
            break
        sample.append(d[2])
        size += len(d[2])
    tok = train_tokenizer(sample, args.vocab)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS, "eos_token": EOS, "pad_token": EOS,
        "add_bos_token": True, "add_eos_token": False,
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }, indent=2) + "\n")

    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    stats = {"sources": sources, "vocab_size": tok.get_vocab_size(), "bos": bos, "eos": eos}
    ids_parts = []
    counts = {}
    batch = 256
    for i in range(0, len(train), batch):
        chunk = train[i:i + batch]
        enc = tok.encode_batch([d[2] for d in chunk], add_special_tokens=False)
        for d, e in zip(chunk, enc):
            ids_parts.append(np.asarray([bos] + e.ids + [eos], dtype=np.uint16))
            c = counts.setdefault(d[0], [0, 0, 0])
            c[0] += 1
            c[1] += len(d[2].encode())
            c[2] += len(e.ids) + 2
    ids = np.concatenate(ids_parts)
    ids.tofile(out / "train.bin")
    stats["train"] = {k: {"documents": v[0], "bytes": v[1], "tokens": v[2]} for k, v in counts.items()}
    stats["train_tokens"] = int(ids.size)

    # Held-out samples: whole documents concatenated up to a size, one file per kind.
    limits = {"code": 200_000, "prose": 200_000, "chat": 60_000}
    for kind, limit in limits.items():
        parts, size = [], 0
        for d in sorted((d for d in held if d[0] == kind), key=lambda d: d[1]):
            if size >= limit:
                break
            parts.append(d[2])
            size += len(d[2])
        (out / f"eval_{kind}.txt").write_text("\n\n".join(parts))
    stats["heldout_documents"] = {k: sum(1 for d in held if d[0] == k) for k in limits}
    write_samples(out)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps({k: v for k, v in stats.items() if k != "sources"}, indent=2))


if __name__ == "__main__":
    main()
