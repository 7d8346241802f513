//! `/account/activity`: the trail as the person reads it. Plain sentences with names (never
//! ids), newest first, a page at a time, filterable by application; runs of the same action
//! (an agent listing customers 500 times) fold into one line, so they never push a change out
//! of view.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mandate_core::AuthServer;
use mandate_core::model::{AuditEvent, AuditFilter};
use mandate_core::params::Params;

use super::browser::signed_in_page;
use crate::AppState;
use crate::pages::{Nav, failure_page, format_time, render};

/// Events are read in chunks of this many until a page has [`PAGE_LINES`] lines (folded runs
/// make fewer lines than events) or [`PAGE_SCAN`] events were read.
const CHUNK: i64 = 200;
const PAGE_LINES: usize = 50;
const PAGE_SCAN: usize = 2000;

/// A piece of a sentence: plain text, words from whoever acted, an application's name, or the
/// person. A name nobody vouched for (chosen by whoever registered the client) is rendered as
/// *the app calling itself “…”* followed by an *unverified* badge, so that no name can read as a
/// sentence of mandate's (a client named "You created customer Payroll. Also", issue 13).
pub enum Part {
    Text(String),
    /// Words that came from whoever acted (a customer's name, a to-do's title): isolated, so
    /// they cannot reorder the sentence around them.
    Said(String),
    App {
        name: String,
        verified: bool,
    },
    You,
}

pub struct ActivityLine {
    pub parts: Vec<Part>,
    pub class: &'static str,
    /// When it happened (the newest of a folded run).
    pub at: String,
    /// The oldest of a folded run.
    pub first: String,
    pub count: usize,
    /// Lines with equal keys fold when they follow each other.
    key: String,
}

pub struct AppOption {
    pub id: String,
    pub name: String,
    /// Named by an operator; otherwise by whoever registered it (quoted and marked).
    pub verified: bool,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage<'a> {
    nav: Option<Nav<'a>>,
    apps: Vec<AppOption>,
    lines: Vec<ActivityLine>,
    older: Option<String>,
    newest: String,
    paged: bool,
    filtered: bool,
}

/// A client as the trail names it: (name, verified); `None` when it no longer exists.
type Names = HashMap<String, Option<(String, bool)>>;

async fn app_name(auth: &AuthServer, names: &mut Names, id: &str) -> Option<(String, bool)> {
    if let Some(n) = names.get(id) {
        return n.clone();
    }
    let found = auth.store().client_by_id(id).await.ok().flatten().map(|c| {
        let verified = c.is_verified();
        (c.name, verified)
    });
    names.insert(id.to_owned(), found.clone());
    found
}

/// "See your customers" → "see your customers" (an acronym at the start stays as it is).
fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && b.is_lowercase() => {
            a.to_lowercase().chain(s.chars().skip(1)).collect()
        }
        _ => s.to_owned(),
    }
}

/// The plain-language descriptions of space-separated scope names, joined.
fn describe(auth: &AuthServer, scopes: &str) -> String {
    let list: Vec<String> =
        scopes.split_whitespace().map(|s| lower_first(auth.resources.describe(s).unwrap_or(s))).collect();
    list.join("; ")
}

fn text(s: impl Into<String>) -> Part {
    Part::Text(s.into())
}

/// One event as the person reads it, or `None` for events not shown here (token plumbing).
fn sentence(auth: &AuthServer, e: &AuditEvent, app: Part) -> Option<(Vec<Part>, &'static str)> {
    let detail = e.detail.as_deref().unwrap_or("");
    let what = detail.split_once(": ").map_or(detail, |(_, w)| w);
    Some(match (e.kind.as_str(), e.outcome.as_str()) {
        ("tool.call", "success") => (vec![app, text(" "), Part::Said(what.to_owned()), text(" for you")], "agent"),
        ("tool.call", "failure") => {
            (vec![app, text(" tried to "), Part::Said(what.to_owned()), text(" for you; it failed")], "agent")
        }
        ("tool.call", "refused") => {
            let needs = what.split_once("needs ").map_or("", |(_, n)| n);
            let allowed = describe(auth, needs);
            (vec![app, text(format!(" was refused: you have not allowed it to {allowed}"))], "refused")
        }
        ("app.action", _) => (vec![Part::You, text(" "), Part::Said(detail.to_owned())], "you"),
        ("consent", "granted") => match detail.split_once("; newly allowed ") {
            // A step-up: what this decision added.
            Some((_, added)) => {
                (vec![Part::You, text(" also allowed "), app, text(format!(" to {}", describe(auth, added)))], "you")
            }
            None => {
                let granted =
                    detail.strip_prefix("granted ").and_then(|d| d.split(" of requested").next()).unwrap_or("");
                (vec![Part::You, text(" allowed "), app, text(format!(" to {}", describe(auth, granted)))], "you")
            }
        },
        ("consent", "denied") => (vec![Part::You, text(" said no to "), app], "you"),
        ("grant.revoked", _) if detail.contains("by the person") => {
            (vec![Part::You, text(" revoked the access of "), app], "you")
        }
        ("grant.revoked", _) if detail.contains("by the client") => (vec![app, text(" gave up its access")], "agent"),
        ("grant.revoked", _) => (vec![text("An administrator revoked the access of "), app], "alert"),
        ("token.reuse_detected" | "code.replay_detected", _) => (
            vec![
                app,
                text(
                    " was disconnected: one of its used tokens was presented again, which can mean it was copied. Connect it again if you still use it.",
                ),
            ],
            "alert",
        ),
        // Accounts at other services (mandate writes these details itself).
        ("upstream.connect", "success") | ("upstream.disconnect", _) | ("user.link", _) => {
            (vec![Part::You, text(format!(" {detail}"))], "you")
        }
        ("upstream.refresh", "failure") => {
            let (provider, why) = detail.split_once(": ").unwrap_or((detail, ""));
            (vec![text(format!("Your {provider} account could not be renewed ({why})"))], "alert")
        }
        ("user.login", "failure") => {
            (vec![text("Someone tried to sign in to your account with a wrong password")], "alert")
        }
        ("user.login", "locked") => {
            (vec![text("Sign-in to your account was paused after repeated wrong passwords")], "alert")
        }
        _ => return None,
    })
}

/// What makes two neighbouring events "the same action": the same app doing exactly the same
/// thing with the same result ("listed 3 customers" 500 times in a row). Anything that differs
/// in a word or a number stays a line of its own.
fn fold_key(e: &AuditEvent) -> String {
    format!("{}|{}|{}|{}", e.kind, e.outcome, e.client_id.as_deref().unwrap_or(""), e.detail.as_deref().unwrap_or(""))
}

fn query(app: Option<&str>, before: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(a) = app {
        q.append_pair("app", a);
    }
    if let Some(b) = before {
        q.append_pair("before", b);
    }
    let q = q.finish();
    if q.is_empty() { "/account/activity".to_owned() } else { format!("/account/activity?{q}") }
}

pub async fn activity(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (session, user) = match signed_in_page(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let params = Params::parse(q.unwrap_or_default().as_bytes());
    let app = params.single("app").ok().flatten().filter(|a| !a.is_empty()).map(str::to_owned);
    let before = params.single("before").ok().flatten().filter(|b| !b.is_empty()).map(str::to_owned);
    let store = s.auth.store();
    let in_trail = match store.clients_in_trail(&user.id).await {
        Ok(v) => v,
        Err(e) => return failure_page(&e.into()),
    };
    let mut names = Names::new();
    let mut lines: Vec<ActivityLine> = Vec::new();
    let mut cursor = before.clone();
    let mut scanned = 0;
    let more = loop {
        let filter = AuditFilter {
            user_id: Some(user.id.clone()),
            client_id: app.clone(),
            before: cursor.clone(),
            limit: CHUNK,
            ..Default::default()
        };
        let events = match store.events(&filter).await {
            Ok(v) => v,
            Err(e) => return failure_page(&e.into()),
        };
        scanned += events.len();
        // Oldest first: walk backwards, newest first.
        for e in events.iter().rev() {
            let app_part = match e.client_id.as_deref() {
                Some(id) => match app_name(&s.auth, &mut names, id).await {
                    Some((name, verified)) => Part::App { name, verified },
                    None => text("An application that no longer exists"),
                },
                None => text("An application"),
            };
            let Some((parts, class)) = sentence(&s.auth, e, app_part) else {
                continue;
            };
            let key = fold_key(e);
            let at = format_time(e.at);
            match lines.last_mut() {
                Some(last) if last.key == key => {
                    last.count += 1;
                    last.first = at;
                }
                _ => lines.push(ActivityLine { parts, class, first: at.clone(), at, count: 1, key }),
            }
        }
        let full_chunk = events.len() as i64 == CHUNK;
        if let Some(oldest) = events.first() {
            cursor = Some(oldest.id.clone());
        }
        if !full_chunk {
            break false;
        }
        if lines.len() >= PAGE_LINES || scanned >= PAGE_SCAN {
            break true;
        }
    };
    let mut apps = Vec::new();
    for id in in_trail {
        if let Some((name, verified)) = app_name(&s.auth, &mut names, &id).await {
            apps.push(AppOption { selected: app.as_deref() == Some(id.as_str()), id, name, verified });
        }
    }
    apps.sort_by_key(|a| a.name.to_lowercase());
    // A page that ends exactly at the oldest event offers an "older" page that is empty: rare, harmless.
    let older = more.then(|| cursor.as_deref().map(|c| query(app.as_deref(), Some(c)))).flatten();
    let page = ActivityPage {
        nav: Some(s.nav(&user, &session, "activity")),
        apps,
        lines,
        older,
        newest: query(app.as_deref(), None),
        paged: before.is_some(),
        filtered: app.is_some(),
    };
    render(StatusCode::OK, &page, None)
}
