"""The official MCP Python SDK (`mcp`) against mandate: the whole story, with headless Chromium
(Debian's, driven by Playwright for Python) as the person who signs in and consents.

Run by .ci/e2e.sh with MANDATE_E2E_BASE, MANDATE_E2E_PASSWORD and MANDATE_E2E_OUT set. Each step
is bounded by a timeout and asserts what the SDK sent and what mandate answered, as seen by an
observing httpx event hook (it records, never alters; tokens are never printed). Exits non-zero
when a step fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlencode, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPError
from playwright.async_api import Page, async_playwright

BASE = os.environ.get("MANDATE_E2E_BASE", "")
PASSWORD = os.environ.get("MANDATE_E2E_PASSWORD", "")
OUT = Path(os.environ.get("MANDATE_E2E_OUT", Path(__file__).resolve().parents[2] / "target" / "e2e"))
CHROMIUM = os.environ.get("MANDATE_E2E_CHROMIUM", "/usr/bin/chromium")
MCP_URL = f"{BASE}/mcp"
SDK = f"mcp {version('mcp')}"
CLIENT_NAME = f"mandate e2e ({SDK}, Python)"

BROWSER_STEP_S = 60
STEP_S = 20
PAGE_MS = 15_000

READ_SCOPES = ["customers.read", "invoices.read", "todos.read"]
ALL_SCOPES = sorted(["customers.read", "customers.write", "invoices.read", "invoices.send", "todos.read", "todos.write"])
TOOLS = sorted(
    [
        "add_todo",
        "complete_todo",
        "create_customer",
        "delete_todo",
        "get_customer",
        "list_customers",
        "list_invoices",
        "list_todos",
        "send_invoice",
    ]
)
SCOPES_META = "io.mandate/scopes"
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def say(line: str) -> None:
    print(f"  | {line}", flush=True)


def scopes(s: str | None) -> list[str]:
    return sorted((s or "").split())


def param(header: str | None, name: str) -> str | None:
    if not header:
        return None
    marker = f'{name}="'
    start = header.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return header[start : header.index('"', start)]


def redact(url: str) -> str:
    """A URL with each query value replaced by its length (no codes or state)."""
    u = urlparse(url)
    q = {k: (v[0] if k in ("scope", "error") else f"<{len(v[0])}>") for k, v in parse_qs(u.query).items()}
    return u._replace(query=urlencode(q, safe="<>")).geturl()


# ---------------------------------------------------------------------------------------------
# What the SDK sent and what the server answered


@dataclass
class Entry:
    method: str
    path: str
    status: int
    www_authenticate: str | None
    rpc: str | None = None
    tool: str | None = None
    grant_type: str | None = None
    refresh_fingerprint: str | None = None
    request_json: Any = None
    response_json: Any = None


@dataclass
class Recorder:
    entries: list[Entry] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.entries)

    def since(self, mark: int, pred: Callable[[Entry], bool] = lambda e: True) -> list[Entry]:
        return [e for e in self.entries[mark:] if pred(e)]

    async def on_response(self, r: httpx2.Response) -> None:
        req = r.request
        e = Entry(req.method, req.url.path, r.status_code, r.headers.get("www-authenticate"))
        body = req.content or b""
        if req.url.path == "/mcp" and body:
            with contextlib.suppress(ValueError):
                msg = json.loads(body)
                e.rpc = msg.get("method") if isinstance(msg, dict) else None
                e.tool = (msg.get("params") or {}).get("name") if isinstance(msg, dict) else None
        if req.url.path == "/register":
            e.request_json = json.loads(body)
        if req.url.path == "/token":
            form = parse_qs(body.decode())
            e.grant_type = form.get("grant_type", [None])[0]
            rt = form.get("refresh_token", [None])[0]
            if rt:
                e.refresh_fingerprint = hashlib.sha256(rt.encode()).hexdigest()[:12]
        if req.url.path != "/mcp":  # never buffer the MCP streams
            await r.aread()
            with contextlib.suppress(ValueError):
                j = r.json()
                if req.url.path == "/token" and isinstance(j, dict):
                    j = {
                        "scope": j.get("scope"),
                        "token_type": j.get("token_type"),
                        "has_refresh_token": isinstance(j.get("refresh_token"), str),
                        "error": j.get("error"),
                    }
                e.response_json = j
        self.entries.append(e)

    def transcript(self, mark: int) -> None:
        for e in self.since(mark):
            what = f" {e.rpc}{' ' + e.tool if e.tool else ''}" if e.rpc else (f" grant_type={e.grant_type}" if e.grant_type else "")
            challenge = f"  WWW-Authenticate: {e.www_authenticate}" if e.www_authenticate else ""
            say(f"sdk: {e.method} {e.path}{what} -> {e.status}{challenge}")


# ---------------------------------------------------------------------------------------------
# The person at the browser, and the loopback redirect URI


class Callback:
    """The client's loopback redirect URI: records each authorization response and answers a page."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.server: asyncio.AbstractServer | None = None
        self.redirect_uri = ""

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request_line = (await reader.readline()).decode()
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            target = urlparse(request_line.split()[1])
            if target.path == "/callback":
                await self.responses.put({k: v[0] for k, v in parse_qs(target.query).items()})
                body = b"<!doctype html><title>mandate e2e client</title><h1>Signed in</h1><p>You can close this window.</p>"
                status = b"200 OK"
            else:
                body, status = b"not found", b"404 Not Found"
            head = f"HTTP/1.1 {status.decode()}\r\ncontent-type: text/html\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.redirect_uri = f"http://127.0.0.1:{port}/callback"

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()


Decide = Callable[[Page], Awaitable[None]]


class Person:
    """Chromium with one profile for the run: signs in when asked, lets the suite decide consent."""

    def __init__(self, screenshots: Path) -> None:
        self.screenshots = screenshots
        self.sign_ins = 0
        self.consent_pages = 0
        self.shot = 0
        self.decide: Decide | None = None

    async def start(self) -> None:
        self.screenshots.mkdir(parents=True, exist_ok=True)
        self.pw = await async_playwright().start()
        self.browser = await self.pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        self.context = await self.browser.new_context(viewport={"width": 900, "height": 900})
        self.context.set_default_timeout(PAGE_MS)
        say(f"Chromium {self.browser.version} ({CHROMIUM})")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.browser.close()
        with contextlib.suppress(Exception):
            await self.pw.stop()

    async def capture(self, page: Page, label: str) -> None:
        self.shot += 1
        path = self.screenshots / f"{self.shot:02d}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        say(f"browser: {label} page {redact(page.url)} (screenshot {path.name})")

    async def text(self, page: Page) -> str:
        try:
            return " ".join((await page.locator("body").inner_text(timeout=2_000)).split())[:300]
        except Exception:
            return "(no text)"

    async def authorize(self, url: str, redirect_uri: str) -> None:
        decide, self.decide = self.decide, None
        page = await self.context.new_page()
        try:
            response = await page.goto(url)
            if response is None or not response.ok:
                await self.capture(page, "authorize-error")
                raise AssertionError(f"GET /authorize answered {response and response.status}: {await self.text(page)}")
            if urlparse(page.url).path == "/login":
                await self.capture(page, "sign-in")
                await page.fill("input[name=username]", "demo")
                await page.fill("input[name=password]", PASSWORD)
                self.sign_ins += 1
                async with page.expect_response(
                    lambda r: urlparse(r.url).path == "/login" and r.request.method == "POST"
                ) as posted:
                    await page.click('form[action="/login"] button[type=submit]')
                await page.wait_for_load_state("load")
                if urlparse(page.url).path == "/login":
                    await self.capture(page, "sign-in-refused")
                    status = (await posted.value).status
                    raise AssertionError(f"sign-in refused (POST /login answered {status}): {await self.text(page)}")
            if urlparse(page.url).path == "/consent":
                self.consent_pages += 1
                await self.capture(page, "consent")
                assert decide is not None, "a consent page appeared where the suite expected none"
                await decide(page)
                await page.click("button[name=action][value=allow]")
                try:
                    await page.wait_for_url(lambda u: u.startswith(redirect_uri))
                except Exception:
                    await self.capture(page, "consent-refused")
                    raise AssertionError(f"after Allow the browser is at {redact(page.url)}: {await self.text(page)}")
            elif not page.url.startswith(redirect_uri):
                await self.capture(page, "unexpected")
                raise AssertionError(f"expected the sign-in or consent page, got {redact(page.url)}")
            await page.wait_for_load_state("load")
            await self.capture(page, "redirect-uri")
        finally:
            with contextlib.suppress(Exception):
                await page.close()


async def read_consent(page: Page) -> dict[str, Any]:
    """The scope checkboxes, the scopes listed as already allowed (their ids, from `data-scope`),
    the irreversible ones, the heading."""
    boxes = await page.locator("input[type=checkbox][name=scope]").evaluate_all(
        "els => els.map(e => ({ value: e.value, checked: e.checked }))"
    )
    already = await (
        page.locator("fieldset").filter(has=page.locator("legend", has_text="You already allowed")).locator("li[data-scope]")
    ).evaluate_all("els => els.map(e => e.dataset.scope)")
    irreversible = await page.locator(".scope.irreversible input[name=scope]").evaluate_all(
        "els => els.map(e => e.value)"
    )
    heading = await page.locator("h1").inner_text()
    return {"boxes": boxes, "already": sorted(already), "irreversible": irreversible, "heading": heading}


class MemoryStorage(TokenStorage):
    """Tokens and registration kept in memory, as the SDK's examples do."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        self.saved: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.saved.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


# ---------------------------------------------------------------------------------------------
# The story


class Story:
    def __init__(self) -> None:
        self.recorder = Recorder()
        self.callback = Callback()
        self.person = Person(OUT / "screenshots" / "py-sdk")
        self.storage = MemoryStorage()
        self.authorization_urls: list[str] = []
        self.client: Client | None = None
        self.stack = contextlib.AsyncExitStack()
        self.prm: dict[str, Any] | None = None

    async def setup(self) -> None:
        assert BASE, "MANDATE_E2E_BASE names the server (run .ci/e2e.sh)"
        assert PASSWORD, "MANDATE_E2E_PASSWORD is the demo password (run .ci/e2e.sh)"
        say(f"client: {CLIENT_NAME}; server: {BASE}")
        await self.callback.start()
        await self.person.start()

        async def redirect_handler(url: str) -> None:
            self.authorization_urls.append(url)
            say(f"redirect_handler: scope={parse_qs(urlparse(url).query).get('scope', [''])[0]!r}")
            await self.person.authorize(url, self.callback.redirect_uri)

        async def callback_handler() -> AuthorizationCodeResult:
            r = await asyncio.wait_for(self.callback.responses.get(), PAGE_MS / 1000)
            return AuthorizationCodeResult(code=r.get("code", ""), state=r.get("state"), iss=r.get("iss"))

        self.auth = OAuthClientProvider(
            server_url=MCP_URL,
            client_metadata=OAuthClientMetadata(
                client_name=CLIENT_NAME,
                redirect_uris=[self.callback.redirect_uri],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=self.storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
        self.http = httpx2.AsyncClient(
            auth=self.auth, event_hooks={"response": [self.recorder.on_response]}, timeout=STEP_S
        )
        await self.stack.enter_async_context(self.http)

    async def teardown(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stack.aclose(), PAGE_MS / 1000)
        await self.person.close()
        await self.callback.close()

    async def call(self, name: str, args: dict[str, Any]) -> Any:
        assert self.client is not None, "the SDK never connected (see the first failure)"
        result = await self.client.call_tool(name, args)
        assert not result.is_error, f"{name} failed: {result}"
        return json.loads(result.content[0].text)

    # -- the steps --------------------------------------------------------------------------

    async def connect(self) -> None:
        mark = self.recorder.mark()
        consent: dict[str, Any] = {}

        async def decide(page: Page) -> None:
            consent.update(await read_consent(page))  # and leave the defaults

        self.person.decide = decide
        self.client = await self.stack.enter_async_context(
            Client(streamable_http_client(MCP_URL, http_client=self.http))
        )
        self.recorder.transcript(mark)
        first = self.recorder.since(mark, lambda e: e.path == "/mcp")[0]
        assert first.status == 401, first
        assert param(first.www_authenticate, "resource_metadata") == f"{BASE}/.well-known/oauth-protected-resource/mcp"
        challenge = param(first.www_authenticate, "scope")
        assert scopes(challenge) == READ_SCOPES, challenge
        prm = self.recorder.since(mark, lambda e: e.path == "/.well-known/oauth-protected-resource/mcp")
        assert [e.status for e in prm] == [200], prm
        self.prm = prm[0].response_json
        assert self.prm["resource"] == MCP_URL and self.prm["authorization_servers"] == [BASE], self.prm
        asm = self.recorder.since(mark, lambda e: e.path == "/.well-known/oauth-authorization-server")
        assert [e.status for e in asm] == [200] and asm[0].response_json["issuer"] == BASE, asm
        reg = self.recorder.since(mark, lambda e: e.path == "/register")
        assert [e.status for e in reg] == [201], reg
        assert reg[0].request_json["scope"] == challenge, reg[0].request_json
        assert reg[0].request_json["redirect_uris"] == [self.callback.redirect_uri]
        assert "client_secret" not in reg[0].response_json
        assert len(self.authorization_urls) == 1
        q = {k: v[0] for k, v in parse_qs(urlparse(self.authorization_urls[0]).query).items()}
        assert q["response_type"] == "code" and q["code_challenge_method"] == "S256", q.keys()
        assert q["resource"] == MCP_URL and scopes(q["scope"]) == READ_SCOPES, (q.get("resource"), q.get("scope"))
        assert q["client_id"] == reg[0].response_json["client_id"]
        assert self.person.sign_ins == 1
        assert consent["boxes"] == [{"value": s, "checked": True} for s in READ_SCOPES], consent
        assert consent["already"] == [] and consent["irreversible"] == [], consent
        assert CLIENT_NAME in (consent["heading"] or ""), consent["heading"]
        token = self.recorder.since(mark, lambda e: e.path == "/token")
        assert [(e.grant_type, e.status) for e in token] == [("authorization_code", 200)], token
        assert scopes(token[0].response_json["scope"]) == READ_SCOPES and token[0].response_json["has_refresh_token"]
        say("connected")

    async def tools(self) -> None:
        assert self.client is not None, "the SDK never connected"
        tools = (await self.client.list_tools()).tools
        assert sorted(t.name for t in tools) == TOOLS, [t.name for t in tools]
        for t in tools:
            needed = (t.meta or {}).get(SCOPES_META)
            assert isinstance(needed, list) and needed and all(s in ALL_SCOPES for s in needed), (t.name, t.meta)
        send = next(t for t in tools if t.name == "send_invoice")
        assert send.meta[SCOPES_META] == ["invoices.send"]
        assert send.annotations is not None and send.annotations.destructive_hint is True
        say("tools: " + ", ".join(f"{t.name} [{' '.join(t.meta[SCOPES_META])}]" for t in tools))

    async def customers(self) -> None:
        names = [c["name"] for c in (await self.call("list_customers", {}))["customers"]]
        assert "Acme Corp" in names and "Globex" in names, names
        say(f"list_customers: {', '.join(names)}")

    async def prm_scopes(self) -> None:
        assert self.prm is not None, "the SDK never read the metadata"
        assert sorted(self.prm["scopes_supported"]) == ALL_SCOPES, self.prm["scopes_supported"]

    async def step_up(self) -> None:
        invoices = (await self.call("list_invoices", {}))["invoices"]
        draft = next((i for i in invoices if i["status"] == "draft"), None)
        assert draft, "a draft invoice to send"
        sign_ins, authorizations = self.person.sign_ins, len(self.authorization_urls)
        consent: dict[str, Any] = {}

        async def decide(page: Page) -> None:
            consent.update(await read_consent(page))
            await page.check('input[name=scope][value="invoices.send"]')

        self.person.decide = decide
        mark = self.recorder.mark()
        sent = await self.call("send_invoice", {"invoice_id": draft["id"]})
        self.recorder.transcript(mark)
        assert sent == {"invoice_id": draft["id"], "status": "sent"}, sent
        refused = self.recorder.since(mark, lambda e: e.tool == "send_invoice")[0]
        assert refused.status == 403 and param(refused.www_authenticate, "error") == "insufficient_scope"
        # RS11: what the token holds and what the tool needs, in one challenge.
        assert scopes(param(refused.www_authenticate, "scope")) == sorted([*READ_SCOPES, "invoices.send"])
        token = self.recorder.since(mark, lambda e: e.path == "/token")
        assert [(e.grant_type, e.status) for e in token] == [("authorization_code", 200)], "no refresh, one code exchange"
        assert scopes(token[0].response_json["scope"]) == sorted([*READ_SCOPES, "invoices.send"])
        assert len(self.authorization_urls) == authorizations + 1
        q = parse_qs(urlparse(self.authorization_urls[-1]).query)
        assert scopes(q["scope"][0]) == sorted([*READ_SCOPES, "invoices.send"]), "the union"
        assert self.person.sign_ins == sign_ins, "no second sign-in"
        assert consent["boxes"] == [{"value": "invoices.send", "checked": False}], consent
        assert consent["irreversible"] == ["invoices.send"] and consent["already"] == READ_SCOPES, consent
        say(f"send_invoice: {json.dumps(sent)}")
        await self.customers()

    async def unknown_tool(self) -> None:
        assert self.client is not None, "the SDK never connected"
        mark = self.recorder.mark()
        try:
            await self.client.call_tool("no_such_tool", {})
        except MCPError as e:
            self.recorder.transcript(mark)
            say(f"unknown tool: MCPError {e.code}: {e.message}")
            assert e.code == -32602, f"a JSON-RPC error -32602, got {e.code} ({e.message})"
            return
        raise AssertionError("calling an unknown tool did not fail")

    async def refresh_on_expiry(self) -> None:
        assert self.client is not None and self.storage.tokens is not None
        before = self.storage.tokens
        saves, authorizations = len(self.storage.saved), len(self.authorization_urls)
        # The access token's lifetime has run out, by the client's clock: the SDK refreshes
        # before sending (it tracks expiry itself; the token lives an hour).
        self.auth.context.token_expiry_time = time.time() - 1
        mark = self.recorder.mark()
        await self.call("list_todos", {})
        self.recorder.transcript(mark)
        traffic = [(e.path, e.status, e.grant_type or e.tool) for e in self.recorder.since(mark)]
        assert traffic == [("/token", 200, "refresh_token"), ("/mcp", 200, "list_todos")], traffic
        now = self.storage.tokens
        assert len(self.storage.saved) == saves + 1
        assert now.access_token != before.access_token and now.refresh_token != before.refresh_token
        assert scopes(now.scope) == scopes(before.scope)
        assert len(self.authorization_urls) == authorizations, "no new authorization"
        await self.call("list_customers", {})

    async def revoked_access_token(self) -> None:
        assert self.client is not None and self.storage.tokens is not None
        # The application revokes its access token (RFC 7009), on a connection of its own.
        async with httpx2.AsyncClient(timeout=STEP_S) as plain:
            revoked = await plain.post(
                f"{BASE}/revoke",
                data={"token": self.storage.tokens.access_token, "client_id": self.storage.client.client_id},
            )
        assert revoked.status_code == 200, revoked.status_code
        sign_ins, consents, authorizations = self.person.sign_ins, self.person.consent_pages, len(self.authorization_urls)
        mark = self.recorder.mark()
        await self.call("list_customers", {})
        self.recorder.transcript(mark)
        traffic = [(e.path, e.status, e.grant_type or e.tool) for e in self.recorder.since(mark)]
        assert traffic[0] == ("/mcp", 401, "list_customers"), traffic
        assert param(self.recorder.since(mark)[0].www_authenticate, "error") == "invalid_token"
        assert ("/token", 200, "authorization_code") in traffic and traffic[-1] == ("/mcp", 200, "list_customers")
        assert not any(g == "refresh_token" for _, _, g in traffic), "the SDK does not try its refresh token on a 401"
        assert len(self.authorization_urls) == authorizations + 1
        assert (self.person.sign_ins, self.person.consent_pages) == (sign_ins, consents), "no sign-in, no consent page"


async def main() -> int:
    story = Story()
    steps: list[tuple[str, float, Callable[[], Awaitable[None]], bool]] = [
        (
            f"RS2 RS5 RS1 AS2 AS5 C11 C14 C17 AS13: {SDK} discovers, registers with the 401 challenge's scopes, "
            "the person signs in and consents in Chromium, the SDK connects",
            BROWSER_STEP_S,
            story.connect,
            True,
        ),
        (f"tools/list through {SDK}: nine tools, each naming its scopes in _meta", STEP_S, story.tools, False),
        (f"list_customers through {SDK} returns the demo customers", STEP_S, story.customers, False),
        ("RFC 9728: the protected-resource metadata lists all six scopes in scopes_supported", STEP_S, story.prm_scopes, False),
        (
            f"RS10 RS11 C13: send_invoice is refused (403 insufficient_scope); {SDK} re-authorizes with the union; "
            "the consent page asks only for invoices.send; the call succeeds",
            BROWSER_STEP_S,
            story.step_up,
            False,
        ),
        (f"an unknown tool through {SDK} is a JSON-RPC error -32602", STEP_S, story.unknown_tool, False),
        (
            f"AS10: the access token expired by the client's clock; {SDK} refreshes (new access and refresh token), "
            "no browser",
            STEP_S,
            story.refresh_on_expiry,
            False,
        ),
        (
            f"RS9: a revoked access token gets 401 invalid_token; {SDK} re-authorizes (it does not try its refresh "
            "token on a 401); signed in and consent remembered, so no page to fill in; the call succeeds",
            BROWSER_STEP_S,
            story.revoked_access_token,
            False,
        ),
    ]
    failed = 0
    try:
        await story.setup()
        for name, timeout, run, essential in steps:
            started = time.monotonic()
            try:
                await asyncio.wait_for(run(), timeout)
                print(f"ok   {name} ({(time.monotonic() - started) * 1000:.0f} ms)", flush=True)
            except Exception as e:  # a failed step: report it, carry on unless the rest depends on it
                failed += 1
                reason = f"timed out after {timeout} s" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
                here = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
                where = f" (sdk_flow.py line {here[-1].lineno})" if here else ""
                print(f"FAIL {name}\n     {reason}{where}", flush=True)
                if essential:
                    print("     (the remaining steps need a connection: not run)", flush=True)
                    break
    finally:
        await story.teardown()
    print(f"{len(steps)} steps, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
