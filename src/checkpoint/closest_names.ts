// "Did you mean" suggestions for MissingTensorError: the existing names closest to a wanted one by edit
// distance. Tensor names differ in small ways (layers.0 vs layer.0, model. prefix), so this finds them.

/** Up to `max` names from `candidates` within a small edit distance of `wanted`, closest first. */
export function closestNames(wanted: string, candidates: Iterable<string>, max = 3): string[] {
  const limit = Math.max(3, Math.floor(wanted.length / 3));
  const scored: { name: string; d: number }[] = [];
  for (const name of candidates) {
    if (Math.abs(name.length - wanted.length) > limit) continue;
    const d = editDistance(wanted, name, limit);
    if (d <= limit) scored.push({ name, d });
  }
  scored.sort((a, b) => a.d - b.d || (a.name < b.name ? -1 : 1));
  return scored.slice(0, max).map((s) => s.name);
}

/** Levenshtein distance, giving up (returning limit + 1) once every path exceeds `limit`. */
function editDistance(a: string, b: string, limit: number): number {
  let prev = new Array<number>(b.length + 1);
  let cur = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    let rowMin = cur[0];
    for (let j = 1; j <= b.length; j++) {
      const sub = prev[j - 1] + (a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1);
      cur[j] = Math.min(sub, prev[j] + 1, cur[j - 1] + 1);
      if (cur[j] < rowMin) rowMin = cur[j];
    }
    if (rowMin > limit) return limit + 1;
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}
