// Token embedding: [T] token ids → [T, hidden].
import type { NetworkBuilder } from "../network_builder.ts";

export function embedding(nb: NetworkBuilder, weightName: string, vocabSize: number, hidden: number): string {
  const w = nb.weight(weightName, [vocabSize, hidden]);
  return nb.embedding(w, hidden);
}
