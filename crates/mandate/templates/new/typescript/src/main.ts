// Serves __NAME__ on stdin/stdout: mandate (`mandate dev -- npm start`) serves it over
// Streamable HTTP with OAuth in front.
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { createServer } from "./server.ts";

await createServer().connect(new StdioServerTransport());
