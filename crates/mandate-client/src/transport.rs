//! The Streamable HTTP client rmcp's transport drives, with authorization handled inside it: the
//! bearer token goes on every request (C15), a 401 triggers one refresh and otherwise a new login,
//! a 403 `insufficient_scope` a step-up, and the request is then sent again. The MCP session goes
//! on undisturbed, which is what lets the bridge stay transparent to its host. Every request gets
//! its response (for a stream: its headers) within the request timeout, or fails with a timeout.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::{Error as SseError, Sse};

use crate::connection::Connection;
use crate::error::ClientError;
use crate::record::{Direction, HttpExchange};

type HttpError = StreamableHttpError<reqwest::Error>;

const EVENT_STREAM: &str = "the event stream (GET)";

/// What a message is, for a timeout message (`tools/call send_invoice`), and the tool it calls.
fn describe(message: &ClientJsonRpcMessage) -> (String, Option<String>) {
    match message {
        ClientJsonRpcMessage::Request(r) => match &r.request {
            ClientRequest::CallToolRequest(call) => {
                let name: String = call.params.name.chars().filter(|c| !c.is_control()).take(100).collect();
                (format!("tools/call {name}"), Some(name))
            }
            other => (other.method().to_owned(), None),
        },
        ClientJsonRpcMessage::Notification(_) => ("a notification".to_owned(), None),
        _ => ("a response to the server".to_owned(), None),
    }
}

/// The authorizing HTTP client.
#[derive(Clone)]
pub struct AuthorizingClient {
    inner: reqwest::Client,
    conn: Arc<Connection>,
    failure: Arc<std::sync::Mutex<Option<ClientError>>>,
}

impl AuthorizingClient {
    pub fn new(conn: Arc<Connection>) -> Self {
        Self { inner: conn.http().clone(), conn, failure: Arc::default() }
    }

    /// The failure of ours (authorization, a timeout) behind the last transport error, if there
    /// was one (taken).
    pub fn take_failure(&self) -> Option<ClientError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    /// The exchange as the recorder sees it, and the messages that came back in it (a stream's
    /// as they arrive).
    fn observe(
        &self,
        request: Request<'_>,
        result: Result<StreamableHttpPostResponse, HttpError>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let Some(recorder) = self.conn.recorder().cloned() else { return result };
        let Request { method, uri, message, session_id, token, headers } = request;
        let sent = message.and_then(|m| serde_json::to_value(m).ok());
        let mut exchange = HttpExchange {
            purpose: "mcp".into(),
            method: method.into(),
            url: uri.into(),
            request_headers: request_headers(sent.is_some(), session_id, token, headers),
            request_body: sent.as_ref().map(|v| serde_json::to_string_pretty(v).unwrap_or_default()),
            ..Default::default()
        };
        if let Some(v) = sent {
            recorder.rpc(Direction::Sent, v);
        }
        let session = |sid: &Option<String>| sid.iter().map(|s| ("mcp-session-id".to_owned(), s.clone())).collect();
        let result = match result {
            Ok(StreamableHttpPostResponse::Accepted) if method == "DELETE" => {
                exchange.response_body = Some("(answered 2xx: the session is over)".into());
                Ok(StreamableHttpPostResponse::Accepted)
            }
            Ok(StreamableHttpPostResponse::Accepted) => {
                exchange.status = Some(202);
                Ok(StreamableHttpPostResponse::Accepted)
            }
            Ok(StreamableHttpPostResponse::Json(message, sid)) => {
                exchange.status = Some(200);
                exchange.response_headers = session(&sid);
                exchange.response_headers.push(("content-type".into(), "application/json".into()));
                let v = serde_json::to_value(&message).unwrap_or_default();
                exchange.response_body = Some(serde_json::to_string_pretty(&v).unwrap_or_default());
                recorder.rpc(Direction::Received, v);
                Ok(StreamableHttpPostResponse::Json(message, sid))
            }
            Ok(StreamableHttpPostResponse::Sse(stream, sid)) => {
                exchange.status = Some(200);
                exchange.response_headers = session(&sid);
                exchange.response_headers.push(("content-type".into(), "text/event-stream".into()));
                exchange.response_body = Some("(an event stream: its messages are in the JSON-RPC log)".into());
                Ok(StreamableHttpPostResponse::Sse(record_stream(stream, recorder.clone()), sid))
            }
            Ok(other) => {
                exchange.status = Some(200);
                Ok(other)
            }
            Err(e) => {
                describe_failure(&mut exchange, &e);
                Err(e)
            }
        };
        recorder.http(exchange);
        result
    }

    /// A GET event stream, its messages recorded when there is a recorder.
    fn recorded(&self, stream: BoxStream<'static, Result<Sse, SseError>>) -> BoxStream<'static, Result<Sse, SseError>> {
        match self.conn.recorder() {
            Some(r) => record_stream(stream, r.clone()),
            None => stream,
        }
    }

    fn fail(&self, e: ClientError) -> HttpError {
        let text = e.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(e);
        }
        StreamableHttpError::Auth(rmcp::transport::auth::AuthError::AuthorizationFailed(text))
    }

    /// Sends one HTTP request (`call`) with the token, recovering from 401 and 403. `what` names
    /// it for a timeout message; `tool` is the tool a `tools/call` names (for the step-up
    /// explanation). Each attempt must produce its response (the headers, for a stream) within the
    /// request timeout; the time spent recovering (a login in the browser) is not counted.
    async fn with_auth<T, F, Fut>(&self, what: &str, tool: Option<&str>, call: F) -> Result<T, HttpError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let mut token = self.conn.access_token().await.map_err(|e| self.fail(e))?;
        // One refresh per request; after that a 401 means a new login, which is counted and
        // bounded, so a server that refuses every token cannot keep us refreshing forever.
        let mut refreshed = false;
        let limit = self.conn.request_timeout();
        loop {
            let attempt = match tokio::time::timeout(limit, call(token.clone())).await {
                Ok(r) => r,
                Err(_) => {
                    let server = self.conn.server().as_str();
                    let e = ClientError::Timeout { what: format!("{what} at {server}"), secs: limit.as_secs() };
                    // The event stream is optional and rmcp carries on without it: keep no failure
                    // that a later, unrelated error would be blamed on.
                    if what == EVENT_STREAM {
                        return Err(StreamableHttpError::UnexpectedServerResponse(e.to_string().into()));
                    }
                    return Err(self.fail(e));
                }
            };
            match attempt {
                Err(StreamableHttpError::AuthRequired(challenge)) => {
                    let fresh = self
                        .conn
                        .recover_unauthorized(token.as_deref(), &challenge.www_authenticate_header, !refreshed)
                        .await
                        .map_err(|e| self.fail(e))?;
                    refreshed = true;
                    token = Some(fresh);
                }
                Err(StreamableHttpError::InsufficientScope(challenge)) => {
                    let fresh =
                        self.conn.step_up(&challenge.www_authenticate_header, tool).await.map_err(|e| self.fail(e))?;
                    token = Some(fresh);
                }
                Ok(v) => {
                    self.conn.note_success();
                    return Ok(v);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A request as it was sent, for the recorder.
struct Request<'a> {
    method: &'static str,
    uri: &'a str,
    message: Option<&'a ClientJsonRpcMessage>,
    session_id: Option<&'a str>,
    token: Option<&'a str>,
    headers: &'a HashMap<HeaderName, HeaderValue>,
}

impl<'a> Request<'a> {
    /// A JSON-RPC message POSTed.
    fn post(
        uri: &'a str,
        message: &'a ClientJsonRpcMessage,
        session_id: &'a Option<Arc<str>>,
        token: &'a Option<String>,
        headers: &'a HashMap<HeaderName, HeaderValue>,
    ) -> Self {
        Request {
            method: "POST",
            uri,
            message: Some(message),
            session_id: session_id.as_deref(),
            token: token.as_deref(),
            headers,
        }
    }
}

/// The headers rmcp's client sends with a request, as far as the recorder is concerned.
fn request_headers(
    with_body: bool,
    session_id: Option<&str>,
    token: Option<&str>,
    headers: &HashMap<HeaderName, HeaderValue>,
) -> Vec<(String, String)> {
    let mut out = vec![("accept".to_owned(), "application/json, text/event-stream".to_owned())];
    if with_body {
        out.push(("content-type".into(), "application/json".into()));
    }
    if let Some(t) = token {
        out.push(("authorization".into(), format!("Bearer {t}")));
    }
    if let Some(s) = session_id {
        out.push(("mcp-session-id".into(), s.to_owned()));
    }
    for (k, v) in headers {
        out.push((k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()));
    }
    out
}

/// A refused or failed request, for the record: 401 and 403 with their challenge.
fn describe_failure(exchange: &mut HttpExchange, e: &HttpError) {
    match e {
        StreamableHttpError::AuthRequired(c) => {
            exchange.status = Some(401);
            exchange.response_headers.push(("www-authenticate".into(), c.www_authenticate_header.clone()));
        }
        StreamableHttpError::InsufficientScope(c) => {
            exchange.status = Some(403);
            exchange.response_headers.push(("www-authenticate".into(), c.www_authenticate_header.clone()));
        }
        other => exchange.error = Some(other.to_string()),
    }
}

/// Passes a stream's events on, recording each message in it.
fn record_stream(
    stream: BoxStream<'static, Result<Sse, SseError>>,
    recorder: Arc<dyn crate::record::Recorder>,
) -> BoxStream<'static, Result<Sse, SseError>> {
    use futures::StreamExt;
    Box::pin(stream.inspect(move |item| {
        if let Ok(Sse { data: Some(data), .. }) = item
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
        {
            recorder.rpc(Direction::Received, v);
        }
    }))
}

impl StreamableHttpClient for AuthorizingClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let (what, tool) = describe(&message);
        self.with_auth(&what, tool.as_deref(), |token| {
            let sent = self.inner.post_message(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token.clone(),
                headers.clone(),
            );
            let (uri, message, session_id, headers) = (&uri, &message, &session_id, &headers);
            async move {
                let r = sent.await;
                self.observe(Request::post(uri, message, session_id, &token, headers), r)
            }
        })
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let (what, tool) = describe(&message);
        self.with_auth(&what, tool.as_deref(), |token| {
            let sent = self.inner.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token.clone(),
                headers.clone(),
                limits,
            );
            let (uri, message, session_id, headers) = (&uri, &message, &session_id, &headers);
            async move {
                let r = sent.await;
                self.observe(Request::post(uri, message, session_id, &token, headers), r)
            }
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        self.with_auth("ending the session (DELETE)", None, |token| {
            let sent = self.inner.delete_session(uri.clone(), session_id.clone(), token.clone(), headers.clone());
            let (uri, session_id, headers) = (&uri, &session_id, &headers);
            async move {
                let r = sent.await.map(|()| StreamableHttpPostResponse::Accepted);
                let request = Request {
                    method: "DELETE",
                    uri,
                    message: None,
                    session_id: Some(session_id),
                    token: token.as_deref(),
                    headers,
                };
                let r = self.observe(request, r);
                r.map(|_| ())
            }
        })
        .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        let stream = self
            .with_auth(EVENT_STREAM, None, |token| {
                self.inner.get_stream(uri.clone(), session_id.clone(), last_event_id.clone(), token, headers.clone())
            })
            .await?;
        Ok(self.recorded(stream))
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        max: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        let stream = self
            .with_auth(EVENT_STREAM, None, |token| {
                self.inner.get_stream_with_max_sse_event_size(
                    uri.clone(),
                    session_id.clone(),
                    last_event_id.clone(),
                    token,
                    headers.clone(),
                    max,
                )
            })
            .await?;
        Ok(self.recorded(stream))
    }
}
