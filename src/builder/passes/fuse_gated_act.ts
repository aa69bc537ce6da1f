// Pass: split(gate_up) → gated_act2(gate, up) becomes gated_act(gate_up), reading the packed GEMM
// output directly instead of copying its halves apart.
import type { Network, Op } from "../../models/network.ts";
import { opInputs } from "../../models/network.ts";

export function fuseGatedAct(net: Network): Network {
  const readers = new Map<string, number>();
  for (const op of net.ops) for (const x of opInputs(op)) readers.set(x, (readers.get(x) ?? 0) + 1);
  const ops: Op[] = [];
  const drop = new Set<Op>();
  for (const op of net.ops) {
    if (op.kind !== "gated_act2") continue;
    const split = net.ops.find(
      (s): s is Extract<Op, { kind: "split" }> =>
        s.kind === "split" && s.outs.length === 2 && s.outs[0] === op.gate && s.outs[1] === op.up,
    );
    if (!split || readers.get(op.gate) !== 1 || readers.get(op.up) !== 1) continue;
    drop.add(split);
    drop.add(op);
    ops.push({ kind: "gated_act", gateUp: split.x, out: op.out, width: op.width, act: op.act });
  }
  // Replace each gated_act2 with its fused op, in place.
  let next = 0;
  const result: Op[] = [];
  for (const op of net.ops) {
    if (!drop.has(op)) result.push(op);
    else if (op.kind === "gated_act2") result.push(ops[next++]);
  }
  return { ...net, ops: result };
}
