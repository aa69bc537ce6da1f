import { KilnError } from "../errors.ts";

/** An engine directory is missing, corrupt, from another format version, or lacks what its plan needs. */
export class EngineError extends KilnError {}

/** The engine was built for another backend or device than the one asked for. */
export class EngineTargetMismatchError extends KilnError {}
