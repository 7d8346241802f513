"""A small FastMCP server over stdio, put behind mandate's gateway by e2e/gateway.test.mjs.

Its tools carry the annotations mandate derives scopes from (readOnlyHint: true -> notes.read;
not read-only and destructiveHint: false -> notes.write; anything else, no annotations included,
-> notes.destructive). The notes live in this process only, so each process (one per MCP session
with `isolation = "session"`) has its own; `process_id` tells processes apart, so a test can kill
one and see the next call answered by a new one; `wait_seconds` keeps a call in flight while the
process is killed.

Run: target/e2e-venv/bin/python e2e/python/fastmcp_notes.py   (stdio; no banner, no update check)
"""

import asyncio
import os

# Before fastmcp is imported (its settings are read then): no update check, no banner; the
# gateway may start this process with an empty environment, so nothing here depends on one.
os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")

from fastmcp import FastMCP  # noqa: E402
from mcp.types import ToolAnnotations  # noqa: E402

mcp = FastMCP("mandate e2e notes")

_notes: dict[int, str] = {}
_next_id = 1


@mcp.tool(
    title="List notes",
    annotations=ToolAnnotations(readOnlyHint=True),
)
def list_notes() -> dict:
    """The notes held by this process, oldest first."""
    return {"notes": [{"id": i, "text": t} for i, t in sorted(_notes.items())]}


@mcp.tool(
    title="Add a note",
    annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False),
)
def add_note(text: str) -> dict:
    """Adds a note; returns it with its id."""
    global _next_id
    note = {"id": _next_id, "text": text}
    _notes[_next_id] = text
    _next_id += 1
    return note


@mcp.tool(
    title="Delete a note",
    annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True),
)
def delete_note(id: int) -> dict:  # noqa: A002 (the argument's name is part of the tool's schema)
    """Deletes a note for good."""
    return {"id": id, "deleted": _notes.pop(id, None) is not None}


@mcp.tool(title="Clear all notes")
def clear_notes() -> dict:
    """Deletes every note. Deliberately without annotations: mandate treats it as destructive."""
    count = len(_notes)
    _notes.clear()
    return {"cleared": count}


@mcp.tool(
    title="Process id",
    annotations=ToolAnnotations(readOnlyHint=True),
)
def process_id() -> dict:
    """The id of the process serving this session (os.getpid())."""
    return {"pid": os.getpid()}


@mcp.tool(
    title="Wait",
    annotations=ToolAnnotations(readOnlyHint=True),
)
async def wait_seconds(seconds: float) -> dict:
    """Answers after `seconds` (at most 60): a call that stays in flight."""
    await asyncio.sleep(min(max(seconds, 0.0), 60.0))
    return {"waited": seconds, "pid": os.getpid()}


if __name__ == "__main__":
    mcp.run(transport="stdio", show_banner=False)
