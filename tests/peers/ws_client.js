// A WebSocket client on npm's ws: interop checks and the benchmark load generator.
//   node ws_client.js interop URL      -> prints one JSON line of what it saw
//   node ws_client.js echo URL CONNS SECONDS SIZE      -> JSON {messages, seconds}
//   node ws_client.js stream URL SECONDS SIZE WINDOW   -> JSON {messages, bytes, seconds}
// echo: CONNS connections each send a SIZE-byte text message and wait for its
// echo, for SECONDS. stream: one connection keeps WINDOW binary messages of SIZE
// bytes in flight and counts the echoed bytes.
"use strict";
const WebSocket = require("ws");

const [mode, url] = process.argv.slice(2, 4);
const args = process.argv.slice(4).map(Number);
const out = (obj) => { console.log(JSON.stringify(obj)); };

function open(u, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(u, opts.protocols || [], { perMessageDeflate: false, ...opts });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (req, res) => reject(new Error(`status ${res.statusCode}`)));
  });
}

function next(ws) {
  return new Promise((resolve, reject) => {
    const onMessage = (data, isBinary) => { cleanup(); resolve({ data, isBinary }); };
    const onClose = (code) => { cleanup(); reject(new Error(`closed ${code}`)); };
    const cleanup = () => { ws.off("message", onMessage); ws.off("close", onClose); };
    ws.on("message", onMessage);
    ws.on("close", onClose);
  });
}

async function interop() {
  const ws = await open(url, { protocols: ["chat", "superchat"], perMessageDeflate: true });
  const seen = { protocol: ws.protocol, extensions: ws.extensions };
  ws.send("hello world!");
  seen.seed = (await next(ws)).data.toString();
  const big = Buffer.alloc(200000, 7);
  ws.send(big);
  const echoed = await next(ws);
  seen.binary = echoed.isBinary && Buffer.compare(echoed.data, big) === 0;
  ws.send("héllo ✓ ünïcode");
  seen.text = (await next(ws)).data.toString();
  seen.pong = await new Promise((resolve) => { ws.once("pong", (d) => resolve(d.toString())); ws.ping("are you there"); });
  const closed = new Promise((resolve) => ws.once("close", (code, reason) => resolve([code, reason.toString()])));
  ws.close(1000, "bye");
  seen.close = await closed;
  out(seen);
}

async function echo() {
  const [conns, seconds, size] = args;
  const message = "x".repeat(size);
  const deadline = Date.now() + seconds * 1000;
  let messages = 0;
  const sockets = await Promise.all(Array.from({ length: conns }, () => open(url)));
  const start = Date.now();
  await Promise.all(sockets.map((ws) => new Promise((resolve) => {
    ws.on("message", () => {
      messages++;
      if (Date.now() < deadline) ws.send(message); else resolve();
    });
    ws.send(message);
  })));
  const elapsed = (Date.now() - start) / 1000;
  sockets.forEach((ws) => ws.terminate());
  out({ messages, seconds: elapsed });
}

async function stream() {
  const [seconds, size, window] = args;
  const payload = Buffer.alloc(size, 0x61);
  const ws = await open(url);
  const deadline = Date.now() + seconds * 1000;
  let messages = 0;
  let inflight = 0;
  const start = Date.now();
  await new Promise((resolve) => {
    ws.on("message", () => {
      messages++;
      inflight--;
      if (Date.now() < deadline) { ws.send(payload); inflight++; } else if (inflight === 0) resolve();
    });
    for (let i = 0; i < window; i++) { ws.send(payload); inflight++; }
  });
  const elapsed = (Date.now() - start) / 1000;
  ws.terminate();
  out({ messages, bytes: messages * size, seconds: elapsed });
}

({ interop, echo, stream })[mode]().then(() => process.exit(0), (err) => {
  console.error(err.message);
  process.exit(1);
});
