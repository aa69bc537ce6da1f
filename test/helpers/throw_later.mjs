// A preload for CLI tests: once the command reads its tokenizer.json, throws an errno error from
// setImmediate, outside any promise of the command, as a stream or event handler can
// (KILN_TEST_THROW_LATER = the errno code, e.g. "ENOSPC").
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { constants } from "node:os";

const code = process.env.KILN_TEST_THROW_LATER;
if (code) {
  const readFileSync = fs.readFileSync;
  let armed = true;
  fs.readFileSync = (path, ...rest) => {
    if (armed && String(path).endsWith("tokenizer.json")) {
      armed = false;
      setImmediate(() => {
        const e = new Error(`${code}: injected, write`);
        throw Object.assign(e, { errno: -constants.errno[code], code, syscall: "write" });
      });
    }
    return readFileSync(path, ...rest);
  };
  syncBuiltinESMExports();
}
