//! A small fake MCP server on loopback for the client tests: protected resource metadata and
//! authorization server metadata (each editable), and an `/mcp` endpoint that either challenges
//! every request, serves a minimal MCP server without authorization (recording every request it
//! gets), or accepts requests and never answers them.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};

/// What `/mcp` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeMcp {
    /// Every request gets 401 with `WWW-Authenticate: Bearer resource_metadata="<its PRM>"`.
    Unauthorized,
    /// A minimal MCP server that needs no token: `initialize` is answered with `version` (and a
    /// session id), notifications with 202, `tools/list` with one tool `echo`, `tools/call` with
    /// a text block holding `{"tool":…,"arguments":…}` as compact JSON, GET with 405, DELETE
    /// with 200. Answers are single JSON objects.
    Open { version: String },
    /// Like `Open`, but a `tools/call` gets the headers of an SSE stream and then nothing.
    StallsToolCalls { version: String },
    /// Reads each request and never answers it.
    Silent,
}

/// One request `/mcp` received.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub headers: HeaderMap,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
}

impl Captured {
    /// The JSON-RPC method of a POST (`None` for GET/DELETE or a response).
    pub fn rpc_method(&self) -> Option<&str> {
        self.body.get("method").and_then(Value::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
struct St {
    base: String,
    mcp: FakeMcp,
    prm: Value,
    asm: Value,
    seen: Arc<Mutex<Vec<Captured>>>,
}

/// The fake server; it runs until the test's runtime ends.
pub struct FakeServer {
    pub base: String,
    seen: Arc<Mutex<Vec<Captured>>>,
}

pub const FAKE_SESSION: &str = "fake-session-1";

impl FakeServer {
    pub async fn start(mcp: FakeMcp) -> Self {
        Self::start_with(mcp, |_, _, _| {}).await
    }

    /// `edit(base, prm, asm)` changes the metadata documents before the server starts. By
    /// default the PRM names `<base>/mcp` and the fake itself as authorization server, with
    /// scope `read`; the ASM has S256, `/authorize`, `/token` and `/register` on the fake (whose
    /// registration answers a client id nobody should get to use).
    pub async fn start_with(mcp: FakeMcp, edit: impl FnOnce(&str, &mut Value, &mut Value)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut prm =
            json!({"resource": format!("{base}/mcp"), "authorization_servers": [base], "scopes_supported": ["read"]});
        let mut asm = json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "registration_endpoint": format!("{base}/register"),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        });
        edit(&base, &mut prm, &mut asm);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let st = St { base: base.clone(), mcp, prm, asm, seen: seen.clone() };
        let app = Router::new()
            .route("/mcp", any(mcp_endpoint))
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                get(|State(st): State<St>| async move { axum::Json(st.prm) }),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                get(|State(st): State<St>| async move { axum::Json(st.asm) }),
            )
            .route(
                "/register",
                post(|| async { (StatusCode::CREATED, axum::Json(json!({"client_id": "should-not-get-here"}))) }),
            )
            .with_state(st);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, seen }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Every request `/mcp` received so far, in order.
    pub fn requests(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }
}

async fn mcp_endpoint(State(st): State<St>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    st.seen.lock().unwrap().push(Captured { method: method.clone(), headers, body: body.clone() });
    let (version, stalls) = match &st.mcp {
        FakeMcp::Unauthorized => {
            let challenge =
                format!(r#"Bearer resource_metadata="{}/.well-known/oauth-protected-resource/mcp""#, st.base);
            let mut h = HeaderMap::new();
            h.insert("www-authenticate", HeaderValue::from_str(&challenge).unwrap());
            return (StatusCode::UNAUTHORIZED, h).into_response();
        }
        FakeMcp::Silent => std::future::pending().await,
        FakeMcp::Open { version } => (version.clone(), false),
        FakeMcp::StallsToolCalls { version } => (version.clone(), true),
    };
    match method {
        Method::GET => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Method::DELETE => return StatusCode::OK.into_response(),
        _ => {}
    }
    let Some(rpc) = body.get("method").and_then(Value::as_str) else {
        return StatusCode::ACCEPTED.into_response(); // a response from the client
    };
    let Some(id) = body.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response(); // a notification
    };
    let result = match rpc {
        "initialize" => json!({
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1"},
        }),
        "tools/list" => {
            json!({"tools": [{"name": "echo", "description": "Echoes its call", "inputSchema": {"type": "object"}}]})
        }
        "tools/call" if stalls => {
            let stream = stall();
            let mut resp = Response::new(axum::body::Body::from_stream(stream));
            resp.headers_mut().insert("content-type", HeaderValue::from_static("text/event-stream"));
            return resp;
        }
        "tools/call" => {
            let echo = json!({"tool": body["params"]["name"], "arguments": body["params"]["arguments"]});
            json!({"content": [{"type": "text", "text": echo.to_string()}], "isError": false})
        }
        "ping" => json!({}),
        other => {
            let error = json!({"code": -32601, "message": format!("Method not found: {other}")});
            return axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": error})).into_response();
        }
    };
    let mut resp = axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
    if rpc == "initialize" {
        resp.headers_mut().insert("mcp-session-id", HeaderValue::from_static(FAKE_SESSION));
    }
    resp
}

/// An SSE body that sends one priming event and then nothing, forever.
fn stall() -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    use futures::StreamExt;
    futures::stream::once(async { Ok(Bytes::from_static(b"id: 0\ndata:\n\n")) }).chain(futures::stream::pending())
}
