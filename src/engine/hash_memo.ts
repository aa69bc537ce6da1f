// Remembers files' sha256 across runs, keyed by what the filesystem says about them (path, inode,
// size, modification and change times in ns), so a cache hit on a 16 GB checkpoint costs a stat per
// file instead of reading every byte. Any change to a file changes its ctime, so the memo can only
// return the hash of the bytes that are there; a missing or unreadable memo entry is just a miss.
import { createHash } from "node:crypto";
import { readFileSync, realpathSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sha256File } from "../checkpoint/content_hash.ts";
import { makeDirectory } from "../make_directory.ts";

export type FileHasher = (path: string) => string;

export function memoizedFileHasher(cacheRoot: string): FileHasher {
  const dir = join(cacheRoot, "file-hashes");
  return (path) => {
    const real = realpathSync(path);
    const st = statSync(real, { bigint: true });
    const stamp = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const entry = join(dir, `${createHash("sha256").update(real).digest("hex").slice(0, 32)}.json`);
    try {
      const memo = JSON.parse(readFileSync(entry, "utf8")) as { stamp?: string; sha256?: string };
      if (memo.stamp === stamp && typeof memo.sha256 === "string") return memo.sha256;
    } catch {
      // no memo yet (or a corrupt one): hash the file
    }
    const sha256 = sha256File(real);
    try {
      makeDirectory(dir);
      const tmp = `${entry}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify({ path: real, stamp, sha256 }));
      renameSync(tmp, entry);
    } catch {
      // a read-only cache only costs the next run a re-hash
    }
    return sha256;
  };
}
