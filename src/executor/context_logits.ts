// A request's context logits (returnContextLogits) gathered chunk by chunk: the logits of every
// prompt position, [promptLen × V], as ModelRunner.generate's contextLogits. A chunk's rows arrive in
// position order; positions already in (a recompute after a preemption) are skipped.
export class ContextLogits {
  /** [promptLen × V] */
  readonly logits: Float32Array;
  private filled = 0;

  constructor(
    private readonly promptLen: number,
    private readonly V: number,
  ) {
    this.logits = new Float32Array(promptLen * V);
  }

  /** `rows`: [n × V], the logits of positions start…start+n−1. Returns whether every prompt
   * position is in. */
  add(start: number, rows: Float32Array): boolean {
    const V = this.V;
    const n = rows.length / V;
    for (let i = 0; i < n; i++) {
      const pos = start + i;
      if (pos !== this.filled || pos >= this.promptLen) continue;
      this.logits.set(rows.subarray(i * V, (i + 1) * V), pos * V);
      this.filled++;
    }
    return this.filled === this.promptLen;
  }
}
