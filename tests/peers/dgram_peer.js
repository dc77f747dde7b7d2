// A Node `dgram` peer: node dgram_peer.js udp4|udp6 HOST [TARGET_PORT]
// Binds HOST, port 0, prints {"port": N} on one line, answers every datagram with
// "node got: <message>" to its sender, and when TARGET_PORT is given first sends
// "你好 from node" to HOST:TARGET_PORT. Exits when stdin closes.
'use strict';
const dgram = require('dgram');

const [type, host, target] = process.argv.slice(2);
const socket = dgram.createSocket(type);
socket.on('message', (msg, rinfo) => {
  socket.send(Buffer.concat([Buffer.from('node got: '), msg]), rinfo.port, rinfo.address);
});
socket.bind(0, host, () => {
  process.stdout.write(JSON.stringify({ port: socket.address().port }) + '\n');
  if (target) socket.send('你好 from node', Number(target), host);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
