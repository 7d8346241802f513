// What the three peer servers share: the command line (--port N, 0 = a free port), listening on
// 127.0.0.1 only, the one JSON line the driver (mandate-peers) waits for, and a clean stop on
// SIGTERM or SIGINT.
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

/** The redirect URI every benchmark client registers; the driver never follows it. */
export const CALLBACK = 'https://agent.bench/callback';

export function options(extra = {}) {
  const { values } = parseArgs({ options: { port: { type: 'string', default: process.env.PORT ?? '0' }, ...extra } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port: not a port: ${values.port}`);
    process.exit(2);
  }
  return { ...values, port };
}

/** Listens on 127.0.0.1:port with `handler` (replaceable later); resolves to { server, base, setHandler }. */
export async function listen(port) {
  let handler = (_req, res) => res.writeHead(503).end();
  const server = http.createServer((req, res) => handler(req, res));
  // Keep-alive connections from the driver stay open between rounds.
  server.keepAliveTimeout = 120_000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.once(signal, () => {
      server.closeAllConnections?.();
      server.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    });
  }
  return { server, base, setHandler: (h) => { handler = h; } };
}

/** The version of an installed package (from its package.json). */
export function version(name) {
  const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(fs.readFileSync(url, 'utf8')).version;
}

/** The line the driver waits for: one JSON object, then nothing else on stdout. */
export function ready(fields) {
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, node: process.version, ...fields })}\n`);
}
