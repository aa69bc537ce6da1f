// The activation arena: every activation of the plan gets a fixed region of one device buffer,
// sized for the engine's largest step. Regions are reused once their activation is dead (liveness
// over the straight-line plan), so memory is a few layers' worth, not all layers'.
//
//   op:        0    1    2    3    4 ...
//   act a:     [=========]                  a is written by op 0, last read by op 2
//   act b:          [==============]        b reuses nothing (a is still live at op 1)
//   act c:                    [====]        c takes a's region (same size, a dead after op 2)

export interface Region {
  offset: number;
  bytes: number;
}

const ALIGN = 256; // cuBLASLt and 16-byte vector loads want aligned operands

/** One step of a lowered program, by the storage it reads and writes. */
export interface Access {
  reads: readonly string[];
  writes: readonly string[];
}

export function planArena(
  steps: readonly Access[],
  /** Bytes of storage `name` at the largest step. */
  bytesOf: (name: string) => number,
  /** Storage that must outlive the program (its result). */
  pinned: ReadonlySet<string> = new Set(),
): { regions: Map<string, Region>; totalBytes: number } {
  const lastUse = new Map<string, number>();
  steps.forEach((step, i) => {
    for (const x of [...step.reads, ...step.writes]) lastUse.set(x, i);
  });
  const regions = new Map<string, Region>();
  const free: Region[] = [];
  let total = 0;
  steps.forEach((step, i) => {
    for (const out of step.writes) {
      if (regions.has(out)) continue; // placed already: written again (a gated_act after its fused GEMV)
      const bytes = Math.ceil(bytesOf(out) / ALIGN) * ALIGN;
      const at = pinned.has(out) ? -1 : free.findIndex((r) => r.bytes === bytes);
      if (at >= 0) {
        regions.set(out, free[at]);
        free.splice(at, 1);
      } else {
        regions.set(out, { offset: total, bytes });
        total += bytes;
      }
    }
    for (const name of new Set([...step.reads, ...step.writes])) {
      if (lastUse.get(name) === i && !pinned.has(name)) {
        const r = regions.get(name);
        if (r && !free.includes(r)) free.push(r);
      }
    }
  });
  return { regions, totalBytes: total };
}
