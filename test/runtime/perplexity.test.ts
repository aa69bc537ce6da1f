// Sliding-window perplexity: the window bookkeeping against a recording fake, and the backend scorer's
// NLL against a direct float64 computation from the backend's logits of every position.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import {
  BackendScorer,
  perplexity,
  slidingWindows,
  type WindowScorer,
} from "../../src/runtime/perplexity.ts";
import { PerplexityOptionsError, TextTooShortError } from "../../src/runtime/perplexity_errors.ts";
import { Session } from "../../src/runtime/session.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";

/** A scorer that records, per scored token (absolute index), the context it was given; NLL 1 each. */
function recorder(ids: Int32Array) {
  const scored = new Map<number, number[][]>();
  const scorer: WindowScorer = {
    scoreWindow(win: Int32Array, from: number) {
      const begin = win.byteOffset / 4 - ids.byteOffset / 4;
      assert.ok(from >= 1, "a window's first token has no logits before it");
      for (let t = from; t < win.length; t++) {
        const list = scored.get(begin + t) ?? [];
        list.push(Array.from(win.subarray(0, t)));
        scored.set(begin + t, list);
      }
      return { nll: win.length - from, count: win.length - from };
    },
  };
  return { scorer, scored };
}

describe("sliding windows", () => {
  test("stride < max-length scores every token but the first exactly once, with its window's context", () => {
    for (const [n, maxLength, stride] of [
      [23, 8, 4],
      [23, 8, 3],
      [24, 8, 4],
      [9, 8, 1],
      [5, 8, 4],
    ]) {
      const ids = Int32Array.from({ length: n }, (_, i) => 100 + i);
      const { scorer, scored } = recorder(ids);
      const r = perplexity(ids, { maxLength, stride }, scorer);
      assert.deepEqual(
        [...scored.keys()].sort((a, b) => a - b),
        Array.from({ length: n - 1 }, (_, i) => i + 1),
      );
      for (const [t, contexts] of scored) {
        assert.equal(contexts.length, 1, `token ${t} scored once`);
        const ctx = contexts[0];
        // The context is the tokens just before t, at most maxLength − 1 of them, and at least
        // maxLength − stride once the windows slide.
        assert.deepEqual(ctx, Array.from(ids.subarray(t - ctx.length, t)));
        assert.ok(ctx.length <= maxLength - 1);
        if (t >= maxLength) assert.ok(ctx.length >= maxLength - stride, `token ${t}: context ${ctx.length}`);
      }
      assert.equal(r.scoredTokens, n - 1);
      assert.equal(r.perplexity, Math.E);
    }
  });

  test("the guide's windows: begin every stride, trgLen = end − prevEnd, stop at the end", () => {
    assert.deepEqual(slidingWindows(10, { maxLength: 4, stride: 2 }), [
      { begin: 0, end: 4, firstScored: 1 },
      { begin: 2, end: 6, firstScored: 4 },
      { begin: 4, end: 8, firstScored: 6 },
      { begin: 6, end: 10, firstScored: 8 },
    ]);
    // Without overlap each window's first token has no context and goes unscored, as in the guide.
    assert.deepEqual(slidingWindows(10, { maxLength: 4, stride: 4 }), [
      { begin: 0, end: 4, firstScored: 1 },
      { begin: 4, end: 8, firstScored: 5 },
      { begin: 8, end: 10, firstScored: 9 },
    ]);
  });

  test("rejects a stride above max-length and a text under two tokens", () => {
    assert.throws(() => slidingWindows(10, { maxLength: 4, stride: 5 }), PerplexityOptionsError);
    assert.throws(() => slidingWindows(1, { maxLength: 4, stride: 2 }), TextTooShortError);
    assert.throws(() => slidingWindows(10, { maxLength: 1, stride: 1 }), PerplexityOptionsError);
  });
});

describe("the backend scorer", () => {
  const model = writeTinyModel("llama", 5);
  const engineDir = join(model.dir, "engine");
  buildEngine(model.dir, engineDir, { kvBlockSize: 4 });
  const session = Session.open(engineDir);
  after(() => {
    session.dispose();
    model.cleanup();
  });
  const backend = session.backend;
  const V = backend.vocabSize;
  const ids = Int32Array.from({ length: 40 }, (_, i) => (i * 17 + 3) % V);

  /** Σ −log p(win[t] | win[0, t)) for t ≥ from, from one step that returns every position's logits. */
  function direct(win: Int32Array, from: number): number {
    const n = win.length;
    backend.allocateKvCache(Math.ceil(n / backend.kvBlockSize));
    const positions = Int32Array.from({ length: n }, (_, i) => i);
    const logits = backend.forward({
      tokenIds: win.slice(),
      positions,
      slotMapping: positions.slice(),
      seqs: [
        {
          queryStart: 0,
          queryLen: n,
          contextLen: n,
          blockTable: Int32Array.from({ length: Math.ceil(n / backend.kvBlockSize) }, (_, i) => i),
        },
      ],
      logitRows: positions.slice(),
    });
    let nll = 0;
    for (let t = from; t < n; t++) {
      const row = Array.from(logits.subarray((t - 1) * V, t * V));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
      nll += lse - row[win[t]];
    }
    return nll;
  }

  function close(actual: number, expected: number): void {
    assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.abs(expected), `${actual} vs ${expected}`);
  }

  test("one window: the NLL of every token but the first, in chunks, equals the direct computation", () => {
    const expected = direct(ids, 1);
    const r = perplexity(
      ids,
      { maxLength: 40, stride: 40 },
      new BackendScorer(backend, 40, { chunkTokens: 7 }),
    );
    assert.equal(r.windows, 1);
    assert.equal(r.scoredTokens, 39);
    close(r.totalNll, expected);
    close(r.perplexity, Math.exp(expected / 39));
  });

  test("sliding windows: each window's scored tokens, with its own context, sum to the direct NLL", () => {
    const opts = { maxLength: 16, stride: 6 };
    let expected = 0;
    for (const w of slidingWindows(ids.length, opts))
      expected += direct(ids.slice(w.begin, w.end), w.firstScored - w.begin);
    const r = perplexity(ids, opts, new BackendScorer(backend, 16, { chunkTokens: 5 }));
    assert.equal(r.scoredTokens, 39);
    close(r.totalNll, expected);
    // Context matters: scoring without overlap gives another total.
    const noOverlap = perplexity(ids, { maxLength: 16, stride: 16 }, new BackendScorer(backend, 16));
    assert.notEqual(noOverlap.totalNll, r.totalNll);
  });

  test("maxRows: no step asks for more logits rows than the engine returns, and the NLL is unchanged", () => {
    const forward = backend.forward.bind(backend);
    const rows: number[] = [];
    backend.forward = (step) => {
      rows.push(step.logitRows.length);
      return forward(step);
    };
    try {
      const opts = { maxLength: 16, stride: 6 };
      const whole = perplexity(ids, opts, new BackendScorer(backend, 16, { chunkTokens: 16 }));
      rows.length = 0;
      const capped = perplexity(ids, opts, new BackendScorer(backend, 16, { chunkTokens: 16, maxRows: 3 }));
      assert.ok(Math.max(...rows) <= 3, `rows per step: ${rows}`);
      assert.equal(
        rows.reduce((a, b) => a + b, 0),
        39,
      );
      close(capped.totalNll, whole.totalNll);
    } finally {
      backend.forward = forward;
    }
  });

  test("the backend's maxLogitRows bounds the rows per step by default, and the NLL is unchanged", () => {
    const forward = backend.forward.bind(backend);
    const rows: number[] = [];
    backend.forward = (step) => {
      rows.push(step.logitRows.length);
      return forward(step);
    };
    const own = Object.getOwnPropertyDescriptor(backend, "maxLogitRows");
    try {
      const opts = { maxLength: 16, stride: 6 };
      const whole = perplexity(ids, opts, new BackendScorer(backend, 16, { chunkTokens: 16 }));
      Object.defineProperty(backend, "maxLogitRows", { value: 4, configurable: true });
      rows.length = 0;
      const bounded = perplexity(ids, opts, new BackendScorer(backend, 16, { chunkTokens: 16 }));
      assert.ok(Math.max(...rows) <= 4, `rows per step: ${rows}`);
      assert.equal(
        rows.reduce((a, b) => a + b, 0),
        39,
      );
      close(bounded.totalNll, whole.totalNll);
    } finally {
      backend.forward = forward;
      if (own) Object.defineProperty(backend, "maxLogitRows", own);
    }
  });

  test("a last window of one token (nothing to score) runs no step", () => {
    const forward = backend.forward.bind(backend);
    let steps = 0;
    backend.forward = (step) => {
      steps++;
      return forward(step);
    };
    try {
      const text = ids.subarray(0, 33); // windows [0,16) [16,32) [32,33)
      const r = perplexity(
        text,
        { maxLength: 16, stride: 16 },
        new BackendScorer(backend, 16, { chunkTokens: 16 }),
      );
      assert.equal(r.windows, 3);
      assert.equal(r.scoredTokens, 30);
      assert.equal(steps, 2);
    } finally {
      backend.forward = forward;
    }
  });
});
