// A StagingRing (staging_ring.ts) over page-locked host memory and events on `stream`: the CUDA
// backend's uploads that must not make the host wait for the stream (step metadata, sampler inputs).
import { type CudaDevice, Event, PinnedBuffer, type Stream } from "./device/index.ts";
import { StagingRing } from "./staging_ring.ts";

/** `uploadsPerStep`: the most uploads one step makes through it (the ring holds two steps' worth). */
export function pinnedStaging(
  device: CudaDevice,
  stream: Stream,
  uploadsPerStep: number,
): StagingRing<PinnedBuffer> {
  return new StagingRing(
    {
      allocPinned: (bytes) => {
        const pinned = PinnedBuffer.alloc(device, bytes);
        return { pinned, memory: pinned.arrayBuffer(), dispose: () => pinned.dispose() };
      },
      createEvent: () => {
        const e = Event.create(device, { timing: false });
        return { record: () => e.record(stream), wait: () => e.synchronize(), dispose: () => e.dispose() };
      },
    },
    2 * uploadsPerStep,
  );
}
