//! The tools. Each one's MCP annotations say, once, what it does to the person's data:
//! `read_only_hint` (it only reads), `destructive_hint = false` (it adds or changes, and nothing
//! is lost), or `destructive_hint = true` (it can destroy). Clients see them in `tools/list`;
//! mandate and this server's own guard (`--http`) turn them into scopes (`access.rs`).

use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData as McpError, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;

/// One MCP session's server: its own notes (under mandate, one process per MCP session).
#[derive(Clone)]
pub struct Notes {
    notes: Arc<Mutex<Vec<String>>>,
    tool_router: ToolRouter<Notes>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewNote {
    /// What to write down.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NoteNumber {
    /// The note's number (1 is the oldest).
    pub number: usize,
}

fn said(text: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn refused(text: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

impl Default for Notes {
    fn default() -> Self {
        Self { notes: Arc::default(), tool_router: Self::tool_router() }
    }
}

#[tool_router]
impl Notes {
    #[tool(description = "List the notes, oldest first.", annotations(read_only_hint = true))]
    async fn list_notes(&self) -> Result<CallToolResult, McpError> {
        let notes = self.notes.lock().map_err(|_| McpError::internal_error("the notes are unavailable", None))?;
        Ok(said(format!("{:?}", *notes)))
    }

    #[tool(description = "Add a note.", annotations(read_only_hint = false, destructive_hint = false))]
    async fn add_note(&self, Parameters(NewNote { text }): Parameters<NewNote>) -> Result<CallToolResult, McpError> {
        if text.trim().is_empty() {
            return Ok(refused("a note needs some text".into()));
        }
        let mut notes = self.notes.lock().map_err(|_| McpError::internal_error("the notes are unavailable", None))?;
        notes.push(text);
        Ok(said(format!("Added note {}.", notes.len())))
    }

    #[tool(
        description = "Delete a note by its number (1 is the oldest). This cannot be undone.",
        annotations(read_only_hint = false, destructive_hint = true)
    )]
    async fn delete_note(
        &self,
        Parameters(NoteNumber { number }): Parameters<NoteNumber>,
    ) -> Result<CallToolResult, McpError> {
        let mut notes = self.notes.lock().map_err(|_| McpError::internal_error("the notes are unavailable", None))?;
        if number == 0 || number > notes.len() {
            return Ok(refused(format!("there is no note {number}")));
        }
        notes.remove(number - 1);
        Ok(said(format!("Deleted note {number}.")))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("__NAME__", env!("CARGO_PKG_VERSION")))
    }
}

/// Every tool with its annotations, as `tools/list` publishes them.
pub fn tools() -> Vec<rmcp::model::Tool> {
    Notes::tool_router().list_all()
}
