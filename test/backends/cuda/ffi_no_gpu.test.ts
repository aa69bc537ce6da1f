// The CUDA binding layer on a machine without a GPU: the error a missing driver gives, the library
// search order, kernel-argument packing, NVRTC options and struct decoding (all pure), and NVRTC
// itself where it is installed (it needs no GPU).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { CudaDevice } from "../../../src/backends/cuda/device/device.ts";
import { decodeHeuristicResult, MATMUL_ALGO_BYTES } from "../../../src/backends/cuda/ffi/cublaslt.ts";
import { dim3 } from "../../../src/backends/cuda/ffi/driver_enums.ts";
import { CudaUnavailableError, NvrtcError } from "../../../src/backends/cuda/ffi/errors.ts";
import type { DevicePtr } from "../../../src/backends/cuda/ffi/handles.ts";
import { kernelArgsBytes, packKernelArgs } from "../../../src/backends/cuda/ffi/kernel_args.ts";
import {
  LIBRARIES,
  type LibraryFs,
  libraryCandidates,
  locateLibrary,
  pythonSitePackages,
} from "../../../src/backends/cuda/ffi/library.ts";
import {
  compileCuda,
  cudaIncludeDirs,
  loadNvrtc,
  nvrtcOptions,
} from "../../../src/backends/cuda/ffi/nvrtc.ts";
import { InvalidArgumentError } from "../../../src/errors.ts";

/** A fake file system: a set of files; dirs are implied by their paths. */
function fakeFs(files: string[]): LibraryFs {
  const set = new Set(files);
  const dirs = new Map<string, Set<string>>();
  for (const f of files) {
    const parts = f.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/") || "/";
      if (!dirs.has(dir)) dirs.set(dir, new Set());
      dirs.get(dir)?.add(parts[i]);
    }
  }
  return {
    exists: (p) => set.has(p) || dirs.has(p),
    listDir: (p) => [...(dirs.get(p) ?? [])].sort(),
  };
}

describe("CUDA unavailable", () => {
  test("CudaDevice.open() without a driver throws CudaUnavailableError saying what was tried", (t) => {
    let device: CudaDevice | null = null;
    try {
      device = CudaDevice.open();
    } catch (e) {
      assert.ok(e instanceof CudaUnavailableError, `expected CudaUnavailableError, got ${e}`);
      assert.match(e.message, /libcuda\.so\.1/);
      assert.match(e.message, /--backend cpu/);
      assert.equal(e.exitCode, 2);
      return;
    }
    device.dispose();
    t.skip("a CUDA device is present here; the GPU suite covers it");
  });
});

describe("library search order", () => {
  const env = { CUDA_HOME: "/opt/cuda-13.0", HOME: "/home/u", VIRTUAL_ENV: "/venv" };
  const sp = "/venv/lib/python3.12/site-packages";

  test("per soname, newest first: loader path, CUDA_HOME, /usr/local/cuda, targets dir, pip wheels", () => {
    const fs = fakeFs([`${sp}/nvidia/cu13/lib/libnvrtc.so.13`]);
    assert.deepEqual(libraryCandidates(LIBRARIES.nvrtc, env, fs), [
      "libnvrtc.so.13",
      "/opt/cuda-13.0/lib64/libnvrtc.so.13",
      "/usr/local/cuda/lib64/libnvrtc.so.13",
      "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13",
      `${sp}/nvidia/cu13/lib/libnvrtc.so.13`,
      `${sp}/nvidia/cuda_nvrtc/lib/libnvrtc.so.13`,
      "libnvrtc.so.12",
      "/opt/cuda-13.0/lib64/libnvrtc.so.12",
      "/usr/local/cuda/lib64/libnvrtc.so.12",
      "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.12",
      `${sp}/nvidia/cu13/lib/libnvrtc.so.12`,
      `${sp}/nvidia/cuda_nvrtc/lib/libnvrtc.so.12`,
    ]);
  });

  test("the driver is looked up through the loader only", () => {
    assert.deepEqual(libraryCandidates(LIBRARIES.driver, env, fakeFs([])), ["libcuda.so.1"]);
  });

  test("CUDA_PATH is used too, duplicates are dropped", () => {
    const c = libraryCandidates(LIBRARIES.cublasLt, { CUDA_PATH: "/usr/local/cuda" }, fakeFs([]));
    assert.deepEqual(c.slice(0, 4), [
      "libcublasLt.so.13",
      "/usr/local/cuda/lib64/libcublasLt.so.13",
      "/usr/local/cuda/targets/x86_64-linux/lib/libcublasLt.so.13",
      "libcublasLt.so.12",
    ]);
  });

  test("site-packages are found under venv, conda, user, pyenv and system prefixes", () => {
    const fs = fakeFs([
      "/venv/lib/python3.12/site-packages/x",
      "/conda/lib/python3.11/site-packages/x",
      "/home/u/.local/lib/python3.10/site-packages/x",
      "/home/u/.pyenv/versions/3.11.7/lib/python3.11/site-packages/x",
      "/usr/lib/python3/dist-packages/x",
      "/usr/lib/python3.11/config/x", // no site-packages: ignored
      "/usr/lib/perl5/x",
    ]);
    assert.deepEqual(pythonSitePackages({ ...env, CONDA_PREFIX: "/conda" }, fs), [
      "/venv/lib/python3.12/site-packages",
      "/conda/lib/python3.11/site-packages",
      "/home/u/.local/lib/python3.10/site-packages",
      "/home/u/.pyenv/versions/3.11.7/lib/python3.11/site-packages",
      "/usr/lib/python3/dist-packages",
    ]);
  });

  test("locate: the first candidate that exists and opens wins; a newer soname beats an earlier dir", () => {
    const fs = fakeFs([
      "/opt/cuda-13.0/lib64/libcublasLt.so.12",
      `${sp}/nvidia/cu13/lib/libcublasLt.so.13`,
      "/usr/local/cuda/lib64/libcublasLt.so.13",
    ]);
    const opened: string[] = [];
    const r = locateLibrary(LIBRARIES.cublasLt, {
      env,
      fs,
      open: (c) => {
        opened.push(c);
        if (!c.startsWith("/")) throw new Error(`${c}: cannot open shared object file`);
        if (c.startsWith("/usr/local")) throw new Error("wrong ELF class");
        return `handle:${c}`;
      },
    });
    assert.equal(r.path, `${sp}/nvidia/cu13/lib/libcublasLt.so.13`);
    assert.equal(r.handle, `handle:${sp}/nvidia/cu13/lib/libcublasLt.so.13`);
    assert.deepEqual(opened, ["libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so.13", r.path]);
  });

  test("locate: nothing found → CudaUnavailableError listing every attempt and the fix", () => {
    const fs = fakeFs(["/usr/local/cuda/lib64/libnvrtc.so.13"]);
    assert.throws(
      () =>
        locateLibrary(LIBRARIES.nvrtc, {
          env: {},
          fs,
          open: (c) => {
            throw new Error(`dlopen ${c} failed`);
          },
        }),
      (e: unknown) => {
        assert.ok(e instanceof CudaUnavailableError);
        // One line with the fix; every attempt is a detail line (printed with --verbose).
        assert.doesNotMatch(e.message, /\n/);
        assert.match(e.message, /could not load NVRTC/);
        assert.match(e.message, /install the NVIDIA driver \/ CUDA 13 toolkit, or use --backend cpu/);
        assert.match(e.message, /--verbose lists the 5 places searched/);
        const details = e.details.join("\n");
        assert.match(details, /libnvrtc\.so\.13 \(loader path\): dlopen libnvrtc\.so\.13 failed/);
        assert.match(details, /\/usr\/local\/cuda\/lib64\/libnvrtc\.so\.13: dlopen .* failed/);
        assert.match(
          details,
          /libnvrtc\.so\.12.* in .*\/usr\/local\/cuda\/targets\/x86_64-linux\/lib.*: not found/,
        );
        assert.equal(e.attempts.length, 5);
        assert.equal(e.details.length, 5);
        return true;
      },
    );
  });
});

describe("kernel argument packing", () => {
  test("pointer table then 8-byte value slots, little-endian, each pointer addressing its slot", () => {
    const base = 0x7f00_0000_1000n;
    const args = [
      { ptr: 0xdead_beef_0000n as DevicePtr },
      { i32: -7 },
      { u32: 0xffff_fffe },
      { f32: 1.5 },
      { i64: -(2n ** 40n) },
    ];
    const bytes = packKernelArgs(args, base);
    assert.equal(bytes.byteLength, kernelArgsBytes(5));
    assert.equal(bytes.byteLength, 80);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < 5; i++) assert.equal(v.getBigUint64(8 * i, true), base + 40n + 8n * BigInt(i));
    assert.equal(v.getBigUint64(40, true), 0xdead_beef_0000n);
    assert.equal(v.getInt32(48, true), -7);
    assert.equal(v.getUint32(52, true), 0, "the unused half of a 4-byte slot is zero");
    assert.equal(v.getUint32(56, true), 0xffff_fffe);
    assert.equal(v.getFloat32(64, true), 1.5);
    assert.equal(v.getBigInt64(72, true), -(2n ** 40n));
  });

  test("packs into a caller's block (reused between launches) and handles no arguments", () => {
    const block = new Uint8Array(64).fill(0xaa);
    packKernelArgs([{ i32: 1 }], 0n, block);
    assert.deepEqual([...block.subarray(0, 16)], [8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(packKernelArgs([], 0n).byteLength, 0);
    assert.throws(() => packKernelArgs([{ i32: 1 }, { i32: 2 }], 0n, new Uint8Array(16)), RangeError);
  });

  test("out-of-range or mistyped values are named errors", () => {
    assert.throws(() => packKernelArgs([{ i32: 2 ** 31 }], 0n), InvalidArgumentError);
    assert.throws(() => packKernelArgs([{ i32: 1.5 }], 0n), /argument 0 \(i32\) is 1\.5/);
    assert.throws(() => packKernelArgs([{ u32: -1 }], 0n), InvalidArgumentError);
    assert.throws(() => packKernelArgs([{ f32: 0 }, { i64: 2n ** 63n }], 0n), /argument 1 \(i64\)/);
    assert.throws(() => packKernelArgs([{ ptr: -1n as DevicePtr }], 0n), InvalidArgumentError);
    assert.throws(() => packKernelArgs([{ x: 1 } as never], 0n), /no known type key/);
  });

  test("launch dimensions", () => {
    assert.deepEqual(dim3(7), [7, 1, 1]);
    assert.deepEqual(dim3([4, 2]), [4, 2, 1]);
    assert.deepEqual(dim3([4, 2, 3]), [4, 2, 3]);
    assert.throws(() => dim3(0), RangeError);
    assert.throws(() => dim3([1, 0.5]), RangeError);
  });
});

describe("NVRTC options", () => {
  test("arch, C++17, device default, includes before the CUDA dir, defines; no fast math by default", () => {
    const opts = nvrtcOptions(
      { arch: "sm_90a", defines: { HEAD_DIM: 128, EPS: "1e-6f" }, includeDirs: ["/k"] },
      ["/usr/local/cuda/include"],
    );
    assert.deepEqual(opts, [
      "--gpu-architecture=sm_90a",
      "--std=c++17",
      "-default-device",
      "-I/k",
      "-I/usr/local/cuda/include",
      "-DHEAD_DIM=128",
      "-DEPS=1e-6f",
    ]);
    assert.ok(nvrtcOptions({ fastMath: true }, []).includes("--use_fast_math"));
    assert.equal(nvrtcOptions({}, [])[0], "--gpu-architecture=sm_90a");
  });

  test("a virtual arch or a bad define name is refused", () => {
    assert.throws(() => nvrtcOptions({ arch: "compute_90" }, []), InvalidArgumentError);
    assert.throws(() => nvrtcOptions({ defines: { "A-B": 1 } }, []), /not a C identifier/);
  });

  test("the CUDA include dir: next to the library first, then the toolkit roots", () => {
    const fs = fakeFs([
      "/venv/sp/nvidia/cu13/include/cuda_fp16.h",
      "/usr/local/cuda/include/cuda_fp16.h",
      "/opt/cuda/include/cuda_fp16.h",
    ]);
    assert.deepEqual(cudaIncludeDirs("/venv/sp/nvidia/cu13/lib/libnvrtc.so.13", {}, fs), [
      "/venv/sp/nvidia/cu13/include",
    ]);
    assert.deepEqual(cudaIncludeDirs("libnvrtc.so.13", { CUDA_HOME: "/opt/cuda" }, fs), [
      "/opt/cuda/include",
    ]);
    assert.deepEqual(cudaIncludeDirs("/x/lib/libnvrtc.so.12", {}, fs), ["/usr/local/cuda/include"]);
    assert.deepEqual(cudaIncludeDirs("/x/lib/libnvrtc.so.12", {}, fakeFs([])), []);
  });
});

describe("cuBLASLt structs", () => {
  test("cublasLtMatmulHeuristicResult_t: algo[64], workspaceSize@64, state@72, wavesCount@76", () => {
    const raw = new Uint8Array(96);
    for (let i = 0; i < MATMUL_ALGO_BYTES; i++) raw[i] = i;
    const v = new DataView(raw.buffer);
    v.setBigUint64(64, 4194304n, true);
    v.setInt32(72, 15, true);
    v.setFloat32(76, 0.75, true);
    const { result, state } = decodeHeuristicResult(raw);
    assert.equal(state, 15);
    assert.equal(result.workspaceBytes, 4194304);
    assert.equal(result.wavesCount, 0.75);
    assert.deepEqual([...result.algo], [...Array(64).keys()]);
    raw[0] = 99;
    assert.equal(result.algo[0], 0, "the algo is a copy");
  });
});

describe("koffi stays inside src/backends/cuda/ffi", () => {
  test("no other source file imports koffi", () => {
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.(ts|js|mjs)$/.test(e.name) && /from\s+["']koffi["']/.test(readFileSync(p, "utf8"))) {
          const rel = relative("src", p);
          if (!rel.startsWith(join("backends", "cuda", "ffi"))) offenders.push(rel);
        }
      }
    };
    walk("src");
    assert.deepEqual(offenders, []);
  });
});

/** NVRTC needs no GPU; where it is not installed these tests skip with the reason. */
function nvrtcSkipReason(): string | false {
  try {
    loadNvrtc();
    return false;
  } catch (e) {
    if (e instanceof CudaUnavailableError) return "NVRTC not installed here (no libnvrtc.so.13/.12 found)";
    throw e;
  }
}

describe("NVRTC compiles", { skip: nvrtcSkipReason() }, () => {
  test("a kernel with defines and cuda_bf16.h to an sm_90a cubin (ELF)", () => {
    const src = `#include <cuda_bf16.h>
extern "C" __global__ void saxpy(float a, const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i] + SHIFT;
}`;
    const { cubin } = compileCuda(src, "saxpy.cu", { arch: "sm_90a", defines: { SHIFT: "1.0f" } });
    assert.ok(cubin.byteLength > 100);
    assert.deepEqual([...cubin.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
  });

  test("a compile error is an NvrtcError carrying the log line", () => {
    assert.throws(
      () => compileCuda(`extern "C" __global__ void bad() { undefined_thing = 3; }`, "bad.cu"),
      (e: unknown) => {
        assert.ok(e instanceof NvrtcError);
        assert.equal(e.errorName, "NVRTC_ERROR_COMPILATION");
        assert.match(e.log, /bad\.cu\(1\): error: identifier "undefined_thing" is undefined/);
        assert.match(e.message, /undefined_thing/);
        assert.doesNotMatch(e.message, /\n/);
        assert.ok(e.details.some((l) => /undefined_thing/.test(l)));
        return true;
      },
    );
  });
});
