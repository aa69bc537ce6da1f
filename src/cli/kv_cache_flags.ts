// KV pool flags shared by `kiln run`, `kiln chat` and `kiln bench` (KvCacheConfig's fields):
// `.addOption(kvFractionOption()).addOption(maxKvTokensOption())`, then `kvCacheFromFlags(flags)`.
import { Option } from "commander";
import type { KvCacheConfig } from "../runtime/kv_cache_config.ts";
import { fractionArg, intArg } from "./args.ts";

export interface KvCacheFlags {
  kvCacheFreeGpuMemFraction?: number;
  maxKvTokens?: number;
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

export function kvCacheFromFlags(f: KvCacheFlags): Partial<KvCacheConfig> {
  return {
    ...(f.kvCacheFreeGpuMemFraction !== undefined
      ? { freeGpuMemoryFraction: f.kvCacheFreeGpuMemFraction }
      : {}),
    ...(f.maxKvTokens !== undefined ? { maxTokens: f.maxKvTokens } : {}),
  };
}
