#!/usr/bin/env python3
"""Hugging Face continuous batching (generate_batch, paged attention) on the requests kiln's
`kiln bench --num-requests N --input-len I --output-len O` runs: N prompts of I random token ids (seeded),
O new tokens each with end tokens ignored, all submitted at once. Prints one JSON object with the same
field names as kiln's throughput JSON (outputTokensPerSec, totalTokensPerSec, ttftMs/tpotMs median
and p99), so tools/device_trust.sh puts both on one table.

Runs on the GPU machine (PyTorch 2.11, transformers 5.17); the checkpoint is one tools/bench_hf.py
wrote (--out). The attention implementation is the first of --attn that loads (default: paged|sdpa,
then paged|eager); the one used is in the output. No inference_mode around generate_batch: its worker
thread updates tensors made by the caller's thread, which inference mode (thread-local) forbids.
"""
import argparse
import json
import random
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory (tools/bench_hf.py --out)")
    p.add_argument("--num-requests", type=int, required=True)
    p.add_argument("--input-len", type=int, required=True)
    p.add_argument("--output-len", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-batch-tokens", type=int, default=8192, help="tokens per step (kiln's maxNumTokens)")
    p.add_argument("--attn", default="paged|sdpa,paged|eager")
    p.add_argument("--dtype", default="bfloat16")
    return p.parse_args()


def percentile(xs, q):
    """Linear interpolation between closest ranks, as kiln's runtime/throughput_bench.ts percentile."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(xs):
    return {"mean": sum(xs) / len(xs) if xs else float("nan"), "median": percentile(xs, 50), "p99": percentile(xs, 99)}


def main():
    a = parse_args()
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    model, used, errors = None, None, {}
    for impl in a.attn.split(","):
        try:
            model = AutoModelForCausalLM.from_pretrained(
                a.model, attn_implementation=impl, device_map="cuda", dtype=getattr(torch, a.dtype)
            )
            used = impl
            break
        except Exception as e:  # the next implementation may load
            errors[impl] = f"{type(e).__name__}: {e}"[:300]
    if model is None:
        print(json.dumps({"error": "no attention implementation loaded", "tried": errors}))
        sys.exit(1)
    model.eval()
    V = model.config.vocab_size
    rng = random.Random(a.seed)
    inputs = [[10 + rng.randrange(V - 20) for _ in range(a.input_len)] for _ in range(a.num_requests)]
    # No end token: every request generates exactly output-len tokens, as kiln's --ignore-eos.
    gc = GenerationConfig(max_new_tokens=a.output_len, do_sample=False, eos_token_id=None, pad_token_id=0)
    kwargs = {"generation_config": gc, "record_timestamps": True, "progress_bar": False}
    try:
        from transformers.generation import ContinuousBatchingConfig

        kwargs["continuous_batching_config"] = ContinuousBatchingConfig(max_batch_tokens=a.max_batch_tokens)
    except Exception as e:  # older releases take the settings on the GenerationConfig
        errors["ContinuousBatchingConfig"] = f"{type(e).__name__}: {e}"[:300]
    # A short warm-up run (CUDA graphs, allocator), then the measured one.
    with torch.no_grad():
        model.generate_batch(inputs=inputs[: min(8, len(inputs))], **kwargs)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        outs = model.generate_batch(inputs=inputs, **kwargs)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    ttft, tpot, out_tokens = [], [], 0
    for o in outs.values():
        n = len(o.generated_tokens)
        out_tokens += n
        ts = o.timestamps or []
        if ts:
            ttft.append((ts[0] - o.created_time) * 1000)
        if len(ts) > 1:
            tpot.append((ts[-1] - ts[0]) * 1000 / (len(ts) - 1))
    if out_tokens != a.num_requests * a.output_len:  # a failed generation must not read as a figure
        print(json.dumps({"error": f"{out_tokens} output tokens, not {a.num_requests * a.output_len}", "tried": errors}))
        sys.exit(1)
    print(
        json.dumps(
            {
                "engine": f"transformers {transformers.__version__} generate_batch ({used})",
                "numRequests": a.num_requests,
                "inputLen": a.input_len,
                "outputLen": a.output_len,
                "seconds": seconds,
                "outputTokens": out_tokens,
                "outputTokensPerSec": out_tokens / seconds,
                "totalTokensPerSec": (out_tokens + a.num_requests * a.input_len) / seconds,
                "ttftMs": summary(ttft),
                "tpotMs": summary(tpot),
                "notes": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
