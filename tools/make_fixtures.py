#!/usr/bin/env python3
"""Make tiny Hugging Face checkpoints and what transformers computes on them, for kiln's fidelity tests.

    python3 tools/make_fixtures.py --data tinyshakespeare.txt --default-model models/default --out DIR

Needs PyTorch, transformers (5.x), tokenizers and safetensors, and a CUDA GPU for the three briefly
trained fixtures (the references themselves are computed on the CPU). See tools/README.md.

Writes:
    DIR/models/<name>/{config.json, model.safetensors (float32), tokenizer.json,
                       tokenizer_config.json, generation_config.json, expected.json}
    DIR/default_model_expected.json     the same cases for the bundled default model
    DIR/inspect.txt                     transformers source excerpts the notes rely on

References: transformers in fp32 on the CPU, attn_implementation="eager", one CPU thread, each
case on a freshly loaded model. A case is a prompt, a greedy loop of 32 steps with the KV cache
(not stopping at EOS), the log-probability and top1-top2 logit margin of each chosen token, and the
full logits at the last prompt position of the prefill. model.generate(do_sample=False) must give
the same tokens up to the first EOS. Random fixtures are re-seeded until every margin is >= 1e-4.
"""

import argparse
import copy
import inspect
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

N_STEPS = 32
MIN_MARGIN = 1e-4
SIZE_WARN = 600_000
SIZE_ERROR = 700_000
PROMPT_TEXTS = ["ROMEO:\nWhat light", "To be, or not to be"]
DEFAULT_PROMPT_TEXTS = ["ROMEO:", "To be, or not to be"]
TOK_TEXTS = [
    "Hello world",
    "  leading and  double  spaces",
    "ROMEO:\nWhat light through yonder window breaks?",
    "héllo € 😀 日本語",
    "numbers 12345 and tabs\tend",
    "<s>special</s> <|endoftext|> inside",
    "",
]
LLAMA3_PAT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PAT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
SP_SPECIALS = ["<unk>", "<s>", "</s>"]
BL_VOCAB = 512  # 510 learned + <|endoftext|> (510) + <|begin_of_text|> (511)
SP_VOCAB = 768

ERRORS = []


def log(*a):
    print(*a, flush=True)


def error(msg):
    log("ERROR: " + msg)
    ERRORS.append(msg)


def warn(msg):
    log("WARNING: " + msg)


def paragraphs(text):
    return [p for p in text.split("\n\n") if p.strip()]


# ------------------------------------------------------------------------------------------------
# tokenizers
# ------------------------------------------------------------------------------------------------


def vocab_and_merges(tok):
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in j["model"]["merges"]]
    return vocab, merges


def byte_level_pretok(pat):
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pat), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def train_byte_level(text):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = byte_level_pretok(LLAMA3_PAT)
    trainer = trainers.BpeTrainer(vocab_size=BL_VOCAB - 2, min_frequency=2, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(paragraphs(text), trainer=trainer)
    vocab, merges = vocab_and_merges(tok)
    assert len(vocab) == BL_VOCAB - 2, len(vocab)
    assert sorted(vocab.values()) == list(range(BL_VOCAB - 2))
    return vocab, merges


def make_byte_level(vocab, merges, variant):
    """variant 'llama3': Llama-3 style (split regex, BOS via TemplateProcessing, ignore_merges);
    'qwen2': Qwen2 style (NFC, Qwen split regex, no BOS, ByteLevel post-processor)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    kw = {"vocab": dict(vocab), "merges": list(merges)}
    if variant == "llama3":
        kw["ignore_merges"] = True
    tok = Tokenizer(models.BPE(**kw))
    if variant == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = byte_level_pretok(LLAMA3_PAT if variant == "llama3" else QWEN2_PAT)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False),
                            AddedToken("<|begin_of_text|>", special=True, normalized=False)])
    assert tok.token_to_id("<|endoftext|>") == 510 and tok.token_to_id("<|begin_of_text|>") == 511
    if variant == "llama3":
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
            special_tokens=[("<|begin_of_text|>", 511)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tok.get_vocab_size() == BL_VOCAB
    return tok


def train_sp(text):
    """SentencePiece-style BPE: words start with '▁', trained on lines (so '\\n' and the digits
    other than 3 are not in the vocabulary and go through byte fallback, as in Llama-2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=SP_VOCAB, min_frequency=2, special_tokens=SP_SPECIALS + BYTE_TOKENS,
                                  show_progress=False)
    tok.train_from_iterator([ln for ln in text.split("\n") if ln.strip()], trainer=trainer)
    vocab, merges = vocab_and_merges(tok)
    fixed = SP_SPECIALS + BYTE_TOKENS
    rest = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in set(fixed)]
    order = fixed + rest
    assert len(order) == SP_VOCAB, len(order)
    return {t: i for i, t in enumerate(order)}, merges


def make_sp(vocab, merges, variant):
    """variant 'metaspace': Metaspace pre-tokenizer (prepend_scheme first, split false);
    'normalizer': Llama-2's original form, normalizer Prepend('▁') + Replace(' ', '▁'), no pre-tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(merges), unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    if variant == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SP_SPECIALS])
    for i, t in enumerate(SP_SPECIALS):
        assert tok.token_to_id(t) == i
    assert tok.token_to_id("<0x00>") == 3 and tok.token_to_id("<0xFF>") == 258
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", 1)])
    assert tok.get_vocab_size() == SP_VOCAB
    return tok


TOKENIZER_KINDS = {
    # kind: (bos, eos, pad, add_bos)
    "sp": ("<s>", "</s>", None, True),
    "sp-normalizer": ("<s>", "</s>", None, True),
    "bl-llama3": ("<|begin_of_text|>", "<|endoftext|>", None, True),
    "bl-qwen2": (None, "<|endoftext|>", "<|endoftext|>", False),
}


def tokenizer_config(kind, max_len):
    bos, eos, pad, add_bos = TOKENIZER_KINDS[kind]
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos}
    if kind.startswith("sp"):
        cfg["unk_token"] = "<unk>"
    if pad is not None:
        cfg["pad_token"] = pad
    cfg.update({"add_bos_token": add_bos, "add_eos_token": False, "model_max_length": max_len,
                "clean_up_tokenization_spaces": False})
    return cfg


def encode_for_training(tok, text, bos_id, eos_id):
    ids = []
    for e in tok.encode_batch(paragraphs(text), add_special_tokens=False):
        if bos_id is not None:
            ids.append(bos_id)
        ids.extend(e.ids)
        ids.append(eos_id)
    return np.array(ids, dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# references
# ------------------------------------------------------------------------------------------------


def f32list(t):
    return [float(x) for x in t.detach().to(torch.float32).reshape(-1).tolist()]


def load_ref(d):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def eos_ids_of(d):
    g = json.load(open(os.path.join(d, "generation_config.json")))
    e = g.get("eos_token_id")
    return set(e if isinstance(e, list) else ([e] if e is not None else []))


@torch.no_grad()
def run_case(d, prompt_text, prompt_ids, eos_ids, pad_id, case_notes):
    """Greedy loop with the KV cache on a freshly loaded model, plus cross-checks."""
    model = load_ref(d)
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    try:
        layers = getattr(past, "layers", None)
        case_notes["cacheLayerType"] = type(layers[0]).__name__ if layers else type(past).__name__
    except Exception:  # noqa: BLE001
        pass
    logits = out.logits[0, -1].to(torch.float32)
    last_logits = f32list(logits)
    output_ids, log_probs, margins = [], [], []
    for _ in range(N_STEPS):
        lp = F.log_softmax(logits, dim=-1)
        top = torch.topk(logits, 2)
        nxt = int(top.indices[0])
        output_ids.append(nxt)
        log_probs.append(float(lp[nxt]))
        margins.append(float(top.values[0] - top.values[1]))
        out = model(input_ids=torch.tensor([[nxt]], dtype=torch.long), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].to(torch.float32)

    # cross-check 1: one forward over prompt + outputs without the cache (fresh model)
    m2 = load_ref(d)
    full = torch.tensor([prompt_ids + output_ids[:-1]], dtype=torch.long)
    fl = m2(input_ids=full, use_cache=False).logits[0].to(torch.float32)
    n0 = len(prompt_ids) - 1
    agree = sum(int(int(fl[n0 + t].argmax()) == output_ids[t]) for t in range(N_STEPS))
    max_diff = float((fl[n0] - torch.tensor(last_logits)).abs().max())
    case_notes["noCacheArgmaxAgreement"] = agree
    case_notes["noCachePrefillMaxAbsDiff"] = max_diff

    # cross-check 2: generate (fresh model), equal up to the first EOS
    m3 = load_ref(d)
    gen = m3.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=N_STEPS,
                      pad_token_id=pad_id)
    gen = gen[0, len(prompt_ids):].tolist()
    want = list(output_ids)
    for i, t in enumerate(output_ids):
        if t in eos_ids:
            want = output_ids[: i + 1]
            break
    case_notes["generateMatches"] = gen == want
    if gen != want:
        error(f"{d}: generate() {gen} != manual greedy {want} (prompt {prompt_ids})")
    return {"prompt": prompt_text, "promptIds": list(prompt_ids), "outputIds": output_ids, "logProbs": log_probs,
            "margins": margins, "lastLogits": last_logits}


def tokenization_records(d):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(d)
    raw = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    recs = []
    for text in TOK_TEXTS:
        ids = hf(text).input_ids
        ids_ns = hf(text, add_special_tokens=False).input_ids
        rec = {"text": text, "ids": ids, "idsNoSpecial": ids_ns, "tokens": hf.convert_ids_to_tokens(ids),
               "decoded": hf.decode(ids), "decodedSkipSpecial": hf.decode(ids, skip_special_tokens=True)}
        r_ids = raw.encode(text).ids
        r_ns = raw.encode(text, add_special_tokens=False).ids
        checks = {
            "ids": (r_ids, ids), "idsNoSpecial": (r_ns, ids_ns),
            "tokens": (raw.encode(text).tokens, rec["tokens"]),
            "decoded": (raw.decode(ids, skip_special_tokens=False), rec["decoded"]),
            "decodedSkipSpecial": (raw.decode(ids, skip_special_tokens=True), rec["decodedSkipSpecial"]),
        }
        for k, (a, b) in checks.items():
            if a != b:
                error(f"{d}: AutoTokenizer and tokenizers differ on {k} of {text!r}: {b!r} vs {a!r}")
        recs.append(rec)
    return recs, type(hf).__name__


def dump_json(obj, path):
    """Readable but compact: top-level keys one per line, list-of-dict entries one per line."""
    parts = []
    for k, v in obj.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            inner = ",\n    ".join(json.dumps(x, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
                                   for x in v)
            parts.append(f"  {json.dumps(k)}: [\n    {inner}\n  ]")
        else:
            parts.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False, allow_nan=False)}")
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    assert json.loads(text) == obj
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------

BASE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128)
SP_IDS = dict(bos_token_id=1, eos_token_id=2)
BL_LLAMA_IDS = dict(bos_token_id=511, eos_token_id=510)
BL_QWEN_IDS = dict(bos_token_id=None, eos_token_id=510, pad_token_id=510)

FIXTURES = [
    {
        "name": "llama-sp-random", "arch": "LlamaForCausalLM", "tok": "sp", "train": False, "seed": 101,
        "config": dict(BASE, vocab_size=SP_VOCAB, intermediate_size=128, num_key_value_heads=2, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       **SP_IDS),
        "legacy": {"rope_theta": 10000.0, "rope_scaling": None},
        "notes": ["Llama with GQA (4 query heads, 2 KV heads), random weights (std 0.15, norms 1+0.2*N(0,1)),",
                  "SentencePiece-style byte-fallback BPE (Metaspace pre-tokenizer, prepend_scheme first, split false),",
                  "config.json in the legacy Hub form: rope_theta + rope_scaling null.",
                  "tie_word_embeddings true (keeps the fixture under 600 KB)."],
    },
    {
        "name": "llama3-bpe-trained", "arch": "LlamaForCausalLM", "tok": "bl-llama3", "train": True, "seed": 201,
        "config": dict(BASE, vocab_size=BL_VOCAB, intermediate_size=176, num_key_value_heads=2, rms_norm_eps=1e-5,
                       tie_word_embeddings=True,
                       rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 32},
                       **BL_LLAMA_IDS),
        "legacy": None,
        "notes": ["Llama with llama3 RoPE scaling (factor 8, low_freq_factor 1, high_freq_factor 4,",
                  "original_max_position_embeddings 32); rope_theta 10000 so that with head_dim 16 the frequencies",
                  "fall in all three llama3 bands (kept, smoothed, divided by factor).",
                  "Tied embeddings, intermediate 176, byte-level BPE in the Llama-3 form (split regex +",
                  "ByteLevel(use_regex=false), ignore_merges true, <|begin_of_text|> added by TemplateProcessing).",
                  "Briefly trained on Tiny Shakespeare. config.json as transformers 5 writes it (rope_parameters)."],
    },
    {
        "name": "llama-linear-mqa-bias", "arch": "LlamaForCausalLM", "tok": "bl-llama3", "train": False, "seed": 301,
        "config": dict(BASE, vocab_size=BL_VOCAB, intermediate_size=128, num_key_value_heads=1, rms_norm_eps=1e-5,
                       tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
                       rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
                       **BL_LLAMA_IDS),
        "legacy": {"rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 2.0}},
        "notes": ["Llama with MQA (1 KV head), linear RoPE scaling factor 2, attention_bias and mlp_bias true",
                  "(q/k/v/o and gate/up/down biases, all random and non-zero), untied lm_head (no bias), random",
                  "weights. Legacy config form with the old 'type' key: rope_scaling {type: linear, factor: 2}."],
    },
    {
        "name": "llama-dynamic", "arch": "LlamaForCausalLM", "tok": "sp", "train": False, "seed": 401,
        "config": dict(BASE, vocab_size=SP_VOCAB, intermediate_size=128, num_key_value_heads=4, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, max_position_embeddings=24,
                       rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
                       **SP_IDS),
        "legacy": {"rope_theta": 10000.0, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
        "notes": ["Llama (MHA, 4 KV heads) with dynamic NTK RoPE, factor 2, max_position_embeddings 24, so that",
                  "prompt + 32 generated tokens go past it. Random weights, SP tokenizer, legacy config form."],
    },
    {
        "name": "mistral-sp-trained", "arch": "MistralForCausalLM", "tok": "sp-normalizer", "train": True, "seed": 501,
        "config": dict(BASE, vocab_size=SP_VOCAB, intermediate_size=128, num_key_value_heads=2, rms_norm_eps=1e-5,
                       tie_word_embeddings=True, sliding_window=16,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **SP_IDS),
        "legacy": None,
        "notes": ["Mistral with GQA and sliding_window 16 (the window matters within prompt + 32 tokens),",
                  "briefly trained, tied embeddings. SP tokenizer in Llama-2's original form: normalizer",
                  "Prepend('▁') + Replace(' ', '▁') and no pre-tokenizer (the other SP fixtures use Metaspace)."],
    },
    {
        "name": "qwen2-bpe-random", "arch": "Qwen2ForCausalLM", "tok": "bl-qwen2", "train": False, "seed": 601,
        "config": dict(BASE, vocab_size=BL_VOCAB, intermediate_size=176, num_key_value_heads=2, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, use_sliding_window=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **BL_QWEN_IDS),
        "legacy": None,
        "notes": ["Qwen2 (q/k/v bias, no o_proj bias), GQA, tied embeddings, rope_theta 1e6, random weights",
                  "(biases random and non-zero). Byte-level tokenizer in the Qwen2 form: NFC normalizer, Qwen split",
                  "regex, no BOS (the tokenizer adds nothing), eos and pad <|endoftext|> (510)."],
    },
    {
        "name": "qwen3-bpe-trained", "arch": "Qwen3ForCausalLM", "tok": "bl-qwen2", "train": True, "seed": 701,
        "config": dict(BASE, vocab_size=BL_VOCAB, intermediate_size=128, num_key_value_heads=2, head_dim=32,
                       rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **BL_QWEN_IDS),
        "legacy": None,
        "notes": ["Qwen3 (q_norm/k_norm per head), explicit head_dim 32 with hidden 64 and 4 heads (q_proj 64->128,",
                  "o_proj 128->64), GQA (2 KV heads), tied embeddings, briefly trained. Qwen2-form byte-level tokenizer."],
    },
]


def config_class(arch):
    import transformers

    return {"LlamaForCausalLM": transformers.LlamaConfig, "MistralForCausalLM": transformers.MistralConfig,
            "Qwen2ForCausalLM": transformers.Qwen2Config, "Qwen3ForCausalLM": transformers.Qwen3Config}[arch]


def model_class(arch):
    import transformers

    return getattr(transformers, arch)


def randomize(model, seed, std):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * r)
            elif name.endswith(".bias"):
                p.copy_(0.1 * r)
            else:
                p.copy_(std * r)


def train_model(model, ids, steps, seed, lr=3e-3, B=32, T=128, warmup=30):
    dev = torch.device("cuda")
    model.to(dev).train()
    data = torch.from_numpy(ids).to(dev)
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        cur = lr * (step + 1) / warmup if step < warmup else \
            0.1 * lr + 0.45 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        for pg in opt.param_groups:
            pg["lr"] = cur
        ix = torch.randint(0, len(data) - T - 1, (B,), device=dev, generator=g)
        x = data[ix[:, None] + torch.arange(T + 1, device=dev)[None, :]]
        logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.to("cpu").float().eval()
    return loss.item()


def write_checkpoint(spec, model, tok, d):
    import transformers

    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    for f in os.listdir(d):
        if f not in ("config.json", "model.safetensors", "generation_config.json"):
            error(f"{d}: save_pretrained wrote an unexpected file {f}")
    cfg_path = os.path.join(d, "config.json")
    written = json.load(open(cfg_path))
    rope_as_written = {k: written[k] for k in ("rope_parameters", "rope_theta", "rope_scaling") if k in written}
    cfg = dict(written)
    if spec["legacy"] is not None:
        cfg.pop("rope_parameters", None)
        cfg.update(spec["legacy"])
        if "dtype" in cfg:  # the pre-5 spelling
            cfg["torch_dtype"] = cfg.pop("dtype")
    cfg["architectures"] = [spec["arch"]]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    bos, eos, pad = (spec["config"].get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id"))
    gen = {k: v for k, v in (("bos_token_id", bos), ("eos_token_id", eos), ("pad_token_id", pad)) if v is not None}
    gen["transformers_version"] = transformers.__version__
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)  # compact: keeps each fixture under 600 KB
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(spec["tok"], spec["config"]["max_position_embeddings"]), f, indent=2)
    return rope_as_written, cfg


def random_prompt(spec, index):
    rs = np.random.RandomState(1000 + index)
    lo = 3 if spec["tok"].startswith("sp") else 0
    hi = spec["config"]["vocab_size"] - (0 if spec["tok"].startswith("sp") else 2)
    return [int(x) for x in rs.randint(lo, hi, size=7)]


def dynamic_rope_notes(d, cfg):
    """What transformers does for dynamic NTK: which max it uses, and how it updates with the cache."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    notes = []
    m = load_ref(d)
    rot = m.model.rotary_emb
    notes.append(f"loaded config.rope_parameters = {json.dumps(m.config.rope_parameters, sort_keys=True)}")
    notes.append(f"rotary_emb: rope_type={getattr(rot, 'rope_type', None)} original_max_seq_len="
                 f"{getattr(rot, 'original_max_seq_len', None)} max_seq_len_cached={getattr(rot, 'max_seq_len_cached', None)}")
    fn = ROPE_INIT_FUNCTIONS["dynamic"]
    dim = 16
    base, factor, maxpos = 10000.0, 2.0, cfg["max_position_embeddings"]
    seq = 40

    def formula(mp):
        b = base * ((factor * seq / mp) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (b ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float) / dim))

    inv_a, _ = fn(copy.deepcopy(m.config), "cpu", seq_len=seq)
    uses_maxpos = bool(torch.allclose(inv_a, formula(maxpos), rtol=1e-6, atol=0))
    try:
        c2 = copy.deepcopy(m.config)
        c2.rope_parameters = dict(c2.rope_parameters, original_max_position_embeddings=16)
        inv_b, _ = fn(c2, "cpu", seq_len=seq)
        ignores_orig = bool(torch.equal(inv_a, inv_b))
    except Exception as e:  # noqa: BLE001
        ignores_orig = f"error: {e}"
    notes.append(f"_compute_dynamic_ntk_parameters(seq_len={seq}) equals the NTK formula with max_position_embeddings "
                 f"({maxpos}) as the original length: {uses_maxpos}; adding original_max_position_embeddings=16 to "
                 f"rope_parameters leaves it unchanged: {ignores_orig}")
    # statefulness: does a short forward after a long one go back to the original frequencies?
    with torch.no_grad():
        inv0 = rot.inv_freq.clone()
        m(input_ids=torch.zeros((1, 40), dtype=torch.long))
        grown = rot.inv_freq.clone()
        m(input_ids=torch.zeros((1, 5), dtype=torch.long))
        after = rot.inv_freq.clone()
    notes.append(f"on one model object: inv_freq grows for a 40-token forward: {not torch.equal(inv0, grown)}; a "
                 f"5-token forward afterwards is back at the original inv_freq: {torch.equal(inv0, after)} "
                 f"(max_seq_len_cached now {getattr(rot, 'max_seq_len_cached', None)}). "
                 "Each case here is computed on a freshly loaded model so that history cannot matter.")
    notes.append("Semantics with the KV cache: inv_freq is recomputed in each forward from seq_len = max(position_ids)+1 "
                 "when that exceeds max_position_embeddings; keys already in the cache keep the rotation they got "
                 "when they were computed (the cache stores rotated keys). The prefill (prompt shorter than "
                 f"{maxpos}) uses the original frequencies; decode step at position p >= {maxpos} uses base' = base * "
                 f"(factor*(p+1)/{maxpos} - (factor-1))^(dim/(dim-2)) for its own query and key only.")
    return notes


def sliding_window_notes(d, window):
    notes = []
    m = load_ref(d)
    x = torch.randint(3, SP_VOCAB, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = m(input_ids=x, output_attentions=True)
    att = out.attentions[0][0, 0]  # layer 0, head 0: (q, kv)
    q = 39
    keys = torch.nonzero(att[q] > 0).reshape(-1).tolist()
    notes.append(f"eager attention weights (layer 0, head 0) of the query at position {q}: non-zero for key positions "
                 f"{keys[0]}..{keys[-1]} ({len(keys)} keys) with sliding_window={window}: a query at q sees keys k with "
                 f"q - {window} < k <= q (the window counts the query's own position).")
    return notes


def params_of(d):
    from safetensors import safe_open

    n = 0
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        for k in f.keys():
            n += int(np.prod(f.get_slice(k).get_shape()))
    return n


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def build_fixture(spec, index, toks, train_data, out_root, train_steps, meta):
    import transformers

    name = spec["name"]
    d = os.path.join(out_root, "models", name)
    seed = spec["seed"]
    for attempt in range(6):
        if os.path.exists(d):
            shutil.rmtree(d)
        t0 = time.time()
        cfg_obj = config_class(spec["arch"])(**spec["config"])
        torch.manual_seed(seed)
        model = model_class(spec["arch"])(cfg_obj).float()
        train_loss = None
        if spec["train"]:
            randomize(model, seed, 0.02)
            bos_id, eos_id = spec["config"]["bos_token_id"], spec["config"]["eos_token_id"]
            train_loss = train_model(model, train_data[spec["tok"]](bos_id, eos_id), train_steps, seed)
        else:
            randomize(model, seed, 0.15)
        model.eval()
        rope_as_written, cfg = write_checkpoint(spec, model, toks[spec["tok"]], d)

        # the written checkpoint must load back to the same weights
        ref = load_ref(d)
        sd_a = model.state_dict()
        for k, v in ref.state_dict().items():
            if k in sd_a and not torch.equal(sd_a[k].float(), v):
                error(f"{name}: weight {k} differs after save/load")
        rp = ref.config.rope_parameters
        want_rp = spec["config"]["rope_parameters"]
        for k, v in want_rp.items():
            if rp.get(k) != v:
                error(f"{name}: loaded rope_parameters[{k!r}] = {rp.get(k)!r}, expected {v!r} (full: {rp})")

        notes = list(spec["notes"])
        notes.append(f"save_pretrained (transformers {transformers.__version__}) wrote the RoPE config as "
                     f"{json.dumps(rope_as_written, sort_keys=True)}"
                     + ("; config.json was then rewritten to the legacy form "
                        + json.dumps(spec["legacy"], sort_keys=True) if spec["legacy"] is not None else ""))
        notes.append(f"after loading, config.rope_parameters = {json.dumps(rp, sort_keys=True, default=str)}")
        if spec["train"]:
            notes.append(f"trained {train_steps} steps on the GPU (AdamW lr 3e-3, batch 32 x 128, fp32), final train "
                         f"loss {train_loss:.4f}; weights seed {seed}")
        else:
            notes.append(f"random weights, seed {seed}")

        hf_tok_eos = eos_ids_of(d)
        pad_id = spec["config"].get("pad_token_id") or spec["config"]["eos_token_id"]
        from transformers import AutoTokenizer

        hf_tok = AutoTokenizer.from_pretrained(d)
        prompts = [(None, random_prompt(spec, index))] + [(t, hf_tok(t).input_ids) for t in PROMPT_TEXTS]
        cases, case_notes = [], []
        for text, pids in prompts:
            cn = {}
            cases.append(run_case(d, text, pids, hf_tok_eos, pad_id, cn))
            case_notes.append(cn)
        min_margin = min(min(c["margins"]) for c in cases)
        if min_margin < MIN_MARGIN:
            warn(f"{name}: min margin {min_margin:.3g} < {MIN_MARGIN} with seed {seed}; trying seed {seed + 1}")
            seed += 1
            continue
        break
    else:
        error(f"{name}: could not get margins >= {MIN_MARGIN}")

    for i, cn in enumerate(case_notes):
        agree = cn.get("noCacheArgmaxAgreement")
        notes.append(f"case {i}: cache layer {cn.get('cacheLayerType')}; argmax of one no-cache forward over prompt + "
                     f"outputs agrees on {agree}/{N_STEPS} steps; prefill logits no-cache vs cached max |diff| "
                     f"{cn.get('noCachePrefillMaxAbsDiff'):.3g}; generate() matches: {cn.get('generateMatches')}")
        if agree != N_STEPS and "dynamic" not in name:
            error(f"{name}: case {i}: no-cache forward agrees on only {agree}/{N_STEPS} steps")
    if "dynamic" in name:
        try:
            notes.extend(dynamic_rope_notes(d, spec["config"]))
        except Exception as e:  # noqa: BLE001
            error(f"{name}: dynamic rope inspection failed: {e!r}")
            traceback.print_exc()
    if spec["arch"] == "MistralForCausalLM":
        try:
            notes.extend(sliding_window_notes(d, spec["config"]["sliding_window"]))
        except Exception as e:  # noqa: BLE001
            error(f"{name}: sliding window inspection failed: {e!r}")
            traceback.print_exc()

    recs, tok_class = tokenization_records(d)
    notes.append(f"AutoTokenizer.from_pretrained loads it as {tok_class}; its ids/tokens/decodes equal "
                 "tokenizers.Tokenizer.from_file's")
    n_params = params_of(d)
    expected = {"name": name, "architecture": spec["arch"], "transformers": transformers.__version__,
                "torch": torch.__version__, "seed": seed, "params": n_params, "minMargin": min_margin,
                "notes": notes, "cases": cases, "tokenization": recs}
    dump_json(expected, os.path.join(d, "expected.json"))
    size = dir_size(d)
    if size > SIZE_ERROR:
        error(f"{name}: {size} bytes > {SIZE_ERROR}")
    elif size > SIZE_WARN:
        warn(f"{name}: {size} bytes > {SIZE_WARN}")
    meta.append({"name": name, "arch": spec["arch"], "params": n_params, "minMargin": min_margin, "seed": seed,
                 "trainLoss": train_loss, "bytes": size,
                 "files": {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))},
                 "outputs": [c["outputIds"][:8] for c in cases], "seconds": round(time.time() - t0, 1)})
    log(f"[{name}] params {n_params} min margin {min_margin:.4g} seed {seed} size {size} ({time.time() - t0:.1f}s)")


def default_model_expected(d, out_path):
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d)
    eos = eos_ids_of(d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    pad = cfg.get("pad_token_id") or cfg.get("eos_token_id")
    cases, notes = [], ["bundled default model (models/default), bf16 weights loaded with dtype=float32 on the CPU, "
                        "eager attention, one thread, each case on a freshly loaded model"]
    for text in DEFAULT_PROMPT_TEXTS:
        cn = {}
        cases.append(run_case(d, text, tok(text).input_ids, eos, pad, cn))
        notes.append(f"case {text!r}: argmax of a no-cache forward agrees on {cn.get('noCacheArgmaxAgreement')}/"
                     f"{N_STEPS}; generate() matches: {cn.get('generateMatches')}; cache layer {cn.get('cacheLayerType')}")
    mm = min(min(c["margins"]) for c in cases)
    if mm < MIN_MARGIN:
        warn(f"default model: min margin {mm:.3g} < {MIN_MARGIN} (trained weights, not re-seeded)")
    recs, tok_class = tokenization_records(d)
    notes.append(f"AutoTokenizer loads it as {tok_class}")
    for c in cases:
        notes.append(f"greedy continuation of {c['prompt']!r}: {tok.decode(c['outputIds'])!r}")
    expected = {"name": "default", "architecture": cfg["architectures"][0], "transformers": transformers.__version__,
                "torch": torch.__version__, "params": params_of(d), "minMargin": mm, "notes": notes,
                "cases": cases, "tokenization": recs}
    dump_json(expected, out_path)
    log(f"[default] min margin {mm:.4g}; wrote {out_path} ({os.path.getsize(out_path)} bytes)")
    return mm


def write_inspection(path):
    import transformers
    from transformers import modeling_rope_utils

    chunks = [f"transformers {transformers.__version__} torch {torch.__version__} python {platform.python_version()}"]

    def add(label, fn):
        try:
            chunks.append(f"==== {label} ====\n" + inspect.getsource(fn()))
        except Exception as e:  # noqa: BLE001
            chunks.append(f"==== {label} ==== unavailable: {e!r}")

    add("_compute_dynamic_ntk_parameters", lambda: modeling_rope_utils._compute_dynamic_ntk_parameters)
    add("dynamic_rope_update", lambda: modeling_rope_utils.dynamic_rope_update)
    add("_compute_llama3_parameters", lambda: modeling_rope_utils._compute_llama3_parameters)
    add("LlamaRotaryEmbedding", lambda: __import__("transformers.models.llama.modeling_llama",
                                                   fromlist=["x"]).LlamaRotaryEmbedding)
    add("masking_utils.sliding_window_overlay", lambda: __import__("transformers.masking_utils",
                                                                   fromlist=["x"]).sliding_window_overlay)
    add("MistralModel.forward", lambda: __import__("transformers.models.mistral.modeling_mistral",
                                                   fromlist=["x"]).MistralModel.forward)
    add("Qwen3Attention", lambda: __import__("transformers.models.qwen3.modeling_qwen3",
                                             fromlist=["x"]).Qwen3Attention)
    with open(path, "w") as f:
        f.write("\n\n".join(chunks))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--default-model", help="the trained default model checkpoint dir (models/default)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--only", help="comma-separated fixture names")
    args = ap.parse_args()
    t_start = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    import tokenizers
    import transformers

    log(f"transformers {transformers.__version__}, torch {torch.__version__}, tokenizers {tokenizers.__version__}, "
        f"cuda {torch.cuda.is_available()}")
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)
    write_inspection(os.path.join(args.out, "inspect.txt"))

    text = open(args.data, encoding="utf-8").read()
    bl_vocab, bl_merges = train_byte_level(text)
    sp_vocab, sp_merges = train_sp(text)
    toks = {"bl-llama3": make_byte_level(bl_vocab, bl_merges, "llama3"),
            "bl-qwen2": make_byte_level(bl_vocab, bl_merges, "qwen2"),
            "sp": make_sp(sp_vocab, sp_merges, "metaspace"),
            "sp-normalizer": make_sp(sp_vocab, sp_merges, "normalizer")}
    log(f"tokenizers trained ({time.time() - t_start:.1f}s); 'ROMEO:\\nWhat light' -> "
        + "; ".join(f"{k}: {t.encode('ROMEO:' + chr(10) + 'What light').tokens}" for k, t in toks.items()))
    cache = {}

    def train_data(kind):
        def get(bos_id, eos_id):
            key = (kind, bos_id, eos_id)
            if key not in cache:
                cache[key] = encode_for_training(toks[kind], text, bos_id, eos_id)
            return cache[key]
        return get

    tdata = {k: train_data(k) for k in toks}
    meta = []
    only = set(args.only.split(",")) if args.only else None
    for i, spec in enumerate(FIXTURES):
        if only and spec["name"] not in only:
            continue
        try:
            build_fixture(spec, i, toks, tdata, args.out, args.train_steps, meta)
        except Exception as e:  # noqa: BLE001
            error(f"{spec['name']}: failed: {e!r}")
            traceback.print_exc()

    default_mm = None
    if args.default_model:
        try:
            default_mm = default_model_expected(args.default_model, os.path.join(args.out, "default_model_expected.json"))
        except Exception as e:  # noqa: BLE001
            error(f"default model: failed: {e!r}")
            traceback.print_exc()

    log("\n%-24s %-20s %8s %11s %6s %9s  %s" % ("fixture", "arch", "params", "min margin", "seed", "dir bytes",
                                               "files (bytes)"))
    for r in meta:
        log("%-24s %-20s %8d %11.4g %6d %9d  %s" % (r["name"], r["arch"], r["params"], r["minMargin"], r["seed"],
                                                   r["bytes"], " ".join(f"{k}={v}" for k, v in r["files"].items())))
    if default_mm is not None:
        log(f"default model min margin {default_mm:.4g}")
    log("META " + json.dumps(meta))
    log(f"done in {time.time() - t_start:.1f}s with {len(ERRORS)} error(s)")
    for e in ERRORS:
        log("  ERROR: " + e)
    sys.exit(1 if ERRORS else 0)


if __name__ == "__main__":
    main()
