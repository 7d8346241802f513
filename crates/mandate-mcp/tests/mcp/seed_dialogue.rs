//! John connects an agent, allows customers.read and customers.write only, the agent lists and
//! creates customers, is refused send_invoice with a step-up challenge, refreshes, and John
//! revokes it on the connected-apps page: the very next MCP request is refused.

use mandate_core::demo::DemoStore;
use mandate_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const CB: &str = "http://127.0.0.1/callback";

#[tokio::test]
async fn the_seed_dialogue_end_to_end() {
    let s = TestServer::start().await;
    let mcp_url = s.url("/mcp");

    // 1. An unauthenticated request gets 401 with directions (RS2, RS3, RS5).
    let mut anonymous = McpClient::new(&mcp_url, None);
    let r = anonymous.initialize().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.www_authenticate();
    let prm_url = s.url("/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        challenge,
        format!(r#"Bearer resource_metadata="{prm_url}", scope="customers.read invoices.read todos.read""#)
    );

    // 2. Protected resource metadata → authorization server metadata (RS1, RS4, AS4).
    let prm: Value = s.http.get(&prm_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], mcp_url);
    assert_eq!(prm["authorization_servers"], json!([s.base]));
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    assert!(!prm["scopes_supported"].as_array().unwrap().contains(&json!("offline_access")), "RS7");
    let issuer = prm["authorization_servers"][0].as_str().unwrap();
    let asm: Value = s
        .http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asm["issuer"], issuer);

    // 3. Registration, then John consents to customers.read and customers.write only.
    let body = json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none", "client_name": "Claude",
                      "grant_types": ["authorization_code", "refresh_token"], "application_type": "native"});
    let reg: Value = s
        .http
        .post(asm["registration_endpoint"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let mut browser = s.browser();
    let (verifier, challenge) = pkce();
    let mut authz = Authz::new(&client, "http://127.0.0.1:49152/callback", &challenge);
    authz.scope = Some("customers.read customers.write".into());
    authz.resource = Some(mcp_url.clone());
    let loc = consent_flow(&mut browser, &authz, "alice", &["customers.read", "customers.write"]).await;
    let code = query_param(&loc, "code").unwrap();
    let (status, _, tok) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &client),
            ("redirect_uri", "http://127.0.0.1:49152/callback"),
            ("resource", &mcp_url),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    let access = tok["access_token"].as_str().unwrap().to_owned();

    // 4. The agent initializes and lists the tools: send_invoice is there, with its scope.
    let mut agent = McpClient::new(&mcp_url, Some(&access));
    let r = agent.initialize().await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.message);
    assert_eq!(r.message["result"]["protocolVersion"], "2025-11-25");
    assert!(agent.session.is_some(), "H9: a session id");
    let tools = agent.request("tools/list", json!({})).await;
    let list = tools.message["result"]["tools"].as_array().unwrap().clone();
    let send = list.iter().find(|t| t["name"] == "send_invoice").expect("send_invoice listed");
    assert_eq!(send["_meta"]["io.mandate/scopes"], json!(["invoices.send"]));
    assert_eq!(send["annotations"]["destructiveHint"], true);
    assert_eq!(list.len(), 9);

    // 5. Calling it is refused with a step-up challenge naming invoices.send, together with what
    //    the token already holds (RS10, RS11).
    let r = agent.call("send_invoice", json!({"invoice_id": "inv-1"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let c = r.www_authenticate();
    assert!(c.starts_with(r#"Bearer error="insufficient_scope""#), "{c}");
    assert!(r.challenge_scopes().contains(&"invoices.send".to_owned()), "{c}");
    assert!(r.challenge_scopes().contains(&"customers.read".to_owned()), "held scopes kept: {c}");
    assert!(c.contains(&format!(r#"resource_metadata="{prm_url}""#)), "{c}");

    // 6. list_customers and create_customer work, on John's own data.
    let r = agent.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&r.tool_text()).unwrap()["customers"], json!([]));
    let r = agent.call("create_customer", json!({"name": "Amazon"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.message);
    assert_eq!(r.message["result"]["isError"], false);
    let alice = s.auth.store().user_by_name("alice").await.unwrap().unwrap();
    let bob = s.auth.store().user_by_name("bob").await.unwrap().unwrap();
    let names: Vec<String> = s.store.customers(&alice.id).await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["Amazon"]);
    assert!(s.store.customers(&bob.id).await.unwrap().is_empty());
    let r = agent.call("create_customer", json!({"name": "   "})).await;
    assert_eq!(r.message["result"]["isError"], true, "bad tool input is a tool error, not a 500");
    // Names the person will read in the trail cannot carry direction overrides or invisible text.
    for name in ["Amazon\u{202E}yap", "Ama\u{200B}zon"] {
        let r = agent.call("create_customer", json!({"name": name})).await;
        assert_eq!(r.message["result"]["isError"], true, "{name:?}");
    }

    // John uses the app himself: recorded as his own action.
    let page = browser.get("/apps").await;
    assert!(page.body.contains("Amazon"));
    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = browser.post("/apps/customers", &[("csrf", &csrf), ("name", "Google")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    // 7. Refresh: the new token works on the same session.
    s.clock.advance(120);
    let (status, refreshed) = refresh(&s, &client, tok["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    agent.token = Some(refreshed["access_token"].as_str().unwrap().to_owned());
    assert_eq!(agent.call("list_customers", json!({})).await.status, StatusCode::OK);

    // The activity page tells John's actions from the agent's.
    let activity = browser.get("/account/activity").await.body;
    assert!(
        activity.contains(r#"The app calling itself <span class="app-name">“<bdi class="app">Claude</bdi>”</span> <span class="badge unverified">unverified</span> <bdi>created customer Amazon</bdi> for you"#),
        "{activity}"
    );
    assert!(activity.contains("<strong>You</strong> <bdi>created customer Google</bdi>"), "{activity}");
    assert!(activity.contains("was refused: you have not allowed it to send invoices to your customers"), "{activity}");

    // 8. John revokes on the connected-apps page; the very next MCP request gets 401.
    let apps = browser.get("/account/apps").await;
    let csrf = hidden(&apps.body, "csrf").unwrap();
    let r = browser.post("/account/apps/revoke", &[("csrf", &csrf), ("client_id", &client)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = agent.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.www_authenticate().contains(r#"error="invalid_token""#));

    // Every tool call, allowed or refused, is in the audit trail with user, client and grant.
    let events = s.auth.audit_events(&Default::default()).await.unwrap();
    let calls: Vec<_> = events.iter().filter(|e| e.kind == "tool.call").collect();
    assert!(calls.iter().any(|e| e.outcome == "refused" && e.detail.as_deref().unwrap().starts_with("send_invoice")));
    assert!(calls.iter().all(|e| e.user_id.as_deref() == Some(alice.id.as_str())
        && e.client_id.as_deref() == Some(client.as_str())
        && e.grant_id.is_some()));
}

#[tokio::test]
async fn a_session_belongs_to_the_user_who_opened_it() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let token_for = |user: &'static str| {
        let s = &s;
        let client = client.clone();
        async move {
            let mut b = s.browser();
            let (verifier, challenge) = pkce();
            let loc = consent_flow(&mut b, &Authz::new(&client, CB, &challenge), user, &["customers.read"]).await;
            let (_, tok) = redeem(s, &client, CB, &query_param(&loc, "code").unwrap(), &verifier).await;
            tok["access_token"].as_str().unwrap().to_owned()
        }
    };
    let alice_token = token_for("alice").await;
    let bob_token = token_for("bob").await;
    let mut alice = McpClient::new(&s.url("/mcp"), Some(&alice_token));
    assert_eq!(alice.initialize().await.status, StatusCode::OK);
    // Bob presents Alice's session id with his own valid token (RS14).
    let mut bob = McpClient::new(&s.url("/mcp"), Some(&bob_token));
    bob.session = alice.session.clone();
    let r = bob.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(alice.call("list_customers", json!({})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn older_protocol_versions_are_negotiated_h10_h11() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (code, verifier) = authorize_code(&s, &mut b, &client, CB, &["customers.read"]).await;
    let (_, tok) = redeem(&s, &client, CB, &code, &verifier).await;
    for version in ["2025-06-18", "2025-03-26"] {
        let mut c = McpClient::new(&s.url("/mcp"), tok["access_token"].as_str());
        let r = c.initialize_with(version).await;
        assert_eq!(r.status, StatusCode::OK, "{version}");
        assert_eq!(r.message["result"]["protocolVersion"], version);
    }
}
