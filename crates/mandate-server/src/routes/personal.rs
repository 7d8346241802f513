//! The person's own use of the demo apps (so the audit trail can tell the person's actions from
//! an agent's).

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mandate_core::demo::{Customer, Todo};
use mandate_core::model::User;
use mandate_core::service::AuditDraft;

use super::browser::{signed_in_form, signed_in_page};
use crate::AppState;
use crate::http::see_other;
use crate::pages::{Nav, error_page, failure_page, render};

pub struct InvoiceRow {
    /// The customer's name (people read names, never ids).
    pub customer: String,
    pub amount: String,
    pub currency: String,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "apps_direct.html")]
struct DirectAppsPage<'a> {
    nav: Option<Nav<'a>>,
    csrf: &'a str,
    customers: Vec<Customer>,
    invoices: Vec<InvoiceRow>,
    todos: Vec<Todo>,
}

fn not_served() -> Response {
    error_page(StatusCode::NOT_FOUND, "The demo apps are not served here.")
}

fn storage_error(e: mandate_core::StoreError) -> Response {
    failure_page(&e.into())
}

pub async fn apps(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (session, user) = match signed_in_page(&s, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(demo) = s.demo.as_ref() else {
        return not_served();
    };
    let (customers, invoices, todos) =
        match tokio::try_join!(demo.customers(&user.id), demo.invoices(&user.id), demo.todos(&user.id)) {
            Ok(v) => v,
            Err(e) => return storage_error(e),
        };
    let invoices = invoices
        .into_iter()
        .map(|i| InvoiceRow {
            customer: customers
                .iter()
                .find(|c| c.id == i.customer_id)
                .map_or_else(|| "(a removed customer)".to_owned(), |c| c.name.clone()),
            amount: format!("{}.{:02}", i.amount_cents / 100, i.amount_cents % 100),
            currency: i.currency,
            status: match i.status {
                mandate_core::demo::InvoiceStatus::Draft => "draft",
                mandate_core::demo::InvoiceStatus::Sent => "sent",
            },
        })
        .collect();
    let page = DirectAppsPage {
        nav: Some(s.nav(&user, &session, "direct")),
        csrf: &session.csrf_token,
        customers,
        invoices,
        todos,
    };
    render(StatusCode::OK, &page, None)
}

/// A short text field: 1 to 200 characters after trimming, nothing that reorders or hides text.
fn text_field(form: &mandate_core::params::Params, name: &str) -> Option<String> {
    form.single(name)
        .ok()
        .flatten()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.chars().count() <= 200 && mandate_core::text::display_name_problem(t).is_none())
        .map(str::to_owned)
}

fn bad_text() -> Response {
    error_page(StatusCode::BAD_REQUEST, "Enter 1 to 200 characters, without invisible or direction-changing ones.")
}

async fn record_own_action(s: &AppState, user: &User, what: String) {
    s.auth
        .audit(AuditDraft {
            kind: "app.action",
            outcome: "success",
            user: Some(&user.id),
            detail: Some(what),
            ..Default::default()
        })
        .await;
}

pub async fn create_customer(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, form) = match signed_in_form(&s, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(name) = text_field(&form, "name") else {
        return bad_text();
    };
    let c = Customer { id: s.auth.new_id(), name, email: None, created_at: s.auth.now() };
    let Some(demo) = s.demo.as_ref() else {
        return not_served();
    };
    if let Err(e) = demo.insert_customer(&user.id, &c).await {
        return storage_error(e);
    }
    record_own_action(&s, &user, format!("created customer {}", c.name)).await;
    see_other("/apps")
}

pub async fn add_todo(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, form) = match signed_in_form(&s, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(title) = text_field(&form, "title") else {
        return bad_text();
    };
    let t = Todo { id: s.auth.new_id(), title, done: false, created_at: s.auth.now() };
    let Some(demo) = s.demo.as_ref() else {
        return not_served();
    };
    if let Err(e) = demo.insert_todo(&user.id, &t).await {
        return storage_error(e);
    }
    record_own_action(&s, &user, format!("added to-do {}", t.title)).await;
    see_other("/apps")
}
