#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from the values the tests use.

Run from anywhere: python3 fuzz/seeds/make_corpus.py. Needs openssl (to sign the JWT seeds with
the fuzzer's fixed Ed25519 key, fuzz/src/lib.rs)."""
import base64, hashlib, json, os, subprocess, tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
CB = "https://app.test/cb"

def put(target, items):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for item in items:
        data = item if isinstance(item, bytes) else item.encode()
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)

FORM = "application/x-www-form-urlencoded"
put("params", [
    f"{FORM}\na=1&a=2&b=&c=x%20y",
    f"{FORM}\nclient_id=a%00b",
    f"{FORM}; charset=UTF-8\ngrant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&code_verifier=dBjftJeZ4CVP-mJ92Z&client_id=c1&resource=https%3A%2F%2Fmcp.example.com%2Fmcp",
    f"{FORM}\ngrant_type=refresh_token&refresh_token=mrt_x&scope=todos.read+todos.write",
    "application/json\n{\"grant_type\":\"authorization_code\"}",
    "text/plain\ntoken=x&token_type_hint=refresh_token",
    f"{FORM}\nresponse_type=code&client_id=c1&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcb&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&scope=todos.read&scope=todos.write",
    f"{FORM}\nscope=customers.read&scope=invoices.send&decision=allow&csrf=abc%2B%2F%3D",
])

b64 = lambda s: base64.b64encode(s.encode()).decode()
put("basic_credentials", [
    "Basic " + b64("client-1:s3cret"),
    "Basic " + b64("a%3Ab:c%2Bd+e"),
    "Basic " + b64("no-colon"),
    "Basic not*base64",
    "Bearer abc.def.ghi",
    "basic   " + b64("c:") + "  ",
    "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    "client-1\nmcs_0123456789abcdef",
    "id with spaces:and colons\nsecret+plus%percent\u00e9",
])

put("www_authenticate", [
    'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="todos.read"',
    'Bearer error="insufficient_scope", scope="customers.read invoices.send", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", error_description="the send_invoice tool needs the scope invoices.send"',
    'Bearer error="invalid_token", error_description="the access token has expired", resource_metadata="/.well-known/oauth-protected-resource"',
    'Bearer resource_metadata=https://evil.test/x, scope=a',
    'Bearer realm="x", resource_metadata="http://10.0.0.1/meta"',
    'Basic realm="mandate", charset="UTF-8"',
    "/mcp\ntodos.read todos.write\nthe list_todos tool needs the scope todos.read",
    "\ncustomers.read invoices.send\nthe send_invoice tool needs the scope \"invoices.send\" \\ ok",
])

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

KEY = """-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOF1zfqufQkWQjKWF+TEBSUEQHYgqb5kOAebCTdHcpFA
-----END PRIVATE KEY-----
"""
def sign(header, claims):
    signing_input = f"{b64u(header.encode())}.{b64u(claims.encode())}"
    with tempfile.TemporaryDirectory() as d:
        k, m = os.path.join(d, "k.pem"), os.path.join(d, "m")
        open(k, "w").write(KEY)
        open(m, "w").write(signing_input)
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", k, "-rawin", "-in", m],
                             check=True, capture_output=True).stdout
    return f"{signing_input}.{b64u(sig)}"

NOW = 1_800_000_000
HDR = '{"alg":"EdDSA","typ":"at+jwt","kid":"fuzz-key-1"}'
good = {"iss": "https://auth.example.com", "sub": "user-1", "aud": "https://mcp.example.com/mcp",
        "exp": NOW + 3600, "iat": NOW, "nbf": NOW, "client_id": "client-1", "scope": "todos.read todos.write",
        "jti": "j1", "grant_id": "g1"}
variants = [good,
            dict(good, aud=["https://other.test", "https://mcp.example.com/mcp"]),
            dict(good, exp=NOW - 61), dict(good, nbf=NOW + 3600), dict(good, iss="https://evil.test"),
            dict(good, aud="https://other.test"), dict(good, scope="bad\"scope"),
            {k: v for k, v in good.items() if k != "client_id"} | {"azp": "client-2"},
            {k: v for k, v in good.items() if k != "client_id"}]
headers = [HDR, '{"alg":"none","typ":"at+jwt","kid":"fuzz-key-1"}', '{"alg":"HS256","typ":"at+jwt","kid":"fuzz-key-1"}',
           '{"alg":"EdDSA","typ":"JWT","kid":"fuzz-key-1"}', '{"alg":"EdDSA","typ":"at+jwt","kid":"other"}',
           '{"alg":"EdDSA","typ":"application/at+jwt","kid":"fuzz-key-1","jku":"https://evil.test/jwks"}',
           '{"alg":"EdDSA","typ":"at+jwt","kid":"fuzz-key-1","crit":["exp"]}',
           '{"alg":"ES256","typ":"at+jwt","kid":"fuzz-key-1"}']
jwt = []
for c in variants:
    cj = json.dumps(c, separators=(",", ":"))
    jwt.append("2" + cj)
    jwt.append("0" + sign(HDR, cj))
for h in headers:
    jwt.append("1" + h + "\n" + json.dumps(good, separators=(",", ":")))
jwt += ["0eyJhbGciOiJub25lIn0.e30.", "0a.b.c", "0" + "x" * 9000, "0...."]
put("jwt", jwt)

put("jsonrpc_body", [
    '{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"typo","arguments":{}}}',
    '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_todos"}}',
    '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"typo"}}',
    '{"id":1,"method":"tools/call","params":{}}',
    '{"id":1,"method":"tools/call","params":{"name":7}}',
    '{"id":1,"method":"tools/call","params":{"name":"list_todos","arguments":[1]}}',
    '{"id":1,"method":"tools/call","params":{"name":"list_todos","arguments":null}}',
    '{"id":1,"method":"tools\\/call","params":{"name":"send_invoice","arguments":{"to":"x"}}}',
    '[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nope"}},{"jsonrpc":"2.0","method":"notifications/initialized"}]',
    '[{"jsonrpc":"2.0","method":"tools/call","params":{"name":"nope"}}]',
    '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mandate","version":"0.1.0"}}}',
    '[]', 'null', '"tools/call"', '{"method":"tools/call","params":{"name":"list_todos"},"method":"tools/list"}',
])

reg = [
    {"redirect_uris": [CB], "token_endpoint_auth_method": "none", "client_name": "Claude",
     "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
     "client_id": "chosen-by-attacker", "application_type": "native", "scope": "claudeai", "foo": "bar"},
    {"redirect_uris": [CB], "grant_types": ["password"]},
    {"redirect_uris": [CB], "grant_types": ["client_credentials"]},
    {"redirect_uris": [CB], "response_types": ["token"]},
    {"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt"},
    {"redirect_uris": [CB], "jwks": {"keys": []}, "jwks_uri": "https://a.test/jwks"},
    {"redirect_uris": [CB], "logo_uri": "javascript:alert(1)"},
    {"redirect_uris": [CB], "client_name": "x" * 300},
    {"redirect_uris": [CB], "client_name": "Evil\u202eppA"},
    {"redirect_uris": [CB, CB, "http://127.0.0.1:8765/cb", "com.example.app:/oauth2redirect"],
     "scope": "todos.read customers.read unknown", "client_uri": "https://app.test", "policy_uri": "https://app.test/p"},
    {"token_endpoint_auth_method": "none"},
    [1, 2, 3],
]
reg += [{"redirect_uris": [bad], "token_endpoint_auth_method": "none"} for bad in
        ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,x", "file:///etc/passwd",
         "http://app.test/cb", "https://app.test/cb#f", "https://u:p@app.test/cb", "/cb"]]
put("registration", [json.dumps(r) for r in reg])

U = "https://cimd.test/c.json"
docs = [
    '{"client_id":"https://cimd.test/c.json","client_name":"Claude","redirect_uris":["https://claude.ai/cb"],"grant_types":["authorization_code","refresh_token"]}',
    '{"client_id":"https://cimd.test/c.json/","client_name":"x","redirect_uris":["https://a.test/cb"]}',
    '{"client_id":"https://other.test/c.json","client_name":"x","redirect_uris":["https://a.test/cb"]}',
    '{"client_id":"https://cimd.test/c.json","redirect_uris":["https://a.test/cb"]}',
    '{"client_id":"https://cimd.test/c.json","client_name":"x","redirect_uris":["javascript:alert(1)"]}',
    '{"client_id":"https://cimd.test/c.json","client_name":"x","redirect_uris":["https://a.test/cb"],"token_endpoint_auth_method":"client_secret_basic"}',
    '{"client_id":"https://cimd.test/c.json","client_name":"x","redirect_uris":["https://a.test/cb"],"client_secret":"s"}',
    '{"client_id":"https://cimd.test/c.json","client_name":"x","redirect_uris":["https://a.test/cb"],"scope":"todos.read"}',
    "[]",
]
cimd = [U + "\n" + d for d in docs]
cimd += [u + "\n" + docs[0].replace(U, u) for u in
         ["http://cimd.test/c.json", "https://cimd.test", "https://cimd.test/", "https://cimd.test/a/../c.json",
          "https://cimd.test/c.json#x", "https://u:p@cimd.test/c.json", "http://127.0.0.1:9/c.json"]]
put("client_metadata_document", cimd)

bad_reg = ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "java\tscript:alert(1)", "data:text/html,hi", "vbscript:x",
           "file:///etc/passwd", "http://app.test/cb", "https://app.test/cb#f", "https://u:p@app.test/cb",
           "https://*.app.test/cb", "/cb", " https://app.test/cb", "https://app.test/a/../cb", "https://APP.test/cb",
           "myapp:/cb"]
good_reg = ["https://app.test/cb", "https://app.test", "http://127.0.0.1/cb", "http://127.0.0.1:8765/cb",
            "http://[::1]/cb", "http://localhost:3000/callback", "com.example.app:/oauth2redirect",
            "https://claude.ai/api/mcp/auth_callback", "com.evil.app://github.com/cb"]
match_bad = ["https://app.test/cb/", "https://app.test/cb?x=1", "https://app.test/cb/../evil", "https://app.test/CB",
             "https://APP.test/cb", "https://app.test:443/cb", "https://app.test@evil.test/cb",
             "https://app.test.evil.test/cb", "https://app.test:8443/cb"]
loop_bad = ["http://127.0.0.1:51004/cb?x=1", "http://127.0.0.1:51004/other", "https://127.0.0.1:51004/cb",
            "http://localhost:51004/cb", "http://127.0.0.2:51004/cb", "http://127.0.0.1:99999/cb",
            "http://127.0.0.1:51004/cb#x", "http://127.0.0.1:/cb"]
redir = bad_reg + good_reg
redir += [CB + "\n" + r for r in match_bad]
redir += ["http://127.0.0.1/cb\n" + r for r in loop_bad + ["http://127.0.0.1:51004/cb"]]
redir += ["http://localhost/callback\nhttp://localhost:49152/callback", "http://[::1]:1/cb\nhttp://[::1]:2/cb"]
put("redirect_uri", redir)

put("scope", ["a b  a c", "a\"b", "caf\u00e9", "todos.read todos.write offline_access", "customers.read invoices.send",
              "x" * 129, " ".join(f"s{i}" for i in range(70)), "claudeai",
              "HTTPS://MCP.Example.com/mcp", "https://host/", "https://host:443/mcp", "https://host/mcp#x", "/mcp",
              "urn:x", "https://u:p@host/mcp", "ftp://h/x", "http://127.0.0.1:8080/mcp", "https://mcp.example.com/mcp?x=1"])

GOOD_PRM = '{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["todos.read","todos.write"]}'
GOOD_CHALLENGE = 'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="todos.read"'
prms = [GOOD_PRM,
        '{"resource":"https://mcp.example.com/mcp","authorization_servers":["http://10.0.0.1"]}',
        '{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://evil.test"]}',
        '{"resource":"https://other.example.com/mcp","authorization_servers":["https://auth.example.com"]}',
        '{"resource":"https://mcp.example.com/","authorization_server":"https://auth.example.com"}',
        '{"authorization_servers":[]}', '{}', 'not json']
challenges = [GOOD_CHALLENGE, 'Bearer resource_metadata="https://evil.test/.well-known/oauth-protected-resource"',
              'Bearer resource_metadata="http://127.0.0.1/x"', 'Bearer scope="todos.read"', '']
put("client_resource_metadata", [c + "\n" + p for c in challenges[:1] for p in prms] +
    [c + "\n" + GOOD_PRM for c in challenges[1:]])

GOOD_ASM = json.loads('{"issuer":"https://auth.example.com","authorization_endpoint":"https://auth.example.com/authorize","token_endpoint":"https://auth.example.com/token","registration_endpoint":"https://auth.example.com/register","code_challenge_methods_supported":["S256"],"response_types_supported":["code"],"scopes_supported":["todos.read","todos.write"],"authorization_response_iss_parameter_supported":true,"client_id_metadata_document_supported":true}')
asms = [GOOD_ASM, dict(GOOD_ASM, code_challenge_methods_supported=["plain"]),
        {k: v for k, v in GOOD_ASM.items() if k != "code_challenge_methods_supported"},
        dict(GOOD_ASM, authorization_endpoint="javascript:alert(1)"),
        dict(GOOD_ASM, authorization_endpoint="http://auth.example.com/authorize"),
        dict(GOOD_ASM, token_endpoint="https://10.0.0.1/token"),
        dict(GOOD_ASM, registration_endpoint="file:///etc/passwd"),
        dict(GOOD_ASM, issuer="https://evil.test"),
        {k: v for k, v in GOOD_ASM.items() if k != "issuer"},
        dict(GOOD_ASM, authorization_endpoint="https://u:p@auth.example.com/authorize")]
put("client_as_metadata", [json.dumps(a) for a in asms] + ["[]", "{}"])

OIDC = '[[providers]]\nname = "idp"\ntitle = "Example ID"\nissuer = "https://id.example.com"\nclient_id = "mandate"\nsign_in = true\n'
gw = ['name = "Notes App"\ncommand = "x"', 'name = "notes"\ncommand = "x"\nupstream_url = "http://127.0.0.1:1/mcp"',
      'name = "notes"\ncommand = "x"\nisolation = "per-user"', 'name = "notes"\nupstream_url = "ftp://h/mcp"',
      'name = "notes"\nupstream_url = "http://127.0.0.1:1/mcp"\nupstream_headers = { Authorization = "Bearer s3cret" }',
      'name = "notes"\nupstream_url = "http://127.0.0.1:1/mcp"\nupstream_headers = { X-Key = "env:PATH" }',
      'name = "notes"\ncommand = "x"\ntool_scopes = { purge = "billing.read" }', 'name = "A"',
      'name = "notes"\nupstream_url = "http://u:p@127.0.0.1:1/mcp"', 'name = "notes"\ncommand = "x"\nmax_processes = 0']
put("config_toml", [
    "", 'public_url = "https://auth.example.com"\n',
    'metrics_listen = "127.0.0.1:9464"\nmetrics_token = "0123456789abcdef"',
    'metrics_listen = "127.0.0.1:8080"', 'metrics_token = "0123456789 abcdef"',
    'listen = "0.0.0.0:8080"\npublic_url = "http://auth.example.com"\ninsecure_http = true\n',
    'listen = "[::1]:0"\ndemo = true\n', 'public_url = "HTTPS://Auth.example.com:443/"\n',
    'mcp_only = true\nissuer = "https://auth.example.com"\nmcp_allowed_origins = ["http://localhost:6274"]\n',
    'access_token_ttl = 59\n', 'refresh_grace = 301\n', 'signing_alg = "EdDSA"\nkey_activation_delay = 0\n',
    'public_url = "https://auth.example.com"\n[[resources]]\nname = "notes"\ntitle = "Notes"\ncommand = "notes-server"\nargs = ["--stdio"]\n[[resources]]\nname = "tickets"\nupstream_url = "http://127.0.0.1:3000/mcp"\nrequest_timeout = 5\n',
    '[[resources]]\nuri = "https://mcp.example.com/mcp"\nname = "Notes"\ndefault_scopes = ["notes.read"]\n[[resources.scopes]]\nname = "notes.read"\ndescription = "Read"\nirreversible = false\n',
    'public_url = "https://auth.example.com"\n' + OIDC + 'client_secret_env = "PATH"\n',
    OIDC + 'client_secret = "in-the-file"\n', OIDC + '[providers.extra_params]\nstate = "fixed"\n',
    'password_login = false\n' + OIDC,
    OIDC + '[[resources]]\nname = "gh"\nupstream_url = "https://api.example.com/mcp"\nprovider = "idp"\n',
] + ["[[resources]]\n" + e + "\n" for e in gw])

# The address classifier: a flag byte (loopback allowed), an IPv4 and an IPv6 address, a URL host.
import ipaddress
def ipseed(flag, v4, v6, host):
    return bytes([flag]) + ipaddress.IPv4Address(v4).packed + ipaddress.IPv6Address(v6).packed + host.encode()
put("ip_address", [
    ipseed(0, "127.0.0.1", "::1", "127.1"),
    ipseed(1, "127.0.0.1", "::ffff:127.0.0.1", "localhost"),
    ipseed(0, "10.0.0.1", "fc00::1", "0x7f000001"),
    ipseed(0, "169.254.169.254", "fe80::1", "[::ffff:7f00:1]"),
    ipseed(0, "100.64.0.1", "64:ff9b::a00:1", "2130706433"),
    ipseed(0, "93.184.216.34", "2606:4700::1111", "example.com"),
    ipseed(0, "198.18.0.1", "2002:a00:1::", "0177.0.0.1"),
    ipseed(0, "255.255.255.255", "2001::1", "[2001:db8::1]"),
    ipseed(0, "1.1.1.1", "100::1", "1.1.1.1"),
])

# JWKS documents: mandate's own shapes (ES256, EdDSA), an RSA key declared PS256, an alg that
# does not fit its key, a symmetric key, a kid twice, none.
EC = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
OKP = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
RSA = {"kty": "RSA", "e": "AQAB", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"}
put("jwks", [json.dumps(d) for d in [
    {"keys": [dict(EC, kid="k1", alg="ES256", use="sig")]},
    {"keys": [dict(OKP, kid="ed", alg="EdDSA")]},
    {"keys": [dict(EC, kid="k1", alg="RS256")]},
    {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"}]},
    {"keys": [dict(RSA, kid="rsa", alg="PS256")]},
    {"keys": [dict(EC, kid="dup"), dict(OKP, kid="dup")]},
    {"keys": []},
]])
