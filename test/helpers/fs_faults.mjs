// A preload (`node --import`) that makes the synchronous fs calls kiln writes with fail as a broken
// disk would, under one directory, for fault-injection tests of the CLI. Configured by
// KILN_TEST_FS_FAULT = JSON { code, under, afterBytes? }:
//   code "EACCES" | "EROFS": every call that would create or change something under `under` fails
//     (works for root too, which chmod cannot make fail);
//   code "ENOSPC": writes under `under` succeed until `afterBytes` bytes were written, then fail
//     (a full disk without mounting a tiny tmpfs, which needs root).
// Reads are never affected. The patched functions are published to ES module imports with
// syncBuiltinESMExports, so `import { writeSync } from "node:fs"` sees them too.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { constants } from "node:os";
import { resolve, sep } from "node:path";

const spec = JSON.parse(process.env.KILN_TEST_FS_FAULT ?? "null");
if (spec) install(spec);

function install({ code, under, afterBytes = 0 }) {
  const root = resolve(under);
  const inside = (p) => {
    if (typeof p !== "string" && !(p instanceof URL)) return false;
    const abs = resolve(String(p));
    return abs === root || abs.startsWith(root + sep);
  };
  const fail = (syscall, path) => {
    const messages = {
      EACCES: "permission denied",
      EROFS: "read-only file system",
      ENOSPC: "no space left on device",
    };
    const e = new Error(`${code}: ${messages[code]}, ${syscall}${path ? ` '${path}'` : ""}`);
    Object.assign(e, { errno: -constants.errno[code], code, syscall, ...(path ? { path } : {}) });
    return e;
  };
  const writing = (flags) => flags !== undefined && flags !== "r" && flags !== fs.constants.O_RDONLY;
  const orig = {};
  const patch = (name, fn) => {
    orig[name] = fs[name];
    fs[name] = fn;
  };

  if (code === "EACCES" || code === "EROFS") {
    const guard = (name, syscall, pathArgs = [0]) =>
      patch(name, (...args) => {
        for (const i of pathArgs) if (inside(args[i])) throw fail(syscall, String(args[i]));
        return orig[name](...args);
      });
    guard("mkdirSync", "mkdir");
    guard("mkdtempSync", "mkdtemp");
    guard("writeFileSync", "open");
    guard("appendFileSync", "open");
    guard("copyFileSync", "copyfile", [1]);
    guard("renameSync", "rename", [0, 1]);
    guard("rmSync", "rm");
    guard("rmdirSync", "rmdir");
    guard("unlinkSync", "unlink");
    guard("symlinkSync", "symlink", [1]);
    patch("openSync", (path, flags, ...rest) => {
      if (inside(path) && writing(flags)) throw fail("open", String(path));
      return orig.openSync(path, flags, ...rest);
    });
    patch("accessSync", (path, mode, ...rest) => {
      if (inside(path) && mode !== undefined && mode & fs.constants.W_OK) throw fail("access", String(path));
      return orig.accessSync(path, mode, ...rest);
    });
  } else if (code === "ENOSPC") {
    let left = afterBytes;
    const fds = new Set();
    const spend = (n, syscall, path) => {
      if (n > left) throw fail(syscall, path);
      left -= n;
    };
    patch("openSync", (path, flags, ...rest) => {
      const fd = orig.openSync(path, flags, ...rest);
      if (inside(path) && writing(flags)) fds.add(fd);
      return fd;
    });
    patch("closeSync", (fd) => {
      fds.delete(fd);
      return orig.closeSync(fd);
    });
    patch("writeSync", (fd, buf, ...rest) => {
      if (fds.has(fd)) {
        const length = typeof buf === "string" ? Buffer.byteLength(buf) : (rest[1] ?? buf.byteLength);
        spend(length, "write");
      }
      return orig.writeSync(fd, buf, ...rest);
    });
    patch("writeFileSync", (path, data, ...rest) => {
      if (inside(path)) spend(typeof data === "string" ? Buffer.byteLength(data) : data.byteLength, "write");
      return orig.writeFileSync(path, data, ...rest);
    });
    patch("copyFileSync", (from, to, ...rest) => {
      if (inside(to)) spend(fs.statSync(from).size, "copyfile", String(to));
      return orig.copyFileSync(from, to, ...rest);
    });
  } else {
    throw new Error(`fs_faults: unknown code ${code}`);
  }
  syncBuiltinESMExports();
}
