// Build flags with a built engine on `kiln eval` and `kiln serve`: the engine's dtype and weights were
// fixed when it was built, so --dtype, --quantize and --calibration are ConflictingFlagsErrors (exit 2,
// one line), as on run, chat and bench, never silently ignored.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { assertUserError, kiln } from "../helpers/cli.ts";
import { tempCache } from "../helpers/tiny_model.ts";

describe("build flags on a built engine: eval and serve", () => {
  const tmp = tempCache();
  const engine = join(tmp.dir, "engine");
  const text = join(tmp.dir, "text.txt");
  before(() => {
    buildEngine(BUNDLED_MODEL_DIR, engine, {});
    writeFileSync(text, "ROMEO:\nWhat light through yonder window breaks?\n");
  });
  after(() => tmp.cleanup());

  for (const [flag, value, why] of [
    ["--dtype", "fp16", "whose dtype was fixed"],
    ["--quantize", "int8-wo", "whose weight formats were fixed"],
    ["--calibration", "x.txt", "whose weights were fixed"],
  ] as const) {
    test(`eval ${flag} ${value}`, () => {
      assertUserError(
        kiln(["eval", "--model", engine, "--perplexity", text, flag, value]),
        "ConflictingFlagsError",
        new RegExp(`${flag} ${value}: .* is a built engine, ${why}`),
      );
    });
    test(`serve ${flag} ${value}`, () => {
      assertUserError(
        kiln(["serve", "--model", engine, "--port", "0", flag, value]),
        "ConflictingFlagsError",
        new RegExp(`${flag} ${value}: .* is a built engine, ${why}`),
      );
    });
  }
});
