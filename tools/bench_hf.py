#!/usr/bin/env python3
"""Random-weight Hugging Face checkpoint of a shipped config's exact shape, and the HF baseline on it.

    python3 tools/bench_hf.py --config configs/llama-3.1-8b --out /tmp/hf-8b                  # write only
    python3 tools/bench_hf.py --config configs/llama-3.1-8b --out /tmp/hf-8b --bench --json R.json

Runs on the GPU machine (PyTorch 2.11, transformers 5.x, safetensors; see tools/README.md).

Checkpoint (--out DIR): AutoModelForCausalLM.from_config(config) in bf16, built on the GPU; every
matrix and embedding N(0, 0.02^2) from a CUDA generator seeded with --seed (0), norm weights 1,
biases 0; save_pretrained(DIR, max_shard_size="5GB"). DIR/bench_hf_checkpoint.json records the
source config's hash, seed and std; a later call with the same ones reuses DIR (weights are not
rewritten). kiln builds an engine from the same DIR, so both run the same weights. There is no
tokenizer in DIR: give kiln token ids.

Baseline (--bench): B prompts (--batch-size, 1) of I random token ids (--input-len, 128; seeded by
--prompt-seed), O greedy tokens (--output-len, 256), end-of-sequence ignored (eos_token_id=None,
min_new_tokens=O; the script checks that exactly O tokens came back). Modes:
    eager           default attention (sdpa), dynamic cache, no compilation
    static+compile  cache_implementation="static" + torch.compile, mode="reduce-overhead",
                    fullgraph=True. --compile-style auto (default) is transformers 5's own path:
                    generate() compiles the decode step itself when the cache is static, with
                    generation_config.compile_config (CompileConfig(fullgraph=True,
                    mode="reduce-overhead") here); the prefill runs uncompiled. --compile-style
                    forward is the older documented recipe, model.forward = torch.compile(
                    model.forward, mode="reduce-overhead", fullgraph=True) with generate's own
                    compilation disabled, so the prefill is compiled too. --compile-style both runs
                    the two (the second as "static+compile-forward"). If fullgraph=True fails, it
                    is retried once with fullgraph=False (recorded).
Per mode: warm-up runs (2 eager, 3 compiled; the first compiled one includes compilation), then
--runs (5) timed runs of each kind, CUDA events around generate() after a synchronize:
    ttftMs              median time of generate(max_new_tokens=1) (prefill + first token)
    tpotMs              (median total time of O tokens - ttftMs) / (O - 1)
    outputTokensPerSec  B * O / median total time
and, from a logits processor that records a CUDA event at every step of the full runs (the way
`kiln bench` measures): ttftInRunMs (start to first token) and tpotStepMedianMs (median step gap).
--prefill-len P (2048; 0 = skip): one forward of P tokens, batch 1, eager, use_cache=True,
logits_to_keep=1; 3 warm-ups, median of 10 -> "prefill<P>Ms".

Time: --budget-s (225) is a soft cap on the whole script's wall time: where the planned runs would
overrun it, a mode does fewer timed runs (down to --min-runs, 3) and says so (stdout and "notes").
A mode that fails is recorded as {"error": ...} and the others still run. Exit status: 0 all good,
1 setup error (no GPU, bad arguments, cannot write the checkpoint), 3 some mode failed (the JSON is
written anyway).
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU machine has no network; never try the Hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MARKER = "bench_hf_checkpoint.json"
MARKER_FORMAT = 1
T_START = time.perf_counter()


def log(*a):
    print(*a, flush=True)


def fail(msg, code=1):
    log(f"bench_hf: error: {msg}")
    sys.exit(code)


def elapsed():
    return time.perf_counter() - T_START


def parse_args():
    p = argparse.ArgumentParser(
        description="Write a random-weight HF checkpoint of a config's shape and time the HF baseline on it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="directory with config.json (e.g. configs/llama-3.1-8b)")
    p.add_argument("--out", required=True, help="checkpoint directory to write or reuse")
    p.add_argument("--force", action="store_true", help="rewrite the checkpoint even if DIR can be reused")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.add_argument("--std", type=float, default=0.02, help="std of the random matrices (default 0.02)")
    p.add_argument("--bench", action="store_true", help="run the Hugging Face baseline on the checkpoint")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--prompt-seed", type=int, default=1, help="seed of the random prompt ids (default 1)")
    p.add_argument(
        "--modes",
        default="eager,static+compile",
        help="comma-separated subset of eager,static+compile (default both)",
    )
    p.add_argument("--compile-style", choices=["auto", "forward", "both"], default="auto")
    p.add_argument("--runs", type=int, default=5, help="timed runs per kind and mode (default 5)")
    p.add_argument("--min-runs", type=int, default=3, help="fewest timed runs the budget may cut to (3)")
    p.add_argument("--warmup-eager", type=int, default=2)
    p.add_argument("--warmup-compile", type=int, default=3)
    p.add_argument("--prefill-len", type=int, default=2048, help="prefill-only forward length (0 = skip)")
    p.add_argument("--prefill-iters", type=int, default=10)
    p.add_argument("--budget-s", type=float, default=225.0, help="soft cap on total wall time (default 225)")
    p.add_argument(
        "--compile-reserve-s",
        type=float,
        default=100.0,
        help="time set aside for each compiled mode still to run when planning earlier modes (100)",
    )
    p.add_argument("--attn", default=None, help="attn_implementation override (default: transformers' default)")
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    p.add_argument("--hf-verbose", action="store_true", help="keep transformers' warnings (default: errors only)")
    a = p.parse_args()
    if a.batch_size < 1 or a.input_len < 1:
        p.error("--batch-size and --input-len must be >= 1")
    if a.output_len < 2:
        p.error("--output-len must be >= 2 (TPOT needs at least two tokens)")
    if a.runs < 1 or a.min_runs < 1:
        p.error("--runs and --min-runs must be >= 1")
    a.min_runs = min(a.min_runs, a.runs)
    if a.prefill_len < 0 or a.prefill_iters < 1:
        p.error("--prefill-len must be >= 0 and --prefill-iters >= 1")
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("eager", "static+compile"):
            p.error(f"unknown mode {m!r} in --modes (known: eager, static+compile)")
    a.mode_list = modes
    if not os.path.isfile(os.path.join(a.config, "config.json")):
        p.error(f"{a.config}/config.json not found (--config takes a directory such as configs/llama-3.1-8b)")
    return a


# ---------------------------------------------------------------------------------------------------
# imports that only exist on the GPU machine


def import_stack():
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("PyTorch is not installed; run this on the GPU machine (see tools/README.md)")
    try:
        import transformers  # noqa: F401
    except ImportError:
        fail("transformers is not installed; run this on the GPU machine (see tools/README.md)")
    import torch
    import transformers

    if not torch.cuda.is_available():
        fail("no CUDA device visible to PyTorch; this script needs the GPU machine")
    return torch, transformers


def tf_major(transformers):
    try:
        return int(transformers.__version__.split(".")[0])
    except ValueError:
        return 5


# ---------------------------------------------------------------------------------------------------
# checkpoint


def config_hash(config_dir):
    with open(os.path.join(config_dir, "config.json"), encoding="utf-8") as f:
        src = json.load(f)
    canon = json.dumps(src, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def weight_files_present(out_dir):
    """(present, files): a single model.safetensors, or an index whose every shard is there."""
    single = os.path.join(out_dir, "model.safetensors")
    if os.path.isfile(single):
        return True, ["model.safetensors"]
    index = os.path.join(out_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError):
            return False, []
        if shards and all(os.path.isfile(os.path.join(out_dir, s)) for s in shards):
            return True, shards
    return False, []


def existing_weights(out_dir):
    if not os.path.isdir(out_dir):
        return []
    return sorted(
        n for n in os.listdir(out_dir) if n.startswith("model") and (n.endswith(".safetensors") or n.endswith(".json"))
    )


def can_reuse(args, chash):
    """(reuse, marker or None, reason)."""
    mpath = os.path.join(args.out, MARKER)
    if not os.path.isfile(mpath):
        return False, None, "no marker"
    try:
        with open(mpath, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        return False, None, f"unreadable marker ({e})"
    want = {"format": MARKER_FORMAT, "configSha256": chash, "seed": args.seed, "std": args.std, "dtype": "bfloat16"}
    for k, v in want.items():
        if m.get(k) != v:
            return False, m, f"marker {k}={m.get(k)!r}, wanted {v!r}"
    present, _ = weight_files_present(args.out)
    if not present or not os.path.isfile(os.path.join(args.out, "config.json")):
        return False, m, "weights or config.json missing"
    return True, m, "same config, seed and std"


def init_weights_(torch, model, seed, std):
    """Deterministic HF-style init: matrices/embeddings N(0, std^2), 1-D norm weights 1, biases 0."""
    torch.manual_seed(seed)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(seed)
    counts = {"normal": 0, "ones": 0, "zeros": 0}
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters appear once
            if name.endswith(".bias"):
                p.zero_()
                counts["zeros"] += p.numel()
            elif p.ndim == 1:
                p.fill_(1.0)  # RMSNorm / LayerNorm weights (q_norm, k_norm, input_layernorm, norm, ...)
                counts["ones"] += p.numel()
            else:
                p.normal_(mean=0.0, std=std, generator=gen)
                counts["normal"] += p.numel()
    return counts


def build_model(torch, transformers, args):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(args.config)
    kw = {}
    if args.attn:
        kw["attn_implementation"] = args.attn
    dtype_kw = "dtype" if tf_major(transformers) >= 5 else "torch_dtype"
    t0 = time.perf_counter()
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(config, **{dtype_kw: torch.bfloat16}, **kw)
        except TypeError:
            other = "torch_dtype" if dtype_kw == "dtype" else "dtype"
            model = AutoModelForCausalLM.from_config(config, **{other: torch.bfloat16}, **kw)
    p0 = next(model.parameters())
    if p0.dtype != torch.bfloat16 or p0.device.type != "cuda":
        model = model.to(device="cuda", dtype=torch.bfloat16)
    counts = init_weights_(torch, model, args.seed, args.std)
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    n = sum(counts.values())
    log(
        f"built {type(model).__name__} on the GPU in {build_s:.1f} s: {n / 1e9:.3f} B parameters "
        f"({counts['normal']:,} N(0,{args.std}^2), {counts['ones']:,} ones, {counts['zeros']:,} zeros), seed {args.seed}"
    )
    return model, build_s, n


def write_checkpoint(torch, transformers, args, chash):
    out = args.out
    os.makedirs(out, exist_ok=True)
    # A partial or different checkpoint must not be mistaken for this one: the marker goes first and
    # comes back last; weight files of another layout (single file vs shards) are removed.
    mpath = os.path.join(out, MARKER)
    if os.path.exists(mpath):
        os.remove(mpath)
    for n in existing_weights(out):
        os.remove(os.path.join(out, n))
    model, build_s, n_params = build_model(torch, transformers, args)
    import inspect

    save_kw = {"max_shard_size": "5GB"}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        save_kw["safe_serialization"] = True  # transformers 4; 5 always writes safetensors
    t0 = time.perf_counter()
    model.save_pretrained(out, **save_kw)
    write_s = time.perf_counter() - t0
    present, files = weight_files_present(out)
    if not present:
        fail(f"save_pretrained wrote no safetensors weights into {out} (found: {os.listdir(out)})")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in files)
    marker = {
        "format": MARKER_FORMAT,
        "tool": "tools/bench_hf.py",
        "config": os.path.basename(os.path.normpath(args.config)),
        "configSha256": chash,
        "seed": args.seed,
        "std": args.std,
        "dtype": "bfloat16",
        "params": n_params,
        "files": files,
        "bytes": size,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(),
        "buildSeconds": round(build_s, 2),
        "writeSeconds": round(write_s, 2),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(mpath, "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=2)
        f.write("\n")
    log(
        f"wrote {out}: {len(files)} safetensors file(s), {size / 1e9:.2f} GB, in {write_s:.1f} s "
        f"(save_pretrained; {size / 1e9 / max(write_s, 1e-9):.2f} GB/s), build {build_s:.1f} s"
    )
    return model, {"dir": out, "reused": False, "buildS": round(build_s, 2), "writeS": round(write_s, 2),
                   "files": files, "bytes": size, "params": n_params}


def load_checkpoint(torch, transformers, args, marker):
    from transformers import AutoModelForCausalLM

    dtype_kw = "dtype" if tf_major(transformers) >= 5 else "torch_dtype"
    kw = {dtype_kw: torch.bfloat16}
    if args.attn:
        kw["attn_implementation"] = args.attn
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(args.out, device_map="cuda", **kw)
    except Exception as e:  # e.g. transformers 4 without accelerate
        log(f"from_pretrained(device_map='cuda') failed ({type(e).__name__}: {e}); loading under torch.device('cuda')")
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_pretrained(args.out, **kw)
        model = model.to(device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    log(f"loaded {args.out} ({n / 1e9:.3f} B parameters) in {load_s:.1f} s")
    return model, {"dir": args.out, "reused": True, "loadS": round(load_s, 2),
                   "files": marker.get("files"), "bytes": marker.get("bytes"), "params": n,
                   "writtenBy": {k: marker.get(k) for k in ("written", "device", "torch", "transformers")}}


# ---------------------------------------------------------------------------------------------------
# benchmark


class Bench:
    def __init__(self, torch, transformers, model, args):
        self.torch = torch
        self.tf = transformers
        self.model = model
        self.args = args
        self.notes = []
        from transformers import GenerationConfig

        self.GenerationConfig = GenerationConfig
        try:
            from transformers import LogitsProcessor, LogitsProcessorList
        except ImportError:
            from transformers.generation import LogitsProcessor, LogitsProcessorList
        self.LogitsProcessorList = LogitsProcessorList

        class StepEvents(LogitsProcessor):
            """Records a CUDA event each time generate() has the logits of a new token."""

            def __init__(self):
                self.events = []

            def __call__(self, input_ids, scores):
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                self.events.append(e)
                return scores

        self.StepEvents = StepEvents
        import inspect

        self.gen_params = set(inspect.signature(model.generate).parameters)
        model.eval()
        # generate() may fill unset fields from model.generation_config (transformers 5
        # use_model_defaults): no end token, no pad token there either.
        gc = model.generation_config
        for k in ("eos_token_id", "pad_token_id"):
            setattr(gc, k, None)
        gc.do_sample = False
        cfg = model.config
        vocab = int(getattr(cfg, "vocab_size", 32000))
        # ordinary tokens only (special tokens sit at the top of the Llama/Qwen/Mistral vocabularies)
        self.id_low, self.id_high = 10, max(11, min(vocab - 10, 100_000))
        g = torch.Generator(device="cpu")
        g.manual_seed(args.prompt_seed)
        self.prompt = torch.randint(self.id_low, self.id_high, (args.batch_size, args.input_len), generator=g).cuda()
        self.mask = torch.ones_like(self.prompt)
        self.attn_impl = getattr(cfg, "_attn_implementation", None)

    # -- one generate() call ---------------------------------------------------------------------

    def gen_config(self, n_new, static=False, compile_config=None, disable_compile=False):
        a = self.args
        fields = dict(
            max_new_tokens=n_new,
            min_new_tokens=n_new,
            do_sample=False,
            num_beams=1,
            eos_token_id=None,
            pad_token_id=None,
            use_cache=True,
        )
        if static:
            fields["cache_implementation"] = "static"
            # one cache of I + O for the full and the 1-token runs, so it is never reallocated
            fields["max_cache_len"] = a.input_len + a.output_len
        if compile_config is not None:
            fields["compile_config"] = compile_config
        if disable_compile:
            fields["disable_compile"] = True
        return self.GenerationConfig(**fields)

    def generate(self, gc, n_new, steps=None):
        torch = self.torch
        kw = {"attention_mask": self.mask, "generation_config": gc}
        if steps is not None:
            kw["logits_processor"] = self.LogitsProcessorList([steps])
        if "use_model_defaults" in self.gen_params:
            kw["use_model_defaults"] = False
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        out = self.model.generate(self.prompt, **kw)
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end)
        seqs = out.sequences if hasattr(out, "sequences") else out
        got = seqs.shape[1] - self.args.input_len
        if got != n_new or seqs.shape[0] != self.args.batch_size:
            raise RuntimeError(
                f"generate returned shape {tuple(seqs.shape)}: {got} new tokens, expected {n_new} "
                f"(batch {self.args.batch_size}); end-of-sequence handling did not do what was asked"
            )
        in_run = None
        if steps is not None and steps.events:
            first = start.elapsed_time(steps.events[0])
            gaps = [steps.events[i - 1].elapsed_time(steps.events[i]) for i in range(1, len(steps.events))]
            in_run = (first, statistics.median(gaps) if gaps else float("nan"))
        return ms, seqs, in_run

    # -- a mode ------------------------------------------------------------------------------------

    def plan_runs(self, per_run_s, reserve_s, label):
        a = self.args
        n = a.runs
        while n > a.min_runs and elapsed() + n * per_run_s + reserve_s > a.budget_s:
            n -= 1
        if n < a.runs:
            note = (
                f"{label}: {n} timed runs instead of {a.runs} to stay within --budget-s {a.budget_s:.0f} "
                f"(one full + one 1-token run ~{per_run_s:.1f} s, {elapsed():.0f} s used, {reserve_s:.0f} s reserved)"
            )
            log("NOTE: " + note)
            self.notes.append(note)
        if elapsed() + n * per_run_s + reserve_s > a.budget_s:
            note = f"{label}: expected to exceed --budget-s even with {n} runs"
            log("NOTE: " + note)
            self.notes.append(note)
        return n

    def run_mode(self, label, make_configs, warmups, reserve_s):
        """make_configs() -> (full GenerationConfig, 1-token GenerationConfig)."""
        a = self.args
        O = a.output_len
        log(f"\n== {label}: batch {a.batch_size}, input {a.input_len}, output {O}, {warmups} warm-up run(s)")
        full_gc, one_gc = make_configs()
        t_mode = time.perf_counter()
        warm_ms = []
        for i in range(warmups):
            ms, _, _ = self.generate(full_gc, O)
            warm_ms.append(ms)
            log(f"  warm-up {i + 1}/{warmups}: {ms / 1000:.2f} s")
        ms1, _, _ = self.generate(one_gc, 1)
        log(f"  warm-up (1 token): {ms1:.1f} ms")
        per_run_s = (warm_ms[-1] if warm_ms else ms1 * O) / 1000 + ms1 / 1000
        n = self.plan_runs(per_run_s, reserve_s, label)
        totals, ttfts, in_first, in_step = [], [], [], []
        first_seqs = None
        for i in range(n):
            steps = self.StepEvents()
            ms, seqs, in_run = self.generate(full_gc, O, steps)
            totals.append(ms)
            if in_run:
                in_first.append(in_run[0])
                in_step.append(in_run[1])
            if first_seqs is None:
                first_seqs = seqs[0, a.input_len:].tolist()
        for i in range(n):
            ms, _, _ = self.generate(one_gc, 1)
            ttfts.append(ms)
        total = statistics.median(totals)
        ttft = statistics.median(ttfts)
        tpot = (total - ttft) / (O - 1)
        res = {
            "ttftMs": round(ttft, 3),
            "tpotMs": round(tpot, 4),
            "outputTokensPerSec": round(a.batch_size * O / (total / 1000), 2),
            "totalMs": round(total, 2),
            "ttftInRunMs": round(statistics.median(in_first), 3) if in_first else None,
            "tpotStepMedianMs": round(statistics.median(in_step), 4) if in_step else None,
            "runs": n,
            "warmups": warmups,
            "totalMsAll": [round(x, 2) for x in totals],
            "ttftMsAll": [round(x, 3) for x in ttfts],
            "warmupMs": [round(x, 1) for x in warm_ms],
            "modeSeconds": round(time.perf_counter() - t_mode, 1),
        }
        log(
            f"  {label}: TTFT {ttft:.2f} ms, TPOT {tpot:.3f} ms, {res['outputTokensPerSec']:.1f} output tok/s "
            f"(median of {n}; total {total:.1f} ms, min {min(totals):.1f}, max {max(totals):.1f}; "
            f"in-run first token {res['ttftInRunMs']} ms, median step {res['tpotStepMedianMs']} ms)"
        )
        return res, first_seqs

    def eager(self, reserve_s):
        def configs():
            return self.gen_config(self.args.output_len, disable_compile=True), self.gen_config(1, disable_compile=True)

        res, seqs = self.run_mode("eager", configs, self.args.warmup_eager, reserve_s)
        res["attnImplementation"] = self.attn_impl
        res["cache"] = "dynamic"
        return res, seqs

    def static_compile(self, style, label, reserve_s):
        torch = self.torch
        import torch._dynamo  # noqa: F401

        try:
            torch._logging.set_logs(recompiles=True)  # recompilations show up in the log
        except Exception:
            pass
        extra = {"compileStyle": style, "cache": "static", "mode": "reduce-overhead",
                 "attnImplementation": self.attn_impl}
        O = self.args.output_len
        if style == "auto":
            try:
                from transformers import CompileConfig
            except ImportError:
                try:
                    from transformers.generation import CompileConfig
                except ImportError:
                    CompileConfig = None
            last_err = None
            for fullgraph in (True, False):
                torch._dynamo.reset()
                if hasattr(self.model, "_compiled_call"):
                    try:
                        del self.model._compiled_call
                    except AttributeError:
                        pass

                def configs(fg=fullgraph):
                    cc = CompileConfig(fullgraph=fg, mode="reduce-overhead") if CompileConfig else None
                    return self.gen_config(O, static=True, compile_config=cc), self.gen_config(
                        1, static=True, compile_config=cc
                    )

                try:
                    res, seqs = self.run_mode(label, configs, self.args.warmup_compile, reserve_s)
                except Exception as e:
                    if not fullgraph:
                        raise
                    last_err = f"{type(e).__name__}: {e}"
                    note = f"{label}: fullgraph=True failed ({last_err.splitlines()[0][:300]}); retrying with fullgraph=False"
                    log("NOTE: " + note)
                    self.notes.append(note)
                    traceback.print_exc()
                    continue
                extra["fullgraph"] = fullgraph
                if CompileConfig is None:
                    extra["fullgraph"] = None
                    self.notes.append(f"{label}: transformers has no CompileConfig; generate's default compile settings")
                if last_err:
                    extra["fullgraphError"] = last_err[:2000]
                compiled = hasattr(self.model, "_compiled_call")
                extra["decodeCompiledByGenerate"] = compiled
                if not compiled:
                    note = (f"{label}: transformers did not compile the decode step (no model._compiled_call); "
                            "this mode's numbers may be uncompiled")
                    log("WARNING: " + note)
                    self.notes.append(note)
                res.update(extra)
                return res, seqs
        # style == "forward": the documented recipe, generate's own compilation off
        torch._dynamo.reset()
        original = self.model.forward
        self.model.forward = torch.compile(original, mode="reduce-overhead", fullgraph=True)
        try:
            def configs():
                return self.gen_config(O, static=True, disable_compile=True), self.gen_config(
                    1, static=True, disable_compile=True
                )

            res, seqs = self.run_mode(label, configs, self.args.warmup_compile, reserve_s)
        finally:
            try:
                del self.model.forward  # back to the class's forward
            except AttributeError:
                self.model.forward = original
        extra["fullgraph"] = True
        res.update(extra)
        return res, seqs

    def prefill(self):
        torch = self.torch
        P = self.args.prefill_len
        g = torch.Generator(device="cpu")
        g.manual_seed(self.args.prompt_seed + 1)
        ids = torch.randint(self.id_low, self.id_high, (1, P), generator=g).cuda()
        import inspect

        kw = {"input_ids": ids, "use_cache": True}
        if "logits_to_keep" in inspect.signature(self.model.forward).parameters:
            kw["logits_to_keep"] = 1
        times = []
        log(f"\n== prefill {P}: batch 1, eager, 3 warm-ups, median of {self.args.prefill_iters}")
        with torch.no_grad():
            for i in range(3 + self.args.prefill_iters):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                out = self.model(**kw)
                end.record()
                torch.cuda.synchronize()
                del out
                if i >= 3:
                    times.append(start.elapsed_time(end))
        med = statistics.median(times)
        log(f"  prefill {P}: {med:.2f} ms (min {min(times):.2f}, max {max(times):.2f})")
        return med, times


def main():
    args = parse_args()
    torch, transformers = import_stack()
    if not args.hf_verbose:
        try:
            transformers.logging.set_verbosity_error()
        except Exception:
            pass
    name = os.path.basename(os.path.normpath(args.config))
    device = torch.cuda.get_device_name()
    log(f"bench_hf: {name} on {device}, torch {torch.__version__}, transformers {transformers.__version__}")
    chash = config_hash(args.config)

    reuse, marker, why = can_reuse(args, chash)
    if reuse and not args.force:
        log(f"reusing the checkpoint in {args.out} ({why}; written {marker.get('written')} on {marker.get('device')})")
        model, ckpt = (None, None) if not args.bench else load_checkpoint(torch, transformers, args, marker)
        if ckpt is None:
            ckpt = {"dir": args.out, "reused": True}
    else:
        if marker is None and existing_weights(args.out) and not args.force:
            fail(
                f"{args.out} already holds model weights that this script did not write (no {MARKER}); "
                "pass --force to overwrite them, or choose another --out"
            )
        if reuse:
            log(f"--force: rewriting {args.out}")
        elif os.path.isdir(args.out) and existing_weights(args.out):
            log(f"rewriting {args.out} ({why})")
        try:
            model, ckpt = write_checkpoint(torch, transformers, args, chash)
        except SystemExit:
            raise
        except Exception as e:
            traceback.print_exc()
            fail(f"could not build or write the checkpoint: {type(e).__name__}: {e}")
        if args.bench:
            log("benchmarking the in-memory model (the same weights as written)")

    if not args.bench:
        if args.json:
            write_json(args.json, {"device": device, "transformers": transformers.__version__,
                                   "torch": torch.__version__, "config": name, "checkpoint": ckpt,
                                   "wallS": round(elapsed(), 1)})
        log(f"done in {elapsed():.1f} s (no --bench)")
        return 0

    bench = Bench(torch, transformers, model, args)
    result = {
        "device": device,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "config": name,
        "dtype": "bf16",
        "batchSize": args.batch_size,
        "inputLen": args.input_len,
        "outputLen": args.output_len,
        "promptSeed": args.prompt_seed,
        "weightSeed": args.seed,
        "weightStd": args.std,
        "attnImplementation": bench.attn_impl,
        "checkpoint": ckpt,
        "modes": {},
    }
    failed = False
    compile_modes = []
    if "static+compile" in args.mode_list:
        compile_modes = ["auto", "forward"] if args.compile_style == "both" else [args.compile_style]
    outputs = {}

    def reserve(n_compile_left, prefill_left):
        return n_compile_left * args.compile_reserve_s + (5.0 if prefill_left else 0.0)

    if "eager" in args.mode_list:
        try:
            res, seqs = bench.eager(reserve(len(compile_modes), args.prefill_len > 0))
            result["modes"]["eager"] = res
            outputs["eager"] = seqs
        except Exception as e:
            traceback.print_exc()
            result["modes"]["eager"] = {"error": f"{type(e).__name__}: {e}"[:4000]}
            failed = True
        torch.cuda.empty_cache()

    pkey = f"prefill{args.prefill_len}Ms"
    if args.prefill_len > 0:
        try:
            med, times = bench.prefill()
            result[pkey] = round(med, 3)
            result["prefill"] = {"len": args.prefill_len, "batch": 1, "mode": "eager", "iters": len(times),
                                 "msAll": [round(t, 3) for t in times]}
        except Exception as e:
            traceback.print_exc()
            result[pkey] = None
            result["prefill"] = {"len": args.prefill_len, "error": f"{type(e).__name__}: {e}"[:4000]}
            failed = True
        torch.cuda.empty_cache()

    for i, style in enumerate(compile_modes):
        # "static+compile" is the key the lead's tables read; with --compile-style both the
        # forward recipe gets its own key
        label = "static+compile-forward" if (style == "forward" and len(compile_modes) > 1) else "static+compile"
        try:
            res, seqs = bench.static_compile(style, label, reserve(len(compile_modes) - i - 1, False))
            result["modes"][label] = res
            outputs[label] = seqs
        except Exception as e:
            traceback.print_exc()
            result["modes"][label] = {"error": f"{type(e).__name__}: {e}"[:4000], "compileStyle": style}
            failed = True
        torch.cuda.empty_cache()

    # greedy tokens of the first prompt, for checking kiln on the same weights (bf16: a few early
    # tokens agreeing is what to expect; random weights give small logit margins)
    ref = outputs.get("eager")
    if ref is not None:
        result["reference"] = {"promptIds": bench.prompt[0].tolist(), "eagerOutputIds": ref}
        for label, seqs in outputs.items():
            if label == "eager":
                continue
            same = 0
            for x, y in zip(ref, seqs):
                if x != y:
                    break
                same += 1
            result["modes"][label]["tokensMatchingEager"] = same
    result["gpuMaxMemoryGiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    result["notes"] = bench.notes
    result["wallS"] = round(elapsed(), 1)
    result["command"] = sys.argv

    print_table(result, args, pkey)
    if args.json:
        write_json(args.json, result)
    if failed:
        log("bench_hf: some measurements failed (see the errors above and in the JSON)")
        return 3
    return 0


def write_json(path, obj):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    log(f"wrote {path}")


def print_table(r, args, pkey):
    log("")
    log(f"Hugging Face baseline: {r['config']}, bf16, {r['device']}, transformers {r['transformers']}, torch {r['torch']}")
    log(f"batch {r['batchSize']}, input {r['inputLen']}, output {r['outputLen']}, greedy, end token ignored")
    hdr = f"{'mode':<24}{'TTFT ms':>10}{'TPOT ms':>10}{'out tok/s':>11}{'step ms':>10}{'runs':>6}"
    log(hdr)
    log("-" * len(hdr))
    for label, m in r["modes"].items():
        if "error" in m:
            log(f"{label:<24}  FAILED: {m['error'].splitlines()[0][:100]}")
            continue
        step = m.get("tpotStepMedianMs")
        log(
            f"{label:<24}{m['ttftMs']:>10.2f}{m['tpotMs']:>10.3f}{m['outputTokensPerSec']:>11.1f}"
            f"{(step if step is not None else float('nan')):>10.3f}{m['runs']:>6}"
        )
    if args.prefill_len > 0:
        v = r.get(pkey)
        log(f"prefill {args.prefill_len} tokens (batch 1, eager): " + (f"{v:.2f} ms" if v is not None else "FAILED"))
    log("TPOT = (median total - median TTFT) / (O - 1); step ms = median gap between tokens within a run")
    for n in r.get("notes", []):
        log(f"note: {n}")
    log(f"wall time {r['wallS']:.0f} s, peak GPU memory {r['gpuMaxMemoryGiB']} GiB")


if __name__ == "__main__":
    sys.exit(main())
