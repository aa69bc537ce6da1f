// AWQ's search losses on the GPU (kernels/awq_search.cu): the same doubles as the TypeScript reference
// (builder/passes/awq/energy_device.ts, whose EnergyDevice this implements), every candidate of a search
// in one launch. A session per group holds the group's samples x (and, for the scale search, its
// sampled weights) on the device until disposed; each call allocates its weights, candidates and
// errors, downloads the errors and frees them. Owns GPU 0's context, a stream and the module until
// dispose().
import {
  CudaDevice,
  CudaModule,
  DeviceBuffer,
  type DevicePtr,
  type KernelArg,
  Stream,
} from "./device/index.ts";

/** The kernel's tile: rows of w per block (awq_search.cu TILE_ROWS), and its block size. */
const TILE_ROWS = 32;
const BLOCK = 256;
/** Columns per error of the clip search: one quantization group (engine/weight_format.ts GROUP_SIZE). */
const QGROUP = 128;
const NULL = 0n as DevicePtr;

export class AwqEnergies {
  private disposed = false;

  private constructor(
    private readonly device: CudaDevice,
    private readonly stream: Stream,
    private readonly module: CudaModule,
  ) {}

  /** Opens GPU 0 and loads `cubin`, awq_search.cu compiled for it. */
  static open(cubin: Uint8Array): AwqEnergies {
    const device = CudaDevice.open(0);
    try {
      const stream = Stream.create(device);
      return new AwqEnergies(device, stream, CudaModule.load(device, cubin));
    } catch (e) {
      device.dispose();
      throw e;
    }
  }

  /** The scale search of one group: scaledQuantLoss of each candidate s over w [rows, cols], x [n, cols]. */
  scaleSession(w: Float32Array, rows: number, cols: number, x: Float32Array, n: number) {
    const wBuf = DeviceBuffer.from(this.device, w);
    const xBuf = this.hold(wBuf, () => DeviceBuffer.from(this.device, x));
    return {
      /** Per candidate: Σ over rows, in order, of the per-row energies (errorEnergy's sum). */
      losses: (candidates: readonly Float32Array[]): number[] => {
        const s = new Float32Array(candidates.length * cols); // [candidates, cols]
        candidates.forEach((c, i) => s.set(c, i * cols));
        const err = this.energies(
          wBuf.ptr,
          xBuf.ptr,
          { scales: s },
          rows,
          cols,
          n,
          Math.max(cols, 1),
          candidates.length,
        );
        return candidates.map((_, i) => {
          let total = 0;
          for (let r = 0; r < rows; r++) total += err[i * rows + r];
          return total;
        });
      },
      dispose: () => {
        xBuf.dispose();
        wBuf.dispose();
      },
    };
  }

  /** The clip search of one group: errors per (row, group of 128) of each shrink, over x [n, cols].
   * The kernel takes max|w| per group itself: the same fp32 values as the caller's orgMax. */
  clipSession(x: Float32Array, n: number, cols: number) {
    const xBuf = DeviceBuffer.from(this.device, x);
    return {
      errors: (
        w: Float32Array,
        rows: number,
        _orgMax: Float32Array,
        shrinks: readonly number[],
      ): Float64Array[] => {
        const wBuf = DeviceBuffer.from(this.device, w);
        try {
          const groups = Math.ceil(cols / QGROUP);
          const err = this.energies(
            wBuf.ptr,
            xBuf.ptr,
            { shrinks: Float64Array.from(shrinks) },
            rows,
            cols,
            n,
            QGROUP,
            shrinks.length,
          );
          const per = rows * groups;
          return shrinks.map((_, i) => err.slice(i * per, (i + 1) * per));
        } finally {
          wBuf.dispose();
        }
      },
      dispose: () => xBuf.dispose(),
    };
  }

  /** One launch of awq_error_energies: err [candidates, rows, ceil(cols / groupCols)]. */
  private energies(
    w: DevicePtr,
    x: DevicePtr,
    candidates: { scales: Float32Array } | { shrinks: Float64Array },
    rows: number,
    cols: number,
    n: number,
    groupCols: number,
    count: number,
  ): Float64Array {
    const groups = Math.ceil(cols / groupCols);
    const err = new Float64Array(count * rows * groups);
    if (err.length === 0) return err;
    const cand = DeviceBuffer.from(
      this.device,
      "scales" in candidates ? candidates.scales : candidates.shrinks,
    );
    const errBuf = this.hold(cand, () => DeviceBuffer.alloc(this.device, err.byteLength));
    try {
      const args: KernelArg[] = [
        { ptr: w },
        { ptr: "scales" in candidates ? cand.ptr : NULL },
        { ptr: "shrinks" in candidates ? cand.ptr : NULL },
        { ptr: x },
        { ptr: errBuf.ptr },
        { i32: rows },
        { i32: cols },
        { i32: n },
        { i32: groupCols },
        { i32: rows - (rows % 4) }, // groupErrors sums the samples in pairs for its 4-row tiles
      ];
      const grid: [number, number, number] = [Math.ceil(rows / TILE_ROWS), groups, count];
      this.module.kernel("awq_error_energies").launch(this.stream, grid, [BLOCK, 1, 1], 0, args);
      errBuf.downloadAsync(this.stream, err); // into a typed array: done on return
      return err;
    } finally {
      errBuf.dispose();
      cand.dispose();
    }
  }

  /** make(), disposing `held` if it throws. */
  private hold<T>(held: DeviceBuffer, make: () => T): T {
    try {
      return make();
    } catch (e) {
      held.dispose();
      throw e;
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.stream.synchronize();
    this.module.dispose();
    this.stream.dispose();
    this.device.dispose();
  }
}
