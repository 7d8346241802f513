//! The client-metadata-document fetcher against misbehaving servers on loopback (SS-04, SS-05,
//! SS-06, SS-16): redirects and error statuses, size, slowness, and fan-out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use mandate_core::service::{ClientDocumentFetcher, FetchError};
use mandate_core::ssrf::FetchPolicy;
use mandate_server::GuardedFetcher;

fn fetcher() -> GuardedFetcher {
    GuardedFetcher::new(FetchPolicy { allow_loopback: true, allow_http: true }).unwrap()
}

/// Serves `app` on a loopback port; its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn redirects_are_not_followed_and_error_statuses_refused_ss_04() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let target = serve(axum::Router::new().route(
        "/client.json",
        get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { "{}" }
        }),
    ))
    .await;
    let to = format!("{target}/client.json");
    let app = axum::Router::new()
        .route(
            "/302",
            get({
                let to = to.clone();
                move || async move { (axum::http::StatusCode::FOUND, [("location", to)]) }
            }),
        )
        .route("/301", get(move || async move { (axum::http::StatusCode::MOVED_PERMANENTLY, [("location", to)]) }))
        .route("/404", get(|| async { axum::http::StatusCode::NOT_FOUND }))
        .route("/500", get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }));
    let base = serve(app).await;
    let f = fetcher();
    for (path, status) in [("/302", 302), ("/301", 301), ("/404", 404), ("/500", 500)] {
        match f.fetch(&format!("{base}{path}")).await {
            Err(FetchError::Status(s)) => assert_eq!(s, status, "{path}"),
            other => panic!("{path}: {:?}", other.map(|d| d.body.len())),
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect target was never fetched");
}

#[tokio::test]
async fn documents_over_five_kilobytes_are_refused_however_sent_ss_05() {
    let endless = || {
        let chunks =
            futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 1024])));
        Body::from_stream(chunks)
    };
    let app = axum::Router::new()
        .route("/6k", get(|| async { " ".repeat(6 * 1024) }))
        .route("/50m", get(|| async { vec![b' '; 50 * 1024 * 1024] }))
        .route("/endless", get(move || async move { endless() }));
    let base = serve(app).await;
    let f = fetcher();
    for path in ["/6k", "/50m", "/endless"] {
        let started = Instant::now();
        match f.fetch(&format!("{base}{path}")).await {
            Err(FetchError::TooLarge) => {}
            other => panic!("{path}: {:?}", other.map(|d| d.body.len())),
        }
        assert!(started.elapsed() < Duration::from_secs(4), "{path}: stopped at the cap, not at the timeout");
    }
}

#[tokio::test]
async fn a_server_trickling_bytes_is_abandoned_at_the_deadline_ss_06() {
    // One byte a second, for ever: the 5 s whole-fetch deadline ends it (a real-time limit,
    // so this test takes about five seconds).
    let trickle = || {
        let s = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b" ")), ()))
        });
        Body::from_stream(s)
    };
    let base = serve(axum::Router::new().route("/slow", get(move || async move { trickle() }))).await;
    let f = fetcher();
    let started = Instant::now();
    match f.fetch(&format!("{base}/slow")).await {
        Err(FetchError::Transport(reason)) => assert_eq!(reason, "timed out"),
        other => panic!("{:?}", other.map(|d| d.body.len())),
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(8), "{took:?}");
}

#[tokio::test]
async fn at_most_eight_fetches_are_in_flight_the_rest_fail_fast_ss_16() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let (i, r) = (in_flight.clone(), release.clone());
    let app = axum::Router::new()
        .route(
            "/{n}",
            get(move || {
                let (i, r) = (i.clone(), r.clone());
                async move {
                    i.fetch_add(1, Ordering::SeqCst);
                    r.notified().await;
                    "{}"
                }
            }),
        )
        .route("/again", get(|| async { "{}" }));
    let base = serve(app).await;
    let f = Arc::new(fetcher());
    let mut held = Vec::new();
    for n in 0..8 {
        let (f, url) = (f.clone(), format!("{base}/{n}"));
        held.push(tokio::spawn(async move { f.fetch(&url).await.map(|d| d.body) }));
    }
    // Wait until the eight are at the server (bounded, polling a counter: no fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight.load(Ordering::SeqCst) < 8 {
        assert!(Instant::now() < deadline, "only {} fetches reached the server", in_flight.load(Ordering::SeqCst));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for n in 8..208 {
        match f.fetch(&format!("{base}/{n}")).await {
            Err(FetchError::Busy) => {}
            other => panic!("fetch {n}: {:?}", other.map(|d| d.body.len())),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(2), "the refusals were immediate");
    assert_eq!(in_flight.load(Ordering::SeqCst), 8, "none of the 200 reached the server");
    release.notify_waiters();
    for h in held {
        assert_eq!(h.await.unwrap().unwrap(), b"{}".to_vec());
    }
    // Permits come back: a later fetch goes through.
    assert!(f.fetch(&format!("{base}/again")).await.is_ok());
}
