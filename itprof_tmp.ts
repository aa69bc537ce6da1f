import { Executor } from "./src/executor/executor.ts";
import { Session } from "./src/runtime/session.ts";
const real = Session.open("/tmp/tinyeng/e", {});
// A backend whose steps cost nothing: tokens come back at once (token 5 for every row), so what the
// iterations take is the executor's host work alone.
let nextId = 0;
const fakeBackend = new Proxy(real.backend, {
  get(target, key) {
    if (key === "enqueueSample") return (step: any) => ({ id: nextId++, rows: step.logitRows.length });
    if (key === "collectSample") return (t: any) => ({ tokens: new Int32Array(t.rows).fill(5), logProbs: new Float32Array(t.rows) });
    if (key === "forwardSample") return (step: any) => ({ tokens: new Int32Array(step.logitRows.length).fill(5), logProbs: new Float32Array(step.logitRows.length) });
    const v = Reflect.get(target, key, target);
    return typeof v === "function" ? v.bind(target) : v;
  },
});
const session = { backend: fakeBackend, config: real.config, tokenizer: real.tokenizer, generationDefaults: real.generationDefaults, dispose: () => {} } as any;
const its: any[] = [];
const ex = new Executor(session, { onIteration: (s) => its.push(s) } as any);
const N = 1024;
let seed = 1; const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const ids = () => Array.from({ length: 128 }, () => 10 + Math.floor(rnd() * 900));
const t0 = performance.now();
const done = [];
for (let i = 0; i < N; i++) {
  const id = ex.enqueue({ prompt: ids(), maxNewTokens: 128, endId: [], greedy: true } as any);
  done.push((async () => { for await (const _ of ex.results(id)) {} })());
}
await Promise.all(done);
console.log("total ms", (performance.now() - t0).toFixed(0), "iterations", its.length);
const pre = its.filter((s) => s.numContextTokens > 0), dec = its.filter((s) => s.numContextTokens === 0);
const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const [name, a] of [["prefill/mixed", pre], ["decode", dec]] as const)
  console.log(name, a.length, "hostMs median", med(a.map((s) => s.hostMs)).toFixed(1), "max", Math.max(...a.map((s) => s.hostMs)).toFixed(1), "wait median", med(a.map((s) => s.hostWaitMs)).toFixed(1), "latency median", med(a.map((s) => s.latencyMs)).toFixed(1));
console.log(pre.slice(0, 20).map((s) => `${s.numContextTokens}/${s.numScheduled}:${s.hostMs.toFixed(0)}+${s.hostWaitMs.toFixed(0)}`).join(" "));
await ex.shutdown();
real.dispose();
