import { KilnError } from "../errors.ts";

/** An engine directory is missing, corrupt, from another format version, or lacks what its plan needs. */
export class EngineError extends KilnError {}

/** An engine file's bytes differ from what its manifest recorded when it was written (disk damage,
 * an edit, a truncated copy). `damage` names the files and regions, e.g. "rank0.engine (weight x at
 * byte 4096: checksum mismatch)". */
export class EngineCorruptError extends EngineError {
  constructor(
    readonly dir: string,
    readonly damage: string,
  ) {
    super(
      `engine ${dir} is damaged: ${damage}; rebuild it with kiln build --model <checkpoint> --output ${dir}`,
    );
  }
}

/** An engine written by a kiln of another format version (read from its manifest or config.json). */
export function formatVersionError(dir: string, version: unknown, reads: number): EngineError {
  return new EngineError(
    `engine ${dir} has format version ${version}, this kiln reads version ${reads}; ` +
      "rebuild it with `kiln build` (engines are cheap to rebuild from the checkpoint)",
  );
}

/** The engine was built for another backend or device than the one asked for. */
export class EngineTargetMismatchError extends KilnError {}

/** `kiln build --output DIR` where DIR holds something that is not a kiln engine (never replaced). */
export class OutputNotEngineError extends KilnError {}

/** `kiln build` where --output and --model overlap (the build would overwrite its own source). */
export class OutputOverlapsModelError extends KilnError {}

/** A weight whose `format` this kiln does not know (written by a newer kiln, or a damaged header). */
export class UnknownWeightFormatError extends EngineError {
  constructor(
    readonly weight: string,
    readonly format: unknown,
    known: readonly string[],
  ) {
    super(
      `engine weight ${weight} has format ${JSON.stringify(format)}, which this kiln does not read (it reads ${known.join(", ")} and plain); rebuild the engine with this kiln's kiln build`,
    );
  }
}

/** A quantized engine opened on a backend that has no kernels for its weight format yet. */
export class QuantizedEngineUnsupportedError extends EngineError {}
