// The server's own test: every tool declares its access, and the tools work.
//   npm test
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import type { ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { createServer } from "../src/server.ts";

// The scope mandate derives from each tool's annotations, as it tells people on the consent page.
const EXPECTED = {
  list_notes: "__NAME__.read",
  add_note: "__NAME__.write",
  delete_note: "__NAME__.destructive",
};

/** mandate's rule (docs/GATEWAY.md): read-only reads; not destructive writes; else destroys. */
function scopeOf(a: ToolAnnotations | undefined, prefix: string): string {
  if (a?.readOnlyHint === true) return `${prefix}.read`;
  if (a?.destructiveHint === false) return `${prefix}.write`;
  return `${prefix}.destructive`;
}

async function connected(): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await createServer().connect(serverSide);
  const client = new Client({ name: "test", version: "1" });
  await client.connect(clientSide);
  return client;
}

function firstText(result: Awaited<ReturnType<Client["callTool"]>>): string {
  const content = result.content as Array<{ type: string; text?: string }>;
  return content[0]?.text ?? "";
}

test("every tool declares the access it needs", async () => {
  const client = await connected();
  const { tools } = await client.listTools();
  const found = Object.fromEntries(tools.map((t) => [t.name, scopeOf(t.annotations, "__NAME__")]));
  assert.deepEqual(found, EXPECTED);
  for (const t of tools) assert.notEqual(t.annotations?.readOnlyHint, undefined, `${t.name}: say whether it only reads`);
  await client.close();
});

test("notes are added, listed and deleted", async () => {
  const client = await connected();
  await client.callTool({ name: "add_note", arguments: { text: "buy milk" } });
  assert.equal(firstText(await client.callTool({ name: "list_notes", arguments: {} })), '["buy milk"]');
  await client.callTool({ name: "delete_note", arguments: { number: 1 } });
  assert.equal(firstText(await client.callTool({ name: "list_notes", arguments: {} })), "[]");
  const gone = await client.callTool({ name: "delete_note", arguments: { number: 1 } });
  assert.equal(gone.isError, true);
  await client.close();
});
