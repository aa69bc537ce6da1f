#!/usr/bin/env python3
"""Record Hugging Face transformers' beam search step by step, for kiln's beam-search replay test.

    python3 tools/make_beam_fixtures.py --out test/fixtures/beam_search_hf.json [--cases 54] [--seed 0]

Needs PyTorch and transformers (5.x); runs on the CPU with one thread (torch.topk's CPU order then
decides ties, and the test replays that order). Read by test/sampling/beam_search_hf.test.ts. Writes

    {"generator", "transformers", "torch", "vocab": 8, "seed", "cases": [case, ...]}   one case per line
    case = {"promptIds", "numBeams", "lengthPenalty", "earlyStopping": true|false|"never",
            "numReturnSequences", "maxNewTokens", "endIds",
            "steps": how many times beam search evaluated the model,
            "sequences": generated ids per returned sequence (cut right after the first eos),
            "sequencesScores": float32 sequences_scores,
            "cumLogProbs": per sequence, compute_transition_scores summed in float64,
            "rowKeys": the generated prefixes beam search evaluated, in first-evaluation order,
            "rows": base64 of the little-endian float32 log-prob rows it consumed, [len(rowKeys), vocab]}

Each case: a tiny random Llama (vocab 8, fp32, eager attention, lm_head scaled ×30–120 so the
distributions are peaked), generate(do_sample=False, num_beams 2–5, length_penalty ∈ {−0.5, 0, 1,
1.3, 2}, early_stopping ∈ {True, False, "never"}, 1–3 eos ids, max_new_tokens 2–10,
num_return_sequences ≤ num_beams). Two LogitsProcessors run after transformers' own: one adding 0–3
to the eos log-probs (so hypotheses end at varied steps), then a recorder keeping every processed
log-prob row, keyed by the beam's generated tokens. The script checks that equal keys got equal rows,
that every returned sequence's prefixes were recorded, that the recorded rows summed in float32 along
each sequence give HF's cumulative log-prob, and that each score is cumLogProb / generatedLength **
length_penalty (the eos counted). It collects every failure and exits non-zero at the end.
"""

import argparse
import base64
import json
import platform
import random
import sys

import numpy as np
import torch

VOCAB = 8
EOS_SETS = [[3], [3, 5], [3, 5, 6]]
LENGTH_PENALTIES = [-0.5, 0.0, 1.0, 1.3, 2.0]
EARLY_STOPPING = [True, False, "never"]
ERRORS = []


def log(*a):
    print(*a, flush=True)


def error(msg):
    ERRORS.append(msg)
    log("ERROR:", msg)


def tiny_llama(seed, scale):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      tie_word_embeddings=False, bos_token_id=0, eos_token_id=3, pad_token_id=3)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


def processors(prompt_len, end_ids, boosts):
    from transformers import LogitsProcessor, LogitsProcessorList

    class EosBoost(LogitsProcessor):
        """Adds a fixed amount to each eos id's log-prob."""

        def __call__(self, input_ids, scores):
            scores = scores.clone()
            for e, b in zip(end_ids, boosts):
                scores[:, e] += b
            return scores

    class Recorder(LogitsProcessor):
        """Keeps each row beam search consumes, keyed by the beam's generated tokens (call k: k tokens)."""

        def __init__(self):
            self.rows = {}
            self.steps = 0

        def __call__(self, input_ids, scores):
            k = self.steps
            self.steps += 1
            for r in range(input_ids.shape[0]):
                key = ",".join(str(int(t)) for t in input_ids[r, prompt_len:prompt_len + k])
                row = scores[r].detach().float().clone()
                if key in self.rows:
                    if not torch.equal(self.rows[key], row):
                        error(f"prefix [{key}] evaluated twice with different rows")
                else:
                    self.rows[key] = row
            return scores

    rec = Recorder()
    return LogitsProcessorList([EosBoost(), rec]), rec


def cut(gen, end_ids):
    for i, t in enumerate(gen):
        if t in end_ids:
            return gen[: i + 1]
    return gen


def record_case(i, rng, seed):
    num_beams = rng.randint(2, 5)
    case = {
        "promptIds": [rng.randrange(VOCAB) for _ in range(rng.randint(1, 4))],
        "numBeams": num_beams,
        "lengthPenalty": rng.choice(LENGTH_PENALTIES),
        "earlyStopping": rng.choice(EARLY_STOPPING),
        "numReturnSequences": rng.randint(1, num_beams),
        "maxNewTokens": rng.randint(2, 10),
        "endIds": rng.choice(EOS_SETS),
    }
    model = tiny_llama(seed * 1000 + i, rng.uniform(30.0, 120.0))
    boosts = [rng.uniform(0.0, 3.0) for _ in case["endIds"]]
    prompt_len = len(case["promptIds"])
    lps, rec = processors(prompt_len, case["endIds"], boosts)
    ids = torch.tensor([case["promptIds"]])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             num_beams=num_beams, length_penalty=case["lengthPenalty"],
                             early_stopping=case["earlyStopping"],
                             num_return_sequences=case["numReturnSequences"],
                             max_new_tokens=case["maxNewTokens"], eos_token_id=case["endIds"],
                             pad_token_id=case["endIds"][0], logits_processor=lps,
                             output_scores=True, return_dict_in_generate=True)
    # Padding is the first eos id, so cutting at the first eos also drops it; a sequence without an eos
    # ran to the last step, the longest, and has no padding.
    seqs = [cut([int(t) for t in row[prompt_len:]], case["endIds"]) for row in out.sequences]
    scores = [float(v) for v in out.sequences_scores.float().tolist()]
    tr = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=False)
    cums = [float(tr[k, : len(seq)].double().sum()) for k, seq in enumerate(seqs)]

    label = f"case {i} {case}"
    lp = case["lengthPenalty"]
    for k, (seq, sc, cum) in enumerate(zip(seqs, scores, cums)):
        replayed = np.float32(0.0)
        for t, tok in enumerate(seq):
            key = ",".join(str(x) for x in seq[:t])
            if key not in rec.rows:
                error(f"{label}: sequence {k} prefix [{key}] was never recorded")
                break
            replayed = np.float32(replayed + np.float32(rec.rows[key][tok].item()))
        if abs(float(replayed) - cum) > 1e-4:
            error(f"{label}: sequence {k}: recorded rows sum to {float(replayed)}, transition scores to {cum}")
        pred = cum / (len(seq) ** lp)
        if abs(pred - sc) > 1e-4 * max(1.0, abs(sc)):
            error(f"{label}: score {sc} != cumLogProb/len^lp = {pred} (len {len(seq)}, cum {cum})")
    if scores != sorted(scores, reverse=True):
        error(f"{label}: returned beams not sorted by score: {scores}")

    keys = list(rec.rows)
    table = torch.stack([rec.rows[k] for k in keys]).numpy().astype("<f4")
    case.update({
        "steps": rec.steps,
        "sequences": seqs,
        "sequencesScores": scores,
        "cumLogProbs": cums,
        "rowKeys": keys,
        "rows": base64.b64encode(table.tobytes()).decode("ascii"),
    })
    return case


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", type=int, default=54)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import transformers

    torch.set_num_threads(1)
    log(f"transformers {transformers.__version__} torch {torch.__version__} python {platform.python_version()}")
    rng = random.Random(args.seed)
    cases = [record_case(i, rng, args.seed) for i in range(args.cases)]
    header = {"generator": "tools/make_beam_fixtures.py", "transformers": transformers.__version__,
              "torch": torch.__version__, "vocab": VOCAB, "seed": args.seed}
    # One case per line, so a regeneration diffs case by case.
    text = "{\n" + "".join(f"{json.dumps(k)}: {json.dumps(v)},\n" for k, v in header.items())
    text += '"cases": [\n' + ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases) + "\n]}\n"
    json.loads(text)
    with open(args.out, "w") as f:
        f.write(text)
    steps = sorted({c["steps"] for c in cases})
    log(f"wrote {args.out}: {len(cases)} cases, steps {steps}, "
        f"{sum(len(c['sequences']) for c in cases)} returned sequences")
    if ERRORS:
        log(f"{len(ERRORS)} errors")
        sys.exit(1)


if __name__ == "__main__":
    main()
