//! Scopes over time: self-registered clients step up past what they registered (the person's
//! consent is the limit); an operator's scope list for a pre-registered client is a ceiling.

use reqwest::StatusCode;
use serde_json::{Value, json};

use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

/// Registers the way the TypeScript and Python SDKs do: `scope` = the first challenge's scopes.
async fn register_with_scope(s: &TestServer, scope: &str) -> String {
    let body = json!({
        "redirect_uris": [CB],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": "SDK agent",
        "scope": scope,
    });
    let r = s.http.post(s.url("/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_self_registered_client_steps_up_past_its_registered_scope_dc_17() {
    let s = TestServer::start().await;
    let client = register_with_scope(&s, "customers.read invoices.read todos.read").await;
    let mut b = s.browser();

    let (verifier, challenge) = pkce();
    let mut authz = Authz::new(&client, CB, &challenge);
    authz.scope = Some("customers.read".into());
    let loc = consent_flow(&mut b, &authz, "alice", &["customers.read"]).await;
    let code = query_param(&loc, "code").unwrap();
    let (st, _) = redeem(&s, &client, CB, &code, &verifier).await;
    assert_eq!(st, StatusCode::OK);

    // Step-up with the union, as the SDKs do after a 403 insufficient_scope: asked only for the
    // new scope, which arrives unticked (irreversible); the person ticks it.
    let (verifier, challenge) = pkce();
    let mut authz = Authz::new(&client, CB, &challenge);
    authz.scope = Some("customers.read invoices.send".into());
    let r = b.get(&authz.url()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = b.get(r.location.as_deref().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"name="scope" value="invoices.send""#));
    assert!(!page.body.contains(r#"name="scope" value="customers.read""#));
    let r = submit_consent(&mut b, &page, "allow", &["invoices.send"]).await;
    let loc = r.location.unwrap();
    let (st, tokens) = redeem(&s, &client, CB, &query_param(&loc, "code").unwrap(), &verifier).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tokens["scope"], "customers.read invoices.send");
}

#[tokio::test]
async fn a_scope_no_resource_offers_is_still_refused_for_self_registered_clients() {
    let s = TestServer::start().await;
    let client = register_with_scope(&s, "customers.read").await;
    let mut b = s.browser();
    b.login("alice", None).await;
    let (_, challenge) = pkce();
    let mut authz = Authz::new(&client, CB, &challenge);
    authz.scope = Some("customers.read admin".into());
    let r = b.get(&authz.url()).await;
    // An unverified client gets a page that explains (no automatic redirect) and a link back.
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("invalid_scope"), "{}", r.body);
}

#[tokio::test]
async fn an_operator_scope_list_is_a_ceiling_dc_17() {
    let s = TestServer::start().await;
    let (client, _) = s
        .auth
        .add_client(mandate_core::service::ClientRegistration {
            name: "Reporting bot".into(),
            redirect_uris: vec![CB.into()],
            confidential: false,
            allow_refresh: true,
            scope: Some(mandate_core::scope::ScopeSet::from_names(["customers.read", "invoices.read"])),
            resources: Vec::new(),
        })
        .await
        .unwrap();
    let mut b = s.browser();
    b.login("alice", None).await;

    // Within the ceiling: consent as usual.
    let (_, challenge) = pkce();
    let mut authz = Authz::new(&client.id, CB, &challenge);
    authz.scope = Some("invoices.read".into());
    let r = b.get(&authz.url()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location.unwrap().starts_with("/consent"));

    // Past it: a verified client gets the error at its redirect URI.
    authz.scope = Some("invoices.read invoices.send".into());
    let r = b.get(&authz.url()).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.location.unwrap();
    assert!(loc.starts_with(CB), "{loc}");
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_scope"));
    assert!(query_param(&loc, "error_description").unwrap().contains("invoices.send"));

    // No scope: the resource's defaults within the ceiling.
    authz.scope = None;
    let r = b.get(&authz.url()).await;
    let page = b.get(r.location.as_deref().unwrap()).await;
    assert!(page.body.contains(r#"value="customers.read""#));
    assert!(page.body.contains(r#"value="invoices.read""#));
    assert!(!page.body.contains(r#"value="todos.read""#), "todos.read is outside the ceiling");
}

#[tokio::test]
async fn an_operator_scope_list_must_name_offered_scopes() {
    let s = TestServer::start().await;
    let add = |scope: &[&str]| mandate_core::service::ClientRegistration {
        name: "Bot".into(),
        redirect_uris: vec![CB.into()],
        confidential: false,
        allow_refresh: true,
        scope: Some(mandate_core::scope::ScopeSet::from_names(scope.iter().copied())),
        resources: Vec::new(),
    };
    let e = s.auth.add_client(add(&["customers.read", "root"])).await.unwrap_err();
    assert!(e.to_string().contains("root"), "{e}");
    let e = s.auth.add_client(add(&[])).await.unwrap_err();
    assert!(e.to_string().contains("no scope"), "{e}");
}
