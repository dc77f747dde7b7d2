// A Node `net` echo server: node net_echo_server.js [PATH]
// Listens on 127.0.0.1, port 0 (or the Unix socket PATH), prints its address as JSON
// on one line, echoes every connection with socket.pipe(socket), exits when stdin closes.
'use strict';
const net = require('net');

const path = process.argv[2];
const server = net.createServer((socket) => socket.pipe(socket));
const ready = () => process.stdout.write(JSON.stringify(server.address()) + '\n');
if (path) server.listen(path, ready);
else server.listen(0, '127.0.0.1', ready);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
