// The simulated serving engine of serve_device_sim.ts, shared by its in-process run and its executor
// thread (sim_thread_entry.ts): the bundled model's config (no tokenizer: token-only deltas, as the
// device runs' random-weight checkpoints have) with an 8B serving engine's build limits, over a
// SimulatedDevice.
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import type { EngineConfig } from "../../src/engine/format.ts";
import type { ExecutorSession, ExecutorStats } from "../../src/executor/executor.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { type DeviceLog, type DeviceModel, SimulatedDevice } from "./simulated_device.ts";

/** An 8B serving engine's limits (tools/device_trust.sh's throughput engine). */
export const MAX_SEQS = 1024;
export const MAX_TOKENS = 8192;
export const KV_BLOCK = 16;

/** A load and the device's time model: what the thread's entry is given (plain data). */
export interface SimLoad {
  streams: number;
  inputLen: number;
  outputLen: number;
  device: DeviceModel;
}

export type SimSession = ExecutorSession & {
  weightBytes: number;
  storedWeightBytes: number;
  device: SimulatedDevice;
};

/** Reads the bundled model's config once; each call of the result opens a fresh simulated session. */
export async function simSessions(a: SimLoad): Promise<() => SimSession> {
  const runner = await ModelRunner.load(BUNDLED_MODEL_DIR, { backend: "cpu" });
  const base = runner.session;
  const config: EngineConfig = {
    ...base.config,
    maxSeqLen: Math.max(4096, a.inputLen + a.outputLen),
    build: { ...base.config.build, maxBatchSize: MAX_SEQS, maxNumTokens: MAX_TOKENS, kvBlockSize: KV_BLOCK },
  };
  const { generationDefaults } = base;
  runner.dispose();
  return () => {
    const device = new SimulatedDevice(config.model.vocabSize, KV_BLOCK, MAX_TOKENS, MAX_SEQS, a.device);
    return {
      backend: device,
      device,
      config,
      tokenizer: null,
      generationDefaults,
      eosTokenIds: [],
      weightBytes: 16.06e9, // the 8B's, for the floors kiln bench prints
      storedWeightBytes: 16.06e9,
      dispose: () => {},
    };
  };
}

/** The KV cache `kiln serve` would give this load: every request at full length (the GPU's would be
 * larger). */
export function servedKvTokens(a: SimLoad): number {
  return a.streams * Math.ceil((a.inputLen + a.outputLen) / KV_BLOCK) * KV_BLOCK;
}

/** The executor thread's stats (sim_thread_entry.ts) with, once it stopped, the device's log and the
 * thread's performance.timeOrigin (the log's clock). */
export interface SimThreadStats extends ExecutorStats {
  sim?: { log: DeviceLog; timeOrigin: number };
}
