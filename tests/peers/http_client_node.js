// Node's http client as a peer: GETs through http.Agent({keepAlive: true, maxSockets}).
//
//   node http_client_node.js URL COUNT CONCURRENCY MAX_SOCKETS
//
// Prints one JSON line: {"ok": n, "statuses": {...}, "bodies": [first few], "seconds": s,
// "sockets_created": n}. Used by the interop test (Node client vs trionet server)
// and by benchmarks/http_client.py (Node's Agent as the reference figure).
"use strict";
const http = require("http");

const [url, count, concurrency, maxSockets] = [
  process.argv[2],
  Number(process.argv[3] || 10),
  Number(process.argv[4] || 1),
  Number(process.argv[5] || 5),
];
const agent = new http.Agent({ keepAlive: true, maxSockets });
let socketsCreated = 0;
const origCreate = agent.createConnection.bind(agent);
agent.createConnection = (...args) => {
  socketsCreated += 1;
  return origCreate(...args);
};

let remaining = count;
let ok = 0;
const statuses = {};
const bodies = [];

function get() {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          statuses[res.statusCode] = (statuses[res.statusCode] || 0) + 1;
          if (bodies.length < 3) bodies.push(Buffer.concat(chunks).toString());
          ok += 1;
          resolve();
        });
      })
      .on("error", reject);
  });
}

async function worker() {
  while (remaining > 0) {
    remaining -= 1;
    await get();
  }
}

const start = process.hrtime.bigint();
const timer = setTimeout(() => {
  process.stderr.write("timed out\n");
  process.exit(2);
}, 60000);
Promise.all(Array.from({ length: concurrency }, worker)).then(
  () => {
    clearTimeout(timer);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    process.stdout.write(
      JSON.stringify({ ok, statuses, bodies, seconds, sockets_created: socketsCreated }) + "\n"
    );
    agent.destroy();
  },
  (err) => {
    process.stderr.write(`${err}\n`);
    process.exit(1);
  }
);
