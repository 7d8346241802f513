"""__NAME__: an MCP server whose tools declare, once, the access they need.

Each tool's MCP annotations say what it does to your data: `readOnlyHint` (it only reads),
`destructiveHint=False` (it adds or changes, and nothing is lost), or `destructiveHint=True` (it
can destroy). Clients see them in `tools/list`, and mandate turns them into the scopes people
consent to: `__NAME__.read`, `__NAME__.write` and `__NAME__.destructive`. Run it behind mandate:

    mandate dev -- python server.py

It speaks MCP on stdin/stdout; mandate serves it over Streamable HTTP with OAuth in front.
"""

import os

os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")

from fastmcp import FastMCP  # noqa: E402
from fastmcp.exceptions import ToolError  # noqa: E402
from mcp.types import ToolAnnotations  # noqa: E402

# What each kind of tool may do. mandate maps them to scopes:
# READS -> __NAME__.read, WRITES -> __NAME__.write, DESTROYS -> __NAME__.destructive.
READS = ToolAnnotations(readOnlyHint=True)
WRITES = ToolAnnotations(readOnlyHint=False, destructiveHint=False)
DESTROYS = ToolAnnotations(readOnlyHint=False, destructiveHint=True)

mcp = FastMCP("__NAME__")

# One process per MCP session under mandate: these notes live as long as the session.
notes: list[str] = []


@mcp.tool(annotations=READS)
def list_notes() -> list[str]:
    """List the notes, oldest first."""
    return list(notes)


@mcp.tool(annotations=WRITES)
def add_note(text: str) -> str:
    """Add a note."""
    if not text.strip():
        raise ToolError("a note needs some text")
    notes.append(text)
    return f"Added note {len(notes)}."


@mcp.tool(annotations=DESTROYS)
def delete_note(number: int) -> str:
    """Delete a note by its number (1 is the oldest). This cannot be undone."""
    if not 1 <= number <= len(notes):
        raise ToolError(f"there is no note {number}")
    notes.pop(number - 1)
    return f"Deleted note {number}."


if __name__ == "__main__":
    mcp.run(show_banner=False)
