// KV pool flags shared by `kiln run`, `kiln chat` and `kiln bench` (KvCacheConfig's fields):
// `.addOption(kvFractionOption()).addOption(maxKvTokensOption()).addOption(kvCacheDtypeOption())`,
// then `kvCacheFromFlags(flags)`. `kiln serve` and `kiln eval` take the options they use.
import { Option } from "commander";
import { KV_CACHE_DTYPES, type KvCacheConfig, type KvCacheDtype } from "../runtime/kv_cache_config.ts";
import { choiceArg, fractionArg, intArg } from "./args.ts";

export interface KvCacheFlags {
  kvCacheFreeGpuMemFraction?: number;
  maxKvTokens?: number;
  kvCacheDtype?: KvCacheDtype;
}

export const kvFractionOption = () =>
  new Option(
    "--kv-cache-free-gpu-mem-fraction <f>",
    "share of the GPU memory free after load that the KV cache pool takes, in (0, 1] (default 0.9)",
  ).argParser(fractionArg("--kv-cache-free-gpu-mem-fraction"));

export const maxKvTokensOption = () =>
  new Option("--max-kv-tokens <n>", "most tokens the KV cache pool holds (default: no cap)").argParser(
    intArg("--max-kv-tokens", 1),
  );

export const kvCacheDtypeOption = () =>
  new Option(
    "--kv-cache-dtype <dtype>",
    "how the KV cache stores keys and values: auto (the activations' dtype) or fp8 (E4M3 with a scale per token and head) (default auto)",
  ).argParser(choiceArg("--kv-cache-dtype", KV_CACHE_DTYPES));

export function kvCacheFromFlags(f: KvCacheFlags): Partial<KvCacheConfig> {
  return {
    ...(f.kvCacheFreeGpuMemFraction !== undefined
      ? { freeGpuMemoryFraction: f.kvCacheFreeGpuMemFraction }
      : {}),
    ...(f.maxKvTokens !== undefined ? { maxTokens: f.maxKvTokens } : {}),
    ...(f.kvCacheDtype !== undefined ? { dtype: f.kvCacheDtype } : {}),
  };
}
