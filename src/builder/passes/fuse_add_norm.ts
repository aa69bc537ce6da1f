// Pass: residual add followed by RMSNorm of the sum becomes one add_rms_norm that updates the
// residual stream in place:   r' = a + b; n = norm(r')   →   a += b; n = norm(a)
// Valid when `a` is not read after the add (it is the residual stream); later reads of r' are
// renamed to a.
import type { Network, Op } from "../../models/network.ts";
import { opInputs, renameInputs } from "../../models/network.ts";

export function fuseAddRmsNorm(net: Network): Network {
  let ops = [...net.ops];
  let output = net.output;
  for (let i = 0; i < ops.length - 1; i++) {
    const add = ops[i];
    if (add.kind !== "add") continue;
    const normIdx = ops.findIndex((o, j) => j > i && opInputs(o).includes(add.out));
    const norm = ops[normIdx];
    if (norm?.kind !== "rms_norm" || norm.groupWidth || norm.x !== add.out) continue;
    const laterReadsA = ops.slice(i + 1).some((o) => opInputs(o).includes(add.a));
    if (laterReadsA || add.a === output) continue;
    const fused: Op = {
      kind: "add_rms_norm",
      residual: add.a,
      x: add.b,
      out: norm.out,
      width: add.width,
      eps: norm.eps,
      weight: norm.weight,
    };
    const before = ops.slice(0, i);
    const between = ops.slice(i + 1, normIdx);
    const after = ops.slice(normIdx + 1).map((o) => renameInputs(o, (n) => (n === add.out ? add.a : n)));
    if (output === add.out) output = add.a;
    ops = [...before, ...between, fused, ...after];
    i = before.length + between.length;
  }
  return { ...net, ops, output };
}
