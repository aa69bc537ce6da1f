#!/usr/bin/env python3
"""Record what Hugging Face transformers does with multi-turn chats, for kiln's chat tests.

    python3 tools/make_chat_fixtures.py --out DIR

Run from the repository root (it reads the committed checkpoints). Needs PyTorch and transformers
(5.x); runs on the CPU. See tools/README.md ("Chat fixtures").

Writes DIR/<conversation-name>.json, one file per conversation:

    {"model": path, "template": path|null, "transformers": v, "torch": v, "eosIds": [...],
     "system": text|null, "maxNewTokens": n, "turns": [turn...]}
    turn = {"user": the user's line,
            "messages": the conversation so far (system, earlier turns, this user message),
            "promptText": apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
            "promptIds": apply_chat_template(..., tokenize=True) (the template writes BOS; no others added),
            "outputIds": greedy generate() ids, cut right after the first eos,
            "finished": ended with an eos,
            "reply": tokenizer.decode(outputIds without the eos, skip_special_tokens=True)}

Each turn's reply is appended to the conversation as the assistant's message before the next user
turn, as `kiln chat` does. "template" null: the model's own chat template (tokenizer_config.json);
otherwise the Jinja file passed as chat_template= (kiln: --chat-template FILE).

References: float32 weights, CPU, attn_implementation="eager", 4 threads, one greedy generate() call
per turn with an all-ones attention_mask. The script checks that the template's tokenized form equals
the text encoded without special tokens, that every prompt starts with exactly one BOS when the
template writes one, and that the replies differ between turns (so a test that ignored the
conversation would fail). It collects every failure and exits non-zero at the end.
"""

import argparse
import json
import os
import platform
import sys

import torch

# name, model dir, template file (None: the model's own), system message, user turns, max new tokens
CONVERSATIONS = [
    ("default", "models/default", None, None,
     ["Who art thou?", "What news from Rome?", "Then farewell, good sir."], 24),
    ("default-system", "models/default", None, "Speak as a king.",
     ["Who art thou?", "What news from Rome?"], 24),
    ("llama3-bpe-trained-bos", "test/fixtures/models/llama3-bpe-trained", "test/fixtures/chat/bos_template.jinja",
     "Be brief.", ["ROMEO:", "To be, or not"], 12),
]

ERRORS = []


def log(*a):
    print(*a, flush=True)


def error(msg):
    log("ERROR: " + msg)
    ERRORS.append(msg)


def as_list(x):
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.flatten().tolist()]
    if isinstance(x, (list, tuple)):
        return [int(v) for v in x]
    return [int(x)]


def template_ids(tok, messages, template):
    """apply_chat_template(tokenize=True) as a plain id list (transformers 5 may return a BatchEncoding)."""
    kw = {"chat_template": template} if template is not None else {}
    out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **kw)
    if hasattr(out, "keys") and "input_ids" in out.keys():
        out = out["input_ids"]
    if out and isinstance(out[0], (list, tuple)):
        out = out[0]
    return [int(v) for v in out]


def conversation(name, path, template_file, system, users, max_new):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    eos = as_list(model.generation_config.eos_token_id)
    template = None
    if template_file is not None:
        with open(template_file) as f:
            template = f.read()
    kw = {"chat_template": template} if template is not None else {}
    messages = [{"role": "system", "content": system}] if system is not None else []
    turns = []
    for user in users:
        messages.append({"role": "user", "content": user})
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kw)
        ids = template_ids(tok, messages, template)
        plain = list(tok(text, add_special_tokens=False).input_ids)
        if ids != plain:
            error(f"{name}: apply_chat_template ids {ids[:12]}… differ from the text encoded without "
                  f"special tokens {plain[:12]}…")
        bos = tok.bos_token_id
        if bos is not None and tok.bos_token and tok.bos_token in text and ids.count(bos) != 1:
            error(f"{name}: the prompt holds {ids.count(bos)} BOS ids, expected the template's one")
        x = torch.tensor([ids])
        with torch.no_grad():
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False, num_beams=1,
                                 max_new_tokens=max_new)
        gen = out[0, len(ids):].tolist()
        cut = next((i for i, t in enumerate(gen) if t in eos), None)
        finished = cut is not None
        output_ids = gen[: cut + 1] if finished else gen
        if not finished and len(gen) != max_new:
            error(f"{name}: unfinished reply of {len(gen)} tokens != max_new_tokens {max_new}")
        reply = tok.decode(output_ids[:-1] if finished else output_ids, skip_special_tokens=True)
        turns.append({"user": user, "messages": [dict(m) for m in messages], "promptText": text,
                      "promptIds": ids, "outputIds": output_ids, "finished": finished, "reply": reply})
        log(f"[{name}] {user!r}: {len(ids)} prompt ids -> {len(output_ids)} ids, finished {finished}: {reply!r}")
        messages.append({"role": "assistant", "content": reply})
    replies = [t["reply"] for t in turns]
    if len(set(replies)) != len(replies):
        error(f"{name}: two turns gave the same reply {replies}; pick other user lines")
    if any(r == "" for r in replies):
        error(f"{name}: an empty reply; pick other user lines")
    return {"model": path, "template": template_file, "eosIds": eos, "system": system, "maxNewTokens": max_new,
            "turns": turns}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None, help="comma-separated conversation names")
    args = ap.parse_args()

    import transformers

    torch.set_num_threads(4)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.makedirs(args.out, exist_ok=True)
    log(f"transformers {transformers.__version__} torch {torch.__version__} python {platform.python_version()}")
    for name, path, template_file, system, users, max_new in CONVERSATIONS:
        if args.only and name not in args.only.split(","):
            continue
        obj = conversation(name, path, template_file, system, users, max_new)
        obj = {"model": obj.pop("model"), "template": obj.pop("template"),
               "transformers": transformers.__version__, "torch": torch.__version__, **obj}
        dest = os.path.join(args.out, f"{name}.json")
        with open(dest, "w") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
        log(f"[{name}] wrote {dest}")
    if ERRORS:
        log(f"\n{len(ERRORS)} check(s) failed:")
        for e in ERRORS:
            log("  " + e)
        sys.exit(1)


if __name__ == "__main__":
    main()
