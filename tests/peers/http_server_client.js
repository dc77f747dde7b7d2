// Node's http.request against a trionet server: node http_server_client.js PORT keepalive|none
// Prints one line per response: status, Connection header, X-Method, X-Body-Length, body;
// then how many distinct sockets (local ports) were used.
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
const agent = process.argv[3] === 'keepalive'
  ? new http.Agent({ keepAlive: true, maxSockets: 1 })
  : false;
const localPorts = new Set();

function request(method, body, chunks) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: '/', agent }, (res) => {
      localPorts.add(res.socket.localPort);
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => {
        const h = res.headers;
        console.log(`${res.statusCode} ${h.connection} ${h['x-method']} ${h['x-body-length']} ${data.trim()}`);
        resolve();
      });
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    if (body !== undefined) req.setHeader('Content-Length', Buffer.byteLength(body));
    if (body !== undefined) req.write(body);
    for (const chunk of chunks || []) req.write(chunk);
    req.end();
  });
}

(async () => {
  await request('GET');
  await request('POST', 'hello again');
  await request('PUT', undefined, ['abc', 'def']);
  console.log(`sockets used: ${localPorts.size}`);
  if (agent) agent.destroy();
})().catch((err) => { console.error(err); process.exit(1); });
