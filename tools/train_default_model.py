#!/usr/bin/env python3
"""Train kiln's bundled default model and write it as a Hugging Face checkpoint directory.

    python3 tools/train_default_model.py --data tinyshakespeare.txt --out DIR
    python3 tools/train_default_model.py --preset quant-study --data tinyshakespeare.txt --out DIR
        --held-out HELD_OUT.txt --calibration-out CALIBRATION.txt      (issue 19's accuracy model)

Needs a CUDA GPU with PyTorch, transformers (5.x), tokenizers and safetensors; see tools/README.md
for the exact command used on the device machine. Writes into DIR:

    config.json              LlamaForCausalLM, dtype bfloat16, tied embeddings
    model.safetensors        bf16 weights (asserted <= 9.5 MB)
    tokenizer.json           byte-level BPE (vocab 2048) trained on the corpus
    tokenizer_config.json    PreTrainedTokenizerFast, <|bos|>/<|eos|>/<|pad|>, chat template
    generation_config.json
    README.md                model card (architecture, data, steps, losses, device, date, command)

Training: 90/10 train/val split of the token stream, AdamW, linear warmup then cosine decay, bf16
autocast, batch 64 x 256 tokens, training-only dropout. The corpus is small and the model memorises
it within a few hundred steps, so --runs makes several runs from the same seed (by default 2500
steps with dropout 0.2, 1000 steps with 0.2 and 600 with 0.1), all within --max-seconds of wall
clock (240); validation loss is measured every 50 steps and the run and step with the best
validation loss are the weights saved.

--preset quant-study (tools/train_presets.py) trains issue 19's accuracy model instead: hidden 512,
8 layers, intermediate 1536 (about 26 M parameters), peak lr 1e-3, runs 600:0.1,1200:0.2 within 200 s,
no size limit. Its split is at a paragraph boundary and the tokenizer learns from the training part
only, so --held-out writes the validation speeches in the training framing (what `kiln eval
--perplexity` scores) and --calibration-out the leading training speeches (AWQ's calibration text).
"""

import argparse
import datetime
import json
import math
import os
import platform
import random
import shlex
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from train_presets import PRESETS, framed, held_out_cut, paragraphs, resolve_preset

VOCAB_SIZE = 2048
SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>"]  # ids 0, 1, 2
BOS_ID, EOS_ID, PAD_ID = 0, 1, 2
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | upper }}:\n{{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:\n{% endif %}"
)


def log(*a):
    print(*a, flush=True)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def train_tokenizer(text):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(paragraphs(text), trainer=trainer)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A",
        pair="<|bos|> $A <|bos|> $B:1",
        special_tokens=[("<|bos|>", BOS_ID)],
    )
    return tok


def encode_corpus(tok, text):
    """[bos] paragraph [eos] for every blank-line separated paragraph (a speech)."""
    pars = paragraphs(text)
    encs = tok.encode_batch(pars, add_special_tokens=False)
    ids = []
    for e in encs:
        ids.append(BOS_ID)
        ids.extend(e.ids)
        ids.append(EOS_ID)
    return np.array(ids, dtype=np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="tinyshakespeare.txt")
    ap.add_argument("--out", required=True, help="output checkpoint directory")
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS),
                    help="model size and training defaults (tools/train_presets.py); default: the bundled model")
    ap.add_argument("--held-out", help="quant-study: write the held-out speeches here (framed for kiln eval)")
    ap.add_argument("--calibration-out", help="quant-study: write leading training speeches here (AWQ calibration)")
    ap.add_argument("--runs",
                    help="training runs as STEPS:DROPOUT,...; each starts from the same seed and the run and step "
                         "with the best validation loss are kept (default: the preset's)")
    ap.add_argument("--max-seconds", type=float,
                    help="wall-clock cap for all training runs together (default: the preset's)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    preset = resolve_preset(args.preset, vars(args))
    args.runs, args.max_seconds, args.lr = preset["runs"], preset["max_seconds"], preset["lr"]
    if preset["split"] != "paragraphs" and (args.held_out or args.calibration_out):
        ap.error("--held-out and --calibration-out need a paragraph-boundary split: use --preset quant-study")
    command = "python3 tools/train_default_model.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    assert torch.cuda.is_available(), "a CUDA GPU is needed"
    dev = torch.device("cuda")
    device_name = torch.cuda.get_device_name(0)
    seed_everything(args.seed)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    text = open(args.data, encoding="utf-8").read()
    log(f"corpus: {len(text)} chars, {len(paragraphs(text))} paragraphs")
    if preset["split"] == "paragraphs":
        # Whole speeches on each side; the tokenizer never sees the held-out ones.
        train_text, held_text = held_out_cut(text)
        tok = train_tokenizer(train_text)
        train_part, val_part = encode_corpus(tok, train_text), encode_corpus(tok, held_text)
        ids = np.concatenate([train_part, val_part])
        n_train = len(train_part)
        for path, body in ((args.held_out, framed(paragraphs(held_text))),
                           (args.calibration_out, framed(paragraphs(train_text), max_chars=60_000))):
            if path:
                open(path, "w", encoding="utf-8").write(body)
                log(f"wrote {path}: {len(body)} chars")
    else:
        tok = train_tokenizer(text)
        ids = encode_corpus(tok, text)
        n_train = int(len(ids) * 0.9)
    train_ids = torch.from_numpy(ids[:n_train]).to(dev)
    val_ids = torch.from_numpy(ids[n_train:]).to(dev)
    log(f"tokenizer: vocab {tok.get_vocab_size()}; tokens: {len(ids)} (train {n_train}, val {len(ids) - n_train}), "
        f"{len(text) / len(ids):.2f} chars/token; tokenizer took {time.time() - t_start:.1f}s")

    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=preset["hidden_size"],
        intermediate_size=preset["intermediate_size"],
        num_hidden_layers=preset["num_hidden_layers"],
        num_attention_heads=preset["num_attention_heads"],
        num_key_value_heads=preset["num_key_value_heads"],
        hidden_act="silu",
        max_position_embeddings=preset["max_position_embeddings"],
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        initializer_range=0.02,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        use_cache=True,
    )
    B, T = args.batch_size, args.seq_len

    def batch(src, g):
        ix = torch.randint(0, len(src) - T - 1, (B,), device=dev, generator=g)
        off = torch.arange(T + 1, device=dev)
        return src[ix[:, None] + off[None, :]]

    def loss_of(m, x):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = m(input_ids=x[:, :-1]).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))

    @torch.no_grad()
    def evaluate(m, n_batches=20, seed=0):
        was_training = m.training
        m.eval()
        g = torch.Generator(device=dev)
        out = {}
        for name, src in (("train", train_ids), ("val", val_ids)):
            g.manual_seed(seed)
            out[name] = float(torch.stack([loss_of(m, batch(src, g)) for _ in range(n_batches)]).mean())
        m.train(was_training)
        return out

    def train_run(steps, dropout, seconds_left):
        """One training run from a fresh initialisation; returns the best-validation weights."""
        seed_everything(args.seed)
        model = LlamaForCausalLM(config).to(dev)
        # residual/embedding dropout for training only, as forward hooks (nothing of it is saved)
        hooks = []
        if dropout > 0:
            def drop(mod, inp, out):
                return F.dropout(out, dropout, mod.training)
            hooks.append(model.model.embed_tokens.register_forward_hook(drop))
            for layer in model.model.layers:
                hooks.append(layer.self_attn.o_proj.register_forward_hook(drop))
                hooks.append(layer.mlp.down_proj.register_forward_hook(drop))
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True,
        )
        min_lr = args.lr * 0.1

        def lr_at(step):
            if step < args.warmup:
                return args.lr * (step + 1) / args.warmup
            t = (step - args.warmup) / max(1, steps - args.warmup)
            return min_lr + 0.5 * (args.lr - min_lr) * (1 + math.cos(math.pi * min(1.0, t)))

        gen = torch.Generator(device=dev)
        gen.manual_seed(args.seed)
        model.train()
        best = {"val": float("inf"), "step": 0, "state": None, "train": None}
        history = []
        t0 = time.time()
        step = 0
        stopped_by = "steps"
        loss_value = torch.tensor(float("nan"))
        log(f"-- run: {steps} steps, dropout {dropout}, peak lr {args.lr}, {seconds_left:.0f}s of wall clock left")
        while step < steps:
            if time.time() - t0 > seconds_left:
                stopped_by = "wall-clock cap"
                break
            for g_ in opt.param_groups:
                g_["lr"] = lr_at(step)
            loss = loss_of(model, batch(train_ids, gen))
            loss_value = loss.detach()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % args.eval_every == 0 or step == steps:
                ev = evaluate(model)
                history.append({"step": step, "loss": loss_value.item(), **ev, "seconds": round(time.time() - t0, 1)})
                if step % args.log_every == 0 or step == steps:
                    log(f"step {step:5d}  loss {loss_value.item():.4f}  train {ev['train']:.4f}  val {ev['val']:.4f}  "
                        f"lr {lr_at(step - 1):.2e}  {time.time() - t0:.1f}s")
                if ev["val"] < best["val"]:
                    best = {"val": ev["val"], "train": ev["train"], "step": step,
                            "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        if not history or history[-1]["step"] != step:
            ev = evaluate(model)
            history.append({"step": step, "loss": loss_value.item(), **ev, "seconds": round(time.time() - t0, 1)})
            log(f"step {step:5d}  train {ev['train']:.4f}  val {ev['val']:.4f}  (final)")
            if ev["val"] < best["val"]:
                best = {"val": ev["val"], "train": ev["train"], "step": step,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        for h in hooks:
            h.remove()
        seconds = time.time() - t0
        log(f"-- run done: {step} steps in {seconds:.1f}s (stopped by {stopped_by}); best val {best['val']:.4f} "
            f"at step {best['step']}")
        return {"steps": steps, "dropout": dropout, "ran": step, "seconds": seconds, "stopped_by": stopped_by,
                "best": best, "history": history, "model": model}

    runs = []
    t_train = time.time()
    for spec in args.runs.split(","):
        steps_s, drop_s = spec.split(":")
        left = args.max_seconds - (time.time() - t_train)
        if left <= 5:
            log(f"-- skipping run {spec}: wall-clock cap reached")
            continue
        r = train_run(int(steps_s), float(drop_s), left)
        r["model"] = r["model"].cpu() if r is not None else None
        runs.append(r)
    chosen = min(runs, key=lambda r: r["best"]["val"])
    for r in runs:
        if r is not chosen:
            r["model"] = None
    model = chosen["model"].to(dev)
    model.load_state_dict(chosen["best"]["state"])
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters ({n_params / 1e6:.3f} M), bf16 size {2 * n_params / 1e6:.2f} MB")
    best, history, step = chosen["best"], chosen["history"], chosen["ran"]
    train_seconds, stopped_by = chosen["seconds"], chosen["stopped_by"]
    min_lr = args.lr * 0.1
    final = evaluate(model, n_batches=50, seed=12345)
    log(f"selected run: {chosen['steps']} steps, dropout {chosen['dropout']}; checkpoint at step {best['step']}: "
        f"train loss {final['train']:.4f}  val loss {final['val']:.4f} (50 batches, bf16 autocast)")

    # ---- save ---------------------------------------------------------------------------------
    model.eval()
    model = model.to(torch.bfloat16)
    try:
        model.config.dtype = torch.bfloat16
    except Exception as e:  # noqa: BLE001 - only cosmetic; config.json is fixed up below
        log("could not set config.dtype:", e)
    model.save_pretrained(args.out, safe_serialization=True)
    cfg_path = os.path.join(args.out, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["architectures"] = ["LlamaForCausalLM"]
    cfg["dtype"] = "bfloat16"
    json.dump(cfg, open(cfg_path, "w"), indent=2, sort_keys=True)
    log("config.json as written:", json.dumps(cfg, sort_keys=True))
    gen_cfg = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID,
               "transformers_version": transformers.__version__}
    json.dump(gen_cfg, open(os.path.join(args.out, "generation_config.json"), "w"), indent=2)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "pad_token": "<|pad|>",
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    json.dump(tok_cfg, open(os.path.join(args.out, "tokenizer_config.json"), "w"), indent=2)
    st_path = os.path.join(args.out, "model.safetensors")
    st_size = os.path.getsize(st_path)
    log(f"model.safetensors: {st_size} bytes")
    max_bytes = preset["max_bytes"]
    assert max_bytes is None or st_size <= max_bytes, f"model.safetensors is {st_size} bytes > {max_bytes}"
    stray = [f for f in os.listdir(args.out) if f.endswith(".safetensors") and f != "model.safetensors"]
    assert not stray, stray

    # ---- reload what was written, check it, and show samples ------------------------------------
    m2 = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.bfloat16).to(dev).eval()
    t2 = AutoTokenizer.from_pretrained(args.out)
    reloaded = evaluate(m2, n_batches=50, seed=12345)
    log(f"reloaded bf16 checkpoint: train loss {reloaded['train']:.4f}  val loss {reloaded['val']:.4f}")
    enc = t2("ROMEO:", return_tensors="pt")
    enc = {"input_ids": enc["input_ids"].to(dev), "attention_mask": enc["attention_mask"].to(dev)}
    log("prompt ids for 'ROMEO:':", enc["input_ids"][0].tolist())
    assert enc["input_ids"][0, 0].item() == BOS_ID
    with torch.no_grad():
        g_out = m2.generate(**enc, do_sample=False, max_new_tokens=120)
        torch.manual_seed(args.seed)
        s_out = m2.generate(**enc, do_sample=True, temperature=0.8, top_k=50, max_new_tokens=120)
    greedy_text = t2.decode(g_out[0], skip_special_tokens=True)
    sampled_text = t2.decode(s_out[0], skip_special_tokens=True)
    log("---- greedy sample ----\n" + greedy_text + "\n---- sampled (T=0.8, top_k=50, seed %d) ----\n" % args.seed
        + sampled_text + "\n----")
    chat = t2.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    log("chat template renders:", json.dumps(chat))

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    shown = [h for h in history if h["step"] % args.log_every == 0 or h["step"] in (best["step"], step)]
    hist_rows = "\n".join(f"| {h['step']} | {h['train']:.4f} | {h['val']:.4f} | {h['seconds']} |"
                          + (" saved |" if h["step"] == best["step"] else " |") for h in shown)
    run_rows = "\n".join(f"| {r['steps']} | {r['dropout']} | {r['ran']} ({r['stopped_by']}) | {r['best']['step']} | "
                         f"{r['best']['train']:.4f} | {r['best']['val']:.4f} |" + (" kept |" if r is chosen else " |")
                         for r in runs)
    head_dim = config.hidden_size // config.num_attention_heads
    if args.preset == "default":
        card_intro = """# kiln default model (tiny Llama, Shakespeare)

The small model that kiln bundles and uses when no `--model` is given. It is a real
`LlamaForCausalLM` checkpoint (loadable with Hugging Face transformers), trained from scratch by
`tools/train_default_model.py` on Tiny Shakespeare. It writes Shakespeare-flavoured text and is
meant for tests, demos and smoke runs, not for anything useful.
"""
        split_note = "the first 90% is the training split and the last 10% the validation split."
    else:
        card_intro = f"""# kiln {args.preset} model (Llama, Shakespeare)

Trained by `tools/train_default_model.py --preset {args.preset}` for issue 19's quantization accuracy
study (`tools/quant_study.sh`): large enough that quantization error is realistic, small enough
that the CPU backend evaluates it in a minute. Not committed; the study rebuilds it.
"""
        split_note = ("the corpus is cut at the first blank line after 90% of its characters: the speeches before "
                      "are the training split (and the tokenizer's text), those after the validation split.")
    card = f"""---
license: apache-2.0
language: en
library_name: transformers
pipeline_tag: text-generation
tags: [llama, tiny, kiln, tinyshakespeare]
---

{card_intro}
## Architecture

| | |
|---|---|
| architecture | LlamaForCausalLM (RMSNorm, SwiGLU MLP, RoPE, grouped-query attention) |
| parameters | {n_params:,} ({n_params / 1e6:.2f} M; embeddings tied with the LM head) |
| hidden size | {config.hidden_size} |
| layers | {config.num_hidden_layers} |
| attention heads / KV heads | {config.num_attention_heads} / {config.num_key_value_heads} (head dim {head_dim}) |
| MLP intermediate size | {config.intermediate_size} |
| vocabulary | {VOCAB_SIZE} |
| max position embeddings | {config.max_position_embeddings} |
| RoPE | default, theta 10000 |
| RMSNorm eps | 1e-5 |
| weights | bfloat16, `model.safetensors` ({st_size:,} bytes) |

## Tokenizer

Byte-level BPE (GPT-2 / Llama-3 style: ByteLevel pre-tokenizer with the GPT-2 split regex,
`add_prefix_space=false`, ByteLevel decoder), vocabulary {VOCAB_SIZE}, trained with Hugging Face
`tokenizers` on the same corpus. Special tokens: `<|bos|>` (0), `<|eos|>` (1), `<|pad|>` (2).
The post-processor adds `<|bos|>` at the start (`add_bos_token: true`). `tokenizer_config.json`
has a simple chat template:

```
{CHAT_TEMPLATE}
```

## Training data

Tiny Shakespeare (`tinyshakespeare.txt`, {len(text):,} characters, public domain). The text is
split into blank-line separated speeches, each encoded as `<|bos|> speech <|eos|>`, concatenated
({len(ids):,} tokens); {split_note}

## Training

- seed {args.seed}; AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), peak lr {args.lr},
  {args.warmup} warmup steps then cosine decay to {min_lr:g}, gradient clipping 1.0
- batch {B} x {T} tokens, bf16 autocast, PyTorch {torch.__version__}, transformers {transformers.__version__}
- dropout (training only, as forward hooks; not part of the architecture) on the embedding output and
  on the outputs of every attention `o_proj` and MLP `down_proj`
- the corpus is small ({n_train:,} training tokens) and a {n_params / 1e6:.1f} M-parameter model memorises it within a
  few hundred steps, so the script makes several runs from the same seed (`--runs STEPS:DROPOUT,...`,
  all of them within a {args.max_seconds:.0f} s wall-clock cap), measures the validation loss every
  {args.eval_every} steps, and keeps the run and step with the best validation loss
- device: {device_name}; date: {date}

| planned steps | dropout | ran | best step | train loss there | val loss there | |
|---|---|---|---|---|---|---|
{run_rows}

The kept run ({chosen['steps']} steps, dropout {chosen['dropout']}, {train_seconds:.0f} s):

| step | train loss | val loss | seconds | |
|---|---|---|---|---|
{hist_rows}

Final losses of the saved weights (mean over 50 random batches of {B} x {T}, bf16 autocast):
**train {final['train']:.4f}, validation {final['val']:.4f}** (reloaded from the bf16 file:
train {reloaded['train']:.4f}, validation {reloaded['val']:.4f}).

## Samples (from the saved bf16 weights, prompt `ROMEO:`)

Greedy:

```
{greedy_text}
```

Sampled (temperature 0.8, top-k 50, torch seed {args.seed}):

```
{sampled_text}
```

## Reproduce

```
{command}
```

run on the GPU machine by `tools/regenerate_on_device.sh` (see `tools/README.md`), which trains
into a temporary directory that is then copied to `models/default/`. GPU kernels are not
bit-for-bit deterministic, so a rerun gives close but not identical weights.

## License

Apache-2.0 (the kiln project's license). The model was trained only on public-domain text
(Shakespeare's plays).
"""
    open(os.path.join(args.out, "README.md"), "w").write(card)
    summary = {"runs": [{k: r[k] for k in ("steps", "dropout", "ran", "stopped_by")} | {"best_step": r["best"]["step"],
                         "best_val": r["best"]["val"]} for r in runs],
               "params": n_params, "steps": step, "best_step": best["step"], "train_loss": final["train"],
               "val_loss": final["val"], "reloaded": reloaded, "history": history, "device": device_name,
               "date": date, "seconds": round(time.time() - t_start, 1), "safetensors_bytes": st_size,
               "python": platform.python_version(), "torch": torch.__version__,
               "transformers": transformers.__version__}
    log("SUMMARY " + json.dumps(summary))
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    log(f"wrote {sorted(os.listdir(args.out))} ({total} bytes) in {time.time() - t_start:.1f}s")


if __name__ == "__main__":
    main()
