#!/usr/bin/env python3
"""Trains the default model shipped in models/libllm-tiny on one GPU.

  python3 scripts/train_default_model.py DATA_DIR OUT_DIR [--minutes 6.75]

DATA_DIR is what scripts/prepare_training_text.sh wrote (tokenizer.json,
train.bin or train.bin.xz, eval_*.txt, heldout_*.txt). The run lasts a fixed wall-clock
budget: the learning-rate schedule (linear warm-up, cosine decay to 10%) is a
function of the elapsed fraction of that budget, so the recipe does not depend
on the GPU's speed. Then it measures held-out perplexity (512-token windows,
stride 511, each from an empty context: the method of `llm perplexity`),
prints greedy samples and saves a bf16 Hugging Face checkpoint in OUT_DIR.
Needs PyTorch, transformers and tokenizers.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ARCH = dict(vocab_size=None, hidden_size=256, intermediate_size=640, num_hidden_layers=8,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            rms_norm_eps=1e-5, tie_word_embeddings=True)
ROPE_THETA = 10000.0


def log(*a):
    print(*a, flush=True)


def make_model(vocab, bos, eos, device):
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
    kw = dict(ARCH, vocab_size=vocab, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, use_cache=False)
    if int(transformers.__version__.split(".")[0]) >= 5:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": ROPE_THETA}
    else:
        kw["rope_theta"] = ROPE_THETA
    cfg = LlamaConfig(**kw)
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:
        pass
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device)
    return model


def lr_at(frac, peak, warmup=0.03, floor=0.1):
    if frac < warmup:
        return peak * frac / warmup
    p = min(1.0, (frac - warmup) / (1 - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def window_nll(model, ids, ctx=512, stride=511, device="cuda", amp=True):
    """Per-token NLL over windows starting at 0, stride, 2*stride, ...; each
    window is evaluated from an empty context and scores its own positions."""
    model.eval()
    total, count = 0.0, 0
    start = 0
    while start + 1 < len(ids):
        w = torch.tensor(ids[start:start + ctx], device=device)[None]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device == "cuda"):
            logits = model(w).logits.float()
        nll = F.cross_entropy(logits[0, :-1], w[0, 1:], reduction="sum")
        total += nll.item()
        count += w.shape[1] - 1
        if start + ctx >= len(ids):
            break
        start += stride
    model.train()
    return total / max(count, 1), count


@torch.no_grad()
def greedy_ids(model, ids, n, device, stop_ids=(), amp=True):
    """Greedy continuation and, per step, the gap between the two best logits."""
    model.eval()
    x = torch.tensor(ids, device=device)[None]
    out, gaps = [], []
    for _ in range(n):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device == "cuda"):
            logits = model(x).logits[0, -1].float()
        top = torch.topk(logits, 2)
        nxt = int(top.indices[0])
        if nxt in stop_ids:
            break
        out.append(nxt)
        gaps.append(round(float(top.values[0] - top.values[1]), 5))
        x = torch.cat([x, torch.tensor([[nxt]], device=device)], 1)
    model.train()
    return out, gaps


def greedy(model, tok, prompt, n, device, stop_ids=()):
    out, _ = greedy_ids(model, tok.encode(prompt).ids, n, device, stop_ids)
    return tok.decode(out, skip_special_tokens=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--minutes", type=float, default=6.75)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()
    t_start = time.time()
    from tokenizers import Tokenizer
    import transformers
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"torch {torch.__version__} transformers {transformers.__version__} device {device}",
        torch.cuda.get_device_name() if device == "cuda" else "")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    tok = Tokenizer.from_file(os.path.join(args.data_dir, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    im_end = tok.token_to_id("<|im_end|>")
    bin_path = os.path.join(args.data_dir, "train.bin")
    if not os.path.exists(bin_path) and os.path.exists(bin_path + ".xz"):
        import lzma
        with lzma.open(bin_path + ".xz") as src, open(bin_path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
    data = np.fromfile(bin_path, dtype=np.uint16)
    log(f"vocab {vocab} train tokens {data.size:,}")
    data_gpu = torch.from_numpy(data.astype(np.int32)).to(device)

    model = make_model(vocab, bos, eos, device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"parameters {n_params:,} ({n_params * 2 / 1e6:.2f} MB in bf16)")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=device == "cuda")

    budget = args.minutes * 60
    g = torch.Generator(device=device)
    g.manual_seed(1)
    offs = torch.arange(args.seq + 1, device=device)
    step, tokens_seen = 0, 0
    t0 = time.time()
    losses = []
    while True:
        frac = (time.time() - t0) / budget
        if frac >= 1:
            break
        lr = lr_at(frac, args.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, data_gpu.numel() - args.seq - 1, (args.batch,), device=device, generator=g)
        batch = data_gpu[starts[:, None] + offs].long()
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().view(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        if step % 100 == 0 or step == 1:
            losses.append((step, loss.item()))
            el = time.time() - t0
            log(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {tokens_seen / el / 1e3:.0f}k tok/s "
                f"elapsed {el:.0f}s epochs {tokens_seen / data.size:.2f}")
    train_s = time.time() - t0
    log(f"trained {step} steps, {tokens_seen:,} tokens in {train_s:.0f}s")

    # Evaluate the weights as they will be shipped: rounded to bf16.
    model = model.to(torch.bfloat16).float()
    results = {"steps": step, "tokens": tokens_seen, "train_seconds": round(train_s, 1),
               "epochs": round(tokens_seen / data.size, 2), "parameters": n_params,
               "final_train_loss": losses[-1][1] if losses else None, "loss_curve": losses,
               "batch": args.batch, "seq": args.seq, "peak_lr": args.lr, "minutes": args.minutes,
               "torch": torch.__version__, "transformers": transformers.__version__,
               "gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    for kind in ("code", "prose", "chat"):
        path = os.path.join(args.data_dir, f"eval_{kind}.txt")
        if not os.path.exists(path):
            continue
        ids = tok.encode(open(path, encoding="utf-8").read()).ids[:32768]
        nll, n = window_nll(model, ids, device=device)
        results[f"heldout_{kind}"] = {"tokens": n, "nll": round(nll, 4), "perplexity": round(math.exp(nll), 3)}
        log(f"held-out {kind}: {n} tokens, perplexity {math.exp(nll):.3f}")

    samples = {}
    for p in ["def fibonacci(n):", "import os\n\ndef read_lines(path):", "The json module",
              "A list is"]:
        samples[p] = greedy(model, tok, p, 64, device)
    chat = ("<|im_start|>user\nWhat does json.dumps do?<|im_end|>\n<|im_start|>assistant\n")
    samples[chat] = greedy(model, tok, chat, 64, device, stop_ids=(im_end, eos))
    results["greedy_samples"] = samples
    for p, s in samples.items():
        log("----", repr(p), "->", repr(s))

    # Reference for the runtime's tests: fp32 math (TF32 off) on the bf16
    # weights, over the held-out samples shipped with the model.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    reference = {"note": "fp32 math, TF32 off, on the shipped bf16 weights; windows of 512 ids, stride 511",
                 "heldout": {}, "greedy": []}
    for kind in ("code", "prose", "chat"):
        path = os.path.join(args.data_dir, f"heldout_{kind}.txt")
        if not os.path.exists(path):
            continue
        ids = tok.encode(open(path, encoding="utf-8").read()).ids
        nll, n = window_nll(model, ids, device=device, amp=False)
        reference["heldout"][kind] = {"file": f"heldout_{kind}.txt", "ids": len(ids), "scored": n,
                                      "nll": round(nll, 5), "perplexity": round(math.exp(nll), 4)}
        log(f"reference {kind}: {len(ids)} ids, perplexity {math.exp(nll):.4f}")
    for p in ["def fibonacci(n):", "import os\n\ndef read_lines(path):", "The json module",
              "<|im_start|>user\nWhat does os.path.join do?<|im_end|>\n<|im_start|>assistant\n"]:
        ids = tok.encode(p).ids
        out, gaps = greedy_ids(model, ids, 32, device, amp=False)
        reference["greedy"].append({"prompt": p, "prompt_ids": ids, "greedy_ids": out, "top2_gaps": gaps,
                                    "greedy_text": tok.decode(out, skip_special_tokens=False)})
    results["reference"] = reference

    os.makedirs(args.out_dir, exist_ok=True)
    model = model.to(torch.bfloat16)
    model.config.use_cache = True
    model.save_pretrained(args.out_dir, safe_serialization=True)
    gen = {"bos_token_id": bos, "eos_token_id": [eos, im_end], "pad_token_id": eos}
    with open(os.path.join(args.out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out_dir, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out_dir, "train_results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    log(f"saved to {args.out_dir}: {sorted(os.listdir(args.out_dir))}; total {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
