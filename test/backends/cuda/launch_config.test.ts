// cuLaunchKernelEx's CUlaunchConfig / CUlaunchAttribute as ffi/launch_config.ts packs them, on a machine
// without a GPU: the offsets against the C compiler's sizeof/offsetof over cuda.h (when a C++ compiler
// and cuda.h are installed), against koffi's layout of the same structs, and the packed bytes.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import koffi from "koffi";
import type { CuStream } from "../../../src/backends/cuda/ffi/handles.ts";
import {
  CU_LAUNCH_ATTRIBUTE,
  CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
  CU_LAUNCH_CONFIG,
  LAUNCH_BLOCK_BYTES,
  packLaunchConfig,
} from "../../../src/backends/cuda/ffi/launch_config.ts";

const CUDA_INCLUDE = [process.env.CUDA_HOME, "/usr/local/cuda"]
  .filter((d): d is string => Boolean(d))
  .map((d) => join(d, "include"))
  .find((d) => existsSync(join(d, "cuda.h")));

function findCxx(): string | null {
  for (const cxx of ["g++", "c++", "clang++"]) {
    try {
      execFileSync(cxx, ["--version"], { stdio: "ignore" });
      return cxx;
    } catch {}
  }
  return null;
}

const cxx = findCxx();

/** The C compiler's view of the structs and the enum value, from cuda.h. */
function layoutFromCudaH(include: string, compiler: string): Record<string, number> {
  const dir = mkdtempSync(join(tmpdir(), "kiln-launch-"));
  try {
    const fields = [
      "gridDimX",
      "gridDimY",
      "gridDimZ",
      "blockDimX",
      "blockDimY",
      "blockDimZ",
      "sharedMemBytes",
      "hStream",
      "attrs",
      "numAttrs",
    ];
    const src = `#include <cuda.h>
#include <cstddef>
#include <cstdio>
int main() {
  printf("config.size %zu\\n", sizeof(CUlaunchConfig));
${fields.map((f) => `  printf("config.${f} %zu\\n", offsetof(CUlaunchConfig, ${f}));`).join("\n")}
  printf("attr.size %zu\\n", sizeof(CUlaunchAttribute));
  printf("attr.id %zu\\n", offsetof(CUlaunchAttribute, id));
  printf("attr.value %zu\\n", offsetof(CUlaunchAttribute, value));
  printf("attr.valueBytes %zu\\n", sizeof(CUlaunchAttributeValue));
  printf("attr.pssOffset %zu\\n", offsetof(CUlaunchAttribute, value.programmaticStreamSerializationAllowed));
  printf("attr.idBytes %zu\\n", sizeof(CUlaunchAttributeID));
  printf("pss %d\\n", (int)CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
  return 0;
}
`;
    writeFileSync(join(dir, "layout.cpp"), src);
    const exe = join(dir, "layout");
    execFileSync(compiler, [`-I${include}`, "-o", exe, join(dir, "layout.cpp")], { stdio: "pipe" });
    const out = execFileSync(exe, { encoding: "utf8" });
    return Object.fromEntries(
      out
        .trim()
        .split("\n")
        .map((l) => {
          const [k, v] = l.split(" ");
          return [k, Number(v)];
        }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("CUlaunchConfig / CUlaunchAttribute layout", () => {
  const skip = !CUDA_INCLUDE ? "cuda.h not found" : !cxx ? "no C++ compiler" : false;
  test("offsets and sizes equal the C compiler's over cuda.h", { skip }, () => {
    const c = layoutFromCudaH(CUDA_INCLUDE as string, cxx as string);
    for (const [field, offset] of Object.entries(CU_LAUNCH_CONFIG)) {
      assert.equal(offset, c[`config.${field}`], `CUlaunchConfig.${field}`);
    }
    assert.equal(CU_LAUNCH_ATTRIBUTE.size, c["attr.size"], "sizeof(CUlaunchAttribute)");
    assert.equal(CU_LAUNCH_ATTRIBUTE.id, c["attr.id"]);
    assert.equal(CU_LAUNCH_ATTRIBUTE.value, c["attr.value"]);
    assert.equal(CU_LAUNCH_ATTRIBUTE.valueBytes, c["attr.valueBytes"]);
    assert.equal(CU_LAUNCH_ATTRIBUTE.value, c["attr.pssOffset"], "programmaticStreamSerializationAllowed");
    assert.equal(c["attr.idBytes"], 4, "CUlaunchAttributeID is an int-sized enum");
    assert.equal(CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, c.pss);
  });

  test("koffi lays out the same structs identically (cuda.h's declarations, CUDA 13.0)", () => {
    const value = koffi.union("kiln_test_CUlaunchAttributeValue", {
      pad: koffi.array("char", 64),
      accessPolicyWindow: koffi.struct("kiln_test_CUaccessPolicyWindow", {
        base_ptr: "void *",
        num_bytes: "size_t",
        hitRatio: "float",
        hitProp: "int",
        missProp: "int",
      }),
      programmaticStreamSerializationAllowed: "int",
    });
    const attr = koffi.struct("kiln_test_CUlaunchAttribute", {
      id: "int",
      pad: koffi.array("char", 4),
      value,
    });
    const config = koffi.struct("kiln_test_CUlaunchConfig", {
      gridDimX: "uint",
      gridDimY: "uint",
      gridDimZ: "uint",
      blockDimX: "uint",
      blockDimY: "uint",
      blockDimZ: "uint",
      sharedMemBytes: "uint",
      hStream: "void *",
      attrs: koffi.pointer(attr),
      numAttrs: "uint",
    });
    assert.equal(koffi.sizeof(config), CU_LAUNCH_CONFIG.size);
    for (const [field, offset] of Object.entries(CU_LAUNCH_CONFIG)) {
      if (field !== "size") assert.equal(koffi.offsetof(config, field), offset, `CUlaunchConfig.${field}`);
    }
    assert.equal(koffi.sizeof(attr), CU_LAUNCH_ATTRIBUTE.size);
    assert.equal(koffi.offsetof(attr, "value"), CU_LAUNCH_ATTRIBUTE.value);
    assert.equal(LAUNCH_BLOCK_BYTES % 8, 0);
    assert.equal(CU_LAUNCH_CONFIG.size % 8, 0, "the attribute after the config is 8-byte aligned");
  });
});

describe("packLaunchConfig", () => {
  const shape = {
    grid: [513, 2, 3] as const,
    block: [256, 1, 1] as const,
    sharedBytes: 1024,
    stream: 0x7f00_1234_5678n as CuStream,
  };
  const base = 0x1000_0000n;

  test("with PDL: the config points at its one programmatic-stream-serialization attribute", () => {
    const out = new Uint8Array(LAUNCH_BLOCK_BYTES).fill(0xaa);
    packLaunchConfig({ ...shape, pdl: true }, base, out);
    const v = new DataView(out.buffer);
    const c = CU_LAUNCH_CONFIG;
    assert.deepEqual(
      [c.gridDimX, c.gridDimY, c.gridDimZ, c.blockDimX, c.blockDimY, c.blockDimZ, c.sharedMemBytes].map((o) =>
        v.getUint32(o, true),
      ),
      [513, 2, 3, 256, 1, 1, 1024],
    );
    assert.equal(v.getUint32(28, true), 0, "padding before hStream");
    assert.equal(v.getBigUint64(c.hStream, true), shape.stream);
    assert.equal(v.getBigUint64(c.attrs, true), base + BigInt(c.size));
    assert.equal(v.getUint32(c.numAttrs, true), 1);
    const a = c.size;
    assert.equal(v.getInt32(a + CU_LAUNCH_ATTRIBUTE.id, true), 6);
    assert.equal(v.getInt32(a + CU_LAUNCH_ATTRIBUTE.value, true), 1);
    // Everything else (padding, the rest of the value union) is zero.
    const set = new Set([
      ...[
        0,
        4,
        8,
        12,
        16,
        20,
        24,
        c.numAttrs,
        a + CU_LAUNCH_ATTRIBUTE.id,
        a + CU_LAUNCH_ATTRIBUTE.value,
      ].flatMap((o) => [o, o + 1, o + 2, o + 3]),
      ...[c.hStream, c.attrs].flatMap((o) => [0, 1, 2, 3, 4, 5, 6, 7].map((i) => o + i)),
    ]);
    for (let i = 0; i < LAUNCH_BLOCK_BYTES; i++) if (!set.has(i)) assert.equal(out[i], 0, `byte ${i}`);
  });

  test("without PDL: no attributes", () => {
    const v = new DataView(packLaunchConfig({ ...shape, pdl: false }, base).buffer);
    assert.equal(v.getBigUint64(CU_LAUNCH_CONFIG.attrs, true), 0n);
    assert.equal(v.getUint32(CU_LAUNCH_CONFIG.numAttrs, true), 0);
  });

  test("a block too small is refused", () => {
    assert.throws(() => packLaunchConfig({ ...shape, pdl: true }, base, new Uint8Array(64)), RangeError);
  });
});
