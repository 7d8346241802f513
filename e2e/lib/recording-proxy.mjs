// A recording reverse proxy (node:http) to put between mandate's gateway and an HTTP MCP
// upstream: it forwards every request unchanged (Host set to the upstream's, hop-by-hop headers
// dropped), streams the answers back (event streams included), and appends one JSON line per
// request to a record file: method, path, every header as the gateway sent it (hop-by-hop ones
// included, though not forwarded) and the whole body. The suite reads the record to see what
// crossed the gateway (readRecords), e.g. that no agent token did. The record holds whatever the
// gateway sent: keep it out of CI artefacts.
//
// Run: node e2e/lib/recording-proxy.mjs UPSTREAM_URL RECORD_FILE
// Listens on 127.0.0.1 (a free port) and prints "recording proxy listening on http://127.0.0.1:PORT".
import fs from 'node:fs';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** The headers that travel end to end (hop-by-hop ones dropped), for a proxy to pass on. */
export function endToEnd(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  return out;
}

/**
 * Starts the proxy in front of `upstream` (an http:// origin; request paths pass unchanged),
 * appending to `recordFile`. Resolves to { url, close }.
 */
export async function startRecordingProxy(upstream, recordFile) {
  const target = new URL(upstream);
  if (target.protocol !== 'http:') throw new Error(`the upstream must be http://, got ${upstream}`);
  let seq = 0;
  const server = http.createServer((req, res) => {
    const entry = { seq: ++seq, at: new Date().toISOString(), method: req.method, path: req.url, headers: req.headers };
    const chunks = [];
    const forward = http.request(
      {
        host: target.hostname,
        port: target.port || 80,
        method: req.method,
        path: req.url,
        headers: { ...endToEnd(req.headers), host: target.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
        res.flushHeaders();
        answer.pipe(res);
      },
    );
    forward.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`recording proxy: ${e.message}`);
    });
    // A client that goes away (an event stream closed) takes the upstream request with it.
    res.on('close', () => forward.destroy());
    req.on('data', (c) => {
      chunks.push(c);
      forward.write(c);
    });
    req.on('end', () => {
      forward.end();
      entry.body = Buffer.concat(chunks).toString('utf8');
      fs.appendFileSync(recordFile, `${JSON.stringify(entry)}\n`);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** The requests recorded in `recordFile`, in order: [{ seq, at, method, path, headers, body }]. */
export function readRecords(recordFile) {
  if (!fs.existsSync(recordFile)) return [];
  return fs
    .readFileSync(recordFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [upstream, recordFile] = process.argv.slice(2);
  if (!upstream || !recordFile) {
    console.error('usage: node recording-proxy.mjs UPSTREAM_URL RECORD_FILE');
    process.exit(2);
  }
  const proxy = await startRecordingProxy(upstream, recordFile);
  console.log(`recording proxy listening on ${proxy.url}`);
  const stop = () => proxy.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** What a recorded upstream request was: its JSON-RPC method (a tool call with the tool), `response` for a client's answer, or the HTTP method. */
export function recordWhat(r) {
  if (r.method !== 'POST') return r.method === 'GET' ? 'GET (event stream)' : r.method;
  try {
    const m = JSON.parse(r.body);
    const one = Array.isArray(m) ? m[0] : m;
    if (one?.method) return one.method === 'tools/call' ? `tools/call ${one.params?.name}` : one.method;
    return 'response';
  } catch {
    return 'POST (not JSON)';
  }
}
