// The official MCP TypeScript SDK's 2.x client, @modelcontextprotocol/client (the split
// packages), against mandate: the whole story in lib/story.mjs, step-up included. Run by .ci/e2e.sh.
import { readFileSync } from 'node:fs';

import {
  Client,
  ProtocolError,
  SdkHttpError,
  StreamableHTTPClientTransport,
  UnauthorizedError,
} from '@modelcontextprotocol/client';

import { story } from './lib/story.mjs';

const { version } = JSON.parse(
  readFileSync(new URL('./node_modules/@modelcontextprotocol/client/package.json', import.meta.url), 'utf8'),
);

story({
  label: `@modelcontextprotocol/client ${version}`,
  dir: 'ts-client-v2',
  Client,
  Transport: StreamableHTTPClientTransport,
  UnauthorizedError,
  // 2.x checks the RFC 9207 iss itself: it is handed over with the code.
  finishAuth: (transport, response) => transport.finishAuth(response.code, response.iss),
  jsonRpcErrorCode: (e) => (e instanceof ProtocolError ? e.code : undefined),
  transportErrorStatus: (e) => (e instanceof SdkHttpError ? e.status : undefined),
  stepUp: 'union',
});
