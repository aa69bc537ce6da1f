#!/usr/bin/env python3
"""The formats of issue 19's accuracy study and its summary (tools/quant_study.sh; no torch needed).

    quant_study_table.py formats [--calibration FILE]
        one line per format: NAME, then the `kiln eval` flags that select it, tab-separated
    quant_study_table.py table RESULTS [--md FILE] [--train-log FILE] [--model-dir DIR] [--note TEXT]...
        reads RESULTS/NAME.{json,rc,err,seconds,na} as quant_study.sh leaves them, prints one line per
        format (perplexity, ratio to bf16, the issue's bound, PASS/FAIL) and writes the markdown table

The bounds are the issue's: held-out perplexity within +1% of bf16 for fp8 and int8-wo, +5% for int4-wo
and int4-awq (and AWQ below round-to-nearest int4-wo), +0.5% for the FP8 KV cache.
"""

import argparse
import json
import os
import sys

# (name, kiln eval flags, largest allowed perplexity / bf16's; None = the reference)
FORMATS = [
    ("bf16", [], None),
    ("fp8", ["--quantize", "fp8"], 1.01),
    ("int8-wo", ["--quantize", "int8-wo"], 1.01),
    ("int4-wo", ["--quantize", "int4-wo"], 1.05),
    ("int4-awq", ["--quantize", "int4-awq"], 1.05),
    ("fp8-static", ["--quantize", "fp8-static"], 1.01),
    ("fp8-kv", ["--kv-cache-dtype", "fp8"], 1.005),
]
REFERENCE = "bf16"


def format_flags(calibration=None):
    """[(name, flags)] with int4-awq and fp8-static calibrated on `calibration` when given (else kiln's
    default text)."""
    out = []
    for name, flags, _ in FORMATS:
        if name in ("int4-awq", "fp8-static") and calibration:
            flags = flags + ["--calibration", calibration]
        out.append((name, flags))
    return out


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _last_line(text):
    lines = [l for l in (text or "").splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


def read_result(results, name):
    """{'state': 'ok'|'na'|'failed', ...}: ok has perplexity, tokens, scored, seconds; the others a why."""
    na = _read(os.path.join(results, name + ".na"))
    if na is not None:
        return {"state": "na", "why": _last_line(na) or "flag not accepted"}
    rc = _read(os.path.join(results, name + ".rc"))
    err = _last_line(_read(os.path.join(results, name + ".err")))
    seconds = _read(os.path.join(results, name + ".seconds"))
    if rc is None:
        return {"state": "failed", "why": err or "did not run"}
    if rc != "0":
        why = "timed out" if rc in ("124", "137") else f"exit {rc}"
        return {"state": "failed", "why": why + (f": {err}" if err else "")}
    try:
        d = json.loads(_read(os.path.join(results, name + ".json")) or "")
        return {"state": "ok", "perplexity": float(d["perplexity"]), "tokens": int(d["tokens"]),
                "scored": int(d.get("scoredTokens", d["tokens"])), "seconds": seconds}
    except (ValueError, KeyError, TypeError) as e:
        return {"state": "failed", "why": f"unreadable JSON ({e})"}


def verdicts(results):
    """[(name, flags, bound, result, ratio, verdict)] plus the AWQ-vs-RTN verdict.
    verdict: 'reference', 'PASS', 'FAIL', 'not available', 'failed', 'no reference'."""
    res = {name: read_result(results, name) for name, _, _ in FORMATS}
    ref = res[REFERENCE]
    rows = []
    for name, flags, bound in FORMATS:
        r = res[name]
        ratio = None
        if r["state"] == "ok" and ref["state"] == "ok":
            ratio = r["perplexity"] / ref["perplexity"]
        if bound is None:
            v = "reference" if r["state"] == "ok" else "failed"
        elif r["state"] == "na":
            v = "not available"
        elif r["state"] != "ok":
            v = "failed"
        elif ratio is None:
            v = "no reference"
        else:
            v = "PASS" if ratio <= bound else "FAIL"
        rows.append((name, flags, bound, r, ratio, v))
    awq, rtn = res["int4-awq"], res["int4-wo"]
    if awq["state"] == "ok" and rtn["state"] == "ok":
        awq_v = "PASS" if awq["perplexity"] < rtn["perplexity"] else "FAIL"
        awq_line = f"int4-awq {awq['perplexity']:.4f} vs int4-wo {rtn['perplexity']:.4f}: AWQ better than RTN {awq_v}"
    else:
        awq_v = "not measured"
        awq_line = "int4-awq vs int4-wo: not measured (both must run)"
    return rows, awq_v, awq_line


def _pct(x):
    return f"{(x - 1) * 100:+.2f}%"


def summary_lines(rows, awq_v, awq_line):
    out = []
    for name, _, bound, r, ratio, v in rows:
        if r["state"] == "ok":
            took = f", {r['seconds']} s" if r.get("seconds") else ""
            head = f"quant-study {name:9s} perplexity {r['perplexity']:.4f} ({r['scored']} tokens scored{took})"
            if bound is None:
                out.append(f"{head}  reference")
            elif ratio is None:
                out.append(f"{head}  no bf16 reference to compare with")
            else:
                out.append(f"{head}  {ratio:.4f}x bf16 ({_pct(ratio)}), bound {_pct(bound)}  {v}")
        elif v == "not available":
            out.append(f"quant-study {name:9s} not available ({r['why']})")
        else:
            out.append(f"quant-study {name:9s} FAILED ({r['why']})")
    out.append("quant-study " + awq_line)
    counts = {k: sum(1 for row in rows if row[5] == k) for k in ("PASS", "FAIL", "not available", "failed")}
    out.append("quant-study: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f"; AWQ better than RTN: {awq_v}")
    return out


def markdown(rows, awq_v, notes):
    lines = ["| format | `kiln eval` flags | held-out perplexity | vs bf16 | issue's bound | |",
             "|---|---|---|---|---|---|"]
    for name, flags, bound, r, ratio, v in rows:
        fl = f"`{' '.join(flags)}`" if flags else "—"
        ppl = f"{r['perplexity']:.4f}" if r["state"] == "ok" else "—"
        rel = _pct(ratio) if ratio is not None else "—"
        b = "reference" if bound is None else f"≤ {_pct(bound)}"
        shown = v if v in ("PASS", "FAIL", "not available") else ("" if v == "reference" else f"{v}: {r.get('why', '')}")
        lines.append(f"| {name} | {fl} | {ppl} | {rel} | {b} | {shown} |")
    lines.append("")
    lines.append(f"AWQ better than round-to-nearest int4-wo (lower perplexity): **{awq_v}**.")
    ref = next((r for name, _, _, r, _, _ in rows if name == REFERENCE and r["state"] == "ok"), None)
    if ref:
        lines.append("")
        lines.append(f"Tokens evaluated: {ref['tokens']:,} of the held-out text, {ref['scored']:,} of them scored.")
    for n in notes:
        lines.append("")
        lines.append(n)
    return "\n".join(lines) + "\n"


def model_note(model_dir, train_log):
    """One sentence on the model: its shape from config.json, and the training summary when there is one."""
    parts = []
    cfg = _read(os.path.join(model_dir, "config.json")) if model_dir else None
    if cfg:
        c = json.loads(cfg)
        parts.append(f"Model `{model_dir}`: Llama, hidden {c.get('hidden_size')}, {c.get('num_hidden_layers')} layers, "
                     f"{c.get('num_attention_heads')}/{c.get('num_key_value_heads')} heads, intermediate "
                     f"{c.get('intermediate_size')}, vocab {c.get('vocab_size')}.")
    for line in (_read(train_log) or "").splitlines() if train_log else []:
        if line.startswith("SUMMARY "):
            try:
                s = json.loads(line[len("SUMMARY "):])
                parts.append(f"Trained on {s.get('device')} in {s.get('seconds')} s: {s.get('params'):,} parameters, "
                             f"step {s.get('best_step')}, validation loss {s.get('val_loss'):.4f} "
                             f"(PyTorch {s.get('torch')}, transformers {s.get('transformers')}).")
            except (ValueError, TypeError):
                pass
    return " ".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("formats")
    f.add_argument("--calibration")
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--md")
    t.add_argument("--train-log")
    t.add_argument("--model-dir")
    t.add_argument("--note", action="append", default=[])
    a = ap.parse_args(argv)
    if a.cmd == "formats":
        for name, flags in format_flags(a.calibration):
            print("\t".join([name] + flags))
        return 0
    rows, awq_v, awq_line = verdicts(a.results)
    print("\n".join(summary_lines(rows, awq_v, awq_line)))
    notes = [n for n in [model_note(a.model_dir, a.train_log)] + a.note if n]
    md = markdown(rows, awq_v, notes)
    if a.md:
        with open(a.md, "w", encoding="utf-8") as fh:
            fh.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
