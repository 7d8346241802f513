//! What a person reads and does on the pages: the sign-in page names the app and keeps what was
//! typed; the consent page says where the answer goes and for how long, and refuses an "Allow"
//! that allows nothing; the account pages share a navigation, confirm revocations and report
//! them; error pages speak plain words. (Real-browser runs of the same story: `e2e/`.)

use reqwest::StatusCode;
use serde_json::{Value, json};

use mandate_core::store::{AuditStore, UserStore};
use mandate_testkit::*;

const CB: &str = "https://agent.test/callback";

/// The pending request id of a fresh authorization request (the sign-in redirect).
async fn pending(b: &mut Browser, authz: &Authz) -> String {
    let r = b.get(&authz.url()).await;
    r.location.unwrap().trim_start_matches("/login?request=").to_owned()
}

#[tokio::test]
async fn sign_in_names_the_app_and_keeps_the_username_ui_19() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (_, ch) = pkce();
    let req = pending(&mut b, &Authz::new(&client, CB, &ch)).await;
    let page = b.get(&format!("/login?request={req}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"to continue to <bdi class="app">Test agent</bdi> <span class="badge unverified">"#));

    let csrf = hidden(&page.body, "csrf").unwrap();
    let r = b.post("/login", &[("csrf", &csrf), ("request", &req), ("username", "alice"), ("password", "wrong")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains(r#"value="alice""#), "the username is kept: {}", r.body);
    assert!(r.body.contains("The username or password is wrong"));
    assert!(r.body.contains("Test agent"), "the app is still named");
    // The password field gets the focus, not the kept username.
    assert!(r.body.contains(r#"autocomplete="current-password" required autofocus"#));

    // Without a pending request there is no app to name.
    let page = b.get("/login").await;
    assert!(!page.body.contains("to continue to"));
}

#[tokio::test]
async fn too_many_sign_in_posts_get_a_page_with_retry_after_ui_11() {
    let s = TestServer::start_with(Options { login_burst: 2, ..Options::default() }).await;
    let mut b = s.browser();
    let mut last = None;
    for _ in 0..4 {
        last = Some(b.login_with("alice", "wrong", None).await);
    }
    let r = last.unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get("retry-after").is_some());
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.body.contains("Too many sign-in attempts"), "{}", r.body);
    assert!(r.body.contains(r#"href="/static/mandate.css""#), "a styled page, not a bare text body");
    assert_eq!(r.headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn consent_says_where_the_answer_goes_and_for_how_long_as7_ui_19() {
    let s = TestServer::start().await;
    // A custom scheme that names another site after "//".
    let body = json!({
        "redirect_uris": ["com.evil.app://github.com/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": "GitHub",
    });
    let r = s.http.post(s.url("/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let client = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let mut b = s.browser();
    let (_, ch) = pkce();
    let page = open_consent(&mut b, &Authz::new(&client, "com.evil.app://github.com/cb", &ch).url(), "alice").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("github.com</strong>"), "never reads as github.com: {}", page.body);
    assert!(page.body.contains("opens <code>com.evil.app:</code> links"));
    assert!(page.body.contains("Any app can claim a link type like this"));
    assert!(page.body.contains(
        "Until you revoke it, for 90 days at most. It also ends by itself if the app does not use it for 30 days."
    ));
    // Scope ids and tool names sit behind a details toggle; the label is plain words.
    assert!(page.body.contains("<details><summary>Details</summary><p>Permission <code>customers.read</code>"));
    assert!(page.body.contains("for the tools <code>list_customers, get_customer</code>"));
    assert!(page.body.contains(r#"checked> See your customers and their details</label>"#));
    // Deny never needs a tick.
    assert!(page.body.contains(r#"value="deny" class="secondary" formnovalidate"#));
}

#[tokio::test]
async fn a_client_without_refresh_says_one_hour() {
    let s = TestServer::start().await;
    let body =
        json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]});
    let r = s.http.post(s.url("/register")).json(&body).send().await.unwrap();
    let client = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let mut b = s.browser();
    let (_, ch) = pkce();
    let page = open_consent(&mut b, &Authz::new(&client, CB, &ch).url(), "alice").await;
    assert!(page.body.contains("For 1 hour: this app cannot renew its access without asking you again."));
}

#[tokio::test]
async fn allow_with_nothing_ticked_allows_nothing_and_asks_again() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (_, ch) = pkce();
    let mut authz = Authz::new(&client, CB, &ch);
    authz.scope = Some("customers.read".into());
    consent_flow(&mut b, &authz, "alice", &["customers.read"]).await;

    // The step-up: one new scope, irreversible, unticked. The browser refuses to submit it
    // unticked (`required`); a post without it gets the page again, and nothing is recorded.
    authz.scope = Some("customers.read invoices.send".into());
    let r = b.get(&authz.url()).await;
    let page = b.get(r.location.as_deref().unwrap()).await;
    assert!(page.body.contains(r#"value="invoices.send" required>"#), "{}", page.body);
    assert!(page.body.contains("asks for more"));
    assert!(page.body.contains("It now also asks to:"));
    let r = submit_consent(&mut b, &page, "allow", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none(), "no code and no error sent to the app");
    assert!(r.body.contains("Nothing is ticked"), "{}", r.body);
    let granted = |events: &[mandate_core::model::AuditEvent]| {
        events.iter().filter(|e| e.kind == "consent" && e.outcome == "granted").count()
    };
    let trail = s.store.events(&Default::default()).await.unwrap();
    assert_eq!(granted(&trail), 1, "only the first consent was recorded as granted");

    // The same request, now with the scope ticked, goes through.
    let r = submit_consent(&mut b, &r, "allow", &["invoices.send"]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(query_param(r.location.as_deref().unwrap(), "code").is_some());
    // The trail says what the step-up added, not the sum again.
    let activity = b.get("/account/activity").await.body;
    assert!(
        activity.contains("also allowed the app calling itself <span class=\"app-name\">“<bdi class=\"app\">Test agent</bdi>”</span> <span class=\"badge unverified\">unverified</span> to send invoices to your customers"),
        "{activity}"
    );
}

#[tokio::test]
async fn a_step_up_that_does_not_repeat_earlier_scopes_still_reads_as_one() {
    // Clients that ask only for the challenged scope (not the union) are still asking for more.
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    let (_, ch) = pkce();
    let mut authz = Authz::new(&client, CB, &ch);
    authz.scope = Some("customers.read".into());
    consent_flow(&mut b, &authz, "alice", &["customers.read"]).await;
    authz.scope = Some("invoices.send".into());
    let r = b.get(&authz.url()).await;
    let page = b.get(r.location.as_deref().unwrap()).await;
    assert!(page.body.contains("asks for more"), "{}", page.body);
    assert!(page.body.contains("It now also asks to:"));
}

#[tokio::test]
async fn names_that_hide_or_reorder_text_are_refused_at_registration_dc_12() {
    let s = TestServer::start().await;
    for name in ["Claude\u{202E}ecnarusni", "Cla\u{200B}ude", "\u{2066}Claude\u{2069}"] {
        let body = json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none", "client_name": name});
        let r = s.http.post(s.url("/register")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    }
}

/// The relative luminance of a `#rrggbb` colour (WCAG 2).
fn luminance(hex: &str) -> f64 {
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
        if c <= 0.039_28 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
}

fn contrast(a: &str, b: &str) -> f64 {
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[tokio::test]
async fn secondary_buttons_look_enabled() {
    // WCAG 1.4.11: a control's boundary needs 3:1 against its background; Deny had 1.24:1.
    let s = TestServer::start().await;
    let css = s.http.get(s.url("/static/mandate.css")).send().await.unwrap().text().await.unwrap();
    let rule = css.lines().find(|l| l.starts_with("button.secondary,a.button.secondary{")).unwrap();
    let border = rule.split("border-color:").nth(1).unwrap().get(..7).unwrap();
    assert!(contrast(border, "#ffffff") >= 3.0, "{border}: {}", contrast(border, "#ffffff"));
    let text = rule.split(";color:").nth(1).unwrap().get(..7).unwrap();
    assert!(contrast(text, "#ffffff") >= 4.5);
}

/// The text a person sees: the page without its tags (attribute values are not shown).
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

async fn connected(s: &TestServer, b: &mut Browser) -> (String, Value) {
    let client = s.register_public(CB).await;
    let (code, verifier) = authorize_code(s, b, &client, CB, &["customers.read", "customers.write"]).await;
    let (_, tok) = redeem(s, &client, CB, &code, &verifier).await;
    (client, tok)
}

#[tokio::test]
async fn account_pages_share_one_navigation() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    b.login("alice", None).await;
    for (path, current) in
        [("/account/apps", "/account/apps"), ("/account/activity", "/account/activity"), ("/apps", "/apps"), ("/", "")]
    {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        for link in ["/account/apps", "/account/activity", "/apps"] {
            assert!(page.body.contains(&format!(r#"<a href="{link}""#)), "{path} links to {link}");
        }
        assert!(page.body.contains(r#"<form method="post" action="/logout" class="signout">"#), "{path}");
        assert!(page.body.contains(r#"<span class="who">alice</span>"#), "{path}");
        if !current.is_empty() {
            assert!(page.body.contains(&format!(r#"<a href="{current}" aria-current="page">"#)), "{path}");
        }
    }
    // Signed out: no navigation.
    let anonymous = s.browser().get("/").await;
    assert!(!anonymous.body.contains("class=\"signout\""));
}

#[tokio::test]
async fn revoking_asks_first_then_says_what_happened_ca_02() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    let (client, tok) = connected(&s, &mut b).await;
    let apps = b.get("/account/apps").await;
    assert!(apps.body.contains(&format!(r#"href="/account/apps/revoke?app={client}">Revoke access…</a>"#)));

    let confirm = b.get(&format!("/account/apps/revoke?app={client}")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Revoke <bdi class=\"app\">Test agent</bdi>’s access?"));
    assert!(confirm.body.contains("Create customers in your name"), "what it will lose");
    assert!(confirm.body.contains(r#"<a class="button secondary" href="/account/apps">Cancel</a>"#));
    // Nothing is revoked by looking.
    let (st, _) = refresh(&s, &client, tok["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK);

    // Another person's (or an unknown) app: 404, as on the POST (CA-04).
    let r = b.get("/account/apps/revoke?app=nobody").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = b.get("/account/apps/revoke").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let csrf = hidden(&confirm.body, "csrf").unwrap();
    let r = b.post("/account/apps/revoke", &[("csrf", &csrf), ("client_id", &client)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let after = b.get(r.location.as_deref().unwrap()).await;
    assert!(
        after.body.contains(
            "<bdi class=\"app\">Test agent</bdi> <span class=\"badge unverified\">unverified</span> can no longer act for you."
        ),
        "{}",
        after.body
    );
    // A crafted link cannot put another client's chosen name in the banner: only an application
    // this person revoked in the last minutes is reported.
    let other = s.register_public(CB).await;
    let crafted = b.get(&format!("/account/apps?revoked={other}")).await;
    assert!(!crafted.body.contains("can no longer act for you"), "{}", crafted.body);
    s.clock.advance(301);
    let later = b.get(r.location.as_deref().unwrap()).await;
    assert!(!later.body.contains("can no longer act for you"), "the report is not kept forever");
    assert!(after.body.contains("No application can act for you"));
}

#[tokio::test]
async fn last_used_is_the_last_mcp_call_not_the_last_token() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    let (client, tok) = connected(&s, &mut b).await;
    // A refresh is not "using" the app on the person's behalf.
    let (st, tok) = refresh(&s, &client, tok["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    let page = b.get("/account/apps").await;
    assert!(page.body.contains("last used not yet"), "{}", page.body);

    s.clock.advance(3600);
    let mut mcp = McpClient::new(&s.resource(), tok["access_token"].as_str());
    // The access token expired with the clock: refresh, then call.
    let (_, tok) = refresh(&s, &client, tok["refresh_token"].as_str().unwrap()).await;
    mcp.token = tok["access_token"].as_str().map(str::to_owned);
    assert_eq!(mcp.initialize().await.status, StatusCode::OK);
    // A refused call is not a use either.
    let r = mcp.call("send_invoice", json!({"invoice_id": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(b.get("/account/apps").await.body.contains("last used not yet"));
    let r = mcp.call("list_customers", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let page = b.get("/account/apps").await;
    let when = format!("last used {}", mandate_core::clock::format_utc(START + 3600).get(..16).unwrap());
    assert!(page.body.contains(&when), "{when}: {}", page.body);
}

#[tokio::test]
async fn activity_reads_as_sentences_with_names_never_ids() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    let (client, tok) = connected(&s, &mut b).await;
    let mut mcp = McpClient::new(&s.resource(), tok["access_token"].as_str());
    mcp.initialize().await;
    mcp.call("create_customer", json!({"name": "Amazon"})).await;
    mcp.call("list_customers", json!({})).await;
    let r = mcp.call("send_invoice", json!({"invoice_id": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let page = b.get("/account/activity").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(body.contains(r#"The app calling itself <span class="app-name">“<bdi class="app">Test agent</bdi>”</span> <span class="badge unverified">unverified</span> <bdi>created customer Amazon</bdi> for you"#), "{body}");
    assert!(body.contains("<bdi>listed 1 customers</bdi> for you"));
    assert!(
        body.contains("was refused: you have not allowed it to send invoices to your customers (cannot be undone)")
    );
    assert!(body.contains("<strong>You</strong> allowed the app calling itself <span class=\"app-name\">“<bdi class=\"app\">Test agent</bdi>”</span>"));
    assert!(body.contains("to see your customers and their details; create customers in your name"));
    let alice = s.store.user_by_name("alice").await.unwrap().unwrap();
    let seen = visible_text(body);
    assert!(!seen.contains(&client), "no client id on the page: {seen}");
    assert!(!seen.contains(&alice.id), "no user id on the page");
    let apps = visible_text(&b.get("/account/apps").await.body);
    assert!(!apps.contains(&client) && !apps.contains(&alice.id), "{apps}");
}

async fn record(s: &TestServer, client: &str, detail: String) {
    let alice = s.store.user_by_name("alice").await.unwrap().unwrap();
    s.auth
        .audit(mandate_core::service::AuditDraft {
            kind: "tool.call",
            outcome: "success",
            user: Some(&alice.id),
            client: Some(client),
            detail: Some(detail),
            ..Default::default()
        })
        .await;
}

/// The "Older activity" link of a page, if any.
fn older_link(body: &str) -> Option<String> {
    let rest = body.split(r#"<p class="pager"><a href=""#).nth(1)?;
    Some(rest.split('"').next()?.replace("&#38;", "&"))
}

#[tokio::test]
async fn five_hundred_reads_do_not_push_a_write_out_of_view() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    let (client, tok) = connected(&s, &mut b).await;
    let mut mcp = McpClient::new(&s.resource(), tok["access_token"].as_str());
    mcp.initialize().await;
    mcp.call("create_customer", json!({"name": "Payroll Inc"})).await;
    // 520 reads after the write, recorded as the tool records them (520 MCP round trips would
    // add nothing to what this checks).
    for _ in 0..520 {
        record(&s, &client, "list_customers: listed 1 customers".to_owned()).await;
    }
    let page = b.get("/account/activity").await;
    assert!(page.body.contains("520 times, from"), "one line for the run: {}", page.body);
    assert!(page.body.contains("created customer Payroll Inc"), "the write is on the first page");
}

#[tokio::test]
async fn activity_pages_go_back_to_the_beginning() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    let (client, _) = connected(&s, &mut b).await;
    for i in 0..130 {
        record(&s, &client, format!("create_customer: created customer number-{i:03}")).await;
    }
    let mut page = b.get("/account/activity").await;
    assert!(page.body.contains("number-129"));
    assert!(!page.body.contains("Back to the newest"));
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.extend((0..130).filter(|i| page.body.contains(&format!("number-{i:03}<"))));
        let Some(next) = older_link(&page.body) else { break };
        page = b.get(&next).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Back to the newest"));
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 130, "every action is reachable, none twice lost");
    assert!(page.body.contains("allowed"), "the last page reaches the consent");
}

#[tokio::test]
async fn the_persons_own_inputs_cannot_reorder_the_trail() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    b.login("alice", None).await;
    let page = b.get("/apps").await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    for name in ["Google\u{202E}elgooG", "Goo\u{200B}gle"] {
        let r = b.post("/apps/customers", &[("csrf", &csrf), ("name", name)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name:?}");
    }
    let r = b.post("/apps/customers", &[("csrf", &csrf), ("name", "Google")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn activity_filters_by_app() {
    let s = TestServer::start().await;
    let mut b = s.browser();
    let (first, tok) = connected(&s, &mut b).await;
    let mut mcp = McpClient::new(&s.resource(), tok["access_token"].as_str());
    mcp.initialize().await;
    mcp.call("create_customer", json!({"name": "By the first"})).await;
    let second = s.register_public(CB).await;
    let (code, verifier) = authorize_code(&s, &mut b, &second, CB, &["customers.read", "customers.write"]).await;
    let (_, tok) = redeem(&s, &second, CB, &code, &verifier).await;
    let mut mcp = McpClient::new(&s.resource(), tok["access_token"].as_str());
    mcp.initialize().await;
    mcp.call("create_customer", json!({"name": "By the second"})).await;

    let all = b.get("/account/activity").await;
    assert!(all.body.contains("By the first") && all.body.contains("By the second"));
    assert!(all.body.contains(&format!(r#"<option value="{first}">“Test agent” (unverified)</option>"#)));
    let only = b.get(&format!("/account/activity?app={first}")).await;
    assert!(only.body.contains("By the first"));
    assert!(!only.body.contains("By the second"));
    assert!(only.body.contains(&format!(r#"<option value="{first}" selected>"#)));
}

#[tokio::test]
async fn an_invalid_request_page_speaks_plain_words_with_the_code_as_a_detail() {
    let s = TestServer::start().await;
    let client = s.register_public(CB).await;
    let mut b = s.browser();
    b.login("alice", None).await;
    let (_, ch) = pkce();
    let mut authz = Authz::new(&client, CB, &ch);
    authz.scope = Some("customers.read admin".into());
    let r = b.get(&authz.url()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("The application asked for a permission this server does not offer it."));
    assert!(r.body.contains("<details class=\"detail\"><summary>Technical detail</summary><p><code>invalid_scope: unknown scope: admin</code>"), "{}", r.body);
    assert!(r.body.contains("Nothing was allowed."));
}
