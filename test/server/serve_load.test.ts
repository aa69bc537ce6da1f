// `kiln serve` on the bundled model at the full load (test/server/load_run.ts LOAD_FULL): every
// stream that stays is complete and well-formed, every short request answered, the KV cache idle at the
// end, and resident memory flat within 10% between the first and the last thousand short requests.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { LOAD_FULL as LOAD, runLoad } from "./load_run.ts";
import { type BundledServer, bundledServer } from "./server_helpers.ts";

let s: BundledServer;
before(async () => {
  s = await bundledServer({ executor: { maxNumSeqs: 64 } });
});
after(() => s.close());

test(`load: ${LOAD.streams} concurrent streams, ${LOAD.disconnectShare * 100}% disconnecting, then ${LOAD.shortRequests} short requests`, async () => {
  const { rssFirst, rssLast } = await runLoad(s.server, LOAD);
  assert.ok(rssFirst !== null && rssLast !== null);
  const growth = rssLast / rssFirst - 1;
  assert.ok(
    growth <= 0.1,
    `resident memory grew ${(growth * 100).toFixed(1)}% (${(rssFirst / 2 ** 20).toFixed(0)} → ${(rssLast / 2 ** 20).toFixed(0)} MiB)`,
  );
  console.log(
    `rss ${(rssFirst / 2 ** 20).toFixed(1)} → ${(rssLast / 2 ** 20).toFixed(1)} MiB (${(growth * 100).toFixed(1)}%)`,
  );
});
