// Shared by the kernel tests: opens the GPU (or says why not), compiles kernels/*.cu with NVRTC for it
// (cached per file and macro set), moves arrays of any dtype to and from the device, launches and
// waits, and frees everything a test allocated (asserting that nothing leaked).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  CudaDevice,
  CudaModule,
  CudaUnavailableError,
  compileToCubin,
  DeviceBuffer,
  type DevicePtr,
  type Dim3,
  type KernelArg,
  Stream,
} from "../../../src/backends/cuda/device/index.ts";
import { loadNvrtc } from "../../../src/backends/cuda/ffi/nvrtc.ts";
import { bf16ToF32, type DTypeName, f16ToF32, f32ToBf16, f32ToF16 } from "../../../src/dtype.ts";

export const KERNELS_DIR = fileURLToPath(new URL("../../../kernels/", import.meta.url));
export const DTYPES: readonly DTypeName[] = ["fp32", "fp16", "bf16"];
export const DTYPE_MACRO: Record<DTypeName, string> = {
  fp32: "KILN_DTYPE_F32",
  fp16: "KILN_DTYPE_F16",
  bf16: "KILN_DTYPE_BF16",
};
export const ELEM_BYTES: Record<DTypeName, number> = { fp32: 4, fp16: 2, bf16: 2 };

/** The norm launch the CUDA backend uses: one 16-byte vector per thread, rounded up to whole warps. */
export function normBlock(width: number, dtype: DTypeName): number {
  const vec = 16 / ELEM_BYTES[dtype];
  const per = width % vec === 0 ? width / vec : width;
  return Math.min(1024, Math.ceil(per / 32) * 32);
}

function unavailable(probe: () => void, what: string): string | false {
  try {
    probe();
    return false;
  } catch (e) {
    if (e instanceof CudaUnavailableError) return `${what}: ${e.message.split("\n")[0]}`;
    throw e;
  }
}

/** Why the GPU kernel tests cannot run here (a skip reason), or false when they can. */
export const noGpu: string | false =
  unavailable(() => CudaDevice.open().dispose(), "no CUDA device") ||
  unavailable(() => loadNvrtc(), "no NVRTC");

/** fp32 values rounded to `dtype` (round to nearest even), back as fp32. */
export function roundTo(values: Float32Array, dtype: DTypeName): Float32Array {
  if (dtype === "fp32") return Float32Array.from(values);
  return dtype === "bf16" ? bf16ToF32(f32ToBf16(values)) : f16ToF32(f32ToF16(values));
}

/** The bytes of `values` stored as `dtype` (the values must already be representable, see roundTo). */
function encode(values: Float32Array, dtype: DTypeName): Float32Array | Uint16Array {
  if (dtype === "fp32") return values;
  return dtype === "bf16" ? f32ToBf16(values) : f32ToF16(values);
}

/** Standard normal fp32 samples from a seeded generator (mulberry32 + Box–Muller). */
export function randn(n: number, seed: number, scale = 1, mean = 0): Float32Array {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - next();
    out[i] = mean + scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  }
  return out;
}

/** Asserts got[i] and want[i] are the same value for every i (Object.is: −0 ≠ +0, NaN = NaN); the
 * message names the first element that differs. */
export function assertSameBits(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  let bad = -1;
  for (let i = 0; i < want.length && bad < 0; i++) if (!Object.is(got[i], want[i])) bad = i;
  assert.equal(bad, -1, `${what} element ${bad}: ${got[bad]} vs ${want[bad]}`);
}

/**
 * Asserts |got[i] − want[i]| ≤ bound(i) for every i (NaN matches NaN, ±∞ must match exactly); the
 * message names the worst element relative to its bound.
 */
export function assertWithin(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  bound: (i: number) => number,
  what: string,
): void {
  assert.equal(got.length, want.length, `${what}: length ${got.length} vs ${want.length}`);
  let worst = -1;
  let worstRatio = 1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    if (g === w) continue;
    const b = bound(i);
    const ratio = Math.abs(g - w) / b;
    if (!(ratio <= worstRatio)) {
      worst = i;
      worstRatio = Number.isNaN(ratio) ? Number.POSITIVE_INFINITY : ratio;
    }
  }
  if (worst >= 0) {
    assert.fail(
      `${what}: element ${worst} is ${got[worst]}, expected ${want[worst]} ` +
        `(diff ${Math.abs(got[worst] - want[worst])}, ${worstRatio.toPrecision(3)}× the bound ${bound(worst)})`,
    );
  }
}

export type Defines = Readonly<Record<string, number | string>>;

/** One GPU for one test file: open it in before(), dispose it in after(). */
export class KernelHarness {
  private readonly modules = new Map<string, CudaModule>();
  private buffers: DeviceBuffer[] = [];
  private baselineBytes = 0;

  private constructor(
    readonly device: CudaDevice,
    readonly stream: Stream,
  ) {}

  static open(): KernelHarness {
    const device = CudaDevice.open();
    const h = new KernelHarness(device, Stream.create(device));
    h.baselineBytes = device.liveBytes;
    return h;
  }

  /** kernels/`file` compiled for this GPU with `defines` (and the dtype macro when given). */
  module(file: string, defines: Defines, dtype?: DTypeName): CudaModule {
    const all: Record<string, number | string> = { ...defines };
    if (dtype) all[DTYPE_MACRO[dtype]] = 1;
    const key = `${file} ${JSON.stringify(Object.entries(all).sort())}`;
    let m = this.modules.get(key);
    if (!m) {
      const source = readFileSync(`${KERNELS_DIR}${file}`, "utf8");
      const cubin = compileToCubin(source, file, {
        arch: this.device.properties.nvrtcArch,
        defines: all,
        includeDirs: [KERNELS_DIR],
      });
      m = CudaModule.load(this.device, cubin);
      this.modules.set(key, m);
    }
    return m;
  }

  /** fp32 values (representable in `dtype`) on the device as `dtype`. */
  upload(values: Float32Array, dtype: DTypeName): DevicePtr {
    return this.raw(encode(values, dtype));
  }

  /** A typed array's bytes on the device, as they are. */
  raw(values: Float32Array | Float64Array | Int32Array | Uint16Array | Uint8Array): DevicePtr {
    const b = DeviceBuffer.alloc(this.device, Math.max(values.byteLength, 4));
    this.buffers.push(b);
    if (values.byteLength > 0) b.upload(values);
    return b.ptr;
  }

  /** `count` elements of `dtype`, every byte set to `byte` (0xff: fp32 NaN, a recognisable sentinel). */
  filled(count: number, dtype: DTypeName, byte = 0): DevicePtr {
    const b = DeviceBuffer.alloc(this.device, Math.max(count * ELEM_BYTES[dtype], 4));
    this.buffers.push(b);
    b.fillBytes(this.stream, byte);
    this.stream.synchronize();
    return b.ptr;
  }

  private bufferOf(ptr: DevicePtr): DeviceBuffer {
    const b = this.buffers.find((x) => !x.disposed && x.ptr === ptr);
    if (!b) throw new Error("internal: pointer not from this harness");
    return b;
  }

  /** `count` elements of `dtype` at `ptr`, as fp32. */
  download(ptr: DevicePtr, count: number, dtype: DTypeName): Float32Array {
    const b = this.bufferOf(ptr);
    if (dtype === "fp32") return b.download(new Float32Array(count));
    const bits = b.download(new Uint16Array(count));
    return dtype === "bf16" ? bf16ToF32(bits) : f16ToF32(bits);
  }

  downloadBytes(ptr: DevicePtr, count: number): Uint8Array {
    return this.bufferOf(ptr).download(new Uint8Array(count));
  }

  downloadI32(ptr: DevicePtr, count: number): Int32Array {
    return this.bufferOf(ptr).download(new Int32Array(count));
  }

  downloadF64(ptr: DevicePtr, count: number): Float64Array {
    return this.bufferOf(ptr).download(new Float64Array(count));
  }

  /** Launches `name` and waits for it (a fault surfaces here, naming the kernel). */
  run(
    module: CudaModule,
    name: string,
    grid: Dim3,
    block: Dim3,
    args: readonly KernelArg[],
    sharedBytes = 0,
  ): void {
    module.kernel(name).launch(this.stream, grid, block, sharedBytes, args);
    this.stream.synchronize();
  }

  /** Frees what the current test allocated and checks that no device memory is left behind. */
  freeAll(): void {
    for (const b of this.buffers) b.dispose();
    this.buffers = [];
    assert.equal(this.device.liveBytes, this.baselineBytes, "device memory leaked by a kernel test");
  }

  dispose(): void {
    this.freeAll();
    for (const m of this.modules.values()) m.dispose();
    this.modules.clear();
    this.stream.dispose();
    this.device.dispose();
  }
}

/** A null pointer argument. */
export const NULL: KernelArg = { ptr: 0n as DevicePtr };
export const ptr = (p: DevicePtr): KernelArg => ({ ptr: p });
export const i32 = (v: number): KernelArg => ({ i32: v });
export const f32 = (v: number): KernelArg => ({ f32: v });
