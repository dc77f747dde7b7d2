// A Node http keep-alive server for trionet's HTTP client tests and benchmark.
//
//   node http_client_server.js [port]      (port 0 or none: pick one)
//
// Prints the port on stdout once listening. Routes:
//   GET  /hello      -> "hello"  (Content-Length)
//   GET  /chunked    -> "a", "b", "c" written separately (chunked)
//   POST /echo       -> the request body, with its content-type
//   GET  /stats      -> {"connections": total accepted, "max_concurrent": n, "open": n}
// Node's defaults otherwise: Keep-Alive: timeout=5.
"use strict";
const http = require("http");

let total = 0;
let open = 0;
let maxConcurrent = 0;

const server = http.createServer((req, res) => {
  if (req.url === "/hello") {
    res.end("hello");
  } else if (req.url === "/chunked") {
    res.write("a");
    res.write("b");
    res.end("c");
  } else if (req.url === "/echo") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      res.setHeader("content-type", req.headers["content-type"] || "application/octet-stream");
      res.end(Buffer.concat(chunks));
    });
  } else if (req.url === "/stats") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ connections: total, max_concurrent: maxConcurrent, open }));
  } else {
    res.statusCode = 404;
    res.end("not found");
  }
});

server.on("connection", (sock) => {
  total += 1;
  open += 1;
  if (open > maxConcurrent) maxConcurrent = open;
  sock.on("close", () => {
    open -= 1;
  });
});

server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  process.stdout.write(`${server.address().port}\n`);
});
