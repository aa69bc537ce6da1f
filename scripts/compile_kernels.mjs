#!/usr/bin/env node
// CI step: compiles every kernels/*.cu with `nvcc -cubin -arch=sm_90a` for each dtype and macro set of
// kernels/compile_matrix.json, and checks each kernel's PTX against kernels/pdl.cuh's rule. The work is
// test/backends/cuda/kernels_compile.test.ts, which skips itself without nvcc (so `npm test` passes on a
// machine without CUDA); this step fails instead: a CI without nvcc would otherwise compile nothing.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

// PATH, then the toolkit's bin/: $CUDA_HOME, which defaults to /usr/local/cuda.
const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
dirs.push(join(process.env.CUDA_HOME || "/usr/local/cuda", "bin"));
const nvcc = dirs.map((d) => join(d, "nvcc")).find((p) => existsSync(p));
if (!nvcc) {
  console.error(
    `compile:kernels: nvcc not found in PATH or ${dirs.at(-1)} ($CUDA_HOME/bin, CUDA_HOME defaulting to /usr/local/cuda); install the CUDA toolkit, or set CUDA_HOME to it`,
  );
  process.exit(1);
}
// NODE_TEST_CONTEXT (set when this script runs inside a test) would make the child skip its files.
const { NODE_TEST_CONTEXT: _, ...env } = process.env;
env.PATH = [dirname(nvcc), env.PATH ?? ""].join(delimiter);
const args = [
  "--import",
  "tsx",
  "--test",
  "--test-reporter=spec",
  "test/backends/cuda/kernels_compile.test.ts",
];
const r = spawnSync(process.execPath, args, { stdio: "inherit", env });
process.exit(r.status ?? 1);
