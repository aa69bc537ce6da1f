// koffi, loaded on first use. The CUDA backend's modules are imported statically (by open_backend.ts
// and the builder's CUDA target), so a static `import koffi` would load the FFI library, and its
// native addon, on every CPU-only run too. koffi is CommonJS, so a require on first use loads it here.
import { createRequire } from "node:module";

type Koffi = typeof import("koffi");

let loaded: Koffi | null = null;

export function koffi(): Koffi {
  loaded ??= createRequire(import.meta.url)("koffi") as Koffi;
  return loaded;
}
