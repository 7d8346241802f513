// Peer: an MCP server on the MCP TypeScript SDK (McpServer, Streamable HTTP transport, one session
// per initialize, as the SDK's simpleStreamableHttp example keeps them, without its event store
// and logging) with one tool, list_customers (two customers from memory, as JSON text), served
// twice:
//   /mcp       behind the SDK's requireBearerAuth (bearer token, verified in process by the demo
//              provider's verifyAccessToken; expected resource <base>/mcp; scope mcp:tools)
//   /mcp-open  the same, without auth
// The same process also serves the demo authorization server (mcpAuthRouter, rate limits off,
// lib/demo-provider.mjs), so that the driver gets its token through /register, /authorize and
// /token, and the verifier sees the tokens in process.
// Run: node ts-sdk-rs.mjs [--port N]   Prints one JSON line when ready; SIGTERM stops it.
import { randomUUID } from 'node:crypto';

import { mcpAuthRouter } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import express from 'express';

import { listen, options, ready, version } from './lib/common.mjs';
import { RotatingDemoProvider, noRateLimits } from './lib/demo-provider.mjs';

const CUSTOMERS = [
  { id: 'c1', name: 'Acme Corp', email: 'billing@acme.example' },
  { id: 'c2', name: 'Globex', email: 'ap@globex.example' },
];

function mcpServer() {
  const server = new McpServer({ name: 'bench-peer', version: '1.0.0' });
  server.registerTool(
    'list_customers',
    { description: 'List your customers', annotations: { readOnlyHint: true } },
    async () => ({ content: [{ type: 'text', text: JSON.stringify(CUSTOMERS) }] }),
  );
  return server;
}

/** A POST handler keeping one transport (and McpServer) per MCP session. */
function sessions() {
  const open = new Map();
  return async (req, res) => {
    const id = req.headers['mcp-session-id'];
    try {
      const transport = id ? open.get(id) : undefined;
      if (transport) {
        await transport.handleRequest(req, res, req.body);
        return;
      }
      if (id) {
        res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
        return;
      }
      if (!isInitializeRequest(req.body)) {
        res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: No valid session ID provided' }, id: null });
        return;
      }
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => open.set(sid, created),
      });
      created.onclose = () => created.sessionId && open.delete(created.sessionId);
      await mcpServer().connect(created);
      await created.handleRequest(req, res, req.body);
    } catch (e) {
      console.error('MCP request failed:', e);
      if (!res.headersSent) res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
    }
  };
}

const { port } = options();
const { base, setHandler } = await listen(port);
const resource = new URL(`${base}/mcp`);
const provider = new RotatingDemoProvider();
const app = createMcpExpressApp();
app.use(express.urlencoded());
app.use(mcpAuthRouter({ provider, issuerUrl: new URL(base), resourceServerUrl: resource, scopesSupported: ['mcp:tools'], ...noRateLimits() }));
const auth = requireBearerAuth({
  verifier: provider,
  requiredScopes: ['mcp:tools'],
  expectedResource: resource,
  resourceMetadataUrl: `${base}/.well-known/oauth-protected-resource/mcp`,
});
app.post('/mcp', auth, sessions());
app.post('/mcp-open', sessions());
setHandler(app);
ready({
  name: 'ts-sdk-rs',
  base,
  sdk: version('@modelcontextprotocol/sdk'),
  express: version('express'),
  mcp: `${base}/mcp`,
  mcp_open: `${base}/mcp-open`,
  scope: 'mcp:tools',
  resource: resource.href,
});
