// CI has nvcc but no GPU: compile every kernel source with `nvcc -cubin -arch=sm_90a` for each dtype and
// the macro sets of kernels/compile_matrix.json, so a kernel that NVRTC would reject at engine-build time
// fails here first. Also checks the matrix against the sources (every file listed, every exported
// kernel present in the cubin) and that sources include only headers NVRTC provides.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const KERNELS_DIR = fileURLToPath(new URL("../../../kernels/", import.meta.url));

interface MatrixFile {
  dtype: boolean;
  macros: string[];
  optionalMacros: string[];
  kernels: string[];
  /** Kernels exported only by fp16/bf16 builds. */
  kernels16Bit?: string[];
  /** The dtypes the file compiles for (default: every one of dtypeMacros; gemm_wo.cu: 16-bit only). */
  dtypes?: string[];
  testDefines: Record<string, number | string>[];
}

interface CompileMatrix {
  dtypeMacros: Record<string, string>;
  nvccFlags: string[];
  files: Record<string, MatrixFile>;
}

const matrix: CompileMatrix = JSON.parse(readFileSync(join(KERNELS_DIR, "compile_matrix.json"), "utf8"));
const sources = readdirSync(KERNELS_DIR).filter((f) => f.endsWith(".cu"));

/** Headers NVRTC can see without a CUDA toolkit on the include path (it has no C++ standard library). */
const ALLOWED_SYSTEM_HEADERS = new Set(["cuda_fp16.h", "cuda_bf16.h", "cuda_fp8.h"]);

function findNvcc(): { path: string } | { missing: string } {
  // PATH, then the toolkit's bin/: $CUDA_HOME, which defaults to /usr/local/cuda (scripts/compile_kernels.mjs's).
  const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  dirs.push(join(process.env.CUDA_HOME || "/usr/local/cuda", "bin"));
  for (const dir of dirs) {
    const p = join(dir, "nvcc");
    if (existsSync(p)) return { path: p };
  }
  return { missing: `looked in PATH and $CUDA_HOME/bin (${dirs.at(-1)})` };
}

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stderr: `${stderr}${err && !stderr ? err.message : ""}` });
    });
  });
}

/** One entry's `ptxas -v` report in nvcc's stderr (from its "Function properties" line to the next
 * entry's): stack frame, spill stores and spill loads in bytes, registers and static shared memory;
 * null when it is missing or incomplete. */
function ptxasReport(
  stderr: string,
  kernel: string,
): { frame: number[]; registers: number; smem: number; text: string } | null {
  const at = stderr.indexOf(`Function properties for ${kernel}\n`);
  if (at < 0) return null;
  const rest = stderr.slice(at + 1);
  const ends = ["Function properties for ", "Compiling entry"]
    .map((m) => rest.indexOf(m))
    .filter((i) => i >= 0);
  const text = ends.length > 0 ? rest.slice(0, Math.min(...ends)) : rest;
  const frame = text.match(/(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/);
  const registers = text.match(/Used (\d+) registers/);
  if (!frame || !registers) return null;
  const smem = Number(text.match(/(\d+) bytes smem/)?.[1] ?? 0);
  return { frame: frame.slice(1).map(Number), registers: Number(registers[1]), smem, text };
}

/** The names in an ELF string table are NUL-terminated: look for "\0name\0". */
function cubinHasSymbol(cubin: Buffer, name: string): boolean {
  return cubin.includes(Buffer.from(`\0${name}\0`, "latin1"));
}

describe("kernels/compile_matrix.json", () => {
  it("lists every kernels/*.cu, and only files that exist", () => {
    const listed = Object.keys(matrix.files).sort();
    const missing = sources.filter((f) => !(f in matrix.files));
    assert.deepEqual(missing, [], `add an entry to kernels/compile_matrix.json for: ${missing.join(", ")}`);
    const stale = listed.filter((f) => !sources.includes(f));
    assert.deepEqual(stale, [], `compile_matrix.json lists files that do not exist: ${stale.join(", ")}`);
  });

  it("gives every test macro set each required macro", () => {
    for (const [file, entry] of Object.entries(matrix.files)) {
      assert.ok(entry.testDefines.length > 0, `${file}: no testDefines`);
      assert.ok(entry.kernels.length > 0, `${file}: no kernels listed`);
      for (const set of entry.testDefines) {
        for (const m of entry.macros)
          assert.ok(m in set, `${file}: test macro set ${JSON.stringify(set)} lacks ${m}`);
      }
    }
  });

  it("sources include only headers NVRTC provides, and local headers that exist", () => {
    const files = readdirSync(KERNELS_DIR).filter((f) => f.endsWith(".cu") || f.endsWith(".cuh"));
    for (const f of files) {
      const text = readFileSync(join(KERNELS_DIR, f), "utf8");
      for (const m of text.matchAll(/^\s*#\s*include\s*([<"])([^>"]+)[>"]/gm)) {
        if (m[1] === "<") {
          assert.ok(
            ALLOWED_SYSTEM_HEADERS.has(m[2]),
            `${f} includes <${m[2]}>, which NVRTC does not provide`,
          );
        } else {
          assert.ok(existsSync(join(KERNELS_DIR, m[2])), `${f} includes "${m[2]}", which is not in kernels/`);
        }
      }
    }
  });
});

const nvcc = findNvcc();

/** Without nvcc these suites skip (a machine without CUDA still passes `npm test`); CI sets
 * KILN_REQUIRE_NVCC=1, and then a missing nvcc fails instead (CI would otherwise compile nothing). */
function nvccMissing(why: string): void {
  if (process.env.KILN_REQUIRE_NVCC === "1")
    it("nvcc", () =>
      assert.fail(`nvcc not found (KILN_REQUIRE_NVCC=1): ${why}; install the CUDA toolkit or set CUDA_HOME`));
  else it("nvcc", { skip: `nvcc not found: ${why}` }, () => {});
}

describe("kernels compile with nvcc -cubin -arch=sm_90a", { concurrency: 2 }, () => {
  if ("missing" in nvcc) {
    nvccMissing(nvcc.missing);
    return;
  }
  const out = mkdtempSync(join(tmpdir(), "kiln-kernels-"));
  after(() => rmSync(out, { recursive: true, force: true }));

  let n = 0;
  for (const [file, entry] of Object.entries(matrix.files)) {
    const dtypes = entry.dtype
      ? Object.entries(matrix.dtypeMacros).filter(([d]) => !entry.dtypes || entry.dtypes.includes(d))
      : [["-", null] as const];
    for (const set of entry.testDefines) {
      for (const [dtype, dtypeMacro] of dtypes) {
        const defines = Object.entries(set).map(([k, v]) => `-D${k}=${v}`);
        if (dtypeMacro) defines.unshift(`-D${dtypeMacro}`);
        const label =
          `${file} ${dtype} ${defines.filter((d) => !d.startsWith("-DKILN_DTYPE")).join(" ")}`.trim();
        const cubin = join(out, `${n++}.cubin`);
        it(label, async () => {
          const args = ["-cubin", "-arch=sm_90a", ...matrix.nvccFlags, ...defines, "-o", cubin, file];
          const r = await run(nvcc.path, args, KERNELS_DIR);
          if (r.code !== 0) assert.fail(`nvcc ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}`);
          const bytes = readFileSync(cubin);
          const listed = [...entry.kernels, ...(dtype === "fp32" ? [] : (entry.kernels16Bit ?? []))];
          const absent = listed.filter((k) => !cubinHasSymbol(bytes, k));
          assert.deepEqual(absent, [], `${file}: kernels listed in compile_matrix.json but not in the cubin`);
        });
      }
    }
  }
});

// kernels/pdl.cuh's rule, checked in each kernel's PTX (the compiler's order, before ptxas): every
// exported kernel executes griddepcontrol.wait on every path before any global memory access, call or
// return, then griddepcontrol.launch_dependents. Only gemv.cu's kernels may load before the wait (their
// weight prefetch: streaming ld.global.cs), rmsnorm.cu's (their weight vector: ld.global.nc),
// attention_decode (read-only ld.global.nc of the step metadata and of the K/V rows cached by earlier
// steps, which the kernel ahead cannot be writing; attention_decode_batch also copies those rows into
// shared memory with cp.async.cg.shared.global, and commits the group, or, where its vectors are
// narrower than 16 bytes (the `_kv8` kernels' FP8 rows and their scales), by plain st.shared: its own
// shared memory, which no other kernel sees; attention_decode_mma, its _rope entry and its _kv8 entry
// likewise, by cp.async: 16 bytes, or 4 through L1 (cp.async.ca: an FP8 row's scale)), a carried
// norm's producer (ld.global.cg of the residual, written two or more kernels back), and gemm_wo.cu's
// GEMMs (their first stages' weight bytes, by cp.async.cg.shared.global, committed after the wait). The
// `_kv8` kernels (FP8 KV pools) follow their plain ones. Any kernel may use its own local memory
// (ld.local / st.local: register spills, and local arrays such as cosf/sinf's large-argument reduction,
// which the fused-RoPE decode kernels run before their wait): private to the thread, no kernel else
// reads or writes it.
const WEIGHT_PREFETCH = /^gemv_/;
const RESIDUAL_PREFETCH = /^gemv_\w+_addcarry$/;
const NORM_WEIGHT_PREFETCH = /^(add_)?rms_norm(_q8)?$/;
const EARLIER_WRITES_READ = /^attention_decode(_batch|_mma)?(_rope)?(_c[248])?(_kv8)?$/;
const EARLIER_WRITES_COPIED = /^attention_decode_(batch(_rope)?(_kv8)?|mma(_rope|_kv8)?)$/;
const WEIGHT_COPIED = /^gemm_(wo\d|zp)_m/;
/** Opcodes that must not run before the wait (parameter loads aside). */
const BEFORE_WAIT_FORBIDDEN = /^(ld|ldu|st|atom|red|cp|tex|suld|sust|call|ret|exit|mbarrier)\b/;

/** The PDL-rule violations in the body of one `.entry` of a PTX file (empty when it follows the rule). */
function pdlViolations(name: string, body: string): string[] {
  const lines = body.split("\n").map((l) => l.trim());
  const wait = lines.findIndex((l) => l.startsWith("griddepcontrol.wait"));
  if (wait < 0) return ["no griddepcontrol.wait"];
  const problems: string[] = [];
  if (!lines.slice(wait).some((l) => l.startsWith("griddepcontrol.launch_dependents"))) {
    problems.push("no griddepcontrol.launch_dependents after the wait");
  }
  const labelsBefore = new Set<string>();
  const targets: string[] = [];
  for (const line of lines.slice(0, wait)) {
    const label = /^(\$?[\w$]+):$/.exec(line);
    if (label) {
      labelsBefore.add(label[1]);
      continue;
    }
    const op = line.replace(/^@!?%\w+\s+/, "").split(/[\s;]/)[0];
    if (op === "bra" || op === "bra.uni") {
      targets.push(/bra(?:\.uni)?\s+([\w$]+)/.exec(line)?.[1] ?? "?");
      continue;
    }
    if (!BEFORE_WAIT_FORBIDDEN.test(op) || op.startsWith("ld.param")) continue;
    if (/^(ld|st)\.local\b/.test(op)) continue;
    if (WEIGHT_PREFETCH.test(name) && op.startsWith("ld.global.cs")) continue;
    if (RESIDUAL_PREFETCH.test(name) && op.startsWith("ld.global.cg")) continue;
    if (EARLIER_WRITES_READ.test(name) && op.startsWith("ld.global.nc")) continue;
    if (EARLIER_WRITES_COPIED.test(name) && /^cp\.async\.(c[ag]\.shared\.global|commit_group)$/.test(op))
      continue;
    if (EARLIER_WRITES_COPIED.test(name) && op.startsWith("st.shared")) continue;
    if (NORM_WEIGHT_PREFETCH.test(name) && op.startsWith("ld.global.nc")) continue;
    if (WEIGHT_COPIED.test(name) && op === "cp.async.cg.shared.global") continue;
    problems.push(`\`${line}\` before griddepcontrol.wait`);
  }
  // Branches before the wait must land before it too, so every path reaches it.
  for (const t of targets)
    if (!labelsBefore.has(t)) problems.push(`branch to ${t} skips griddepcontrol.wait`);
  return problems;
}

describe("kernels follow the PDL rule of kernels/pdl.cuh (PTX of sm_90a)", { concurrency: 2 }, () => {
  if ("missing" in nvcc) {
    nvccMissing(nvcc.missing);
    return;
  }
  const out = mkdtempSync(join(tmpdir(), "kiln-ptx-"));
  after(() => rmSync(out, { recursive: true, force: true }));
  let n = 0;
  for (const [file, entry] of Object.entries(matrix.files)) {
    const defines = Object.entries(entry.testDefines[0]).map(([k, v]) => `-D${k}=${v}`);
    if (entry.dtype) defines.unshift(`-D${matrix.dtypeMacros.bf16}`);
    const ptxPath = join(out, `${n++}.ptx`);
    it(file, async () => {
      const args = ["-ptx", "-arch=sm_90a", ...matrix.nvccFlags, ...defines, "-o", ptxPath, file];
      const r = await run(nvcc.path, args, KERNELS_DIR);
      if (r.code !== 0) assert.fail(`nvcc ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}`);
      const ptx = readFileSync(ptxPath, "utf8");
      const starts = [...ptx.matchAll(/\.entry\s+(\w+)\s*\(/g)].map((m) => ({
        name: m[1],
        at: m.index ?? 0,
      }));
      assert.deepEqual(
        starts.map((s) => s.name).sort(),
        [...entry.kernels, ...(entry.dtype ? (entry.kernels16Bit ?? []) : [])].sort(),
        `${file}: PTX entries vs compile_matrix.json`,
      );
      const problems: string[] = [];
      starts.forEach((s, i) => {
        const body = ptx.slice(s.at, i + 1 < starts.length ? starts[i + 1].at : ptx.length);
        for (const p of pdlViolations(s.name, body)) problems.push(`${s.name}: ${p}`);
      });
      assert.deepEqual(problems, [], `${file}: kernels that break the PDL rule`);
    });
  }
});

// attention_decode_mma is built for 3 CTAs of 128 threads per SM (__launch_bounds__(128, 3)): ptxas must
// fit a thread in 65,536 / (3 × 128) registers, rounded down to its allocation unit of 8 (168), without
// spilling (it would rather spill than lose the third CTA), and 3 CTAs' shared memory (static, plus the
// dynamic DECODE_MMA_SMEM_BYTES, plus 1 KiB reserved each) must fit sm_90's 228 KiB. Its fused-RoPE entry
// attention_decode_mma_rope likewise (and the FP8 pools' attention_decode_mma_kv8, with its
// DECODE_MMA_KV8_SMEM_BYTES), the rope entry but for a 32-byte stack frame: cosf/sinf's argument reduction for
// large angles keeps its words in local memory (rope_qkv_fused has the same frame), not a spill.
describe("attention_decode_mma fits 3 CTAs per SM (ptxas -v, sm_90a)", { concurrency: 2 }, () => {
  if ("missing" in nvcc) {
    nvccMissing(nvcc.missing);
    return;
  }
  const out = mkdtempSync(join(tmpdir(), "kiln-ptxas-"));
  after(() => rmSync(out, { recursive: true, force: true }));
  const file = "attention_decode_mma.cu";
  const sets = matrix.files[file].testDefines.filter((s) => s.DECODE_MMA_SMEM_BYTES !== undefined);
  it("the compile matrix has a set with its shared memory at head 128", () => {
    assert.ok(sets.some((s) => s.HEAD_DIM === 128));
  });
  let n = 0;
  for (const set of sets) {
    for (const dtype of ["bf16", "fp16"]) {
      const defines = [
        `-D${matrix.dtypeMacros[dtype]}`,
        ...Object.entries(set).map(([k, v]) => `-D${k}=${v}`),
      ];
      const cubin = join(out, `${n++}.cubin`);
      it(`${dtype} H ${set.NUM_HEADS}/${set.NUM_KV_HEADS}, D ${set.HEAD_DIM}`, async () => {
        const args = [
          "-cubin",
          "-arch=sm_90a",
          "-Xptxas",
          "-v",
          ...matrix.nvccFlags,
          ...defines,
          "-o",
          cubin,
          file,
        ];
        const r = await run(nvcc.path, args, KERNELS_DIR);
        if (r.code !== 0) assert.fail(`nvcc ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}`);
        const info = ptxasReport(r.stderr, "attention_decode_mma");
        assert.ok(info, `no ptxas -v report for attention_decode_mma:\n${r.stderr}`);
        assert.deepEqual(info.frame, [0, 0, 0], `stack, spill stores, spill loads:\n${info.text}`);
        assert.ok(
          info.registers <= 168,
          `${info.registers} registers: more than 168 leave room for 2 CTAs, not 3`,
        );
        const perCta = info.smem + Number(set.DECODE_MMA_SMEM_BYTES) + 1024;
        assert.ok(3 * perCta <= 228 * 1024, `3 × ${perCta} B of shared memory exceed 228 KiB`);
        const rope = ptxasReport(r.stderr, "attention_decode_mma_rope");
        assert.ok(rope, `no ptxas -v report for attention_decode_mma_rope:\n${r.stderr}`);
        assert.deepEqual(rope.frame.slice(1), [0, 0], `attention_decode_mma_rope spills:\n${rope.text}`);
        assert.ok(rope.frame[0] <= 32, `attention_decode_mma_rope: a ${rope.frame[0]}-byte stack frame`);
        assert.ok(
          rope.registers <= 168,
          `attention_decode_mma_rope: ${rope.registers} registers, not 3 CTAs`,
        );
        assert.ok(3 * (rope.smem + Number(set.DECODE_MMA_SMEM_BYTES) + 1024) <= 228 * 1024, "rope: 3 CTAs");
        const kv8 = ptxasReport(r.stderr, "attention_decode_mma_kv8");
        assert.ok(kv8, `no ptxas -v report for attention_decode_mma_kv8:\n${r.stderr}`);
        assert.deepEqual(kv8.frame, [0, 0, 0], `attention_decode_mma_kv8: stack, spills:\n${kv8.text}`);
        assert.ok(kv8.registers <= 168, `attention_decode_mma_kv8: ${kv8.registers} registers, not 3 CTAs`);
        assert.ok(3 * (kv8.smem + Number(set.DECODE_MMA_KV8_SMEM_BYTES) + 1024) <= 228 * 1024, "kv8: 3 CTAs");
      });
    }
  }
});

// gemv_fp8.cu's alternative decode GEMVs, from one compile per dtype: no spills for any of them;
//   tensor-core (gemv_fp8_mma.cuh; 256 threads, one m16n8k32 tile of 16 rows a block): at most 128
//   registers for the plain kernel (two blocks an SM: 64 KiB of weights in flight) and 255 for the gated
//   one (two tiles' loads in flight: one block an SM), and the static shared memory of their k-split
//   reduction (8 warps × 16 × 8 floats a tile);
//   conversion-free (the default for plain linears): at most 168 registers for gemv_fp8_bits_r4u2w4
//   (three 128-thread blocks an SM, as gemv_fp8_r2u8w4).
describe("gemv_fp8_mma and gemv_fp8_bits kernels: no spills (ptxas -v, sm_90a)", { concurrency: 2 }, () => {
  if ("missing" in nvcc) {
    nvccMissing(nvcc.missing);
    return;
  }
  const out = mkdtempSync(join(tmpdir(), "kiln-ptxas-fp8-"));
  after(() => rmSync(out, { recursive: true, force: true }));
  const file = "gemv_fp8.cu";
  const mma = matrix.files[file].kernels.filter((k) => k.startsWith("gemv_fp8_mma"));
  const bits = matrix.files[file].kernels.filter((k) => k.startsWith("gemv_fp8_bits"));
  it("the compile matrix lists the mma family's plain kernel and five gated ones, bits's plain one", () => {
    assert.ok(mma.includes("gemv_fp8_mma"));
    assert.equal(mma.filter((k) => k.startsWith("gemv_fp8_mma_gated_")).length, 5);
    assert.deepEqual(bits, ["gemv_fp8_bits_r4u2w4"]);
  });
  for (const dtype of Object.keys(matrix.dtypeMacros)) {
    it(dtype, async () => {
      const cubin = join(out, `${dtype}.cubin`);
      const args = ["-cubin", "-arch=sm_90a", "-Xptxas", "-v", ...matrix.nvccFlags];
      args.push(`-D${matrix.dtypeMacros[dtype]}`, "-o", cubin, file);
      const r = await run(nvcc.path, args, KERNELS_DIR);
      if (r.code !== 0) assert.fail(`nvcc ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}`);
      for (const kernel of [...mma, ...bits]) {
        const info = ptxasReport(r.stderr, kernel);
        assert.ok(info, `no ptxas -v report for ${kernel}:\n${r.stderr}`);
        assert.deepEqual(info.frame, [0, 0, 0], `${kernel}: stack, spill stores, spill loads`);
        if (mma.includes(kernel)) {
          const gated = kernel !== "gemv_fp8_mma";
          assert.ok(info.registers <= (gated ? 255 : 128), `${kernel}: ${info.registers} registers`);
          assert.equal(info.smem, (gated ? 2 : 1) * 8 * 16 * 8 * 4, `${kernel}: static shared memory`);
        } else {
          assert.ok(info.registers <= 168, `${kernel}: ${info.registers} registers`);
        }
      }
    });
  }
});
