// A Node https server for trionet's clients: answers every request with the
// method, path and whether the client sent a trusted certificate.
// Prints {"port": N} once listening on 127.0.0.1.
// Usage: node https_server.js KEY_PATH CERT_PATH [CA_PATH]
'use strict';
const https = require('https');
const fs = require('fs');

const [keyPath, certPath, caPath] = process.argv.slice(2);
const options = { key: fs.readFileSync(keyPath), cert: fs.readFileSync(certPath) };
if (caPath) {
  Object.assign(options, { ca: fs.readFileSync(caPath), requestCert: true, rejectUnauthorized: false });
}
const server = https.createServer(options, (req, res) => {
  const body = JSON.stringify({
    method: req.method,
    path: req.url,
    authorized: req.socket.authorized,
    peer: (req.socket.getPeerCertificate().subject || {}).CN || null,
  });
  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
