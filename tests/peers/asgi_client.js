// Node as the client of an ASGI app: node asgi_client.js BASE_URL
// GET BASE/json?q=node, POST BASE/upload with a body written in three pieces,
// then a `ws` WebSocket to BASE/ws (subprotocol "echo"): sends one text message
// and closes. Prints one JSON line of what it saw; exits 1 on any error.
'use strict';
const http = require('http');
const WebSocket = require('ws');

const base = new URL(process.argv[2]);
const TIMEOUT_MS = 10000;

function request(method, path, pieces) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, base), { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error('timeout')));
    for (const piece of pieces || []) req.write(piece);
    req.end();
  });
}

function websocket(path, text) {
  return new Promise((resolve, reject) => {
    const url = new URL(path, base);
    url.protocol = 'ws:';
    const ws = new WebSocket(url, ['echo'], { perMessageDeflate: false });
    const seen = {};
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('ws timeout')); }, TIMEOUT_MS);
    ws.once('unexpected-response', (req, res) => reject(new Error(`status ${res.statusCode}`)));
    ws.once('error', reject);
    ws.once('open', () => { seen.protocol = ws.protocol; ws.send(text); });
    ws.once('message', (data, isBinary) => {
      seen.echo = data.toString();
      seen.binary = isBinary;
      ws.close(1000, 'bye');
    });
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      seen.close = [code, reason.toString()];
      resolve(seen);
    });
  });
}

(async () => {
  const get = await request('GET', '/json?q=node');
  const post = await request('POST', '/upload', ['x'.repeat(1000), 'y'.repeat(1000), 'z'.repeat(500)]);
  const ws = await websocket('/ws', 'héllo from node');
  console.log(JSON.stringify({ get, post, ws }));
})().catch((err) => { console.error(err.message); process.exit(1); });
