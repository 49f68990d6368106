// A floor for any Node gateway: node:http in, undici out, bytes passed through with no parsing, no
// validation, no logging. `TARGETS=…,bare-proxy` puts it beside Signalman in the overhead bench, so the
// cost of what Signalman does on top (routing, validation, headers, retries, telemetry) is measured.
// Usage: node dist/bench/lib/bare-proxy.js PORT UPSTREAM_ORIGIN
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [portText, upstream] = process.argv.slice(2);
if (portText === undefined || upstream === undefined) throw new Error('usage: bare-proxy PORT UPSTREAM_ORIGIN');
const pool = new Pool(upstream, { connections: 256 });

createServer((req, res) => {
  if (req.method === 'GET') {
    res.end('ok');
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    pool
      .request({ path: req.url ?? '/', method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) })
      .then(async (r) => {
        res.writeHead(r.statusCode, { 'content-type': String(r.headers['content-type'] ?? 'application/json') });
        for await (const c of r.body) res.write(c);
        res.end();
      })
      .catch(() => {
        res.writeHead(502);
        res.end();
      });
  });
}).listen(Number(portText), '127.0.0.1');
