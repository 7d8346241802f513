"""The server's own test: every tool declares its access, and the tools work.

    python -m unittest
"""

import unittest

from fastmcp import Client
from fastmcp.exceptions import ToolError

from server import mcp

# The scope mandate derives from each tool's annotations, as it tells people on the consent page.
EXPECTED = {
    "list_notes": "__NAME__.read",
    "add_note": "__NAME__.write",
    "delete_note": "__NAME__.destructive",
}


def scope_of(annotations, prefix):
    """mandate's rule (docs/GATEWAY.md): read-only reads; not destructive writes; else destroys."""
    if annotations is not None and annotations.readOnlyHint is True:
        return f"{prefix}.read"
    if annotations is not None and annotations.destructiveHint is False:
        return f"{prefix}.write"
    return f"{prefix}.destructive"


class ServerTest(unittest.IsolatedAsyncioTestCase):
    async def test_every_tool_declares_the_access_it_needs(self):
        async with Client(mcp) as client:
            tools = await client.list_tools()
        found = {t.name: scope_of(t.annotations, "__NAME__") for t in tools}
        self.assertEqual(found, EXPECTED)
        for t in tools:
            self.assertIsNotNone(t.annotations.readOnlyHint, f"{t.name}: say whether it only reads")

    async def test_notes_are_added_listed_and_deleted(self):
        async with Client(mcp) as client:
            await client.call_tool("add_note", {"text": "buy milk"})
            listed = await client.call_tool("list_notes", {})
            self.assertEqual(listed.data, ["buy milk"])
            await client.call_tool("delete_note", {"number": 1})
            self.assertEqual((await client.call_tool("list_notes", {})).data, [])
            with self.assertRaises(ToolError):
                await client.call_tool("delete_note", {"number": 1})


if __name__ == "__main__":
    unittest.main()
