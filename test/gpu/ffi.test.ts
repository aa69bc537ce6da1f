// The CUDA binding and device layers on a real GPU: properties, memory, copies, NVRTC kernels with
// every argument type, events, graph capture, cuBLASLt GEMMs against a CPU reference, and no leaks.
// Skipped with a visible reason where there is no GPU (or no NVRTC / cuBLASLt for their parts).
//
// GEMM tolerances (error of y[i,j] relative to Σ_k |x[i,k]·W[j,k]|, the scale of its rounding error):
//   fp32 → fp32  1e-5   true fp32 accumulation gives ~√k·2⁻²⁴ ≈ 1e-6; TF32 inputs (2⁻¹¹) would give ≳ 1e-5
//   bf16 → bf16  1e-2   inputs are pre-rounded to bf16, so only fp32 accumulation (tiny) and the bf16
//                       rounding of y (≤ 2⁻⁹ ≈ 2e-3) remain
//   fp16 → fp16  1e-2   same argument with fp16 output rounding (≤ 2⁻¹¹)
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  CudaDevice,
  CudaModule,
  CudaUnavailableError,
  compileToCubin,
  DeviceBuffer,
  Event,
  Gemm,
  type GemmConfig,
  GraphCapture,
  NvrtcError,
  PinnedBuffer,
  Stream,
  timeOnStream,
} from "../../src/backends/cuda/device/index.ts";
import { CUBLASLT_ALGO_CONFIG, loadCublasLt } from "../../src/backends/cuda/ffi/cublaslt.ts";
import { KernelArgumentError } from "../../src/backends/cuda/ffi/errors.ts";
import { loadNvrtc } from "../../src/backends/cuda/ffi/nvrtc.ts";
import { bf16ToF32, type DTypeName, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/dtype.ts";

function unavailable(probe: () => void, what: string): string | false {
  try {
    probe();
    return false;
  } catch (e) {
    if (e instanceof CudaUnavailableError) return `${what}: ${e.message.split("\n")[0]}`;
    throw e;
  }
}
const noGpu = unavailable(() => CudaDevice.open().dispose(), "no CUDA device");
const noNvrtc = noGpu || unavailable(() => loadNvrtc(), "no NVRTC");
const noCublasLt = noGpu || unavailable(() => loadCublasLt(), "no cuBLASLt");

/** Deterministic uniform values in [-1, 1). */
function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  }
  return out;
}

const KERNELS = `
extern "C" __global__ void saxpy(float a, const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i] + SHIFT;
}
// Writes its scalar arguments back, to check the packing of every KernelArg type.
extern "C" __global__ void echo(long long* out, int a, unsigned int b, float c, long long d) {
  out[0] = a;
  out[1] = b;
  out[2] = __float_as_int(c);
  out[3] = d;
}
// Uses all of its dynamic shared memory: out[i] = sum of a row written through shared memory.
extern "C" __global__ void shared_sum(float* out, int words) {
  extern __shared__ float buf[];
  for (int i = threadIdx.x; i < words; i += blockDim.x) buf[i] = 1.0f;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int i = 0; i < words; i++) s += buf[i];
    out[0] = s;
  }
}
`;

describe("CUDA FFI on the GPU", { skip: noGpu }, () => {
  let device: CudaDevice;
  let stream: Stream;
  before(() => {
    device = CudaDevice.open();
    stream = Stream.create(device);
  });
  after(() => {
    stream?.dispose();
    device?.dispose();
  });

  test("device properties are sane", (t) => {
    const p = device.properties;
    t.diagnostic(
      `${p.name} ${p.sm} ${p.smCount} SMs ${(p.totalMemBytes / 2 ** 30).toFixed(1)} GiB driver ${p.driverVersion}`,
    );
    assert.ok(p.name.length > 0);
    assert.match(p.sm, /^sm_\d{2,3}$/);
    assert.equal(p.sm, `sm_${p.computeCapability[0]}${p.computeCapability[1]}`);
    assert.ok(p.computeCapability[0] >= 7);
    assert.ok(p.smCount > 0 && p.smCount < 1000);
    assert.ok(p.totalMemBytes > 2 ** 30);
    assert.ok(p.maxSharedMemPerBlockOptin >= 48 * 1024);
    assert.ok(p.driverVersion >= 12000);
    if (p.computeCapability[0] === 9) assert.equal(p.nvrtcArch, "sm_90a");
  });

  test("memory info reports free ≤ total", () => {
    const { free, total } = device.memoryInfo();
    assert.ok(free > 0 && free <= total, `free ${free} total ${total}`);
    assert.ok(total <= device.totalMemBytes);
  });

  test("alloc / upload / download round trip at odd sizes, with offsets", () => {
    for (const n of [1, 7, 769, 5125]) {
      const src = random(n, n);
      using buf = DeviceBuffer.alloc(device, 4 * (n + 3));
      buf.upload(src, 12);
      assert.deepEqual(buf.download(new Float32Array(n), 12), src);
      const head = new Float32Array(2);
      buf.upload(Float32Array.of(5, 6));
      assert.deepEqual(buf.download(head), Float32Array.of(5, 6));
      assert.deepEqual(buf.download(new Float32Array(1), 12 + 4 * (n - 1)), src.subarray(n - 1));
    }
    using bytes = DeviceBuffer.from(device, Uint8Array.of(1, 2, 3, 4, 5, 6, 7));
    assert.deepEqual(bytes.download(new Uint8Array(7)), Uint8Array.of(1, 2, 3, 4, 5, 6, 7));
    assert.throws(() => bytes.upload(new Uint8Array(8)), RangeError);
  });

  test("async copies through pinned memory and device-to-device", () => {
    const n = 769;
    const src = random(n, 1);
    using pinned = PinnedBuffer.alloc(device, 4 * n);
    new Float32Array(pinned.arrayBuffer()).set(src);
    using a = DeviceBuffer.alloc(device, 4 * n);
    using b = DeviceBuffer.alloc(device, 4 * n);
    a.uploadAsync(stream, pinned);
    b.copyFromAsync(stream, a, 4 * n);
    stream.synchronize(); // pinned copies are truly asynchronous: wait before reusing the memory
    new Float32Array(pinned.arrayBuffer()).fill(0);
    b.downloadAsync(stream, pinned);
    stream.synchronize();
    assert.deepEqual(new Float32Array(pinned.arrayBuffer()), src);
    const back = new Float32Array(n);
    a.downloadAsync(stream, back);
    assert.deepEqual(back, src);
  });

  test("memset: bytes, u32 words and f32 values, with offset and count", () => {
    using buf = DeviceBuffer.alloc(device, 4 * 769);
    buf.fillBytes(stream, 0xab);
    buf.fillF32(stream, 2.5, 16, 10);
    buf.fillU32(stream, 0xdeadbeef, 4 * 700);
    stream.synchronize();
    const u32 = buf.download(new Uint32Array(769));
    const f32 = new Float32Array(u32.buffer);
    assert.equal(u32[0], 0xabababab);
    assert.equal(u32[3], 0xabababab);
    for (let i = 4; i < 14; i++) assert.equal(f32[i], 2.5);
    assert.equal(u32[14], 0xabababab);
    assert.equal(u32[699], 0xabababab);
    for (let i = 700; i < 769; i++) assert.equal(u32[i], 0xdeadbeef);
  });

  describe("NVRTC kernels", { skip: noNvrtc }, () => {
    let module: CudaModule;
    before(() => {
      const cubin = compileToCubin(KERNELS, "ffi_test.cu", {
        arch: device.properties.nvrtcArch,
        defines: { SHIFT: "0.5f" },
      });
      module = CudaModule.load(device, cubin);
    });
    after(() => module?.dispose());

    test("saxpy with a define, odd size", () => {
      const n = 769;
      const x = random(n, 2);
      const y = random(n, 3);
      using dx = DeviceBuffer.from(device, x);
      using dy = DeviceBuffer.from(device, y);
      module
        .kernel("saxpy")
        .launch(stream, Math.ceil(n / 128), 128, 0, [
          { f32: 3 },
          { ptr: dx.ptr },
          { ptr: dy.ptr },
          { i32: n },
        ]);
      stream.synchronize();
      const out = dy.download(new Float32Array(n));
      for (let i = 0; i < n; i++) assert.ok(Math.abs(out[i] - (3 * x[i] + y[i] + 0.5)) < 1e-5, `y[${i}]`);
    });

    test("every KernelArg type reaches the kernel intact", () => {
      using out = DeviceBuffer.alloc(device, 4 * 8);
      module
        .kernel("echo")
        .launch(stream, 1, 1, 0, [
          { ptr: out.ptr },
          { i32: -123456 },
          { u32: 0xfffffff0 },
          { f32: -1.25 },
          { i64: -(2n ** 40n) - 3n },
        ]);
      stream.synchronize();
      const v = out.download(new BigInt64Array(4));
      assert.equal(v[0], -123456n);
      assert.equal(v[1], 0xfffffff0n);
      assert.equal(Number(v[2]), new Int32Array(Float32Array.of(-1.25).buffer)[0]);
      assert.equal(v[3], -(2n ** 40n) - 3n);
    });

    test("more than 48 KiB of dynamic shared memory is opted in", () => {
      const words = Math.min(64 * 1024, device.properties.maxSharedMemPerBlockOptin) / 4;
      using out = DeviceBuffer.alloc(device, 4);
      module.kernel("shared_sum").launch(stream, 1, 256, 4 * words, [{ ptr: out.ptr }, { i32: words }]);
      stream.synchronize();
      assert.equal(out.download(new Float32Array(1))[0], words);
    });

    test("a compile error raises NvrtcError with the log line", () => {
      assert.throws(
        () =>
          compileToCubin(`extern "C" __global__ void k() { nope(); }`, "broken.cu", {
            arch: device.properties.nvrtcArch,
          }),
        (e: unknown) =>
          e instanceof NvrtcError && /broken\.cu\(1\): error: identifier "nope" is undefined/.test(e.log),
      );
    });

    test("a missing kernel name is a CudaError naming it", () => {
      assert.throws(() => module.kernel("no_such_kernel"), /no_such_kernel/);
    });

    test("a launch with the wrong number of arguments is a KernelArgumentError, not a crash", () => {
      // saxpy(a, x, y, n): cuLaunchKernel would read a fourth argument pointer past a 3-entry array.
      const dx = DeviceBuffer.alloc(device, 16);
      try {
        assert.throws(
          () =>
            module.kernel("saxpy").launch(stream, 1, 32, 0, [{ f32: 1 }, { ptr: dx.ptr }, { ptr: dx.ptr }]),
          (e) =>
            e instanceof KernelArgumentError &&
            /saxpy takes 4 arguments but was launched with 3/.test(e.message),
        );
      } finally {
        dx.dispose();
      }
    });

    test("events time a kernel (> 0 ms)", () => {
      const n = 1 << 20;
      using dx = DeviceBuffer.alloc(device, 4 * n);
      using dy = DeviceBuffer.alloc(device, 4 * n);
      dx.fillF32(stream, 1);
      dy.fillF32(stream, 0);
      const ms = timeOnStream(stream, () => {
        for (let r = 0; r < 10; r++) {
          module
            .kernel("saxpy")
            .launch(stream, n / 256, 256, 0, [{ f32: 1 }, { ptr: dx.ptr }, { ptr: dy.ptr }, { i32: n }]);
        }
      });
      assert.ok(ms > 0, `${ms} ms`);
      using start = Event.create(device);
      using end = Event.create(device);
      start.record(stream);
      module
        .kernel("saxpy")
        .launch(stream, n / 256, 256, 0, [{ f32: 1 }, { ptr: dx.ptr }, { ptr: dy.ptr }, { i32: n }]);
      end.record(stream);
      assert.ok(end.elapsedMsSince(start) > 0);
      assert.equal(dy.download(new Float32Array(1))[0], 11 * 1.5);
    });

    test("graph capture of a memset and 3 launches, replayed twice, gives the expected result both times", () => {
      const n = 769;
      const x = random(n, 4);
      using dx = DeviceBuffer.from(device, x);
      using dy = DeviceBuffer.alloc(device, 4 * n);
      const saxpy = module.kernel("saxpy");
      // `using` ends a capture that failed midway (abort is a no-op after end()).
      const graph = (() => {
        using capture = GraphCapture.begin(stream);
        dy.fillF32(stream, 0);
        for (const a of [1, 2, 3]) {
          saxpy.launch(stream, Math.ceil(n / 128), 128, 0, [
            { f32: a },
            { ptr: dx.ptr },
            { ptr: dy.ptr },
            { i32: n },
          ]);
        }
        return capture.end();
      })();
      try {
        for (let replay = 0; replay < 2; replay++) {
          dy.fillF32(stream, 99); // the graph's own memset must reset it
          graph.launch(stream);
          stream.synchronize();
          const out = dy.download(new Float32Array(n));
          for (let i = 0; i < n; i++) {
            assert.ok(Math.abs(out[i] - (6 * x[i] + 1.5)) < 1e-5, `replay ${replay} y[${i}] = ${out[i]}`);
          }
        }
      } finally {
        graph.dispose();
      }
    });
  });

  describe("cuBLASLt GEMM: y[m,n] = x[m,k] · W[n,k]ᵀ (+ bias)", { skip: noCublasLt }, () => {
    const SIZES: [number, number, number][] = [
      [1, 769, 7],
      [5, 33, 64],
      [128, 256, 512],
    ];
    const TOL: Record<DTypeName, number> = { fp32: 1e-5, bf16: 1e-2, fp16: 1e-2 };

    /** Operands rounded to `dtype` (as the device sees them), as fp32 values and as upload bits. */
    function operand(
      values: Float32Array,
      dtype: DTypeName,
    ): { f32: Float32Array; bits: Float32Array | Uint16Array } {
      if (dtype === "fp32") return { f32: values, bits: values };
      const bits = dtype === "bf16" ? f32ToBf16(values) : f32ToF16(values);
      return { f32: dtype === "bf16" ? bf16ToF32(bits) : f16ToF32(bits), bits };
    }

    /** Max over outputs of |y - ref| / Σ_k |x·w| (fp64 reference). */
    function gemmError(
      c: { m: number; n: number; k: number },
      x: Float32Array,
      w: Float32Array,
      y: Float32Array,
      bias?: Float32Array,
    ): number {
      let worst = 0;
      for (let i = 0; i < c.m; i++) {
        for (let j = 0; j < c.n; j++) {
          let ref = bias ? bias[j] : 0;
          let scale = bias ? Math.abs(bias[j]) : 0;
          for (let p = 0; p < c.k; p++) {
            const prod = x[i * c.k + p] * w[j * c.k + p];
            ref += prod;
            scale += Math.abs(prod);
          }
          worst = Math.max(worst, Math.abs(y[i * c.n + j] - ref) / (scale + 1e-30));
        }
      }
      return worst;
    }

    function runGemm(
      config: GemmConfig,
      seed: number,
      make: (c: GemmConfig) => Gemm = (c) => Gemm.create(device, c),
    ) {
      const { m, n, k, dtypeIn } = config;
      const dtypeOut = config.dtypeOut ?? dtypeIn;
      const x = operand(random(m * k, seed), dtypeIn);
      const w = operand(random(n * k, seed + 1), dtypeIn);
      const bias = config.bias ? operand(random(n, seed + 2), dtypeOut) : undefined;
      using gemm = make(config);
      using dx = DeviceBuffer.from(device, x.bits);
      using dw = DeviceBuffer.from(device, w.bits);
      using db = bias ? DeviceBuffer.from(device, bias.bits) : null;
      using dy = DeviceBuffer.alloc(device, m * n * (dtypeOut === "fp32" ? 4 : 2));
      dy.fillBytes(stream, 0xff); // NaN: every output must be written
      gemm.run(stream, dx, dw, dy, db ?? undefined);
      stream.synchronize();
      const y =
        dtypeOut === "fp32"
          ? dy.download(new Float32Array(m * n))
          : (dtypeOut === "bf16" ? bf16ToF32 : f16ToF32)(dy.download(new Uint16Array(m * n)));
      return { err: gemmError(config, x.f32, w.f32, y, bias?.f32), algo: gemm.algo };
    }

    for (const dtype of ["fp32", "bf16"] as const) {
      for (const [m, n, k] of SIZES) {
        test(`${dtype} (m,n,k) = (${m},${n},${k}) within ${TOL[dtype]}`, (t) => {
          const { err } = runGemm({ m, n, k, dtypeIn: dtype }, m * 1000 + n + k);
          t.diagnostic(`max error ${err.toExponential(2)}`);
          assert.ok(err <= TOL[dtype], `error ${err} > ${TOL[dtype]}`);
        });
      }
    }

    test("fp16, bf16 → fp32 output, and the bias epilogue", (t) => {
      const cases: GemmConfig[] = [
        { m: 5, n: 33, k: 64, dtypeIn: "fp16" },
        { m: 5, n: 33, k: 64, dtypeIn: "bf16", dtypeOut: "fp32" },
        { m: 5, n: 33, k: 64, dtypeIn: "fp32", bias: true },
        { m: 128, n: 256, k: 512, dtypeIn: "bf16", bias: true },
      ];
      for (const c of cases) {
        const { err } = runGemm(c, 7);
        const tol = TOL[c.dtypeOut ?? c.dtypeIn];
        t.diagnostic(`${JSON.stringify(c)} max error ${err.toExponential(2)}`);
        assert.ok(err <= tol, `${JSON.stringify(c)}: error ${err} > ${tol}`);
      }
    });

    test("a stored algorithm and a tuned one give the same results", (t) => {
      const config: GemmConfig = { m: 128, n: 256, k: 512, dtypeIn: "bf16" };
      const first = runGemm(config, 11);
      const restored = runGemm(config, 11, (c) => Gemm.create(device, c, { algo: first.algo }));
      assert.deepEqual(restored.algo, first.algo);
      assert.ok(restored.err <= TOL.bf16);
      const candidates = Gemm.heuristics(device, config, 4);
      assert.ok(candidates.length >= 1);
      // The configuration reader (gemm_candidates.ts describes algorithms with it): a split-K count
      // between 1 and k's 16-element steps, and a 16-bit cluster id read as such.
      for (const h of candidates) {
        const splits = loadCublasLt().algoConfig(h.algo, CUBLASLT_ALGO_CONFIG.SPLITK_NUM);
        assert.ok(splits >= 1 && splits <= 512 / 16, `split-K ${splits}`);
        assert.ok(loadCublasLt().algoConfig(h.algo, CUBLASLT_ALGO_CONFIG.CLUSTER_SHAPE_ID) < 2 ** 16);
      }
      let measured = 0;
      const tuned = runGemm(config, 11, (c) => {
        const g = Gemm.tune(device, c, { candidates: 4, iterations: 5 });
        measured = g.measuredMs ?? 0;
        return g;
      });
      t.diagnostic(`tuned: ${measured.toFixed(4)} ms, error ${tuned.err.toExponential(2)}`);
      assert.ok(measured > 0);
      assert.ok(tuned.err <= TOL.bf16);
    });

    test("GEMMs sharing one workspace: the same results, and the workspace outlives them", () => {
      using workspace = DeviceBuffer.alloc(device, 8 << 20);
      const shapes: GemmConfig[] = [
        { m: 320, n: 256, k: 512, dtypeIn: "bf16", maxWorkspaceBytes: 8 << 20 },
        { m: 72, n: 96, k: 128, dtypeIn: "bf16", bias: true, maxWorkspaceBytes: 8 << 20 },
      ];
      for (const c of shapes) {
        const own = runGemm(c, 5);
        const shared = runGemm(c, 5, (cfg) => Gemm.create(device, cfg, { workspace }));
        assert.deepEqual(shared.err, own.err, JSON.stringify(c));
      }
      workspace.fillBytes(stream, 0); // still allocated after the GEMMs were disposed
      stream.synchronize();
      using small = DeviceBuffer.alloc(device, 16);
      const big = { m: 4096, n: 4096, k: 4096, dtypeIn: "bf16" as const, maxWorkspaceBytes: 8 << 20 };
      const needs = Gemm.heuristics(device, big, 1)[0].workspaceBytes;
      if (needs > 16)
        assert.throws(
          () => Gemm.create(device, big, { workspace: small }),
          /shared GEMM workspace of 16 bytes/,
        );
    });
  });

  test("everything is disposed: no live objects, free memory back within 1 MiB", () => {
    const cycle = () => {
      using buf = DeviceBuffer.alloc(device, 64 * 1024 * 1024 + 7);
      buf.fillBytes(stream, 1);
      using s = Stream.create(device);
      using e = Event.create(device);
      e.record(s);
      e.synchronize();
      if (!noNvrtc) {
        using mod = CudaModule.load(
          device,
          compileToCubin(KERNELS, "leak.cu", {
            arch: device.properties.nvrtcArch,
            defines: { SHIFT: "0.0f" },
          }),
        );
        using out = DeviceBuffer.alloc(device, 4 * 1024);
        // Resolve (and so load) the kernel before capturing: loading is not a capturable operation.
        const saxpy = mod.kernel("saxpy");
        const args = [{ f32: 1 }, { ptr: out.ptr }, { ptr: out.ptr }, { i32: 1024 }];
        saxpy.launch(s, 8, 128, 0, args);
        const capture = GraphCapture.begin(s);
        saxpy.launch(s, 8, 128, 0, args);
        using graph = capture.end();
        graph.launch(s);
        s.synchronize();
      }
      if (!noCublasLt) {
        using gemm = Gemm.create(device, { m: 128, n: 256, k: 512, dtypeIn: "bf16" });
        using x = DeviceBuffer.alloc(device, 128 * 512 * 2);
        using w = DeviceBuffer.alloc(device, 256 * 512 * 2);
        using y = DeviceBuffer.alloc(device, 128 * 256 * 2);
        x.fillBytes(stream, 0);
        w.fillBytes(stream, 0);
        gemm.run(stream, x, w, y);
      }
      stream.synchronize();
    };
    const liveBefore = device.liveObjects;
    cycle(); // warm-up: lazy module loading, cuBLASLt kernels, driver pools
    device.synchronize();
    const before = device.memoryInfo().free;
    cycle();
    device.synchronize();
    const afterFree = device.memoryInfo().free;
    assert.equal(device.liveObjects, liveBefore, "a device object was not disposed");
    assert.equal(device.liveBytes, 0, "device memory still held by DeviceBuffers");
    assert.ok(Math.abs(before - afterFree) <= 1024 * 1024, `free memory ${before} → ${afterFree}`);
  });
});
