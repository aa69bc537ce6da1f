// Bindings for NVRTC (CUDA C++ → cubin at engine build time) and `compileToCubin`.
// Signatures and nvrtcResult values: nvrtc.h of CUDA 13.0 (enum lines 41-60, functions 74-416).
import { dirname, join } from "node:path";
import type { LibraryHandle } from "koffi";
import { InvalidArgumentError } from "../../../errors.ts";
import { bindFirst, type CFunction, out64, outI32 } from "./bind.ts";
import { CudaUnavailableError, NvrtcError } from "./errors.ts";
import { type Env, type LibraryFs, loadLibrary, realFs, toolkitRoots } from "./library.ts";

declare const brand: unique symbol;
export type NvrtcProgram = bigint & { readonly [brand]: "nvrtcProgram" };

/** NVRTC_ERROR_COMPILATION (nvrtc.h line 48): the source did not compile; the log says why. */
export const NVRTC_ERROR_COMPILATION = 6;

const PROTOS = {
  nvrtcGetErrorString: ["const char *", ["int"]],
  nvrtcVersion: ["int", ["void *", "void *"]],
  nvrtcGetNumSupportedArchs: ["int", ["void *"]],
  nvrtcGetSupportedArchs: ["int", ["void *"]],
  nvrtcCreateProgram: ["int", ["void *", "const char *", "const char *", "int", "void *", "void *"]],
  nvrtcCompileProgram: ["int", ["uint64_t", "int", "const char **"]],
  nvrtcGetProgramLogSize: ["int", ["uint64_t", "void *"]],
  nvrtcGetProgramLog: ["int", ["uint64_t", "void *"]],
  nvrtcGetCUBINSize: ["int", ["uint64_t", "void *"]],
  nvrtcGetCUBIN: ["int", ["uint64_t", "void *"]],
  nvrtcDestroyProgram: ["int", ["void *"]],
} as const;
type Fn = keyof typeof PROTOS;

export class Nvrtc {
  private readonly fns: Record<Fn, CFunction>;

  constructor(
    lib: LibraryHandle,
    /** Where libnvrtc was loaded from (absolute path, or a soname the loader resolved). */
    readonly path: string,
  ) {
    const fns = {} as Record<Fn, CFunction>;
    for (const [key, [result, params]] of Object.entries(PROTOS) as [Fn, (typeof PROTOS)[Fn]][]) {
      fns[key] = bindFirst(lib, [key], result, params).fn;
    }
    this.fns = fns;
  }

  errorName(code: number): string {
    return (this.fns.nvrtcGetErrorString(code) as string | null) ?? `NVRTC_ERROR_${code}`;
  }

  private check(call: Fn, code: number, program = "", log = ""): void {
    if (code !== 0) throw new NvrtcError(call, code, this.errorName(code), program, log);
  }

  version(): { major: number; minor: number } {
    const major = outI32();
    const minor = outI32();
    this.check("nvrtcVersion", this.fns.nvrtcVersion(major, minor) as number);
    return { major: major[0], minor: minor[0] };
  }

  /** SM versions this NVRTC can target, e.g. [75, 80, 86, 89, 90, 100, ...]. */
  supportedArchs(): number[] {
    const n = outI32();
    this.check("nvrtcGetNumSupportedArchs", this.fns.nvrtcGetNumSupportedArchs(n) as number);
    const archs = new Int32Array(n[0]);
    this.check("nvrtcGetSupportedArchs", this.fns.nvrtcGetSupportedArchs(archs) as number);
    return [...archs];
  }

  createProgram(source: string, name: string): NvrtcProgram {
    const p = out64();
    this.check(
      "nvrtcCreateProgram",
      this.fns.nvrtcCreateProgram(p, source, name, 0, null, null) as number,
      name,
    );
    return p[0] as NvrtcProgram;
  }

  /** Returns the nvrtcResult (NVRTC_ERROR_COMPILATION is an expected outcome, read the log). */
  compileProgram(program: NvrtcProgram, options: readonly string[]): number {
    return this.fns.nvrtcCompileProgram(program, options.length, [...options]) as number;
  }

  programLog(program: NvrtcProgram): string {
    const size = out64();
    this.check("nvrtcGetProgramLogSize", this.fns.nvrtcGetProgramLogSize(program, size) as number);
    const buf = new Uint8Array(Math.max(1, Number(size[0])));
    this.check("nvrtcGetProgramLog", this.fns.nvrtcGetProgramLog(program, buf) as number);
    const end = buf.indexOf(0);
    return Buffer.from(buf.subarray(0, end < 0 ? buf.length : end)).toString("utf8");
  }

  cubin(program: NvrtcProgram): Uint8Array {
    const size = out64();
    this.check("nvrtcGetCUBINSize", this.fns.nvrtcGetCUBINSize(program, size) as number);
    const out = new Uint8Array(Number(size[0]));
    this.check("nvrtcGetCUBIN", this.fns.nvrtcGetCUBIN(program, out) as number);
    return out;
  }

  destroyProgram(program: NvrtcProgram): void {
    this.check("nvrtcDestroyProgram", this.fns.nvrtcDestroyProgram(new BigUint64Array([program])) as number);
  }
}

let nvrtc: Nvrtc | null = null;

/** The process-wide NVRTC binding. Throws CudaUnavailableError when libnvrtc cannot be found. */
export function loadNvrtc(): Nvrtc {
  if (nvrtc) return nvrtc;
  const { lib, path } = loadLibrary("nvrtc");
  try {
    nvrtc = new Nvrtc(lib, path);
  } catch (e) {
    throw new CudaUnavailableError(`NVRTC at ${path} lacks an entry point kiln needs (${e}).`, [], {
      cause: e,
    });
  }
  return nvrtc;
}

export interface CompileOptions {
  /** Real architecture to emit SASS for, e.g. "sm_90a" (default) or "sm_80". */
  arch?: string;
  /** `-DKEY=VALUE` for each entry; values are written with String() (append "f" yourself for floats). */
  defines?: Readonly<Record<string, string | number>>;
  /** Extra include dirs; the CUDA include dir (cuda_fp16.h, cuda_bf16.h) is added after them. */
  includeDirs?: readonly string[];
  /** `--use_fast_math` (off by default: kernels must match the CPU reference). */
  fastMath?: boolean;
  /** Emit line info for profilers. */
  lineInfo?: boolean;
  /** Anything else, passed through last. */
  extraOptions?: readonly string[];
}

/** The NVRTC option list for `options` (pure). */
export function nvrtcOptions(options: CompileOptions, cudaIncludeDirs: readonly string[]): string[] {
  const arch = options.arch ?? "sm_90a";
  if (!/^sm_\d+[af]?$/.test(arch)) {
    throw new InvalidArgumentError(
      `NVRTC arch "${arch}" is not a real architecture like "sm_90a" (cubins need one)`,
    );
  }
  const opts = [`--gpu-architecture=${arch}`, "--std=c++17", "-default-device"];
  if (options.fastMath) opts.push("--use_fast_math");
  if (options.lineInfo) opts.push("-lineinfo");
  for (const dir of [...(options.includeDirs ?? []), ...cudaIncludeDirs]) opts.push(`-I${dir}`);
  for (const [key, value] of Object.entries(options.defines ?? {})) {
    if (!/^[A-Za-z_]\w*$/.test(key))
      throw new InvalidArgumentError(`define name "${key}" is not a C identifier`);
    opts.push(`-D${key}=${String(value)}`);
  }
  opts.push(...(options.extraOptions ?? []));
  return opts;
}

/**
 * Where cuda_fp16.h / cuda_bf16.h live for the NVRTC at `nvrtcPath`: the include dir next to its lib
 * dir first (toolkit lib64 → include, targets/<arch>/lib → include, pip nvidia/cu13/lib → include,
 * pip CUDA 12 nvidia/cuda_nvrtc/lib → nvidia/cuda_runtime/include), then the toolkit roots. Only the
 * first dir that has cuda_fp16.h is returned, so headers of two CUDA versions never mix.
 */
export function cudaIncludeDirs(nvrtcPath: string, env: Env, fs: LibraryFs): string[] {
  const candidates: string[] = [];
  if (nvrtcPath.includes("/")) {
    const libDir = dirname(nvrtcPath);
    candidates.push(join(libDir, "..", "include"), join(libDir, "..", "..", "cuda_runtime", "include"));
  }
  candidates.push(...toolkitRoots(env).map((r) => join(r, "include")));
  const found = candidates.find((dir) => fs.exists(join(dir, "cuda_fp16.h")));
  return found ? [found] : [];
}

/** Compiles CUDA C++ to a cubin for `options.arch`; the log holds warnings. Throws NvrtcError. */
export function compileCuda(
  source: string,
  name: string,
  options: CompileOptions = {},
): { cubin: Uint8Array; log: string } {
  const api = loadNvrtc();
  const opts = nvrtcOptions(options, cudaIncludeDirs(api.path, process.env, realFs));
  const program = api.createProgram(source, name);
  try {
    const code = api.compileProgram(program, opts);
    const log = api.programLog(program);
    if (code !== 0) throw new NvrtcError("nvrtcCompileProgram", code, api.errorName(code), name, log);
    return { cubin: api.cubin(program), log };
  } finally {
    api.destroyProgram(program);
  }
}

/** `compileCuda` without the log. */
export function compileToCubin(source: string, name: string, options: CompileOptions = {}): Uint8Array {
  return compileCuda(source, name, options).cubin;
}
