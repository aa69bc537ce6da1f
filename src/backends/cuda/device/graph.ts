// CUDA graphs: capture the work queued on a stream once, replay it with one launch (decode steps).
//   const capture = GraphCapture.begin(stream);   // work queued on `stream` is recorded, not run
//   ...launches...
//   const graph = capture.end();                  // end capture → instantiate
//   graph.launch(stream); graph.launch(stream);   // replay
//   graph.dispose();                              // destroys the executable graph and the graph
import { CU_STREAM_CAPTURE_MODE } from "../ffi/driver_enums.ts";
import type { CuGraph, CuGraphExec } from "../ffi/handles.ts";
import type { CudaDevice } from "./device.ts";
import type { Stream } from "./stream.ts";

export type CaptureMode = "global" | "threadLocal" | "relaxed";
const MODES: Record<CaptureMode, number> = {
  global: CU_STREAM_CAPTURE_MODE.GLOBAL,
  threadLocal: CU_STREAM_CAPTURE_MODE.THREAD_LOCAL,
  relaxed: CU_STREAM_CAPTURE_MODE.RELAXED,
};

export class GraphCapture implements Disposable {
  private capturing = true;

  private constructor(readonly stream: Stream) {}

  /**
   * Starts capturing `stream` (a created stream; the NULL stream cannot be captured). In "global"
   * mode (default) unsafe calls such as cuMemAlloc during capture fail instead of corrupting it.
   */
  static begin(stream: Stream, mode: CaptureMode = "global"): GraphCapture {
    stream.device.driver.streamBeginCapture(stream.handle, MODES[mode]);
    return new GraphCapture(stream);
  }

  /** Ends the capture and instantiates the graph. */
  end(): CudaGraph {
    if (!this.capturing) throw new Error("graph capture already ended");
    this.capturing = false;
    const driver = this.stream.device.driver;
    const graph = driver.streamEndCapture(this.stream.handle);
    let exec: CuGraphExec;
    try {
      exec = driver.graphInstantiate(graph);
    } catch (e) {
      driver.graphDestroy(graph);
      throw e;
    }
    this.stream.device.liveObjects++;
    return new CudaGraph(this.stream.device, graph, exec);
  }

  /** Ends a capture that failed midway and discards what was recorded. Idempotent. */
  abort(): void {
    if (!this.capturing) return;
    this.capturing = false;
    const driver = this.stream.device.driver;
    try {
      driver.graphDestroy(driver.streamEndCapture(this.stream.handle));
    } catch {
      // an invalidated capture returns an error from cuStreamEndCapture; the stream has left capture mode
    }
  }

  [Symbol.dispose](): void {
    this.abort();
  }
}

export class CudaGraph implements Disposable {
  private handles: { graph: CuGraph; exec: CuGraphExec } | null;

  constructor(
    readonly device: CudaDevice,
    graph: CuGraph,
    exec: CuGraphExec,
  ) {
    this.handles = { graph, exec };
  }

  /** Replays the captured work on `stream`. */
  launch(stream: Stream): void {
    if (this.handles === null) throw new Error("CudaGraph is disposed");
    stream.device.driver.graphLaunch(this.handles.exec, stream.handle);
  }

  /** Destroys the executable graph and the graph. Idempotent. */
  dispose(): void {
    if (this.handles === null) return;
    const driver = this.device.driver;
    driver.graphExecDestroy(this.handles.exec);
    driver.graphDestroy(this.handles.graph);
    this.handles = null;
    this.device.liveObjects--;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
