import { KilnError } from "../errors.ts";

/** The checkpoint's `architectures` names a model kiln has no definition for. */
export class UnsupportedArchitectureError extends KilnError {
  constructor(architecture: string, supported: readonly string[], source: string) {
    super(
      `unsupported architecture "${architecture}" in ${source}; kiln supports: ${supported.join(", ")}. ` +
        "Use a checkpoint of a supported architecture, or add a model definition under src/models/.",
    );
  }
}
