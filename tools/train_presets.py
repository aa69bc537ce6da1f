"""Size presets of tools/train_default_model.py and the held-out split of the quant-study preset.

No torch here, so tools/test_train_presets.py checks it on any machine (`python3 -m unittest
discover -s tools -p 'test_*.py'`).

    default       the bundled model (models/default): token-level 90/10 split, bf16 file <= 9.5 MB
    quant-study   issue 19's accuracy model (~26 M parameters): split at the first blank line after
                  90% of the characters, so the held-out text is whole speeches the model (and its
                  tokenizer) never saw; no size limit; not committed (tools/quant_study.sh rebuilds it)
"""

BOS, EOS = "<|bos|>", "<|eos|>"

PRESETS = {
    "default": {
        "hidden_size": 256,
        "intermediate_size": 640,
        "num_hidden_layers": 6,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        "runs": "2500:0.2,1000:0.2,600:0.1",
        "max_seconds": 240.0,
        "lr": 3e-3,
        "max_bytes": 9_500_000,
        "split": "tokens",
    },
    "quant-study": {
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        # The shorter run first, so that it finishes inside the cap whatever the step time.
        "runs": "600:0.1,1200:0.2",
        "max_seconds": 200.0,
        "lr": 1e-3,
        "max_bytes": None,
        "split": "paragraphs",
    },
}

# Training options a preset sets unless given on the command line.
PRESET_OPTIONS = ("runs", "max_seconds", "lr")


def resolve_preset(name, given):
    """The preset's settings with the command line's `given` options (None = not given) on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    p = dict(PRESETS[name])
    for k in PRESET_OPTIONS:
        if given.get(k) is not None:
            p[k] = given[k]
    return p


def paragraphs(text):
    return [p for p in text.split("\n\n") if p.strip()]


def held_out_cut(text, frac=0.9):
    """(train_text, held_out_text): cut at the first blank line at or after frac of the characters."""
    at = text.find("\n\n", int(frac * len(text)))
    if at < 0 or not paragraphs(text[at + 2:]) or not paragraphs(text[:at]):
        raise ValueError(f"no blank line after {frac:.0%} of the text leaves paragraphs on both sides")
    return text[:at], text[at + 2:]


def framed(pars, max_chars=None):
    """Paragraphs in the training framing as `kiln eval` reads a text: the tokenizer adds <|bos|> at
    the start and matches the special-token strings, so the result tokenizes to
    [bos] p1 [eos] [bos] p2 [eos] ... as encode_corpus builds the training stream. With max_chars,
    only the leading paragraphs whose framed text fits (at least one)."""
    if max_chars is not None:
        kept, size = [], 0
        for p in pars:
            size += len(p) + len(EOS) + len(BOS)
            if kept and size > max_chars:
                break
            kept.append(p)
        pars = kept
    return (EOS + BOS).join(pars) + EOS
