// Where the model shipped with kiln lives (models/default: a 4.6M-parameter Llama trained on
// tinyshakespeare). Resolved from this module's own location, so it holds from src/ in a checkout and
// from dist/ in an installed package alike (both sit one level below the package root).
import { fileURLToPath } from "node:url";

/** Absolute path of the bundled model's checkpoint directory. */
export const BUNDLED_MODEL_DIR = fileURLToPath(new URL("../models/default", import.meta.url));

/** Default calibration text of --quantize int4-awq: the first 12 KB of Tiny Shakespeare (in the bundled
 * model's training split), shipped beside the model. */
export const DEFAULT_CALIBRATION_FILE = fileURLToPath(
  new URL("../models/default/calibration.txt", import.meta.url),
);
