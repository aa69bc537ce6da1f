// Named errors of the build stage.
import { KilnError } from "../errors.ts";

/** A build stopped by SIGINT or SIGTERM; its temporary directory was removed. Exits 130 / 143 as a
 * shell expects of a signalled command. */
export class BuildInterruptedError extends KilnError {
  override readonly exitCode: number;
  constructor(readonly signal: NodeJS.Signals) {
    super(`build interrupted by ${signal}; its partial engine was removed and nothing was published`);
    this.exitCode = signal === "SIGINT" ? 130 : 143;
  }
}

/** `kiln build --output` names a place where no directory can be created. */
export class OutputNotWritableError extends KilnError {}

/** `kiln build --model DIR` where DIR is already an engine, not a checkpoint. */
export class ModelIsEngineError extends KilnError {}

/** The checkpoint holds tensors its config.json does not use (e.g. more layers than
 * num_hidden_layers says): running would silently use part of the model. */
export class UnusedTensorError extends KilnError {
  constructor(
    readonly tensorNames: string[],
    dir: string,
  ) {
    const shown = tensorNames.slice(0, 8).join(", ");
    const more = tensorNames.length > 8 ? ` and ${tensorNames.length - 8} more` : "";
    super(
      `checkpoint ${dir} has ${tensorNames.length} tensors its config.json does not use: ${shown}${more}; ` +
        "check that config.json (e.g. num_hidden_layers) belongs to these weights",
    );
  }
}

/** `--quantize` asked of a checkpoint that is already quantized (AWQ, GPTQ, FP8). */
export class PrequantizedCheckpointError extends KilnError {}
