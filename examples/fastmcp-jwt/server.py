"""A FastMCP server whose authorization server is mandate.

FastMCP validates mandate's JWT access tokens itself, with mandate's published keys (JWKS): the
issuer, the audience (this server's URL, which mandate puts in `aud` when the client asks for it as
its `resource`) and the signature. It publishes RFC 9728 metadata naming mandate, so MCP clients
find where to sign in. See README.md.

Environment: MANDATE_ISSUER (mandate's public URL, e.g. http://127.0.0.1:8080), PORT (default
8000), HOST (default 127.0.0.1).
"""

import os

os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")

from fastmcp import FastMCP  # noqa: E402
from fastmcp.server.auth import RemoteAuthProvider  # noqa: E402
from fastmcp.server.auth.providers.jwt import JWTVerifier  # noqa: E402

ISSUER = os.environ["MANDATE_ISSUER"].rstrip("/")
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
BASE = f"http://{HOST}:{PORT}"
RESOURCE = f"{BASE}/mcp"

verifier = JWTVerifier(
    jwks_uri=f"{ISSUER}/jwks.json",
    issuer=ISSUER,
    audience=RESOURCE,
    algorithm="ES256",
)
auth = RemoteAuthProvider(
    token_verifier=verifier,
    authorization_servers=[ISSUER],
    base_url=BASE,
    scopes_supported=["notes.read"],
)
mcp = FastMCP("notes (mandate example)", auth=auth)


@mcp.tool
def hello(name: str) -> str:
    """Greets someone."""
    return f"Hello, {name}."


if __name__ == "__main__":
    mcp.run(transport="http", host=HOST, port=PORT, show_banner=False)
