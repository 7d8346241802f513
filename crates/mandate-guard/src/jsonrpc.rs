//! Answers the guard gives in JSON-RPC's own form. A `tools/call` naming a tool the policy does
//! not list is refused without reaching the server (fail closed), and answered the way an MCP
//! server answers an unknown tool: HTTP 200, the request's `id`, code `-32602` (rmcp 3.11 answers
//! `invalid_params` too, and so does the MCP specification's example). SDKs then report a tool
//! error for that call, where an HTTP 400 would be a transport failure.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// JSON-RPC "Invalid params": what MCP servers answer for an unknown tool or bad arguments.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC "Invalid Request".
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC's parse error: here, a body that parses two ways.
pub const PARSE_ERROR: i64 = -32700;

/// The longest tool name echoed back in a message (the name is the caller's own input).
const MAX_ECHOED_NAME: usize = 128;

/// The tool a `tools/call` message names, if it is one.
pub(crate) fn called_tool(m: &Value) -> Option<&str> {
    if !is_tool_call(m) {
        return None;
    }
    m.get("params").and_then(|p| p.get("name")).and_then(Value::as_str)
}

/// When the body (escapes decoded) holds an `initialize` request: its `id` (`null` in a batch),
/// the id a refusal answers to.
pub(crate) fn initialize_id(body: &[u8]) -> Option<Value> {
    let is_init = |m: &Value| m.get("method").and_then(Value::as_str) == Some("initialize");
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(items) => items.iter().any(is_init).then_some(Value::Null),
        m if is_init(&m) => Some(m.get("id").cloned().unwrap_or(Value::Null)),
        _ => None,
    }
}

fn is_tool_call(m: &Value) -> bool {
    m.get("method").and_then(Value::as_str) == Some("tools/call")
}

/// `Unknown tool: <name>`, the name cut at [`MAX_ECHOED_NAME`] characters.
pub fn unknown_tool_message(name: &str) -> String {
    format!("Unknown tool: {}", shown(name))
}

fn shown(name: &str) -> String {
    let kept: String = name.chars().take(MAX_ECHOED_NAME).collect();
    if kept.len() < name.len() { format!("{kept}…") } else { kept }
}

/// Why a `tools/call` message cannot be forwarded: it names no tool, a tool `known` does not
/// accept, or arguments that are not an object. (rmcp would not read such a message as a
/// `tools/call` at all and answer `-32601`.)
fn call_problem(m: &Value, known: &impl Fn(&str) -> bool) -> Option<String> {
    if !is_tool_call(m) {
        return None;
    }
    let params = m.get("params");
    let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
        return Some("Invalid params: tools/call needs the name of a tool".to_owned());
    };
    if !known(name) {
        return Some(unknown_tool_message(name));
    }
    match params.and_then(|p| p.get("arguments")) {
        None | Some(Value::Null | Value::Object(_)) => None,
        Some(_) => Some(format!("Invalid params: the arguments of {} must be a JSON object", shown(name))),
    }
}

pub(crate) fn error(id: Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The answer to a body holding a `tools/call` that cannot be forwarded (see [`call_problem`]:
/// above all, a tool `known` does not accept); `None` when every call can go on.
///
/// - One request: HTTP 200 with its `id` and `-32602` (`Unknown tool: <name>`).
/// - One message without an `id` (a notification cannot call a tool): HTTP 400 with the same
///   error and a null `id`, as a refused notification is answered (MCP H4).
/// - A batch (JSON array, protocol 2025-03-26): nothing in it is forwarded. HTTP 200 with an
///   array holding one answer per request, in order: `-32602` for each call that cannot be
///   served, `-32600` ("not processed") for the other requests; notifications and responses get
///   none. A batch with no request to answer gets the HTTP 400 above.
pub(crate) fn refuse_calls(
    messages: &[Value],
    batch: bool,
    known: impl Fn(&str) -> bool,
) -> Option<(StatusCode, Value)> {
    let first = messages.iter().find_map(|m| call_problem(m, &known))?;
    let unanswerable = || (StatusCode::BAD_REQUEST, error(Value::Null, INVALID_PARAMS, first.clone()));
    if !batch {
        return Some(match messages.first().and_then(|m| m.get("id")) {
            Some(id) => (StatusCode::OK, error(id.clone(), INVALID_PARAMS, first.clone())),
            None => unanswerable(),
        });
    }
    let answers: Vec<Value> = messages
        .iter()
        .filter(|m| m.get("method").is_some())
        .filter_map(|m| {
            let id = m.get("id")?.clone();
            Some(match call_problem(m, &known) {
                Some(problem) => error(id, INVALID_PARAMS, problem),
                None => error(
                    id,
                    INVALID_REQUEST,
                    format!("Invalid Request: not processed, because this batch also holds a call that cannot be served ({first})"),
                ),
            })
        })
        .collect();
    if answers.is_empty() { Some(unanswerable()) } else { Some((StatusCode::OK, Value::Array(answers))) }
}

/// Whether the request's `Accept` allows an `application/json` answer. No `Accept` means
/// anything; `application/json`, `application/*` and `*/*` do unless weighted `q=0`. (MCP
/// clients must list `application/json` on every POST, so this only fails for broken ones.)
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    let mut listed = false;
    for value in headers.get_all(header::ACCEPT) {
        listed = true;
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            if !refused
                && (media.eq_ignore_ascii_case("application/json")
                    || media.eq_ignore_ascii_case("application/*")
                    || media == "*/*")
            {
                return true;
            }
        }
    }
    !listed
}

/// Renders a JSON-RPC answer, or 406 when the client does not accept JSON.
pub(crate) fn render(status: StatusCode, body: Value, accepts_json: bool) -> Response {
    if !accepts_json {
        return (StatusCode::NOT_ACCEPTABLE, "Not Acceptable: this answer is application/json").into_response();
    }
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(t: &str) -> bool {
        t == "list_todos"
    }

    #[test]
    fn one_unknown_call_gets_its_id_and_invalid_params() {
        let m = json!({"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"typo","arguments":{}}});
        let (status, body) = refuse_calls(&[m], false, known).unwrap_or_else(|| unreachable!());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"jsonrpc":"2.0","id":"a-1","error":{"code":-32602,"message":"Unknown tool: typo"}}));
        let fine = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_todos"}});
        assert!(refuse_calls(&[fine], false, known).is_none());
    }

    #[test]
    fn a_notification_calling_an_unknown_tool_is_a_400_without_id() {
        let m = json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":"typo"}});
        let (status, body) = refuse_calls(&[m], false, known).unwrap_or_else(|| unreachable!());
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["id"], Value::Null);
        assert_eq!(body["error"]["code"], -32602);
    }

    #[test]
    fn calls_without_a_name_or_with_arguments_that_are_no_object_are_invalid_params() {
        for (m, message) in [
            (json!({"id":1,"method":"tools/call","params":{}}), "Invalid params: tools/call needs the name of a tool"),
            (
                json!({"id":1,"method":"tools/call","params":{"name":7}}),
                "Invalid params: tools/call needs the name of a tool",
            ),
            (
                json!({"id":1,"method":"tools/call","params":{"name":"list_todos","arguments":[1]}}),
                "Invalid params: the arguments of list_todos must be a JSON object",
            ),
        ] {
            let (status, body) = refuse_calls(&[m], false, known).unwrap_or_else(|| unreachable!());
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["error"], json!({"code": -32602, "message": message}));
        }
        let null_args = json!({"id":1,"method":"tools/call","params":{"name":"list_todos","arguments":null}});
        assert!(refuse_calls(&[null_args], false, known).is_none());
    }

    #[test]
    fn long_names_are_cut() {
        let m = unknown_tool_message(&"x".repeat(1000));
        assert_eq!(m.chars().count(), "Unknown tool: ".len() + MAX_ECHOED_NAME + 1);
    }

    #[test]
    fn accept_headers() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap_or_else(|_| unreachable!()));
            m
        };
        assert!(accepts_json(&HeaderMap::new()));
        assert!(accepts_json(&h("application/json, text/event-stream")));
        assert!(accepts_json(&h("text/event-stream, */*;q=0.1")));
        assert!(accepts_json(&h("Application/JSON")));
        assert!(!accepts_json(&h("text/event-stream")));
        assert!(!accepts_json(&h("application/json;q=0, text/event-stream")));
    }
}
