// kernels/attention_decode_mma.cu on the CPU emulator (kernels/emulation/attention_decode_mma_run.sh):
// within the written bound of the double reference (P rounded to the dtype before P·V) for four of the
// run script's configurations (bf16 and fp16, D 128 and 64, BLOCK_SIZE 16 and 7, G 4, 4, 16, 1; windows
// 0, 5 and 70, both block-table layouts, a padding row, contexts 1 … 1,000, one split and context splits
// 3 and 8 merged by the last CTA), attention_decode_mma and its body with one K/V stage more
// (decode_mma_deeper, the check's own), bit for bit the entry's; copies of the kernel with the context
// mask off by one, a split range off by a tile, a merge that drops a split or a counter left counted
// fail it, and so does an entry that rounds differently; attention_decode_mma_rope (RoPE fused in) gives
// rope_qkv_fused + attention_decode_mma's output and cache bit for bit, and fails it when a tile after the
// PDL wait misses the new key's rows; attention_decode_mma_kv8 (FP8 pools, the CPU's quantization of the
// same cache) within that bound (fp16: plus one rounding of V), its deeper body the same bits, and copies
// that leave V unscaled (bf16: P not times V's scale) or miss the new key's row before the first tile
// fail it.
// The full matrix: the run script without --ci. Needs g++ ≥ 12.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/attention_decode_mma_run.sh");
const KERNEL = kernelsPath("attention_decode_mma.cu");

describe("attention_decode_mma.cu on the CPU emulator", { skip: noGxx }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-mma-emu-"));
  /** The emulator's run of a copy of the kernel (one configuration). */
  /** `entries`: the check's plain entries or its FP8 ones (KILN_MMA_CHECK). */
  const runCopy = (name: string, src: string, rope = false, entries: "plain" | "kv8" = "plain") => {
    const path = join(dir, name);
    writeFileSync(path, src);
    return spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 600_000,
      env: {
        ...process.env,
        SRC: path,
        ONLY: "BF16 64 16 8 2",
        ROPE: rope ? "1" : "0",
        KILN_MMA_CHECK: entries,
      },
    });
  };
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("four configurations within the bound of the double reference; a deeper pipeline, the same bits", () => {
    const r = spawnSync("bash", [SCRIPT, "--ci"], { encoding: "utf8", timeout: 1_200_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(r.stdout.match(/^decode_mma .* PASS$/gm)?.length, 4, r.stdout);
    const deeper = r.stdout.match(/^decode_mma_deeper .* PASS$/gm) ?? [];
    assert.equal(deeper.length, 4, r.stdout);
    for (const line of deeper) assert.match(line, /same bits as its base entry/);
    assert.equal(r.stdout.match(/^decode_mma_kv8 .* PASS$/gm)?.length, 4, r.stdout);
    const deeper8 = r.stdout.match(/^decode_mma_kv8_deeper .* PASS$/gm) ?? [];
    assert.equal(deeper8.length, 4, r.stdout);
    for (const line of deeper8) assert.match(line, /same bits as its base entry/);
    const rope = r.stdout.match(/^decode_mma\+rope .* PASS$/gm) ?? [];
    assert.equal(rope.length, 4, r.stdout);
    for (const line of rope) assert.match(line, /norm splits=8 w=40 \[stride,S\]/);
    for (const line of r.stdout.match(/^decode_mma .* PASS$/gm) ?? [])
      assert.match(line, /w=0 3 splits err\/bound=.* w=0 8 splits .* w=70 \[stride,S\] 8 splits/);
  });

  /** Runs a copy of the kernel with `from` replaced by `to` (which must occur) and expects it to fail. */
  const expectBroken = (
    name: string,
    from: string,
    to: string,
    failure: RegExp,
    rope = false,
    entries: "plain" | "kv8" = "plain",
  ) => {
    const src = readFileSync(KERNEL, "utf8");
    assert.ok(src.includes(from), `${name}: the line moved: update this test`);
    const r = runCopy(name, src.replace(from, to), rope, entries);
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, failure);
  };

  test("a split range shifted by a tile fails the check", () => {
    expectBroken(
      "range.cu",
      "k.ks = min(ctx, lo + p.split * per);",
      "k.ks = min(ctx, lo + p.split * per + (p.split > 0 ? 64 : 0));",
      /splits err\/bound=[\d.]+ \(FAIL: \d+ elements\)/,
    );
  });

  test("a merge that drops the last split fails the check", () => {
    expectBroken(
      "merge.cu",
      "if (z < p.num_splits) {",
      "if (z < p.num_splits - 1) {",
      /splits err\/bound=[\d.]+ \(FAIL: \d+ elements\)/,
    );
  });

  test("a fused-RoPE kernel whose later tiles miss the new key's rows fails the check", () => {
    expectBroken(
      "rope.cu",
      "if (kRope && !pre && k.holds_new && t == k.new_tile)",
      "if (false)",
      /^decode_mma\+rope .*output differs \(FAIL\)/m,
      true,
    );
  });

  test("a last CTA that leaves its counter counted fails the check", () => {
    expectBroken("counter.cu", "if (last) *counter = 0;", "", /FAIL: \d+ counters left non-zero/);
  });

  test("a kernel that lets key ctx in fails the check", () => {
    const src = readFileSync(KERNEL, "utf8");
    const broken = src.replace("x[e] = key < ctx ? v * sl", "x[e] = key <= ctx ? v * sl");
    assert.notEqual(broken, src, "the mask line moved: update this test");
    const r = runCopy("broken.cu", broken);
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /FAIL: \d+ elements/);
  });

  test("an entry that rounds differently from its body fails the check, within the bound or not", () => {
    const src = readFileSync(KERNEL, "utf8");
    // The plain entry's call of the body (the rope entry passes its own RopeIn): its scale argument.
    const call = src.indexOf("attn::decode_mma<attn::kMmaStages, false>(");
    const at = src.indexOf(" scale,", call);
    assert.ok(call >= 0 && at > call, "the entry's call moved: update this test");
    const broken = `${src.slice(0, at)} scale * 1.0001f,${src.slice(at + " scale,".length)}`;
    const r = runCopy("rounding.cu", broken);
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^decode_mma .* PASS$/m);
    assert.match(r.stdout, /^decode_mma_deeper .*differs from its base entry \(FAIL: \d+ runs\)/m);
  });

  test("an FP8 kernel that leaves V unscaled fails the check", () => {
    expectBroken(
      "kv8_vscale.cu",
      "for (int e = 0; e < 4; e++) x[e] *= vsc[e];",
      "",
      /^decode_mma_kv8 .*\(FAIL: \d+ elements\)/m,
      false,
      "kv8",
    );
  });

  test("an FP8 kernel whose first tile misses the new key's row fails the check", () => {
    expectBroken(
      "kv8_newkey.cu",
      "k.new_tile < kStages - 1 && warp == new_r / kWarpKeys",
      "k.new_tile < kStages - 1 && false",
      /^decode_mma_kv8 .*\(FAIL: \d+ elements\)/m,
      false,
      "kv8",
    );
  });
});
