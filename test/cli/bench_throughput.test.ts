// `kiln bench --num-requests N`: the throughput mode through the executor (CPU, bundled model). Its
// JSON has every field with consistent values, the Poisson schedule is a function of the seed, a rate
// run lasts at least its arrival span, the capacity policy reaches the executor, and flags of the
// wrong mode are refused by name.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { checkModeFlags, type ThroughputFlags } from "../../src/cli/bench_throughput.ts";
import { BenchOptionError } from "../../src/runtime/bench.ts";
import { percentile } from "../../src/runtime/latency_summary.ts";
import { poissonArrivals } from "../../src/runtime/throughput_bench.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

function benchJson(args: string[], env: Record<string, string>) {
  const r = kiln(["bench", "--input-len", "8", "--output-len", "5", ...args, "--json"], env);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("kiln bench --num-requests 300 from a checkpoint: its engine runs all 300 at once", () => {
  const cache = tempCache();
  try {
    const r = kiln(["bench", "--input-len", "2", "--output-len", "2", "--num-requests", "300", "--json"], {
      KILN_CACHE_DIR: cache.dir,
    });
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.equal(o.outputTokens, 600);
    assert.equal(o.executor.peakScheduled, 300, JSON.stringify(o.executor));
  } finally {
    cache.cleanup();
  }
});

test("kiln bench --num-requests --json: every field, consistent", () => {
  const cache = tempCache();
  try {
    const env = { KILN_CACHE_DIR: cache.dir };
    const o = benchJson(["--num-requests", "4"], env);
    for (const k of [
      "device",
      "dtype",
      "durationS",
      "outputTokensPerSec",
      "totalTokensPerSec",
      "requestsPerSec",
    ])
      assert.ok(k in o, `missing ${k}`);
    assert.equal(o.mode, "throughput");
    assert.equal(o.numRequests, 4);
    assert.equal(o.inputLen, 8);
    assert.equal(o.outputLen, 5);
    assert.equal(o.requestRate, null);
    assert.equal(o.arrivalSpanS, 0);
    assert.equal(o.policy, "guaranteedNoEvict");
    assert.equal(o.outputTokens, 4 * 5, "end ids are ignored: every request gives outputLen tokens");
    assert.ok(o.durationS > 0);
    assert.ok(close(o.outputTokensPerSec, o.outputTokens / o.durationS));
    assert.ok(close(o.totalTokensPerSec, (4 * 8 + o.outputTokens) / o.durationS));
    assert.ok(close(o.requestsPerSec, 4 / o.durationS));
    for (const k of ["ttftMs", "tpotMs", "itlMs"]) {
      const s = o[k];
      assert.ok(s.median > 0 && s.p99 >= s.median, `${k}: ${JSON.stringify(s)}`);
      if (k !== "itlMs") assert.ok(s.mean > 0, k);
    }
    // Every token comes after its request's first: TTFT + (O − 1) · TPOT ≤ the whole run.
    assert.ok(o.ttftMs.mean + 4 * o.tpotMs.mean <= o.durationS * 1000 + 1e-6);
    const e = o.executor;
    assert.ok(e.iterations >= 5, `${e.iterations} iterations for 5 tokens each`);
    assert.equal(e.preemptions, 0);
    assert.equal(e.prefixQueryTokens, 4 * 8);
    assert.equal(e.prefixHitTokens, 0, "random prompts share no block");
    // Sized for every request at once: 4 × ⌈13 / 16⌉ blocks, all of them in use in the first iteration.
    assert.equal(e.kvBlocks, 4);
    assert.equal(e.kvLimitedBy, "requests");
    assert.equal(e.peakKvBlocksUsed, 4);
    assert.equal(e.peakKvUsage, 1);
    assert.equal(e.peakScheduled, 4, "every request runs in the first iteration");
    // The CPU backend queues steps: after the first, each decode is queued before the last is read.
    assert.ok(e.overlappedIterations > 0 && e.overlappedIterations < e.iterations, JSON.stringify(e));
    for (const k of ["hostWaitMs", "hostMs"])
      assert.ok(
        e[k].mean >= 0 && e[k].p99 >= e[k].median && e[k].median >= 0,
        `${k}: ${JSON.stringify(e[k])}`,
      );
    // The CPU backend has no graphs to capture at start.
    assert.deepEqual(Object.keys(e.graphWarmUp), ["graphs", "ms"]);
    assert.equal(e.graphWarmUp.graphs, 0);
    assert.equal(o.sampling, null);
    // The decode step floor: the 4 requests the cache holds at once, below the measured TPOT.
    assert.equal(o.floorBatch, 4);
    // Not compared with the measured TPOT: on a loaded CPU the rates the floor divides by are measured
    // low too, and a timing comparison would make the test depend on the machine's load.
    assert.ok(o.decodeStepFloorMs > 0, `${o.decodeStepFloorMs}`);
    assert.ok(close(o.tpotOverFloor, o.tpotMs.median / o.decodeStepFloorMs));
    assert.ok(o.copyBandwidthGBs > 0 && o.gemmTflops > 0);
    const table = kiln(
      [
        "bench",
        "--num-requests",
        "2",
        "--input-len",
        "8",
        "--output-len",
        "3",
        "--temperature",
        "1",
        "--top-k",
        "5",
      ],
      env,
    );
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /output tokens\s+6\n/);
    assert.match(table.stdout, /arrivals\s+all at once/);
    assert.match(table.stdout, /decoding\s+sampled \(temperature 1, topK 5\)/);
    assert.match(table.stdout, /TPOT\s+mean [\d.]+, median [\d.]+, p99 [\d.]+ ms/);
    assert.match(table.stdout, /decode step floor\s+[\d.]+ ms at \d+ sequences \(median TPOT ×[\d.]+\)/);
    assert.match(
      table.stdout,
      /iterations\s+\d+ \(0 preemptions, \d+ overlapped; at most 2 requests at once\)/,
    );
    assert.match(table.stdout, /host wait per iteration\s+mean [\d.]+, median [\d.]+, p99 [\d.]+ ms/);
    assert.match(table.stdout, /host work per iteration\s+mean [\d.]+, median [\d.]+, p99 [\d.]+ ms/);
    assert.match(table.stdout, /graphs at start\s+0 captured in \d+ ms/);
    // 2 requests of 8 + 3 tokens, one block of 16 each, sized by the bench for every request at once.
    assert.match(table.stdout, /KV cache\s+2 blocks \(32 tokens, limited by requests\), peak \d+ used/);
  } finally {
    cache.cleanup();
  }
});

test("kiln bench --request-rate: the seed's Poisson schedule, and a run at least as long", () => {
  const cache = tempCache();
  try {
    const env = { KILN_CACHE_DIR: cache.dir };
    const o = benchJson(["--num-requests", "5", "--request-rate", "8", "--seed", "7"], env);
    assert.equal(o.requestRate, 8);
    assert.equal(o.seed, 7);
    assert.equal(o.arrivalSpanS, poissonArrivals(5, 8, 7)[4]);
    assert.ok(o.arrivalSpanS > 0.5, "arrivals spread well past what the run alone takes");
    assert.ok(o.durationS >= o.arrivalSpanS, `${o.durationS} s < arrivals over ${o.arrivalSpanS} s`);
    assert.equal(o.outputTokens, 5 * 5);
    // maxUtilization over a KV cache of 4 blocks: 6 requests of 12 + 8 tokens (2 blocks each) are
    // admitted on their first block and preempted when they grow; each still gives all its tokens.
    const tight = ["--num-requests", "6", "--input-len", "12", "--output-len", "8", "--max-kv-tokens", "64"];
    const evict = benchJson([...tight, "--policy", "maxUtilization"], env);
    assert.equal(evict.policy, "maxUtilization");
    assert.ok(evict.executor.preemptions > 0, "no preemption under maxUtilization");
    assert.equal(evict.outputTokens, 6 * 8);
  } finally {
    cache.cleanup();
  }
});

test("poissonArrivals: reproducible per seed, exponential gaps at the rate", () => {
  const a = poissonArrivals(2000, 50, 3);
  assert.deepEqual(poissonArrivals(2000, 50, 3), a);
  assert.notDeepEqual(poissonArrivals(2000, 50, 4), a);
  assert.equal(a[0], 0);
  assert.ok(a.every((t, i) => i === 0 || t > a[i - 1]));
  const meanGap = a[a.length - 1] / (a.length - 1);
  assert.ok(Math.abs(meanGap - 1 / 50) < 0.1 / 50, `mean gap ${meanGap} s at 50 requests/s`);
  // Exponential: the median gap is ln 2 / rate.
  const gaps = a.slice(1).map((t, i) => t - a[i]);
  assert.ok(Math.abs(percentile(gaps, 50) - Math.LN2 / 50) < 0.1 / 50);
});

test("checkModeFlags: flags of the other mode and rates ≤ 0 are refused by name", () => {
  const refuse = (f: ThroughputFlags, given: string[], message: RegExp) =>
    assert.throws(
      () => checkModeFlags(f, (flag) => given.includes(flag)),
      (e: unknown) => e instanceof BenchOptionError && message.test(e.message),
    );
  for (const flag of ["--request-rate", "--max-num-tokens", "--policy", "--prefix-len"])
    refuse(
      {},
      [flag],
      new RegExp(`${flag} drives the executor .*give --num-requests N with it, or drop ${flag}`),
    );
  for (const flag of ["--runs", "--batch-size", "--profile"])
    refuse(
      { numRequests: 2 },
      [flag],
      new RegExp(`${flag} applies to the latency mode .*drop ${flag}, or drop --num-requests`),
    );
  for (const rate of [0, -1])
    refuse(
      { numRequests: 2, requestRate: rate },
      [],
      new RegExp(`--request-rate ${rate} is not a positive rate; give requests per second above 0`),
    );
  const throughput = ["--num-requests", "--request-rate", "--policy", "--max-num-tokens", "--seed"];
  checkModeFlags({ numRequests: 2, requestRate: 0.5, policy: "maxUtilization" }, (f) =>
    throughput.includes(f),
  );
  checkModeFlags({}, (f) => f === "--runs" || f === "--batch-size");
});

test("kiln bench refuses flags of the other mode, bad rates and shapes", () => {
  const cache = tempCache();
  try {
    const env = { KILN_CACHE_DIR: cache.dir };
    const bench = (...args: string[]) => kiln(["bench", ...args], env);
    assertUserError(bench("--request-rate", "2"), "BenchOptionError", /--request-rate drives the executor/);
    assertUserError(
      bench("--num-requests", "2", "--batch-size", "2"),
      "BenchOptionError",
      /--batch-size applies to the latency mode/,
    );
    assertUserError(
      bench("--num-requests", "2", "--request-rate", "0"),
      "BenchOptionError",
      /--request-rate 0 is not a positive rate/,
    );
    // An engine's step size was fixed when it was built: the executor cannot take more per iteration.
    const engine = join(cache.dir, "engine");
    const built = kiln(
      ["build", "--model", BUNDLED_MODEL_DIR, "--output", engine, "--max-num-tokens", "64"],
      env,
    );
    assert.equal(built.code, 0, built.stderr);
    const tooLong = bench(
      "--model",
      engine,
      "--num-requests",
      "2",
      "--input-len",
      "505",
      "--output-len",
      "50",
    );
    assertUserError(
      tooLong,
      "BenchShapeError",
      /555 tokens do not fit the engine's context window of 512 tokens; lower --output-len to 7/,
    );
    assert.equal(tooLong.stdout, "");
    assertUserError(
      bench("--model", engine, "--num-requests", "2", "--max-num-tokens", "128"),
      "BenchOptionError",
      /--max-num-tokens 128 is above the engine's 64 tokens per step; give at most 64 or rebuild/,
    );
  } finally {
    cache.cleanup();
  }
});

test("kiln bench --num-requests --prefix-len: shared prompts, and one request's TTFT cold and cached", () => {
  const cache = tempCache();
  try {
    const env = { KILN_CACHE_DIR: cache.dir };
    const args = ["--num-requests", "3", "--prefix-len", "35", "--input-len", "40", "--output-len", "2"];
    const o = JSON.parse(kiln(["bench", ...args, "--json"], env).stdout);
    const p = o.prefixCache;
    // Blocks of 16: the cached probe finds the prefix's two whole blocks.
    assert.equal(p.prefixLen, 35);
    assert.equal(p.cachedTokens, 32);
    assert.ok(p.coldTtftMs > 0 && p.cachedTtftMs > 0);
    assert.ok(close(p.cachedOverCold, p.cachedTtftMs / p.coldTtftMs));
    // The timed requests all start with the same 35 tokens: at most the first computes them (all
    // arrive at once, so none may find them yet), and every one asks the cache for its prompt.
    assert.equal(o.executor.prefixQueryTokens, 3 * 40);
    const table = kiln(["bench", ...args], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(
      table.stdout,
      /TTFT, prefix cached\s+[\d.]+ ms with 32 of the 35-token prefix cached, [\d.]+ ms cold \(×[\d.]+; one request alone\)/,
    );
    assertUserError(
      kiln(["bench", "--num-requests", "2", "--input-len", "8", "--prefix-len", "8"], env),
      "BenchOptionError",
      /--prefix-len 8 must be a whole number of tokens from 1 to --input-len − 1 \(7\)/,
    );
    const without = benchJson(["--num-requests", "2"], env);
    assert.equal(without.prefixCache, undefined);
  } finally {
    cache.cleanup();
  }
});
