//! The demo apps' domain (billing: customers and invoices, from the Sequence seed; todos, from
//! the Stytch seed). Data belongs to one person; agents and the person act on it through the
//! same operations, and the audit trail tells them apart.

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::UnixTime;
use crate::error::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Sent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoice {
    pub id: String,
    pub customer_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: InvoiceStatus,
    pub created_at: UnixTime,
    pub sent_at: Option<UnixTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Todo {
    pub id: String,
    pub title: String,
    pub done: bool,
    pub created_at: UnixTime,
}

/// Every demo tool, the scopes it needs, and whether it cannot be undone.
pub const TOOLS: &[(&str, &[&str], bool)] = &[
    ("list_customers", &["customers.read"], false),
    ("get_customer", &["customers.read"], false),
    ("create_customer", &["customers.write"], false),
    ("list_invoices", &["invoices.read"], false),
    ("send_invoice", &["invoices.send"], true),
    ("list_todos", &["todos.read"], false),
    ("add_todo", &["todos.write"], false),
    ("complete_todo", &["todos.write"], false),
    ("delete_todo", &["todos.write"], true),
];

/// The demo tools a scope unlocks.
pub fn tools_for_scope(scope: &str) -> Vec<String> {
    TOOLS.iter().filter(|(_, scopes, _)| scopes.contains(&scope)).map(|(t, _, _)| (*t).to_owned()).collect()
}

/// True when the scope unlocks a demo tool that cannot be undone.
pub fn scope_is_irreversible(scope: &str) -> bool {
    TOOLS.iter().any(|(_, scopes, destructive)| *destructive && scopes.contains(&scope))
}

/// Storage of the demo apps, always scoped to one person (`user_id`).
#[async_trait]
pub trait DemoStore: Send + Sync {
    async fn customers(&self, user_id: &str) -> StoreResult<Vec<Customer>>;
    async fn customer(&self, user_id: &str, id: &str) -> StoreResult<Option<Customer>>;
    async fn insert_customer(&self, user_id: &str, c: &Customer) -> StoreResult<()>;
    async fn invoices(&self, user_id: &str) -> StoreResult<Vec<Invoice>>;
    async fn insert_invoice(&self, user_id: &str, i: &Invoice) -> StoreResult<()>;
    /// Marks a draft invoice sent; `None` when there is no such invoice, `Some(false)` when it
    /// was already sent.
    async fn send_invoice(&self, user_id: &str, id: &str, now: UnixTime) -> StoreResult<Option<bool>>;
    async fn todos(&self, user_id: &str) -> StoreResult<Vec<Todo>>;
    async fn insert_todo(&self, user_id: &str, t: &Todo) -> StoreResult<()>;
    /// Marks a todo done; false when there is no such todo.
    async fn complete_todo(&self, user_id: &str, id: &str) -> StoreResult<bool>;
    /// Deletes a todo; false when there is no such todo.
    async fn delete_todo(&self, user_id: &str, id: &str) -> StoreResult<bool>;
}
