//! Requests the server cannot serve are answered in the protocol's own form, on the normal
//! transport path: an unknown tool is HTTP 200 with the request's `id` and `-32602`, bad
//! arguments a tool error with the request's `id` (SDKs report either against the call, not as
//! a transport failure), while authorization refusals keep their 401/403 challenges.

use std::sync::Arc;

use mandate_core::scope::ScopeSet;
use mandate_guard::Principal;
use mandate_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const CB: &str = "https://agent.test/cb";

/// An initialized session for alice holding `scopes`.
async fn session(s: &TestServer, scopes: &[&str]) -> McpClient {
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (verifier, challenge) = pkce();
    let mut authz = Authz::new(&client, CB, &challenge);
    authz.scope = Some(scopes.join(" "));
    let loc = consent_flow(&mut b, &authz, "alice", scopes).await;
    let code = query_param(&loc, "code").unwrap_or_else(|| panic!("no code: {loc}"));
    let (_, tok) = redeem(s, &client, CB, &code, &verifier).await;
    let mut c = McpClient::new(&s.url("/mcp"), tok["access_token"].as_str());
    assert_eq!(c.initialize().await.status, StatusCode::OK);
    c
}

fn call(id: Value, tool: &str, args: Option<Value>) -> Value {
    let mut params = json!({"name": tool});
    if let Some(a) = args {
        params["arguments"] = a;
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

fn content_type(r: &McpReply) -> &str {
    r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The error of a reply that must be HTTP 200 carrying `id`.
fn jsonrpc_error(r: &McpReply, id: &Value) -> (i64, String) {
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.message);
    assert_eq!(&r.message["id"], id, "the request's id is echoed: {:?}", r.message);
    assert_eq!(r.message["jsonrpc"], "2.0");
    assert!(r.message.get("result").is_none(), "{:?}", r.message);
    let code = r.message["error"]["code"].as_i64().unwrap_or_else(|| panic!("no error code: {:?}", r.message));
    (code, r.message["error"]["message"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn an_unknown_tool_is_invalid_params_with_the_request_id_h5() {
    let s = TestServer::start().await;
    let mut c = session(&s, &["customers.read"]).await;
    for id in [json!(41), json!("call-typo")] {
        let r = c.post(call(id.clone(), "list_customer", Some(json!({})))).await;
        assert_eq!(jsonrpc_error(&r, &id), (-32602, "Unknown tool: list_customer".to_owned()));
        assert!(content_type(&r).starts_with("application/json"), "H5: one JSON object: {}", content_type(&r));
        assert!(r.headers.get("www-authenticate").is_none(), "not an authorization refusal");
    }
    // The name is decoded before it is looked up (and echoed decoded).
    let r = c
        .post_raw(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"typ\u006f","arguments":{}}}"#.into(),
        )
        .await;
    assert_eq!(jsonrpc_error(&r, &json!(7)), (-32602, "Unknown tool: typo".to_owned()));
    // The session goes on.
    let r = c.post(call(json!(8), "list_customers", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.message["id"], 8);
    assert_eq!(r.message["result"]["isError"], false, "{:?}", r.message);
}

/// Bad arguments are what rmcp 3.11 makes of them, following MCP 2025-11-25 ("input validation
/// errors" are tool execution errors, so the model can correct itself): HTTP 200, the request's
/// `id`, a result with `isError: true` saying what is wrong. Not a 400, a 500 or a hang.
#[tokio::test]
async fn missing_and_wrong_typed_arguments_are_tool_errors_with_the_request_id() {
    let s = TestServer::start().await;
    let mut c = session(&s, &["customers.read", "customers.write", "todos.write"]).await;
    let cases = [
        ("create_customer", Some(json!({})), "missing field `name`"),
        ("create_customer", None, "missing field `name`"),
        ("create_customer", Some(json!({"name": 5})), "invalid type: integer `5`, expected a string"),
        ("get_customer", Some(json!({"id": ["a"]})), "invalid type: sequence, expected a string"),
        ("add_todo", Some(json!({"title": null})), "invalid type: null, expected a string"),
        ("complete_todo", Some(json!({"identifier": "x"})), "missing field `id`"),
    ];
    for (n, (tool, args, why)) in cases.into_iter().enumerate() {
        let id = json!(format!("bad-{n}"));
        let r = c.post(call(id.clone(), tool, args.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "{tool} {args:?}: {:?}", r.message);
        assert_eq!(r.message["id"], id, "{:?}", r.message);
        assert_eq!(r.message["result"]["isError"], true, "{tool} {args:?}: {:?}", r.message);
        assert_eq!(
            r.tool_text(),
            format!("failed to deserialize parameters: {why}"),
            "{tool} {args:?}: {:?}",
            r.message
        );
    }
    // Nothing was created, and the session still works.
    let alice = s.auth.store().user_by_name("alice").await.unwrap().unwrap();
    assert!(mandate_core::demo::DemoStore::customers(&s.store, &alice.id).await.unwrap().is_empty());
    let r = c.post(call(json!(99), "create_customer", Some(json!({"name": "Amazon"})))).await;
    assert_eq!(r.message["result"]["isError"], false, "{:?}", r.message);
}

/// A call that does not fit the `tools/call` schema (no tool name, arguments that are not an
/// object) is answered by the guard with `-32602` and the request's `id`; rmcp alone would read it
/// as an unknown method (`-32601`). Nothing runs.
#[tokio::test]
async fn calls_without_a_tool_name_or_with_non_object_arguments_are_invalid_params() {
    let s = TestServer::start().await;
    let mut c = session(&s, &["customers.write"]).await;
    let r = c.post(call(json!(1), "create_customer", Some(json!(["Amazon"])))).await;
    let expected = "Invalid params: the arguments of create_customer must be a JSON object".to_owned();
    assert_eq!(jsonrpc_error(&r, &json!(1)), (-32602, expected));
    let r = c.post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"arguments": {}}})).await;
    assert_eq!(
        jsonrpc_error(&r, &json!(2)),
        (-32602, "Invalid params: tools/call needs the name of a tool".to_owned())
    );
    let alice = s.auth.store().user_by_name("alice").await.unwrap().unwrap();
    assert!(mandate_core::demo::DemoStore::customers(&s.store, &alice.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn authorization_refusals_keep_their_challenges_rs9_rs10_rs11() {
    let s = TestServer::start().await;
    // No token: 401 with the challenge, before the tool is even looked at (H13).
    let mut anonymous = McpClient::new(&s.url("/mcp"), None);
    let r = anonymous.post(call(json!(1), "no_such_tool", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.www_authenticate().starts_with("Bearer resource_metadata="), "{}", r.www_authenticate());
    // A bad token: 401 invalid_token, whatever the tool.
    let mut forged = McpClient::new(&s.url("/mcp"), Some("not-a-token"));
    let r = forged.post(call(json!(2), "no_such_tool", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.www_authenticate().starts_with(r#"Bearer error="invalid_token""#));
    // A known tool without its scope: 403 step-up naming it.
    let mut c = session(&s, &["customers.read"]).await;
    let r = c.post(call(json!(3), "send_invoice", Some(json!({"invoice_id": "x"})))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let challenge = r.www_authenticate();
    assert!(challenge.starts_with(r#"Bearer error="insufficient_scope""#), "{challenge}");
    assert_eq!(r.challenge_scopes(), ["customers.read", "invoices.send"], "{challenge}");
}

#[tokio::test]
async fn a_notification_calling_an_unknown_tool_is_refused_with_400_h4() {
    let s = TestServer::start().await;
    let mut c = session(&s, &["customers.read"]).await;
    let r = c.post(json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "typo"}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.message["id"], Value::Null);
    assert_eq!(r.message["error"]["code"], -32602);
}

#[tokio::test]
async fn a_batch_calling_an_unknown_tool_is_answered_per_request_and_nothing_runs() {
    let s = TestServer::start().await;
    let mut c = session(&s, &["customers.read", "customers.write"]).await;
    let batch = json!([
        call(json!(1), "create_customer", Some(json!({"name": "Amazon"}))),
        call(json!("two"), "no_such_tool", Some(json!({}))),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]);
    let r = c.post(batch).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(content_type(&r).starts_with("application/json"));
    let answers = r.message.as_array().unwrap_or_else(|| panic!("an array: {:?}", r.message));
    let ids: Vec<&Value> = answers.iter().map(|a| &a["id"]).collect();
    assert_eq!(
        ids,
        vec![&json!(1), &json!("two"), &json!(3)],
        "one answer per request, in order; none for the notification"
    );
    assert_eq!(answers[0]["error"]["code"], -32600, "not processed: {:?}", answers[0]);
    assert_eq!(answers[1]["error"], json!({"code": -32602, "message": "Unknown tool: no_such_tool"}));
    assert_eq!(answers[2]["error"]["code"], -32600);
    // Fail closed: nothing in the batch ran.
    let alice = s.auth.store().user_by_name("alice").await.unwrap().unwrap();
    assert!(mandate_core::demo::DemoStore::customers(&s.store, &alice.id).await.unwrap().is_empty());
    // A batch of known tools goes to the MCP server, which (rmcp 3.11) takes no batches at all:
    // refused, and nothing runs either.
    let r = c.post(json!([call(json!(4), "create_customer", Some(json!({"name": "Amazon"})))])).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(mandate_core::demo::DemoStore::customers(&s.store, &alice.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_answer_respects_accept_h3() {
    let s = TestServer::start().await;
    let c = session(&s, &["customers.read"]).await;
    let post = |accept: &'static str| {
        let mut req = s
            .http
            .post(s.url("/mcp"))
            .bearer_auth(c.token.clone().unwrap())
            .header("mcp-session-id", c.session.clone().unwrap())
            .header("mcp-protocol-version", "2025-11-25")
            .header("content-type", "application/json")
            .body(call(json!(5), "no_such_tool", None).to_string());
        if !accept.is_empty() {
            req = req.header("accept", accept);
        }
        req.send()
    };
    let r = post("text/event-stream").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE, "JSON was not accepted");
    let r = post("application/json, text/event-stream").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32602);
}

/// The demo apps mounted with a caller put in by hand and no guard: a miswired deployment.
async fn unguarded(s: &TestServer, scopes: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let alice = s.auth.store().user_by_name("alice").await.unwrap().unwrap();
    let principal = Principal {
        issuer: s.base.clone(),
        subject: alice.id,
        client_id: "miswired".into(),
        scopes: ScopeSet::parse(scopes).unwrap(),
        grant_id: None,
        token_id: None,
        expires_at: i64::MAX,
    };
    let demo: Arc<dyn mandate_core::demo::DemoStore> = Arc::new(s.store.clone());
    let service = mandate_mcp::service(s.auth.clone(), demo, vec![addr.to_string(), addr.ip().to_string()]);
    let app = axum::Router::new().nest_service("/mcp", service).layer(axum::middleware::from_fn(
        move |mut req: axum::extract::Request, next: axum::middleware::Next| {
            req.extensions_mut().insert(principal.clone());
            next.run(req)
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/mcp")
}

#[tokio::test]
async fn a_tool_reached_without_its_scope_is_an_internal_error_not_the_callers() {
    let s = TestServer::start().await;
    let url = unguarded(&s, "todos.read").await;
    let mut c = McpClient::new(&url, None);
    assert_eq!(c.initialize().await.status, StatusCode::OK);
    let r = c.post(call(json!("m-1"), "list_customers", None)).await;
    assert_eq!(
        jsonrpc_error(&r, &json!("m-1")),
        (-32603, "the server could not authorize this call".to_owned()),
        "the second lock holds, and says nothing about the policy"
    );
    let r = c.post(call(json!("m-2"), "list_todos", None)).await;
    assert_eq!(r.message["result"]["isError"], false, "{:?}", r.message);
}
