#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test harness: failing loudly is the point
//! RS-04's white-box half, in a process of its own: tracing's per-callsite interest is global, so
//! other tests running beside it (with no subscriber) could hide its events.

use reqwest::StatusCode;

use mandate_testkit::*;

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// RS-04's white-box half: a token a client puts in the query (refused) is not written to the
/// log either, even at debug, where each request's span is recorded.
#[tokio::test(flavor = "current_thread")]
async fn the_request_log_names_the_path_never_the_query_rs_04() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/authorize?access_token=SECRET-IN-QUERY-1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r =
        s.http.post(s.url("/token?access_token=SECRET-IN-QUERY-2")).form(&[("grant_type", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("path=/authorize") && log.contains("path=/token"), "the requests are logged: {log}");
    assert!(!log.contains("SECRET-IN-QUERY"), "{log}");
}
