// Finding and loading the CUDA shared libraries (driver, NVRTC, cuBLASLt).
//
// Search order, per soname in preference order (newest CUDA first):
//   1. the bare soname, resolved by the dynamic loader (LD_LIBRARY_PATH, ldconfig cache, RUNPATH)
//   2. toolkit dirs: $CUDA_HOME/lib64, $CUDA_PATH/lib64, /usr/local/cuda/lib64, /usr/local/cuda/targets/x86_64-linux/lib
//   3. pip wheels: <site-packages>/nvidia/{cu13,cuda_nvrtc,cublas}/lib under common Python prefixes
// The driver (libcuda.so.1) is installed with the kernel module and is only looked up through the loader.
import { existsSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { LibraryHandle } from "koffi";
import { CudaUnavailableError, type LibraryAttempt } from "./errors.ts";
import { koffi } from "./koffi.ts";

export type CudaLibraryName = "driver" | "nvrtc" | "cublasLt";

export interface LibrarySpec {
  readonly name: CudaLibraryName;
  /** For messages: "the NVIDIA driver (libcuda)". */
  readonly description: string;
  /** In preference order. */
  readonly sonames: readonly string[];
  /** Only the dynamic loader's search path is tried (the driver must match the kernel module). */
  readonly loaderOnly: boolean;
  /** Library dirs relative to a site-packages dir (CUDA 13 wheels use nvidia/cu13/lib, CUDA 12 per-package dirs). */
  readonly pipLibDirs: readonly string[];
}

export const LIBRARIES: Readonly<Record<CudaLibraryName, LibrarySpec>> = {
  driver: {
    name: "driver",
    description: "the NVIDIA driver (libcuda)",
    sonames: ["libcuda.so.1"],
    loaderOnly: true,
    pipLibDirs: [],
  },
  nvrtc: {
    name: "nvrtc",
    description: "NVRTC (the CUDA runtime compiler)",
    sonames: ["libnvrtc.so.13", "libnvrtc.so.12"],
    loaderOnly: false,
    pipLibDirs: ["nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib"],
  },
  cublasLt: {
    name: "cublasLt",
    description: "cuBLASLt",
    sonames: ["libcublasLt.so.13", "libcublasLt.so.12"],
    loaderOnly: false,
    pipLibDirs: ["nvidia/cu13/lib", "nvidia/cublas/lib"],
  },
};

/** The file system as the search sees it (a fake in unit tests). */
export interface LibraryFs {
  exists(path: string): boolean;
  /** Entry names of a directory; [] when it does not exist. */
  listDir(path: string): string[];
}

export const realFs: LibraryFs = {
  exists: (path) => existsSync(path),
  listDir: (path) => {
    try {
      return readdirSync(path);
    } catch {
      return [];
    }
  },
};

export type Env = Readonly<Record<string, string | undefined>>;

/** CUDA toolkit roots, most specific first, deduplicated. */
export function toolkitRoots(env: Env): string[] {
  const roots = [env.CUDA_HOME, env.CUDA_PATH, "/usr/local/cuda"].filter((r): r is string => !!r);
  return [...new Set(roots)];
}

/** Toolkit library dirs, in search order. */
export function toolkitLibDirs(env: Env): string[] {
  const dirs = toolkitRoots(env).map((r) => join(r, "lib64"));
  dirs.push("/usr/local/cuda/targets/x86_64-linux/lib");
  return [...new Set(dirs)];
}

/** site-packages / dist-packages dirs under common Python prefixes (venv, conda, user, pyenv, system). */
export function pythonSitePackages(env: Env, fs: LibraryFs, home = env.HOME ?? ""): string[] {
  const prefixes = [env.VIRTUAL_ENV, env.CONDA_PREFIX].filter((p): p is string => !!p);
  if (home) prefixes.push(join(home, ".local"));
  const pyenvRoot = env.PYENV_ROOT ?? (home ? join(home, ".pyenv") : "");
  if (pyenvRoot)
    for (const v of fs.listDir(join(pyenvRoot, "versions"))) prefixes.push(join(pyenvRoot, "versions", v));
  prefixes.push("/usr/local", "/usr", "/opt/conda");
  const out: string[] = [];
  for (const prefix of new Set(prefixes)) {
    const lib = join(prefix, "lib");
    for (const py of fs
      .listDir(lib)
      .filter((n) => /^python3(\.\d+)?$/.test(n))
      .sort()) {
      for (const sp of ["site-packages", "dist-packages"]) {
        const dir = join(lib, py, sp);
        if (fs.exists(dir)) out.push(dir);
      }
    }
  }
  return out;
}

/** Every place to try, in order: bare sonames (for the loader) and absolute paths. Pure given `fs`. */
export function libraryCandidates(spec: LibrarySpec, env: Env, fs: LibraryFs): string[] {
  const dirs = spec.loaderOnly
    ? []
    : [
        ...toolkitLibDirs(env),
        ...pythonSitePackages(env, fs).flatMap((sp) => spec.pipLibDirs.map((d) => join(sp, d))),
      ];
  return spec.sonames.flatMap((soname) => [soname, ...dirs.map((d) => join(d, soname))]);
}

/**
 * Tries the candidates in order and returns the first that `open` accepts. Absolute paths that do
 * not exist are skipped (and reported together); the error lists every attempt.
 */
export function locateLibrary<T>(
  spec: LibrarySpec,
  opts: { env: Env; fs: LibraryFs; open: (candidate: string) => T },
): { handle: T; path: string } {
  const attempts: LibraryAttempt[] = [];
  const missing = new Map<string, Set<string>>(); // dir → sonames absent there
  for (const candidate of libraryCandidates(spec, opts.env, opts.fs)) {
    const absolute = candidate.includes("/");
    if (absolute && !opts.fs.exists(candidate)) {
      const dir = dirname(candidate);
      missing.set(dir, (missing.get(dir) ?? new Set()).add(basename(candidate)));
      continue;
    }
    try {
      return { handle: opts.open(candidate), path: candidate };
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      attempts.push({ candidate: absolute ? candidate : `${candidate} (loader path)`, reason });
    }
  }
  // One line per set of sonames, listing the dirs where they were all absent.
  const bySonames = new Map<string, string[]>();
  for (const [dir, sonames] of missing) {
    const key = [...sonames].join(", ");
    bySonames.set(key, [...(bySonames.get(key) ?? []), dir]);
  }
  for (const [sonames, dirs] of bySonames)
    attempts.push({ candidate: `${sonames} in ${dirs.join(", ")}`, reason: "not found" });
  throw new CudaUnavailableError(`could not load ${spec.description}.`, attempts);
}

export interface LoadedLibrary {
  readonly lib: LibraryHandle;
  /** The candidate that loaded: an absolute path, or a bare soname the loader resolved. */
  readonly path: string;
}

const loaded = new Map<CudaLibraryName, LoadedLibrary | CudaUnavailableError>();

/** Loads (once per process) one of the CUDA libraries, or throws CudaUnavailableError. */
export function loadLibrary(name: CudaLibraryName, env: Env = process.env): LoadedLibrary {
  const cached = loaded.get(name);
  if (cached instanceof CudaUnavailableError) throw cached;
  if (cached) return cached;
  const spec = LIBRARIES[name];
  try {
    if (process.platform !== "linux") {
      throw new CudaUnavailableError(
        `kiln's CUDA backend supports Linux only (this is ${process.platform}).`,
      );
    }
    const { handle, path } = locateLibrary(spec, {
      env,
      fs: realFs,
      open: (candidate) => {
        if (name === "nvrtc" && candidate.includes("/")) preloadNvrtcBuiltins(dirname(candidate));
        return koffi().load(candidate);
      },
    });
    const lib = { lib: handle, path };
    loaded.set(name, lib);
    return lib;
  } catch (e) {
    if (e instanceof CudaUnavailableError) loaded.set(name, e);
    throw e;
  }
}

/**
 * libnvrtc dlopens libnvrtc-builtins.so.<major>.<minor> by soname at compile time; when libnvrtc was
 * loaded by absolute path its dir is not on the loader path, so load the builtins from there first
 * (the loader then matches the soname to the already-loaded library).
 */
function preloadNvrtcBuiltins(dir: string): void {
  for (const name of realFs.listDir(dir)) {
    if (/^libnvrtc-builtins\.so\.\d+\.\d+$/.test(name)) {
      try {
        koffi().load(join(dir, name));
      } catch {
        // best effort: compilation reports NVRTC_ERROR_BUILTIN_OPERATION_FAILURE with a clear log
      }
    }
  }
}
