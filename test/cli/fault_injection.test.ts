// Every CLI command against the filesystem faults a user meets: an unwritable or read-only place, a
// full disk, a path through a file, a dangling symlink, a symlink loop, no home directory, a pseudo
// file system, a closed or full stdout. Each must end as a user error (exit 2, exactly one line on
// stderr naming the error class, no stack) and leave the user's files as they were; a closed stdout
// ends the command quietly (exit 0, nothing on stderr). Exit 1 is reserved for kiln's bugs.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const KILN = join(ROOT, "bin/kiln");
const FAULTS_PRELOAD = join(ROOT, "test/helpers/fs_faults.mjs");
// chmod cannot make a directory unwritable for root: there the same fault is injected by the preload.
const IS_ROOT = process.getuid?.() === 0;

type Command = "run" | "chat" | "bench" | "build" | "tokenize" | "verify";

interface Fault {
  name: string;
  /** The cache root (run, chat, bench) or the --output parent (build) the fault sits on. */
  place: (u: UserDirs) => string;
  env?: (u: UserDirs) => Record<string, string>;
  /** Commands this fault applies to. */
  commands: Command[];
  /** Expected error class, per command where it differs. */
  error: string | Partial<Record<Command, string>>;
  /** Runs with stdout on /dev/full instead of a pipe. */
  stdoutFull?: boolean;
  /** Model dir to use instead of the user's model. */
  model?: (u: UserDirs) => string;
  extraArgs?: string[];
}

interface UserDirs {
  /** The user's own files (a model, a notes file, a read-only dir, symlinks): must not change. */
  user: string;
  /** Scratch space for caches and outputs that are not faulty. */
  scratch: string;
  model: string;
}

const CACHE_USERS: Command[] = ["run", "chat", "bench"];
/** verify's errors for a path that cannot be an engine are its own; any named class will do. */
const ANY_NAMED_ERROR = "[A-Z]\\w*Error";

const FAULTS: Fault[] = [
  {
    name: IS_ROOT
      ? "unwritable directory (chmod 555; root: EACCES injected)"
      : "unwritable directory (chmod 555)",
    place: (u) => join(u.user, "readonly"),
    env: (u): Record<string, string> =>
      IS_ROOT
        ? { KILN_TEST_FS_FAULT: JSON.stringify({ code: "EACCES", under: join(u.user, "readonly") }) }
        : {},
    commands: [...CACHE_USERS, "build"],
    error: {
      run: "CacheDirError",
      chat: "CacheDirError",
      bench: "CacheDirError",
      build: "OutputNotWritableError",
    },
  },
  {
    name: "read-only file system (EROFS injected)",
    place: (u) => join(u.user, "readonly"),
    env: (u) => ({ KILN_TEST_FS_FAULT: JSON.stringify({ code: "EROFS", under: join(u.user, "readonly") }) }),
    commands: [...CACHE_USERS, "build"],
    error: {
      run: "CacheDirError",
      chat: "CacheDirError",
      bench: "CacheDirError",
      build: "OutputNotWritableError",
    },
  },
  {
    name: "disk full while writing (ENOSPC injected after 4 KiB)",
    place: (u) => join(u.scratch, "full"),
    env: (u) => ({
      KILN_TEST_FS_FAULT: JSON.stringify({
        code: "ENOSPC",
        under: join(u.scratch, "full"),
        afterBytes: 4096,
      }),
    }),
    commands: [...CACHE_USERS, "build"],
    error: "FileSystemError",
  },
  {
    name: "path under a file (ENOTDIR)",
    place: (u) => join(u.user, "notes.txt", "kiln"),
    commands: [...CACHE_USERS, "build", "verify"],
    error: {
      run: "CacheDirError",
      chat: "CacheDirError",
      bench: "CacheDirError",
      build: "OutputNotWritableError",
      verify: ANY_NAMED_ERROR,
    },
  },
  {
    name: "dangling symlink in the path",
    place: (u) => join(u.user, "dangling", "kiln"),
    commands: [...CACHE_USERS, "build", "verify"],
    error: {
      run: "CacheDirError",
      chat: "CacheDirError",
      bench: "CacheDirError",
      build: "FileSystemError",
      verify: ANY_NAMED_ERROR,
    },
  },
  {
    name: "symlink loop in the path (ELOOP)",
    place: (u) => join(u.user, "loop", "kiln"),
    commands: [...CACHE_USERS, "build", "verify"],
    error: {
      run: "CacheDirError",
      chat: "CacheDirError",
      bench: "CacheDirError",
      build: "FileSystemError",
      verify: ANY_NAMED_ERROR,
    },
  },
  {
    name: "pseudo file system (/proc: recursive mkdir used to spin forever)",
    place: () => "/proc/kiln",
    commands: [...CACHE_USERS, "build"],
    error: {
      run: "CacheDirError",
      chat: "CacheDirError",
      bench: "CacheDirError",
      build: "OutputNotWritableError",
    },
  },
  {
    // A HOME that does not exist (as HOME=/nonexistent), inside scratch so that a kiln that wrongly
    // creates it (as root can) leaves nothing behind outside the test's dirs.
    name: "HOME does not exist and no cache dir is set",
    place: () => "",
    env: (u) => ({ HOME: join(u.scratch, "nonexistent"), KILN_CACHE_DIR: "", XDG_CACHE_HOME: "" }),
    commands: CACHE_USERS,
    error: "CacheDirError",
  },
  {
    name: "--random-weights on a directory without config.json",
    place: (u) => join(u.scratch, "cache-random"),
    model: (u) => join(u.user, "empty"),
    extraArgs: ["--random-weights"],
    commands: ["run", "bench"],
    error: "ConfigError",
  },
  {
    name: "stdout on a full disk (/dev/full)",
    place: (u) => join(u.scratch, "cache-devfull"),
    stdoutFull: true,
    // verify checks the engine the build row just wrote there.
    commands: [...CACHE_USERS, "build", "verify", "tokenize"],
    error: "FileSystemError",
  },
];

function commandArgs(cmd: Command, model: string, place: string, scratch: string): string[] {
  const cache = place ? ["--cache-dir", place] : [];
  switch (cmd) {
    case "run":
      return ["run", "--model", model, "--max-new-tokens", "2", ...cache];
    case "chat":
      return ["chat", "--model", model, "--max-new-tokens", "2", ...cache];
    case "bench":
      return ["bench", "--model", model, "--input-len", "4", "--output-len", "2", "--runs", "1", ...cache];
    case "build":
      return ["build", "--model", model, "--output", place ? join(place, "engine") : join(scratch, "engine")];
    case "tokenize":
      return ["tokenize", "--model", model, "--text", "hi"];
    case "verify":
      return ["verify", join(place || scratch, "engine")];
  }
}

/** What a user dir holds: type, size, mode and mtime of every entry (links not followed). */
function snapshot(dir: string): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      const what = st.isSymbolicLink() ? `link→${readlinkSync(p)}` : st.isDirectory() ? "dir" : "file";
      lines.push(`${p} ${what} ${st.size} ${st.mode} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return lines.join("\n");
}

function runKiln(
  args: string[],
  env: Record<string, string>,
  stdoutFull: boolean,
): { code: number | null; stdout: string; stderr: string } {
  const fd = stdoutFull ? openSync("/dev/full", "w") : null;
  try {
    const r = spawnSync(KILN, args, {
      encoding: "utf8",
      timeout: 60_000,
      input: "hello\n",
      stdio: ["pipe", fd ?? "pipe", "pipe"],
      env: { ...process.env, KILN_CACHE_DIR: "", ...env },
    });
    return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr };
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

describe("fault injection: every command × filesystem faults", () => {
  const u: UserDirs = { user: "", scratch: "", model: "" };
  const commands: Command[] = ["run", "chat", "bench", "build", "tokenize"];
  // A teammate's `kiln verify` joins the table once it exists.
  if (existsSync(join(ROOT, "src/cli/verify.ts"))) commands.push("verify");

  before(() => {
    u.user = mkdtempSync(join(tmpdir(), "kiln-user-"));
    u.scratch = mkdtempSync(join(tmpdir(), "kiln-scratch-"));
    u.model = join(u.user, "model");
    cpSync(join(ROOT, "models/default"), u.model, { recursive: true });
    writeFileSync(join(u.user, "notes.txt"), "the user's notes\n");
    mkdirSync(join(u.user, "readonly"));
    writeFileSync(join(u.user, "readonly", "keep.txt"), "keep\n");
    chmodSync(join(u.user, "readonly"), 0o555);
    symlinkSync(join(u.user, "nowhere"), join(u.user, "dangling"));
    symlinkSync(join(u.user, "loop"), join(u.user, "loop"));
    mkdirSync(join(u.user, "empty"));
    mkdirSync(join(u.scratch, "full"));
  });
  after(() => {
    chmodSync(join(u.user, "readonly"), 0o755);
    rmSync(u.user, { recursive: true, force: true });
    rmSync(u.scratch, { recursive: true, force: true });
  });

  for (const fault of FAULTS) {
    for (const cmd of commands.filter((c) => fault.commands.includes(c))) {
      test(`${cmd}: ${fault.name}`, () => {
        const place = fault.place(u);
        const env = {
          ...(fault.env?.(u) ?? {}),
          ...(fault.env?.(u).KILN_TEST_FS_FAULT ? { NODE_OPTIONS: `--import ${FAULTS_PRELOAD}` } : {}),
        };
        const model = fault.model?.(u) ?? u.model;
        const args = [...commandArgs(cmd, model, place, u.scratch), ...(fault.extraArgs ?? [])];
        const before = snapshot(u.user);
        const r = runKiln(args, env, fault.stdoutFull === true);
        const detail = `kiln ${args.join(" ")}\nexit ${r.code}\nstderr: ${r.stderr}`;
        const expected = typeof fault.error === "string" ? fault.error : fault.error[cmd];
        assert.equal(r.code, 2, detail);
        const lines = r.stderr.split("\n").filter((l) => l !== "");
        assert.equal(lines.length, 1, `exactly one line on stderr\n${detail}`);
        assert.match(lines[0], new RegExp(`^kiln: ${expected}: \\S`), detail);
        assert.doesNotMatch(r.stderr, /\n\s+at |internal error/, detail);
        assert.equal(snapshot(u.user), before, `the user's files changed\n${detail}`);
        assert.ok(!existsSync(join(u.scratch, "nonexistent")), "kiln created the missing HOME");
      });
    }
  }
});

describe("a closed stdout (kiln … | head) ends every command quietly", () => {
  const cache = mkdtempSync(join(tmpdir(), "kiln-cache-"));
  const out = mkdtempSync(join(tmpdir(), "kiln-out-"));
  const model = join(ROOT, "models/default");
  after(() => {
    rmSync(cache, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  });
  // verify (once it exists) checks the engine the build test before it wrote.
  const commands: Command[] = ["run", "chat", "bench", "build", "tokenize"];
  if (existsSync(join(ROOT, "src/cli/verify.ts"))) commands.splice(4, 0, "verify");
  for (const cmd of commands) {
    test(cmd, async () => {
      const args = commandArgs(cmd, model, cmd === "build" || cmd === "verify" ? out : cache, out);
      if (cmd === "run" || cmd === "chat") args.splice(args.indexOf("--max-new-tokens") + 1, 1, "64");
      const child = spawn(KILN, args, { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env } });
      // The reader goes away before kiln writes anything: its first write meets EPIPE.
      child.stdout.destroy();
      child.stdin.end("hello\n");
      let stderr = "";
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      assert.equal(stderr, "", `nothing on stderr: ${stderr}`);
      assert.equal(code, 0, stderr);
    });
  }
});

test("no source file uses Node's recursive mkdir (it spins forever on /proc): use makeDirectory", () => {
  const offenders: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (lstatSync(p).isDirectory()) walk(p);
      else if (p.endsWith(".ts") && /mkdirSync\([^)]*recursive:\s*true/.test(readFileSync(p, "utf8")))
        offenders.push(p);
    }
  };
  walk(join(ROOT, "src"));
  assert.deepEqual(offenders, []);
});
