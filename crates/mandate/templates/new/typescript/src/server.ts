// __NAME__: an MCP server whose tools declare, once, the access they need.
//
// Each tool's MCP annotations say what it does to your data: `readOnlyHint` (it only reads),
// `destructiveHint: false` (it adds or changes, and nothing is lost), or `destructiveHint: true`
// (it can destroy). Clients see them in `tools/list`, and mandate turns them into the scopes
// people consent to: `__NAME__.read`, `__NAME__.write` and `__NAME__.destructive`.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

// What each kind of tool may do. mandate maps them to scopes:
// READS -> __NAME__.read, WRITES -> __NAME__.write, DESTROYS -> __NAME__.destructive.
export const READS: ToolAnnotations = { readOnlyHint: true };
export const WRITES: ToolAnnotations = { readOnlyHint: false, destructiveHint: false };
export const DESTROYS: ToolAnnotations = { readOnlyHint: false, destructiveHint: true };

function text(t: string) {
  return { content: [{ type: "text" as const, text: t }] };
}

function refused(t: string) {
  return { content: [{ type: "text" as const, text: t }], isError: true };
}

/** A new server with its own notes (under mandate, one process per MCP session). */
export function createServer(): McpServer {
  const notes: string[] = [];
  const server = new McpServer({ name: "__NAME__", version: "0.1.0" });

  server.registerTool(
    "list_notes",
    { description: "List the notes, oldest first.", annotations: READS },
    async () => text(JSON.stringify(notes)),
  );

  server.registerTool(
    "add_note",
    { description: "Add a note.", inputSchema: { text: z.string() }, annotations: WRITES },
    async ({ text: note }) => {
      if (!note.trim()) return refused("a note needs some text");
      notes.push(note);
      return text(`Added note ${notes.length}.`);
    },
  );

  server.registerTool(
    "delete_note",
    {
      description: "Delete a note by its number (1 is the oldest). This cannot be undone.",
      inputSchema: { number: z.number().int() },
      annotations: DESTROYS,
    },
    async ({ number }) => {
      if (number < 1 || number > notes.length) return refused(`there is no note ${number}`);
      notes.splice(number - 1, 1);
      return text(`Deleted note ${number}.`);
    },
  );

  return server;
}
