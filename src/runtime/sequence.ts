// Why a generated sequence ended, as the runtime's outputs name it (the sampler's stop reasons).
export type { FinishReason } from "../sampling/stopping.ts";
