// A Node `net` client for the greeting server: node net_client.js PORT|PATH MESSAGE
// Sends MESSAGE once, ends after the first "你好" comes back, prints all it received.
'use strict';
const net = require('net');

const [target, message] = process.argv.slice(2);
const options = /^\d+$/.test(target) ? { port: Number(target), host: '127.0.0.1' } : { path: target };
const chunks = [];
const socket = net.connect(options, () => socket.write(message));
socket.on('data', (chunk) => {
  chunks.push(chunk);
  if (Buffer.concat(chunks).toString('utf8').includes('你好')) socket.end();
});
socket.on('close', () => process.stdout.write(Buffer.concat(chunks)));
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
setTimeout(() => { console.error('net_client: timed out'); process.exit(2); }, 10000).unref();
