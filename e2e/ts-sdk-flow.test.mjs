// The official MCP TypeScript SDK, @modelcontextprotocol/sdk (1.x: the line most MCP hosts ship),
// against mandate: the whole story in lib/story.mjs, and step-up by a client without a refresh
// token (the way 1.x can step up at all). Run by .ci/e2e.sh.
import { readFileSync } from 'node:fs';

import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

import { story, stepUpWithoutRefreshToken } from './lib/story.mjs';

const { version } = JSON.parse(
  readFileSync(new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url), 'utf8'),
);

const sdk = {
  label: `@modelcontextprotocol/sdk ${version}`,
  dir: 'ts-sdk',
  Client,
  Transport: StreamableHTTPClientTransport,
  UnauthorizedError,
  finishAuth: (transport, response) => transport.finishAuth(response.code),
  jsonRpcErrorCode: (e) => (e instanceof McpError ? e.code : undefined),
  transportErrorStatus: (e) => (e instanceof StreamableHTTPError ? e.code : undefined),
  stepUp: 'refresh-then-give-up',
};

story(sdk);
stepUpWithoutRefreshToken(sdk);
