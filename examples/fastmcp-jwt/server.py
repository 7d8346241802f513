"""A FastMCP server whose authorization server is mandate.

FastMCP validates mandate's JWT access tokens itself, with mandate's published keys (JWKS): the
issuer, the audience (this server's URL, which mandate puts in `aud` when the client asks for it as
its `resource`) and the signature. A revoked grant's access token then stays good until it expires
(`access_token_ttl`). With MANDATE_CLIENT_ID and MANDATE_CLIENT_SECRET set it asks mandate instead
(RFC 7662 introspection, as a confidential client registered for this resource with `mandate
clients add --confidential --resource <this server's URL>`): a revoked grant's tokens are refused
at once. It publishes RFC 9728 metadata naming mandate, so MCP clients find where to sign in. See
README.md.

Environment: MANDATE_ISSUER (mandate's public URL, e.g. http://127.0.0.1:8080), PORT (default
8000), HOST (default 127.0.0.1), and for introspection MANDATE_CLIENT_ID, MANDATE_CLIENT_SECRET.
"""

import os

os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")

from fastmcp import FastMCP  # noqa: E402
from fastmcp.server.auth import RemoteAuthProvider  # noqa: E402
from fastmcp.server.auth.providers.introspection import IntrospectionTokenVerifier  # noqa: E402
from fastmcp.server.auth.providers.jwt import JWTVerifier  # noqa: E402

ISSUER = os.environ["MANDATE_ISSUER"].rstrip("/")
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
BASE = f"http://{HOST}:{PORT}"
RESOURCE = f"{BASE}/mcp"

CLIENT_ID = os.environ.get("MANDATE_CLIENT_ID")
CLIENT_SECRET = os.environ.get("MANDATE_CLIENT_SECRET")
if CLIENT_ID and CLIENT_SECRET:
    # mandate answers only for tokens issued for the resources this client serves; the audience
    # is checked here too.
    verifier = IntrospectionTokenVerifier(
        introspection_url=f"{ISSUER}/introspect",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        audience=RESOURCE,
    )
else:
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
