// Whether this machine has a usable CUDA device, as a node:test `skip` value with the reason.
import { CudaDevice } from "../../src/backends/cuda/device/index.ts";

export function noCudaDevice(): string | false {
  try {
    CudaDevice.open().dispose();
    return false;
  } catch (e) {
    return `no CUDA device: ${(e as Error).message.split("\n")[0]}`;
  }
}
