// The cuBLASLt GEMM plans of a backend's linears, by shape (gemm_algorithms.ts gemmKey): each created
// once, with the algorithm chosen at build time when the engine has one for its shape (the heuristic's
// otherwise, or when this cuBLAS rejects the stored one). Owns the plans and their workspaces until
// dispose().
import type { DTypeName } from "../../dtype.ts";
import { type CudaDevice, Gemm } from "./device/index.ts";
import { GEMM_WORKSPACE_BYTES, gemmKey } from "./gemm_algorithms.ts";

export class GemmPlans {
  private readonly gemms = new Map<string, Gemm>();

  constructor(
    private readonly device: CudaDevice,
    private readonly dtype: DTypeName,
    /** cuBLASLt algorithms chosen at build time, by gemmKey. */
    private readonly algos: ReadonlyMap<string, Uint8Array>,
  ) {}

  /** The plan of y[m, n] = x[m, k]·W[n, k]ᵀ (+ bias), in the engine dtype or with fp32 output. */
  get(m: number, n: number, k: number, bias: boolean, fp32Out: boolean): Gemm {
    const key = gemmKey({ m, n, k, bias, fp32Out });
    let g = this.gemms.get(key);
    if (!g) {
      const cfg = {
        m,
        n,
        k,
        dtypeIn: this.dtype,
        dtypeOut: fp32Out ? ("fp32" as const) : this.dtype,
        bias,
        computeFp32Exact: true,
        maxWorkspaceBytes: GEMM_WORKSPACE_BYTES,
      };
      const algo = this.algos.get(key);
      try {
        g = Gemm.create(this.device, cfg, algo ? { algo } : {});
      } catch (e) {
        if (!algo) throw e;
        g = Gemm.create(this.device, cfg); // the stored algorithm is from another cuBLAS: use the heuristic
      }
      this.gemms.set(key, g);
    }
    return g;
  }

  dispose(): void {
    for (const g of this.gemms.values()) g.dispose();
    this.gemms.clear();
  }
}
