//! The demo apps as MCP tools. Each tool reads the caller from the request (the guard put the
//! [`Principal`] there), acts on that person's data only, and records what it did as the
//! agent's action in the audit trail.

use std::sync::Arc;

use mandate_core::AuthServer;
use mandate_core::demo::{Customer, DemoStore, InvoiceStatus, TOOLS, Todo};
use mandate_core::service::AuditDraft;
use mandate_guard::Principal;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;

/// The `_meta` key under which `tools/list` publishes the scopes each tool needs.
pub const SCOPES_META_KEY: &str = "io.mandate/scopes";

/// The handler of one MCP session. Every session gets a clone: the tool router (nine tools,
/// their schemas and annotations) is built once and shared.
#[derive(Clone)]
pub struct DemoApps {
    auth: Arc<AuthServer>,
    store: Arc<dyn DemoStore>,
    tool_router: Arc<ToolRouter<DemoApps>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct IdArgs {
    /// The id, as returned by a list tool.
    pub id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewCustomer {
    /// The customer's name, e.g. "Amazon".
    pub name: String,
    /// An optional billing e-mail address.
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct InvoiceArgs {
    /// The invoice id, as returned by list_invoices.
    pub invoice_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewTodo {
    /// What needs doing.
    pub title: String,
}

/// The caller, who must hold every scope `tool` needs. The guard answers a missing scope with a
/// 403 step-up challenge (and an unknown tool with `-32602`) before the call gets here; this is
/// the second lock on the same door. Failing it means the server is wired wrong (this service
/// mounted without the guard, or a guard policy that disagrees with [`TOOLS`]), not that the
/// request is: so it is `-32603` internal error, logged, with a generic message. `-32600` or
/// `-32602` would tell the caller to fix a request that has nothing wrong with it.
fn caller(parts: &http::request::Parts, tool: &str) -> Result<Principal, McpError> {
    let miswired = |why: &str| {
        tracing::error!(tool, why, "a tool call reached the demo apps without passing the guard's policy");
        McpError::internal_error("the server could not authorize this call", None)
    };
    let p = parts.extensions.get::<Principal>().cloned().ok_or_else(|| miswired("no authenticated caller"))?;
    let Some((_, required, _)) = TOOLS.iter().find(|(name, _, _)| *name == tool) else {
        return Err(miswired("the tool has no scope policy"));
    };
    if !p.has_all(required) {
        return Err(miswired("the caller lacks the tool's scopes"));
    }
    Ok(p)
}

fn storage(e: mandate_core::StoreError) -> McpError {
    tracing::error!(error = %e, "demo storage failure");
    McpError::internal_error("the server could not complete the request", None)
}

fn json_result(v: serde_json::Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(v.to_string())])
}

fn invalid(message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.to_owned())])
}

/// A short, safe text input: 1..=200 characters, no control, bidi or invisible characters.
fn clean(text: &str, what: &str) -> Result<String, CallToolResult> {
    let t = text.trim();
    // The person reads these names in the trail: nothing that reorders or hides text.
    if t.is_empty() || t.chars().count() > 200 || mandate_core::text::display_name_problem(t).is_some() {
        return Err(invalid(&format!(
            "{what} must be 1 to 200 characters without control, bidirectional-formatting or invisible characters"
        )));
    }
    Ok(t.to_owned())
}

impl DemoApps {
    pub fn new(auth: Arc<AuthServer>, store: Arc<dyn DemoStore>) -> Self {
        Self { auth, store, tool_router: Arc::new(Self::tool_router()) }
    }

    /// An invoice as the person knows it ("of 1250.00 EUR to Acme Corp"), for the trail: people
    /// read names, never ids.
    async fn invoice_in_words(&self, user_id: &str, invoice_id: &str) -> Result<String, McpError> {
        let invoices = self.store.invoices(user_id).await.map_err(storage)?;
        let Some(i) = invoices.iter().find(|i| i.id == invoice_id) else {
            return Ok("(unknown)".to_owned());
        };
        let amount = format!("{}.{:02} {}", i.amount_cents / 100, i.amount_cents % 100, i.currency);
        let customer = self.store.customer(user_id, &i.customer_id).await.map_err(storage)?;
        Ok(match customer {
            Some(c) => format!("of {amount} to {}", c.name),
            None => format!("of {amount}"),
        })
    }

    /// A to-do's title, for the trail.
    async fn todo_title(&self, user_id: &str, id: &str) -> Result<String, McpError> {
        let todos = self.store.todos(user_id).await.map_err(storage)?;
        Ok(todos.into_iter().find(|t| t.id == id).map(|t| t.title).unwrap_or_else(|| "(unknown)".to_owned()))
    }

    /// Records the agent's action: "<client> (for <user>) <what>".
    async fn record(&self, p: &Principal, tool: &str, outcome: &str, what: String) {
        self.auth
            .audit(AuditDraft {
                kind: "tool.call",
                outcome,
                user: Some(&p.subject),
                client: Some(&p.client_id),
                grant: p.grant_id.as_deref(),
                detail: Some(format!("{tool}: {what}")),
            })
            .await;
    }
}

#[tool_router]
impl DemoApps {
    #[tool(description = "List your customers (billing). Needs customers.read.", annotations(read_only_hint = true))]
    async fn list_customers(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "list_customers")?;
        let list = self.store.customers(&p.subject).await.map_err(storage)?;
        self.record(&p, "list_customers", "success", format!("listed {} customers", list.len())).await;
        Ok(json_result(json!({ "customers": list })))
    }

    #[tool(description = "Show one customer. Needs customers.read.", annotations(read_only_hint = true))]
    async fn get_customer(
        &self,
        Parameters(IdArgs { id }): Parameters<IdArgs>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "get_customer")?;
        match self.store.customer(&p.subject, &id).await.map_err(storage)? {
            Some(c) => {
                self.record(&p, "get_customer", "success", format!("looked at customer {}", c.name)).await;
                Ok(json_result(json!({ "customer": c })))
            }
            None => Ok(invalid("no such customer")),
        }
    }

    #[tool(description = "Create a customer (billing). Needs customers.write.")]
    async fn create_customer(
        &self,
        Parameters(args): Parameters<NewCustomer>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "create_customer")?;
        let name = match clean(&args.name, "name") {
            Ok(n) => n,
            Err(e) => return Ok(e),
        };
        let email = match args.email.as_deref().map(|e| clean(e, "email")).transpose() {
            Ok(e) => e,
            Err(e) => return Ok(e),
        };
        let c = Customer { id: self.auth.new_id(), name, email, created_at: self.auth.now() };
        self.store.insert_customer(&p.subject, &c).await.map_err(storage)?;
        self.record(&p, "create_customer", "success", format!("created customer {}", c.name)).await;
        Ok(json_result(json!({ "customer": c })))
    }

    #[tool(description = "List your invoices (billing). Needs invoices.read.", annotations(read_only_hint = true))]
    async fn list_invoices(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "list_invoices")?;
        let list = self.store.invoices(&p.subject).await.map_err(storage)?;
        self.record(&p, "list_invoices", "success", format!("listed {} invoices", list.len())).await;
        Ok(json_result(json!({ "invoices": list })))
    }

    #[tool(
        description = "Send a draft invoice to its customer. This cannot be undone. Needs invoices.send.",
        annotations(destructive_hint = true, idempotent_hint = false)
    )]
    async fn send_invoice(
        &self,
        Parameters(InvoiceArgs { invoice_id }): Parameters<InvoiceArgs>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "send_invoice")?;
        let what = self.invoice_in_words(&p.subject, &invoice_id).await?;
        match self.store.send_invoice(&p.subject, &invoice_id, self.auth.now()).await.map_err(storage)? {
            Some(true) => {
                self.record(&p, "send_invoice", "success", format!("sent the invoice {what}")).await;
                Ok(json_result(json!({ "invoice_id": invoice_id, "status": InvoiceStatus::Sent })))
            }
            Some(false) => Ok(invalid("that invoice was already sent")),
            None => Ok(invalid("no such invoice")),
        }
    }

    #[tool(description = "List your to-dos. Needs todos.read.", annotations(read_only_hint = true))]
    async fn list_todos(&self, Extension(parts): Extension<http::request::Parts>) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "list_todos")?;
        let list = self.store.todos(&p.subject).await.map_err(storage)?;
        self.record(&p, "list_todos", "success", format!("listed {} to-dos", list.len())).await;
        Ok(json_result(json!({ "todos": list })))
    }

    #[tool(description = "Add a to-do. Needs todos.write.")]
    async fn add_todo(
        &self,
        Parameters(NewTodo { title }): Parameters<NewTodo>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "add_todo")?;
        let title = match clean(&title, "title") {
            Ok(t) => t,
            Err(e) => return Ok(e),
        };
        let t = Todo { id: self.auth.new_id(), title, done: false, created_at: self.auth.now() };
        self.store.insert_todo(&p.subject, &t).await.map_err(storage)?;
        self.record(&p, "add_todo", "success", format!("added to-do {}", t.title)).await;
        Ok(json_result(json!({ "todo": t })))
    }

    #[tool(description = "Mark a to-do done. Needs todos.write.", annotations(idempotent_hint = true))]
    async fn complete_todo(
        &self,
        Parameters(IdArgs { id }): Parameters<IdArgs>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "complete_todo")?;
        let title = self.todo_title(&p.subject, &id).await?;
        if !self.store.complete_todo(&p.subject, &id).await.map_err(storage)? {
            return Ok(invalid("no such to-do"));
        }
        self.record(&p, "complete_todo", "success", format!("completed to-do {title}")).await;
        Ok(json_result(json!({ "id": id, "done": true })))
    }

    #[tool(
        description = "Delete a to-do. This cannot be undone. Needs todos.write.",
        annotations(destructive_hint = true)
    )]
    async fn delete_todo(
        &self,
        Parameters(IdArgs { id }): Parameters<IdArgs>,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let p = caller(&parts, "delete_todo")?;
        let title = self.todo_title(&p.subject, &id).await?;
        if !self.store.delete_todo(&p.subject, &id).await.map_err(storage)? {
            return Ok(invalid("no such to-do"));
        }
        self.record(&p, "delete_todo", "success", format!("deleted to-do {title}")).await;
        Ok(json_result(json!({ "id": id, "deleted": true })))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoApps {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mandate-demo-apps", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Billing (customers, invoices) and to-dos of the signed-in person. Each tool lists the OAuth scopes it \
                 needs under _meta[\"io.mandate/scopes\"]; a call without them is refused with HTTP 403 and a step-up \
                 challenge.",
            )
    }

    /// Every tool, with the scopes it needs in `_meta` so an agent can ask for more.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = self.tool_router.list_all();
        for tool in &mut tools {
            if let Some((_, scopes, destructive)) = TOOLS.iter().find(|(name, _, _)| *name == tool.name) {
                let mut meta = tool.meta.clone().unwrap_or_default();
                meta.0.insert(SCOPES_META_KEY.to_owned(), json!(scopes));
                tool.meta = Some(meta);
                if *destructive && tool.annotations.is_none() {
                    tool.annotations = Some(ToolAnnotations::new().destructive(true));
                }
            }
        }
        Ok(ListToolsResult { tools, ..Default::default() })
    }
}
