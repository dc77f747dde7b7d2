// Node's tls.connect against a trionet tls.serve: trust only the CA given,
// check the name "localhost", send a line and print what came back as JSON.
// Usage: node tls_client.js PORT CA_PATH
'use strict';
const tls = require('tls');
const fs = require('fs');

const [port, caPath] = process.argv.slice(2);
const sock = tls.connect(
  { port: Number(port), host: '127.0.0.1', servername: 'localhost', ca: fs.readFileSync(caPath) },
  () => {
    console.log(JSON.stringify({ authorized: sock.authorized, protocol: sock.getProtocol() }));
    sock.write('hello from node\n');
  },
);
let data = '';
sock.setEncoding('utf8');
sock.on('data', (chunk) => {
  data += chunk;
  if (data.includes('hello from node\n')) {
    console.log(JSON.stringify({ data }));
    sock.end();
  }
});
sock.on('error', (err) => {
  console.log(JSON.stringify({ error: err.code || err.message }));
  process.exit(1);
});
