// A Node `net` client for trionet's servers: node net_client.js PORT|PATH MESSAGE [--end]
// Sends MESSAGE once and prints everything it receives until the connection closes.
// Without --end it ends its side after the first "你好" comes back (the greeting
// server's answer); with --end it ends its side right after MESSAGE (a half-close)
// and keeps reading.
'use strict';
const net = require('net');

const [target, message, mode] = process.argv.slice(2);
const halfClose = mode === '--end';
const options = /^\d+$/.test(target) ? { port: Number(target), host: '127.0.0.1' } : { path: target };
const chunks = [];
const socket = net.connect(options, () => {
  if (halfClose) socket.end(message);
  else socket.write(message);
});
socket.on('data', (chunk) => {
  chunks.push(chunk);
  if (!halfClose && Buffer.concat(chunks).toString('utf8').includes('你好')) socket.end();
});
socket.on('close', () => process.stdout.write(Buffer.concat(chunks)));
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
setTimeout(() => { console.error('net_client: timed out'); process.exit(2); }, 10000).unref();
