// Run by pack_smoke.mjs inside the installed project: `kiln serve --port 0` from the packed kiln
// (its executor on a worker thread started from dist/, on plain Node), one greedy completion through it,
// then SIGTERM. Prints {"text", "exit"}; exits 1 with the server's output when it does not get there.
import { spawn } from "node:child_process";

// The package's bin (it execs node), not npx, so SIGTERM reaches the server itself.
const server = spawn("./node_modules/.bin/kiln", ["serve", "--port", "0", "--log-level", "warn"], {
  stdio: ["ignore", "pipe", "pipe"],
});
let out = "";
let err = "";
server.stderr.on("data", (d) => {
  err += d;
});
const exited = new Promise((resolve) => server.on("exit", (code) => resolve(code)));
const give = (why) => {
  console.error(`serve probe: ${why}\nstdout: ${out}\nstderr: ${err}`);
  server.kill("SIGKILL");
  process.exit(1);
};
const timer = setTimeout(() => give("no ready line within 120 s"), 120_000);
let ready = false;
const url = await new Promise((resolve) => {
  server.stdout.on("data", (d) => {
    out += d;
    const m = /kiln serve: (http:\/\/\S+)/.exec(out);
    if (m && !ready) {
      ready = true;
      resolve(m[1]);
    }
  });
  void exited.then((code) => {
    if (!ready) give(`exited (${code}) before it was ready`);
  });
});
clearTimeout(timer);
const r = await fetch(`${url}/v1/completions`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ model: "default", prompt: "ROMEO:", max_tokens: 8, temperature: 0 }),
});
const body = await r.json();
if (r.status !== 200) give(`completion answered ${r.status}: ${JSON.stringify(body)}`);
server.kill("SIGTERM");
console.log(JSON.stringify({ text: body.choices[0].text, exit: await exited }));
