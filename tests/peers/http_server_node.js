// A Node http server for differential tests: node http_server_node.js
// Prints the port it listens on (127.0.0.1, port 0), then serves until killed.
// The handler reads the body and answers 200 with the path, like the trionet
// test app, so a request Node accepts shows up as a 200.
'use strict';
const http = require('http');

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => res.end(`${req.url} ${Buffer.concat(chunks).length}`));
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
