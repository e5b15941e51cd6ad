// The second baseline (issue 22): the same minimal member protocol as loadtest/src/raw.rs,
// on another stack (Node.js and the `ws` package from the npm registry), so that muster is
// compared with the faster of two independent servers, not with one the harness wrote.
//
// Protocol with the harness, as `muster-loadtest raw-server`: prints `listening on ADDR`,
// then for every JSON line {"text": …} on stdin pushes `text` to every open socket and
// answers {"to": sockets, "at": µs on CLOCK_MONOTONIC} on stdout; every client message is
// answered with {"type":"ok","seq":0,"data":{"re":<its id>}}. Ends at end of input or after
// --lifetime-s.
//
// Tuning tried (docs/PERFORMANCE.md, "Baselines"): permessage-deflate off, Nagle off, the
// frame's bytes prepared once and shared by every send, `ok` answers corked per read.
//
// Run: node raw-server.mjs --lifetime-s 900 (with `ws` resolvable: NODE_PATH or a
// node_modules beside; the harness passes NODE_PATH).

import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const { WebSocketServer } = require("ws");

const QUEUE_BYTES = 1024 * 1024; // a socket further behind than this is dropped, as muster does
let lifetime = 900;
const i = process.argv.indexOf("--lifetime-s");
if (i > 0) lifetime = Number(process.argv[i + 1]) || lifetime;

const hello = JSON.stringify({ type: "hello", seq: 0, data: { role: "member", member_id: null, last_seq: 0 } });
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  perMessageDeflate: false,
  maxPayload: 65536,
  clientTracking: true,
});

wss.on("connection", (ws, req) => {
  req.socket.setNoDelay(true);
  ws.send(hello);
  ws.on("message", (data) => {
    let re = null;
    try {
      re = JSON.parse(data.toString()).id ?? null;
    } catch {
      re = null;
    }
    ws.send(JSON.stringify({ type: "ok", seq: 0, data: { re } }));
  });
  ws.on("error", () => ws.terminate());
});

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

wss.on("listening", () => {
  const a = wss.address();
  process.stdout.write(`listening on ${a.address}:${a.port}\n`);
});

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const { text } = JSON.parse(line);
  const at = nowUs();
  const frame = Buffer.from(text, "utf8");
  let to = 0;
  for (const ws of wss.clients) {
    if (ws.readyState !== 1) continue;
    if (ws.bufferedAmount > QUEUE_BYTES) {
      ws.terminate();
      continue;
    }
    ws.send(frame, { binary: false, compress: false });
    to += 1;
  }
  process.stdout.write(JSON.stringify({ to, at }) + "\n");
});

const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close();
  process.exit(0);
};
lines.on("close", stop);
setTimeout(stop, lifetime * 1000).unref();
