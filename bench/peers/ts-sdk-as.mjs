// Peer: the MCP TypeScript SDK's authorization server as its demo runs it (setupAuthServer in the
// SDK's examples): express, mcpAuthRouter, DemoInMemoryAuthProvider (auto-approves /authorize: no
// sign-in page, no consent, a code at once), dynamic client registration. Two changes, both for a
// load comparison: every mcpAuthRouter rate limit is off (the token endpoint allows 50 requests per
// 15 minutes per address by default), and the provider has the refresh grant of
// lib/demo-provider.mjs (the demo has none).
// Run: node ts-sdk-as.mjs [--port N]   Prints one JSON line when ready; SIGTERM stops it.
import express from 'express';
import { mcpAuthRouter } from '@modelcontextprotocol/sdk/server/auth/router.js';

import { listen, options, ready, version } from './lib/common.mjs';
import { RotatingDemoProvider, noRateLimits } from './lib/demo-provider.mjs';

const { port } = options();
const { base, setHandler } = await listen(port);
const provider = new RotatingDemoProvider();
const app = express();
app.use(express.json());
app.use(express.urlencoded());
app.use(mcpAuthRouter({ provider, issuerUrl: new URL(base), scopesSupported: ['mcp:tools'], ...noRateLimits() }));
setHandler(app);
ready({ name: 'ts-sdk-as', base, sdk: version('@modelcontextprotocol/sdk'), express: version('express'), scope: 'mcp:tools' });
