// An echo WebSocket server on npm's ws, for trionet's interop tests and benchmarks.
//   node ws_server.js PORT [--deflate]
// Prints "listening PORT" when ready. Echoes every message with its type; a
// text message "close:CODE:REASON" makes it close with that code; "hello world!"
// is answered "yakexi" (the seed's flow). Subprotocols: picks the first offered.
"use strict";
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 0);
const deflate = process.argv.includes("--deflate");
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  perMessageDeflate: deflate,
  maxPayload: 64 * 1024 * 1024,
});
wss.on("listening", () => console.log(`listening ${wss.address().port}`));
wss.on("connection", (ws, req) => {
  ws.on("message", (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text === "hello world!") return ws.send("yakexi");
    if (text !== null && text.startsWith("close:")) {
      const [, code, reason] = text.split(":");
      return ws.close(Number(code), reason);
    }
    if (text === "path") return ws.send(req.url);
    if (text === "protocol") return ws.send(ws.protocol);
    ws.send(data, { binary: isBinary });
  });
  ws.on("ping", (data) => ws.send(`ping:${data.toString()}`));
});
