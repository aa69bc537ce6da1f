#!/usr/bin/env python3
"""Tiny pre-quantized Hugging Face checkpoints for kiln's loader tests (test/fixtures/quantized/).

Each format is written as its published exporter writes it, from the exporters' pack functions, not
from kiln's reader (numpy only):
  awq            AutoAWQ WQLinear_GEMM.from_linear: qweight [in, out/8] int32 with the pack order
                 [0, 2, 4, 6, 1, 3, 5, 7], qzeros [in/G, out/8] the same, scales [in/G, out] fp16
  gptq           GPTQModel, checkpoint_format "gptq_v2" (zeros as they are), desc_act false
  gptq-v1        the same weights as AutoGPTQ writes them (no checkpoint_format: v1, zeros stored − 1)
  gptq-actorder  v2, desc_act true: g_idx a permutation of c // G (one per layer input, as GPTQ's
                 Hessian order is; layer 1's k_proj has its own, so that layer's QKV must not fuse)
                 AutoGPTQ QuantLinear.pack: qweight [in/8, out] int32, feature 8i+k in nibble k;
                 qzeros [groups, out/8]; scales [groups, out] fp16; g_idx [in] int32
  ct-fp8-static  compressed-tensors float-quantized, per-tensor weight scales, static per-tensor
                 input scales, kv_cache_scheme + k_scale / v_scale, ignore [lm_head, layer 0 down_proj]
  ct-fp8-dynamic compressed-tensors, per-channel bf16 weight scales [out, 1], dynamic per-token inputs,
                 KV-cache scales as older llm-compressor wrote them (k_proj / v_proj.output_scale)
  modelopt-fp8   ModelOpt hf_quant_config.json quant_algo FP8: scalar weight_scale / input_scale,
                 k_proj.k_scale / v_proj.v_scale
Beside each, <name>-ref/ holds the dequantized checkpoint: the same model with every quantized linear
replaced by its fp32 dequantization, w = (q − z) × s (int4) or e4m3(q) × s (fp8), computed in fp32
(exact: |q − z| ≤ 16 times an fp16 scale fits fp32's mantissa; e4m3 × fp32 scale rounds once).
gptq-v1 shares gptq-ref; the other tensors (embeddings, norms, LM head, ignored modules) are the same
fp16 bytes in both.

  python3 tools/make_quantized_fixtures.py                   # write the fixtures (deterministic)
  python3 tools/make_quantized_fixtures.py --torch-reference # GPU machine: PyTorch/transformers logits
                                                             # of each -ref checkpoint → torch_reference.json
The --torch-reference mode has not been run yet (it needs torch + transformers).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "quantized")
GROUP = 32
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 128,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "torch_dtype": "float16",
}
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# linears that read the same input (and so share GPTQ's act-order permutation)
INPUT_OF = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
# ids the --torch-reference mode runs (the tests use the same)
REFERENCE_IDS = [0, 17, 5, 99, 42, 8, 77, 3, 64, 120]


# ---------------------------------------------------------------- safetensors

def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, raw little-endian bytes)."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)


def f16(a):
    return ("F16", a.shape, a.astype("<f2").tobytes())


def f32(a):
    return ("F32", a.shape, a.astype("<f4").tobytes())


def i32(a):
    return ("I32", a.shape, a.astype("<u4").view("<i4").tobytes())


def bf16_round(a):
    """fp32 -> the fp32 value of its bf16 rounding (nearest even), and the bf16 bits."""
    u = a.astype("<f4").view("<u4").astype(np.uint64)
    bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return (bits.astype(np.uint32) << 16).view("<f4"), bits


# ---------------------------------------------------------------- E4M3 (OCP e4m3fn)

def e4m3_table():
    vals = np.zeros(256, dtype=np.float64)
    for b in range(256):
        s = -1.0 if b & 0x80 else 1.0
        e, m = (b >> 3) & 0xF, b & 7
        if e == 0xF and m == 7:
            vals[b] = np.nan
        elif e == 0:
            vals[b] = s * m * 2.0 ** -9
        else:
            vals[b] = s * (1 + m / 8) * 2.0 ** (e - 7)
    return vals


E4M3 = e4m3_table()
POS = E4M3[:0x7F]  # codes 0..126: 0 .. 448, increasing


def to_e4m3(x):
    """Round to nearest E4M3 (ties to the even code), saturating at ±448, as torch's cast after clamp."""
    a = np.minimum(np.abs(x).astype(np.float64), 448.0)
    hi = np.clip(np.searchsorted(POS, a), 1, 126)
    lo = hi - 1
    dlo, dhi = a - POS[lo], POS[hi] - a
    code = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    return (code | np.where(x < 0, 0x80, 0)).astype(np.uint8)


# ---------------------------------------------------------------- int4 (asymmetric, min/max)

def int4_quantize(w, groups_of_cols, min_zero=0):
    """w [out, in]; groups_of_cols: list of column index arrays, one per group. Returns q [out, in],
    zeros [out, groups] (ints), scales16 [out, groups] fp16."""
    out, cols = w.shape
    q = np.zeros((out, cols), dtype=np.int64)
    zeros = np.zeros((out, len(groups_of_cols)), dtype=np.int64)
    scales = np.zeros((out, len(groups_of_cols)), dtype=np.float16)
    for g, idx in enumerate(groups_of_cols):
        block = w[:, idx]
        mn, mx = np.minimum(block.min(1), 0), np.maximum(block.max(1), 0)
        s = ((mx - mn) / 15).astype(np.float16)
        s = np.where(s == 0, np.float16(1e-3), s)
        z = np.clip(np.round(-mn / s.astype(np.float32)), min_zero, 15).astype(np.int64)
        scales[:, g], zeros[:, g] = s, z
        q[:, idx] = np.clip(np.round(block / s.astype(np.float32)[:, None]) + z[:, None], 0, 15)
    return q, zeros, scales


def int4_dequantize(q, zeros, scales, g_idx):
    z = zeros[:, g_idx].astype(np.float32)
    s = scales[:, g_idx].astype(np.float32)
    return ((q.astype(np.float32) - z) * s).astype(np.float32)


def awq_pack(q, zeros, scales):
    """AutoAWQ WQLinear_GEMM.from_linear packing (w_bit 4)."""
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    intweight = q.T.astype(np.uint32)  # [in, out]
    qweight = np.zeros((intweight.shape[0], intweight.shape[1] // 8), dtype=np.uint32)
    for col in range(intweight.shape[1] // 8):
        for i in range(8):
            qweight[:, col] |= intweight[:, col * 8 + order_map[i]] << np.uint32(i * 4)
    zt = zeros.T.astype(np.uint32)  # [groups, out]
    qzeros = np.zeros((zt.shape[0], zt.shape[1] // 8), dtype=np.uint32)
    for col in range(zt.shape[1] // 8):
        for i in range(8):
            qzeros[:, col] |= zt[:, col * 8 + order_map[i]] << np.uint32(i * 4)
    return qweight, qzeros, scales.T.copy()


def gptq_pack(q, zeros, scales, v1):
    """AutoGPTQ QuantLinear.pack (bits 4); v1 stores zeros − 1 (GPTQModel's v2 stores them as they are)."""
    intweight = q.T.astype(np.uint32)  # [in, out]
    qweight = np.zeros((intweight.shape[0] // 8, intweight.shape[1]), dtype=np.uint32)
    i, row = 0, 0
    while row < qweight.shape[0]:
        for j in range(i, i + 8):
            qweight[row] |= intweight[j] << np.uint32(4 * (j - i))
        i += 8
        row += 1
    z = zeros.T.astype(np.int64) - (1 if v1 else 0)  # [groups, out]
    z = z.astype(np.uint32)
    qzeros = np.zeros((z.shape[0], z.shape[1] // 8), dtype=np.uint32)
    i, col = 0, 0
    while col < qzeros.shape[1]:
        for j in range(i, i + 8):
            qzeros[:, col] |= z[:, j] << np.uint32(4 * (j - i))
        i += 8
        col += 1
    return qweight, qzeros, scales.T.copy()


# ---------------------------------------------------------------- the model

def random_model(rng):
    c = CONFIG
    h, inter, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd, nh, nkv = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    shapes = {"self_attn.q_proj": (nh * hd, h), "self_attn.k_proj": (nkv * hd, h),
              "self_attn.v_proj": (nkv * hd, h), "self_attn.o_proj": (h, nh * hd),
              "mlp.gate_proj": (inter, h), "mlp.up_proj": (inter, h), "mlp.down_proj": (h, inter)}
    plain = {  # fp16 tensors kept as they are in every checkpoint
        "model.embed_tokens.weight": rng.standard_normal((v, h)).astype(np.float16),
        "model.norm.weight": (1 + 0.1 * rng.standard_normal(h)).astype(np.float16),
        # a sharp LM head, so most positions' top-1 logit leads by more than fp8's activation noise
        "lm_head.weight": (4 * rng.standard_normal((v, h)) / np.sqrt(h)).astype(np.float16),
    }
    linears = {}
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        plain[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(h)).astype(np.float16)
        plain[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(h)).astype(np.float16)
        for name, (o, i) in shapes.items():
            # the blocks' outputs half the embedding's size: a residual stream the embedding still leads
            gain = 0.5 if name in ("self_attn.o_proj", "mlp.down_proj") else 1.0
            linears[p + name] = (gain * rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
    return plain, linears


def write_checkpoint(name, plain, tensors, quantization_config=None, extra_files=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    config = dict(CONFIG)
    if quantization_config is not None:
        config["quantization_config"] = quantization_config
    all_tensors = {k: f16(v) for k, v in plain.items()}
    all_tensors.update(tensors)
    write_safetensors(os.path.join(d, "model.safetensors"), all_tensors)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for fname, content in (extra_files or {}).items():
        with open(os.path.join(d, fname), "w") as f:
            json.dump(content, f, indent=2)
            f.write("\n")


def write_reference(name, plain, dequantized, plain_linears):
    tensors = {k: f32(v) for k, v in dequantized.items()}
    tensors.update({k + ".weight": f16(v) for k, v in plain_linears.items()})
    write_checkpoint(name, plain, tensors)


def sequential_groups(cols):
    return [np.arange(g * GROUP, min(cols, (g + 1) * GROUP)) for g in range((cols + GROUP - 1) // GROUP)]


def make_awq(plain, linears):
    skip = {"model.layers.1.mlp.down_proj"}
    tensors, deq, kept = {}, {}, {}
    for mod, w in linears.items():
        if mod in skip:
            kept[mod] = w.astype(np.float16)
            tensors[mod + ".weight"] = f16(kept[mod])
            continue
        cols = w.shape[1]
        q, z, s = int4_quantize(w, sequential_groups(cols))
        qweight, qzeros, scales = awq_pack(q, z, s)
        tensors[mod + ".qweight"] = i32(qweight)
        tensors[mod + ".qzeros"] = i32(qzeros)
        tensors[mod + ".scales"] = f16(scales)
        deq[mod + ".weight"] = int4_dequantize(q, z, s, np.arange(cols) // GROUP)
    qc = {"quant_method": "awq", "bits": 4, "group_size": GROUP, "zero_point": True, "version": "gemm",
          "modules_to_not_convert": sorted(skip)}
    write_checkpoint("awq", plain, tensors, qc)
    write_reference("awq-ref", plain, deq, kept)


def make_gptq(plain, linears, rng, act_order):
    tensors_v2, tensors_v1, deq = {}, {}, {}
    perms = {}
    for mod, w in linears.items():
        cols = w.shape[1]
        if act_order:
            # One order per layer input (q/k/v share one, gate/up another), as GPTQ's Hessian gives;
            # layer 1's k_proj gets its own.
            layer, leaf = mod.rsplit(".", 1)
            key = layer + "." + INPUT_OF.get(leaf, leaf)
            if mod == "model.layers.1.self_attn.k_proj":
                key = mod
            if key not in perms:
                perms[key] = rng.permutation(cols)
            perm = perms[key]
            invperm = np.argsort(perm)
            g_idx = (invperm // GROUP).astype(np.int64)  # GPTQ: g_idx[perm[i]] = i // G
            groups = [perm[g * GROUP:(g + 1) * GROUP] for g in range((cols + GROUP - 1) // GROUP)]
        else:
            g_idx = np.arange(cols) // GROUP
            groups = sequential_groups(cols)
        # zero points ≥ 1: AutoGPTQ's v1 pack stores z − 1 as uint32, so a zero of 0 would spill
        # 0xFFFFFFFF over its neighbours (the known v1 limitation)
        q, z, s = int4_quantize(w, groups, min_zero=1)
        for v1, tensors in ((False, tensors_v2), (True, tensors_v1)):
            qweight, qzeros, scales = gptq_pack(q, z, s, v1)
            tensors[mod + ".qweight"] = i32(qweight)
            tensors[mod + ".qzeros"] = i32(qzeros)
            tensors[mod + ".scales"] = f16(scales)
            tensors[mod + ".g_idx"] = i32(g_idx)
        deq[mod + ".weight"] = int4_dequantize(q, z, s, g_idx)
    base = {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "desc_act": act_order, "sym": False,
            "true_sequential": True, "damp_percent": 0.01, "static_groups": False}
    if act_order:
        write_checkpoint("gptq-actorder", plain, tensors_v2, {**base, "checkpoint_format": "gptq_v2"})
        write_reference("gptq-actorder-ref", plain, deq, {})
    else:
        write_checkpoint("gptq", plain, tensors_v2, {**base, "checkpoint_format": "gptq_v2"})
        write_checkpoint("gptq-v1", plain, tensors_v1, base)  # no checkpoint_format: v1
        write_reference("gptq-ref", plain, deq, {})


def fp8_quantize(w, per_channel, bf16_scales=False):
    amax = np.abs(w).max(axis=1) if per_channel else np.array([np.abs(w).max()])
    s = (amax / 448.0).astype(np.float32)
    bits = None
    if bf16_scales:
        s, bits = bf16_round(s)
    q = to_e4m3(w / (s[:, None] if per_channel else s[0]))
    deq = (E4M3[q].astype(np.float32) * (s[:, None] if per_channel else s[0])).astype(np.float32)
    return q, s, bits, deq


def make_compressed_tensors(plain, linears, rng, static):
    name = "ct-fp8-static" if static else "ct-fp8-dynamic"
    skip = {"model.layers.0.mlp.down_proj"} if static else set()
    tensors, deq, kept = {}, {}, {}
    for mod, w in linears.items():
        if mod in skip:
            kept[mod] = w.astype(np.float16)
            tensors[mod + ".weight"] = f16(kept[mod])
            continue
        q, s, bits, d = fp8_quantize(w, per_channel=not static, bf16_scales=not static)
        tensors[mod + ".weight"] = ("F8_E4M3", w.shape, q.tobytes())
        if static:
            tensors[mod + ".weight_scale"] = f32(s.reshape(1))
            tensors[mod + ".input_scale"] = f32(np.array([rng.uniform(12, 20) / 448], dtype=np.float32))
        else:
            tensors[mod + ".weight_scale"] = ("BF16", (w.shape[0], 1), bits.astype("<u2").tobytes())
        deq[mod + ".weight"] = d
    weights = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False, "group_size": None,
               "strategy": "tensor" if static else "channel", "block_structure": None, "actorder": None}
    inputs = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": not static, "group_size": None,
              "strategy": "tensor" if static else "token", "block_structure": None, "actorder": None}
    qc = {"quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": inputs,
                                        "output_activations": None, "format": "float-quantized"}},
          "ignore": ["lm_head"] + sorted(skip), "global_compression_ratio": None,
          "kv_cache_scheme": None}
    if static:
        qc["kv_cache_scheme"] = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False,
                                 "strategy": "tensor", "group_size": None}
        for layer in range(CONFIG["num_hidden_layers"]):
            for kv in ("k_scale", "v_scale"):
                tensors[f"model.layers.{layer}.self_attn.{kv}"] = f32(np.array(rng.uniform(0.01, 0.1), dtype=np.float32))
    else:
        # older llm-compressor exports name the KV-cache scales k_proj / v_proj "output_scale"
        qc["kv_cache_scheme"] = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False,
                                 "strategy": "tensor", "group_size": None}
        for layer in range(CONFIG["num_hidden_layers"]):
            for proj in ("k_proj", "v_proj"):
                tensors[f"model.layers.{layer}.self_attn.{proj}.output_scale"] = f32(np.array([0.05], dtype=np.float32))
    write_checkpoint(name, plain, tensors, qc)
    write_reference(name + "-ref", plain, deq, kept)


def make_modelopt(plain, linears, rng):
    tensors, deq = {}, {}
    for mod, w in linears.items():
        q, s, _, d = fp8_quantize(w, per_channel=False)
        tensors[mod + ".weight"] = ("F8_E4M3", w.shape, q.tobytes())
        tensors[mod + ".weight_scale"] = f32(np.array(s[0], dtype=np.float32))
        tensors[mod + ".input_scale"] = f32(np.array(rng.uniform(12, 20) / 448, dtype=np.float32))
        if mod.endswith("k_proj") or mod.endswith("v_proj"):
            tensors[f"{mod}.{mod[-6]}_scale"] = f32(np.array(rng.uniform(0.01, 0.1), dtype=np.float32))
        deq[mod + ".weight"] = d
    hf_quant = {"producer": {"name": "modelopt", "version": "0.19.0"},
                "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}}
    write_checkpoint("modelopt-fp8", plain, tensors, None, {"hf_quant_config.json": hf_quant})
    write_reference("modelopt-fp8-ref", plain, deq, {})


def make_all():
    rng = np.random.default_rng(19)
    plain, linears = random_model(rng)
    make_awq(plain, linears)
    make_gptq(plain, linears, rng, act_order=False)
    make_gptq(plain, linears, rng, act_order=True)
    make_compressed_tensors(plain, linears, rng, static=True)
    make_compressed_tensors(plain, linears, rng, static=False)
    make_modelopt(plain, linears, rng)


def torch_reference():
    """PyTorch/transformers fp32 logits of every -ref checkpoint on REFERENCE_IDS (untested)."""
    import torch
    from transformers import AutoModelForCausalLM

    for name in sorted(os.listdir(OUT)):
        if not name.endswith("-ref"):
            continue
        d = os.path.join(OUT, name)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        with torch.no_grad():
            ids = torch.tensor([REFERENCE_IDS])
            logits = model(ids).logits[0]
            greedy = model.generate(ids, max_new_tokens=8, do_sample=False)[0, len(REFERENCE_IDS):]
        out = {"ids": REFERENCE_IDS, "logits": logits.tolist(), "greedy": greedy.tolist(),
               "torch": torch.__version__}
        with open(os.path.join(d, "torch_reference.json"), "w") as f:
            json.dump(out, f)
        print(f"{name}: wrote torch_reference.json")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch-reference", action="store_true")
    args = ap.parse_args()
    if args.torch_reference:
        torch_reference()
    else:
        make_all()
    sys.exit(0)
