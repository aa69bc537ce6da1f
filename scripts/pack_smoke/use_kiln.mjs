// Plain JavaScript, as a user of the installed package writes it: generates from the bundled model
// and prints the ids as JSON (pack_smoke.mjs compares them with `kiln run --json`'s), then checks that
// a named error reaches the caller as its class.
import { BUNDLED_MODEL_DIR, InvalidSamplingConfigError, KilnError, ModelRunner } from "kiln";

const runner = ModelRunner.fromDir(BUNDLED_MODEL_DIR);
try {
  const [out] = await runner.generate("ROMEO:", { maxNewTokens: 8, greedy: true, ignoreEos: true });
  let caught = null;
  try {
    await runner.generate("ROMEO:", { maxNewTokens: 2, temperature: -1 });
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof InvalidSamplingConfigError && caught instanceof KilnError))
    throw new Error(`temperature -1: expected InvalidSamplingConfigError, got ${caught}`);
  console.log(JSON.stringify({ outputIds: out.outputIds, text: out.text }));
} finally {
  runner.dispose();
}
