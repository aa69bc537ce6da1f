#!/usr/bin/env python3
"""Record what Hugging Face transformers generate() does with decoding settings, for kiln's tests.

    python3 tools/make_generation_fixtures.py --out DIR [--inspect FILE]

Run from the repository root (it reads the committed checkpoints). Needs PyTorch and transformers
(5.x); runs on the CPU. See tools/README.md ("Generation fixtures").

Writes DIR/<model-name>.json for models/default ("default"), and test/fixtures/models/
{llama3-bpe-trained, mistral-sp-trained, qwen3-bpe-trained}:

    {"model": path, "transformers": v, "torch": v, "eosIds": [...], "padId": id|null, "cases": [case...]}
    case = {"name", "promptText", "promptIds", "hf": generate kwargs, "kiln": SamplingConfig fields,
            "sequences": generated ids per returned sequence (cut right after the first eos),
            "finished": ended with an eos, per sequence,
            greedy: "logProbs" (per step, log_softmax of the processed scores HF returns, at the chosen token),
            beams:  "scores" (sequences_scores), "cumLogProbs" (sum of the chosen tokens' processed
                    log-probs, from compute_transition_scores)}

References: float32 weights, CPU, attn_implementation="eager", 4 threads, one generate() call per
case with output_scores=True, return_dict_in_generate=True, attention_mask all ones. The script
asserts that every transform changes the greedy output for at least one prompt of each model, that
greedy tokens are the argmax of the returned scores, and that each beam score is
cumLogProb / generatedLength ** length_penalty (generatedLength counting the eos). It collects every
failure and exits non-zero at the end.
"""

import argparse
import inspect
import json
import os
import platform
import sys
import time

import torch

MODELS = [
    ("default", "models/default"),
    ("llama3-bpe-trained", "test/fixtures/models/llama3-bpe-trained"),
    ("mistral-sp-trained", "test/fixtures/models/mistral-sp-trained"),
    ("qwen3-bpe-trained", "test/fixtures/models/qwen3-bpe-trained"),
]
BEAM_MODELS = {"default", "llama3-bpe-trained"}
PROMPTS = ["ROMEO:\n", "To be, or not"]
# Tried in order when a transform changes nothing on PROMPTS (and for the min-length prompt).
EXTRA_PROMPTS = ["To be, or not to be", "ROMEO:", "ROMEO:\nWhat light", "JULIET:\n", "First Citizen:\n",
                 "KING RICHARD III:\n", "O Romeo, Romeo"]
# Beam prompts for the default model where early_stopping True / False / "never" give different results
# (on PROMPTS they agree); the script asserts that they do.
ES_PROMPTS = ["KING RICHARD III:\n", "My lord,", "First Citizen:\n"]
GREEDY_NEW = 24
BEAM_NEW = 16
MIN_NEW = 12

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


def kiln_of(hf):
    k = {"maxNewTokens": hf["max_new_tokens"]}
    beams = hf.get("num_beams", 1)
    if beams == 1:
        k["temperature"] = 0
    if "repetition_penalty" in hf:
        k["repetitionPenalty"] = hf["repetition_penalty"]
    if "no_repeat_ngram_size" in hf:
        k["noRepeatNgramSize"] = hf["no_repeat_ngram_size"]
    if "min_new_tokens" in hf:
        k["minLength"] = hf["min_new_tokens"]
    if "bad_words_ids" in hf:
        k["badWords"] = hf["bad_words_ids"]
    if "sequence_bias" in hf:
        assert all(len(ids) == 1 for ids, _ in hf["sequence_bias"])
        k["embeddingBias"] = {str(ids[0]): b for ids, b in hf["sequence_bias"]}
    if beams > 1:
        k["beamWidth"] = beams
        k["lengthPenalty"] = hf["length_penalty"]
        k["earlyStopping"] = hf["early_stopping"]
        k["numReturnSequences"] = hf.get("num_return_sequences", 1)
    return k


class Runner:
    def __init__(self, name, path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name, self.path = name, path
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
        self.model.eval()
        gc = self.model.generation_config
        self.eos = as_list(gc.eos_token_id)
        self.pad = gc.pad_token_id if gc.pad_token_id is not None else None
        if isinstance(self.pad, (list, tuple)):
            self.pad = self.pad[0]
        self.cases = []
        self.plain = {}  # prompt text -> plain greedy case

    def ids(self, text):
        return list(self.tok(text).input_ids)

    def generate(self, text, hf, name):
        ids = self.ids(text)
        x = torch.tensor([ids])
        with torch.no_grad():
            try:
                out = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **hf)
            except Exception as e:  # noqa: BLE001
                if "sequence_bias" not in hf:
                    raise
                # the older dict form {(ids...): bias}
                log(f"[{self.name}] sequence_bias as a list failed ({e!r}); passing it as a dict")
                kw = dict(hf, sequence_bias={tuple(s): b for s, b in hf["sequence_bias"]})
                out = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)
        P = len(ids)
        rows = out.sequences[:, P:].tolist()
        seqs, finished = [], []
        for r in rows:
            cut = next((i for i, t in enumerate(r) if t in self.eos), None)
            if cut is None:
                if len(r) != hf["max_new_tokens"]:
                    error(f"{self.name} {name} {text!r}: unfinished sequence of length {len(r)} != max_new_tokens")
                seqs.append(r)
                finished.append(False)
            else:
                seqs.append(r[: cut + 1])
                finished.append(True)
        case = {"name": name, "promptText": text, "promptIds": ids, "hf": hf, "kiln": kiln_of(hf),
                "sequences": seqs, "finished": finished}
        if hf.get("num_beams", 1) == 1:
            lps = []
            seq = seqs[0]
            if len(out.scores) != len(seq):
                error(f"{self.name} {name} {text!r}: {len(out.scores)} score steps for {len(seq)} tokens")
            for step, t in enumerate(seq):
                s = out.scores[step][0].float()
                lps.append(float(torch.log_softmax(s, -1)[t]))
                if int(torch.argmax(s)) != t:
                    error(f"{self.name} {name} {text!r}: step {step} token {t} is not the argmax of scores")
            case["logProbs"] = lps
        else:
            scores = [float(v) for v in out.sequences_scores.tolist()]
            case["scores"] = scores
            try:
                tr = self.model.compute_transition_scores(out.sequences, out.scores, out.beam_indices,
                                                          normalize_logits=False)
                cums = []
                for i, seq in enumerate(seqs):
                    cums.append(float(tr[i, : len(seq)].double().sum()))
                case["cumLogProbs"] = cums
                lp = hf["length_penalty"]
                for seq, sc, cum in zip(seqs, scores, cums):
                    pred = cum / (len(seq) ** lp)
                    if abs(pred - sc) > 1e-4 * max(1.0, abs(sc)):
                        error(f"{self.name} {name} {text!r}: score {sc:.6f} != cumLogProb/len^lp = {pred:.6f} "
                              f"(len {len(seq)}, cum {cum:.6f})")
            except Exception as e:  # noqa: BLE001
                error(f"{self.name} {name} {text!r}: compute_transition_scores failed: {e!r}")
            if scores != sorted(scores, reverse=True):
                error(f"{self.name} {name} {text!r}: returned beams not sorted by score: {scores}")
        self.cases.append(case)
        return case

    def plain_case(self, text):
        if text not in self.plain:
            hf = {"do_sample": False, "num_beams": 1, "max_new_tokens": GREEDY_NEW,
                  "output_scores": True, "return_dict_in_generate": True}
            # keep the step-0 scores of plain greedy for choosing the sequence_bias token
            self.plain[text] = self.generate(text, hf, "greedy")
        return self.plain[text]


def greedy_kwargs(**extra):
    hf = {"do_sample": False, "num_beams": 1, "max_new_tokens": GREEDY_NEW}
    hf.update(extra)
    hf.update({"output_scores": True, "return_dict_in_generate": True})
    return hf


def step0_ranking(r, text):
    """Token ids by descending plain-greedy logit at the first generated position."""
    ids = r.ids(text)
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = r.model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].float()
    return torch.argsort(logits, descending=True).tolist()


def transform_for(r, name, text):
    """The generate kwargs of transform `name` for prompt `text`, or None where it is undefined."""
    plain = r.plain_case(text)["sequences"][0]
    if name == "repetition_penalty=1.3":
        return greedy_kwargs(repetition_penalty=1.3)
    if name == "repetition_penalty=0.7":
        return greedy_kwargs(repetition_penalty=0.7)
    if name == "no_repeat_ngram_size=2":
        return greedy_kwargs(no_repeat_ngram_size=2)
    if name == "no_repeat_ngram_size=3":
        return greedy_kwargs(no_repeat_ngram_size=3)
    if name == "min_new_tokens=12":
        return greedy_kwargs(min_new_tokens=MIN_NEW)
    if name == "bad_words_single":
        # NoBadWordsLogitsProcessor drops a ban that is exactly [eos]; a ban that HF ignores tests nothing.
        if len(plain) < 3 or plain[2] in r.eos:
            return None
        return greedy_kwargs(bad_words_ids=[[plain[2]]])
    if name == "bad_words_pair":
        if len(plain) < 6:
            return None
        return greedy_kwargs(bad_words_ids=[[plain[4], plain[5]]])
    if name == "sequence_bias":
        if len(plain) < 2:
            return None
        t1 = plain[1]
        t2 = next(t for t in step0_ranking(r, text) if t > 0 and t not in plain and t not in r.eos and t != t1)
        return greedy_kwargs(sequence_bias=[[[t1], -4.0], [[t2], 3.0]])
    raise ValueError(name)


TRANSFORMS = ["repetition_penalty=1.3", "repetition_penalty=0.7", "no_repeat_ngram_size=2",
              "no_repeat_ngram_size=3", "bad_words_single", "bad_words_pair", "sequence_bias"]


def run_transform(r, name, prompts):
    """Run a transform on `prompts`; if it changes nothing there, on EXTRA_PROMPTS until it does."""
    differs_on = []
    tried = list(prompts)
    for text in prompts:
        hf = transform_for(r, name, text)
        if hf is None:
            log(f"[{r.name}] {name}: undefined on {text!r} (plain greedy too short or the token is eos); skipped")
            continue
        c = r.generate(text, hf, name)
        if c["sequences"][0] != r.plain[text]["sequences"][0]:
            differs_on.append(text)
    for text in EXTRA_PROMPTS:
        if differs_on:
            break
        if text in tried:
            continue
        tried.append(text)
        hf = transform_for(r, name, text)
        if hf is None:
            continue
        c = r.generate(text, hf, name)
        if c["sequences"][0] != r.plain[text]["sequences"][0]:
            differs_on.append(text)
            log(f"[{r.name}] {name}: changed nothing on {prompts}; added prompt {text!r}")
    if not differs_on:
        error(f"{r.name}: {name} gives the plain greedy output on every prompt tried ({tried})")
    return differs_on


def beam_cases(r, prompts):
    settings = []
    for nb in (2, 4):
        for lp in (1.0, 0.6, 2.0):
            for es in (True, False):
                settings.append((f"beam{nb}_lp{lp}_es={es}", nb, lp, es, 1))
    settings.append(("beam4_lp1.0_es=never", 4, 1.0, "never", 1))
    settings.append(("beam4_lp2.0_es=never", 4, 2.0, "never", 1))
    settings.append(("beam4_lp1.0_es=False_nrs2", 4, 1.0, False, 2))
    for text in prompts:
        for name, nb, lp, es, nrs in settings:
            hf = {"do_sample": False, "num_beams": nb, "max_new_tokens": BEAM_NEW, "length_penalty": lp,
                  "early_stopping": es}
            if nrs != 1:
                hf["num_return_sequences"] = nrs
            hf.update({"output_scores": True, "return_dict_in_generate": True})
            c = r.generate(text, hf, name)
            if len(c["sequences"]) != nrs:
                error(f"{r.name} {name} {text!r}: {len(c['sequences'])} sequences returned, expected {nrs}")


def write_inspection(path):
    import transformers
    from transformers.generation import logits_process
    from transformers.generation import utils as gen_utils

    chunks = [f"transformers {transformers.__version__} torch {torch.__version__} python {platform.python_version()}"]

    def add(label, *getters):
        for g in getters:
            try:
                chunks.append(f"==== {label} ====\n" + inspect.getsource(g()))
                return
            except Exception:  # noqa: BLE001
                continue
        chunks.append(f"==== {label} ==== unavailable")

    GM = gen_utils.GenerationMixin
    for fn in ["_get_logits_processor", "_sample", "_beam_search", "_get_top_k_continuations",
               "_get_running_beams_for_next_iteration", "_update_finished_beams", "_check_early_stop_heuristic",
               "_beam_search_has_unfinished_sequences", "compute_transition_scores"]:
        add(fn, lambda fn=fn: getattr(GM, fn), lambda fn=fn: getattr(gen_utils, fn))
    for cls in ["RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "_get_ngrams",
                "_get_generated_ngrams", "_calc_banned_ngram_tokens", "MinNewTokensLengthLogitsProcessor",
                "SequenceBiasLogitsProcessor", "NoBadWordsLogitsProcessor"]:
        add(cls, lambda cls=cls: getattr(logits_process, cls))
    with open(path, "w") as f:
        f.write("\n\n".join(chunks))


def dump_json(obj, path):
    lines = ["{"]
    for k, v in obj.items():
        if k != "cases":
            lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "cases": [')
    lines.append(",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in obj["cases"]))
    lines.append(" ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)
    with open(path, "w") as f:
        f.write(text)


def short(seq, n=10):
    s = " ".join(str(t) for t in seq[:n])
    return s + (" …" if len(seq) > n else "")


def es_differs(r, c):
    """For a beam case with early_stopping True or "never": does it differ from the same case with False?"""
    twin = dict(c["hf"], early_stopping=False)
    for o in r.cases:
        if o["promptText"] == c["promptText"] and o["hf"] == twin:
            return (o["sequences"], o["scores"]) != (c["sequences"], c["scores"])
    return None


def print_table(runners):
    log("")
    log("≠: greedy transforms: output differs from plain greedy on this prompt; beams with early_stopping "
        "True/never: result differs from early_stopping=False")
    log(f"{'model':<19} {'case':<28} {'prompt':<22} {'len':>7} {'fin':<5} {'≠':<4} {'score':>9}  tokens")
    for r in runners:
        for c in r.cases:
            plain = r.plain.get(c["promptText"])
            if "scores" in c:
                d = es_differs(r, c) if c["hf"]["early_stopping"] is not False else None
            else:
                d = None if c["name"] == "greedy" or plain is None else c["sequences"][0] != plain["sequences"][0]
            diff = "" if d is None else ("yes" if d else "no")
            score = f"{c['scores'][0]:.4f}" if "scores" in c else ""
            lens = ",".join(str(len(s)) for s in c["sequences"])
            fin = "".join("T" if f else "F" for f in c["finished"])
            log(f"{r.name:<19} {c['name']:<28} {json.dumps(c['promptText']):<22} {lens:>7} {fin:<5} {diff:<4} "
                f"{score:>9}  {short(c['sequences'][0])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--inspect", default=None, help="also write the transformers source the fixtures rely on")
    ap.add_argument("--only", default=None, help="comma-separated model names")
    args = ap.parse_args()

    import transformers

    torch.set_num_threads(4)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.makedirs(args.out, exist_ok=True)
    log(f"transformers {transformers.__version__} torch {torch.__version__} python {platform.python_version()}")
    t0 = time.time()
    runners = []
    for name, path in MODELS:
        if args.only and name not in args.only.split(","):
            continue
        t1 = time.time()
        r = Runner(name, path)
        runners.append(r)
        log(f"[{name}] {path}: eos {r.eos} pad {r.pad} tokenizer {type(r.tok).__name__}")
        for text in PROMPTS:
            c = r.plain_case(text)
            log(f"[{name}] plain greedy {text!r} {c['promptIds']} -> {c['sequences'][0]} finished {c['finished'][0]}")
        beam_prompts = list(PROMPTS)
        if name == "default":
            pick = None
            for text in PROMPTS + EXTRA_PROMPTS:
                c = r.plain_case(text)
                log(f"[{name}] min-length candidate {text!r}: {len(c['sequences'][0])} tokens, "
                    f"finished {c['finished'][0]}")
                if c["finished"][0] and len(c["sequences"][0]) <= MIN_NEW:
                    pick = text
                    break
            if pick is None:
                error("default: no candidate prompt where plain greedy emits eos within 12 tokens")
            else:
                c = r.generate(pick, transform_for(r, "min_new_tokens=12", pick), "min_new_tokens=12")
                if c["sequences"][0] == r.plain[pick]["sequences"][0]:
                    error(f"default: min_new_tokens=12 changes nothing on {pick!r}")
                if any(t in r.eos for t in c["sequences"][0][:MIN_NEW]):
                    error(f"default: min_new_tokens=12 output has eos among its first 12 tokens: {c['sequences'][0]}")
                if pick not in beam_prompts:
                    beam_prompts.append(pick)
            beam_prompts += [p for p in ES_PROMPTS if p not in beam_prompts]
            # drop plain cases of candidates that no case uses
            used = set(beam_prompts)
            r.cases = [c for c in r.cases if c["name"] != "greedy" or c["promptText"] in used]
            r.plain = {k: v for k, v in r.plain.items() if k in used}
        for tname in TRANSFORMS:
            on = run_transform(r, tname, PROMPTS)
            log(f"[{name}] {tname}: changes the output on {on}")
        if name in BEAM_MODELS:
            beam_cases(r, beam_prompts)
            fin = sum(any(c["finished"]) for c in r.cases if "scores" in c)
            log(f"[{name}] beam cases with an eos-finished sequence: {fin}")
            if name == "default" and fin == 0:
                error("default: no beam case finished with eos")
            if name == "default":
                for es in (True, "never"):
                    n = sum(1 for c in r.cases if "scores" in c and c["hf"]["early_stopping"] == es
                            and es_differs(r, c))
                    log(f"[{name}] beam cases with early_stopping={es} that differ from early_stopping=False: {n}")
                    if n == 0:
                        error(f"default: early_stopping={es} never differs from False")
        # every prompt of a greedy transform case has its plain greedy case in the file
        names = {(c["name"], c["promptText"]) for c in r.cases}
        for text in {c["promptText"] for c in r.cases if "logProbs" in c}:
            if ("greedy", text) not in names:
                error(f"{name}: no plain greedy case for {text!r}")
        out = {"model": path, "transformers": transformers.__version__, "torch": torch.__version__,
               "eosIds": r.eos, "padId": r.pad, "cases": r.cases}
        p = os.path.join(args.out, f"{name}.json")
        dump_json(out, p)
        log(f"[{name}] {len(r.cases)} cases, wrote {p} ({os.path.getsize(p)} bytes) in {time.time() - t1:.1f} s")
    print_table(runners)
    if args.inspect:
        write_inspection(args.inspect)
    log(f"\ntotal {time.time() - t0:.1f} s")
    if ERRORS:
        log(f"\n{len(ERRORS)} FAILURES:")
        for e in ERRORS:
            log("  " + e)
        sys.exit(1)
    log("all checks passed")


if __name__ == "__main__":
    main()
