// parallel_compile.ts: the builder's kernel modules compiled on worker threads. Without NVRTC (CI) every
// worker's compile fails, and the builder must redo the jobs itself and throw what a serial build throws,
// without waiting on workers that gave up; with NVRTC, the cubins must equal the serial build's.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildThreads as compileThreads } from "../../src/builder/targets/build_threads.ts";
import { compileAll } from "../../src/builder/targets/parallel_compile.ts";
import { InvalidEnvironmentError } from "../../src/errors.ts";

const jobs = [0, 1, 2, 3].map((i) => ({
  source: `extern "C" __global__ void k${i}(int* p) { p[${i}] = ${i}; }`,
  name: `k${i}.cu`,
  options: { arch: "sm_90" },
}));

/** The result of f: its value, or the class and message of what it threw. */
function outcome<T>(f: () => T): { value: T } | { error: string } {
  try {
    return { value: f() };
  } catch (e) {
    return { error: `${(e as Error).constructor.name}: ${(e as Error).message}` };
  }
}

describe("parallel kernel compilation", () => {
  test("KILN_BUILD_THREADS caps the workers; never more than the jobs, never fewer than one", () => {
    assert.equal(compileThreads(10, "3"), 3);
    assert.equal(compileThreads(2, "8"), 2);
    assert.equal(compileThreads(0, "8"), 1);
    assert.ok(compileThreads(4, undefined) >= 1 && compileThreads(4, undefined) <= 4);
    assert.throws(() => compileThreads(4, "0"), /KILN_BUILD_THREADS must be a positive integer; got 0/);
    assert.throws(() => compileThreads(4, "two"), /KILN_BUILD_THREADS must be a positive integer; got two/);
    assert.throws(() => compileThreads(4, "two"), InvalidEnvironmentError);
  });

  test("workers give the serial build's cubins, or its error", () => {
    const serial = outcome(() => compileAll(jobs, 1));
    const t0 = performance.now();
    const parallel = outcome(() => compileAll(jobs, 3));
    if ("error" in serial) {
      assert.deepEqual(parallel, serial);
      // Workers that fail report it at once: the builder does not sit out the 30 s start-up limit.
      assert.ok(performance.now() - t0 < 20_000, `took ${performance.now() - t0} ms`);
    } else {
      assert.ok("value" in parallel, JSON.stringify(parallel));
      parallel.value.forEach((c, i) => assert.deepEqual(Buffer.from(c), Buffer.from(serial.value[i])));
    }
  });
});
