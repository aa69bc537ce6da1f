// A static-activation fp8 engine made from a built dynamic one: every fp8 weight's region gains the
// input scale `scaleOf(name)` and `params.activation` becomes "static" — the layout FP8 checkpoints with
// calibrated input scales load into (engine/fp8_format.ts). Everything else is copied as it is.
import { join } from "node:path";
import { runSteps } from "../../src/builder/steps.ts";
import { RANK_FILE } from "../../src/engine/manifest.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { type EngineWeight, writeEngineSteps } from "../../src/engine/writer.ts";

export function writeStaticFp8Engine(
  fromDir: string,
  toDir: string,
  scaleOf: (name: string) => number,
): void {
  const e = openEngine(fromDir);
  try {
    const weights: EngineWeight[] = e.header.weights.map((w) => {
      const base = { name: w.name, dtype: w.dtype, shape: w.shape };
      if (w.format !== "fp8") {
        const format = w.format ? { format: w.format, ...(w.params ? { params: w.params } : {}) } : {};
        return { ...base, ...format, byteLength: w.byteLength, bytes: () => e.readWeight(w) };
      }
      if (w.params?.activation !== "dynamic") throw new Error(`${w.name}: expected a dynamic fp8 weight`);
      return {
        ...base,
        format: "fp8",
        params: { activation: "static" },
        byteLength: w.byteLength + 4,
        bytes: () => {
          const out = new Uint8Array(w.byteLength + 4);
          out.set(e.readWeight(w));
          new DataView(out.buffer).setFloat32(w.byteLength, scaleOf(w.name), true);
          return out;
        },
      };
    });
    const extra = e.config.files
      .filter((f) => f !== RANK_FILE && f !== "config.json")
      .map((f) => ({ from: join(fromDir, f), name: f }));
    const config = { ...e.config, files: [...e.config.files] };
    runSteps(writeEngineSteps(toDir, config, e.header.plan, weights, extra, [], "output"));
  } finally {
    e.close();
  }
}
