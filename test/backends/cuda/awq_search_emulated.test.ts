// kernels/awq_search.cu on the CPU emulator (kernels/emulation/awq_search_run.sh): its error energies
// are the TypeScript reference's bit for bit. Once against the C++ reading of the reference in
// awq_search_check.cpp (odd shapes, exact rounding ties, an all-zero group), and once on inputs written
// here against the reference itself (energy_device.ts CPU_ENERGIES): 20 α of awqScales, 10 shrinks,
// a partial group, a 4-row tail, 130 samples (two passes). Needs g++ ≥ 12 (skipped without one).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { CPU_ENERGIES } from "../../../src/builder/passes/awq/energy_device.ts";
import { awqScales, GRID } from "../../../src/builder/passes/awq/scale_search.ts";
import { randn } from "../../helpers/tiny_model.ts";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/awq_search_run.sh");

function random(n: number, seed: number, scale = 1): Float32Array {
  const r = randn(seed);
  return Float32Array.from({ length: n }, () => scale * r());
}

describe("awq_search.cu on the CPU emulator", { skip: noGxx }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-awq-emu-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** The kernel's energies on these inputs: [candidates, rows, groups]. */
  function emulate(
    mode: 0 | 1,
    rows: number,
    cols: number,
    n: number,
    w: Float32Array,
    x: Float32Array,
    cands: Float32Array | Float64Array,
    count: number,
  ) {
    const header = Int32Array.of(mode, rows, cols, n, count);
    const parts = [header, w, x, cands].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    const [inPath, outPath] = [join(dir, "in.bin"), join(dir, "out.bin")];
    writeFileSync(inPath, Buffer.concat(parts));
    const r = spawnSync("bash", [SCRIPT, "--io", inPath, outPath], { encoding: "utf8", timeout: 300_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const bytes = readFileSync(outPath);
    return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
  }

  test("against its C++ reading of the reference: the same bits", () => {
    const r = spawnSync("bash", [SCRIPT], { encoding: "utf8", timeout: 300_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^ok {3}clip .*$/m);
    assert.match(r.stdout, /^ok {3}scale .*$/m);
    assert.doesNotMatch(r.stdout, /FAIL/);
  });

  const [rows, cols, n] = [37, 300, 130];
  const w = random(rows * cols, 1, 0.05);
  for (let c = 0; c < 128; c++) w[c] = c === 0 ? 7 : (c % 13) - 6 + (c % 3 ? 0.5 : 0.25); // ties at scale 1
  w[5 * cols + 7] = 0.9; // an outlier: clipping pays in its group
  const x = random(n * cols, 2);

  test("against the TypeScript reference: scaledQuantLoss of every α, the same doubles", () => {
    const meanAbs = Float32Array.from(random(cols, 3), (v) => Math.abs(v) + 0.01);
    const cands = Array.from({ length: GRID }, (_, i) => awqScales(meanAbs, i / GRID));
    const packed = new Float32Array(GRID * cols);
    cands.forEach((s, i) => packed.set(s, i * cols));
    const err = emulate(0, rows, cols, n, w, x, packed, GRID);
    const got = cands.map((_, i) => {
      let total = 0;
      for (let r = 0; r < rows; r++) total += err[i * rows + r];
      return total;
    });
    assert.deepEqual(got, CPU_ENERGIES.scaleSession(w, rows, cols, x, n).losses(cands));
  });

  test("against the TypeScript reference: the clip errors of every shrink, the same doubles", () => {
    const groups = Math.ceil(cols / 128);
    const orgMax = new Float32Array(rows * groups);
    for (let i = 0; i < w.length; i++) {
      const k = Math.floor(i / cols) * groups + Math.floor((i % cols) / 128);
      orgMax[k] = Math.max(orgMax[k], Math.abs(w[i]));
    }
    const shrinks = Array.from({ length: 10 }, (_, i) => 1 - i / 20);
    const err = emulate(1, rows, cols, n, w, x, Float64Array.from(shrinks), shrinks.length);
    const per = rows * groups;
    const got = shrinks.map((_, i) => err.slice(i * per, (i + 1) * per));
    assert.deepEqual(got, CPU_ENERGIES.clipSession(x, n, cols).errors(w, rows, orgMax, shrinks));
  });
});
