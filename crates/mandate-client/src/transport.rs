//! The Streamable HTTP client rmcp's transport drives, with authorization handled inside it: the
//! bearer token goes on every request (C15), a 401 triggers one refresh and otherwise a new login,
//! a 403 `insufficient_scope` a step-up, and the request is then sent again. The MCP session goes
//! on undisturbed, which is what lets the bridge stay transparent to its host.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::{Error as SseError, Sse};

use crate::connection::Connection;
use crate::error::ClientError;

type HttpError = StreamableHttpError<reqwest::Error>;

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

    /// The authorization failure behind the last transport error, if there was one (taken).
    pub fn take_failure(&self) -> Option<ClientError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    fn fail(&self, e: ClientError) -> HttpError {
        let text = e.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(e);
        }
        StreamableHttpError::Auth(rmcp::transport::auth::AuthError::AuthorizationFailed(text))
    }

    async fn with_auth<T, F, Fut>(&self, call: F) -> Result<T, HttpError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let mut token = self.conn.access_token().await.map_err(|e| self.fail(e))?;
        // One refresh per request; after that a 401 means a new login, which is counted and
        // bounded, so a server that refuses every token cannot keep us refreshing forever.
        let mut refreshed = false;
        loop {
            match call(token.clone()).await {
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
                        self.conn.step_up(&challenge.www_authenticate_header).await.map_err(|e| self.fail(e))?;
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
        self.with_auth(|token| {
            self.inner.post_message(uri.clone(), message.clone(), session_id.clone(), token, headers.clone())
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
        self.with_auth(|token| {
            self.inner.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                headers.clone(),
                limits,
            )
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
        self.with_auth(|token| self.inner.delete_session(uri.clone(), session_id.clone(), token, headers.clone())).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.with_auth(|token| {
            self.inner.get_stream(uri.clone(), session_id.clone(), last_event_id.clone(), token, headers.clone())
        })
        .await
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
        self.with_auth(|token| {
            self.inner.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                headers.clone(),
                max,
            )
        })
        .await
    }
}
