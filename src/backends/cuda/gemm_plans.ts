// The cuBLASLt GEMM plans of a backend's linears, by shape (gemm_algorithms.ts gemmKey): each created
// once, with the algorithm chosen at build time when the engine has one for its shape (the power-of-two
// row buckets), the heuristic's otherwise (the finer buckets between them, or when this cuBLAS rejects
// the stored one). Every plan runs in one shared workspace: they are queued on one stream, so no two
// run at once, and dozens of row buckets cost one workspace, not one each. Owns the plans and the
// workspace until dispose().
import type { DTypeName } from "../../dtype.ts";
import { type CudaDevice, DeviceBuffer, Gemm } from "./device/index.ts";
import { GEMM_WORKSPACE_BYTES, gemmKey } from "./gemm_algorithms.ts";

export class GemmPlans {
  private readonly gemms = new Map<string, Gemm>();
  private workspace: DeviceBuffer | null = null;

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
      this.workspace ??= DeviceBuffer.alloc(this.device, GEMM_WORKSPACE_BYTES);
      const workspace = this.workspace;
      try {
        g = Gemm.create(this.device, cfg, algo ? { algo, workspace } : { workspace });
      } catch (e) {
        if (!algo) throw e;
        g = Gemm.create(this.device, cfg, { workspace }); // a stored algorithm from another cuBLAS: the heuristic's
      }
      this.gemms.set(key, g);
    }
    return g;
  }

  dispose(): void {
    for (const g of this.gemms.values()) g.dispose();
    this.gemms.clear();
    this.workspace?.dispose();
    this.workspace = null;
  }
}
