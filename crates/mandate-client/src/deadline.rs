//! Every request the agent's side sends gives up after a bounded time (`--timeout`), but time
//! spent waiting for the person (a login or step-up in the browser, a yes/no on the terminal) is
//! not counted against it: that wait has its own limit (`--login-timeout`).

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ClientError;

/// When the person was last being waited for.
#[derive(Default)]
pub struct PersonWaits {
    active: AtomicUsize,
    last_ended: Mutex<Option<Instant>>,
}

/// Held while the person is being waited for.
pub struct Waiting<'a>(&'a PersonWaits);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut last) = self.0.last_ended.lock() {
            *last = Some(Instant::now());
        }
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PersonWaits {
    /// Marks the time until the guard is dropped as spent waiting for the person.
    pub fn begin(&self) -> Waiting<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    /// Where a request's deadline moves when it has run out at `now`: later when the person is
    /// being waited for, or was after `since` (the count starts again from that wait's end).
    fn extended(&self, since: Instant, limit: Duration, now: Instant) -> Option<Instant> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return Some(now + limit);
        }
        let last = self.last_ended.lock().ok().and_then(|l| *l)?;
        (last > since && last + limit > now).then_some(last + limit)
    }
}

/// Runs `request`, giving up after `limit` of time not spent waiting for the person.
pub async fn bounded<F: Future>(
    waits: &PersonWaits,
    limit: Duration,
    what: impl FnOnce() -> String,
    request: F,
) -> Result<F::Output, ClientError> {
    let started = Instant::now();
    let mut deadline = started + limit;
    tokio::pin!(request);
    loop {
        tokio::select! {
            out = &mut request => return Ok(out),
            () = tokio::time::sleep_until(deadline) => {
                match waits.extended(started, limit, Instant::now()) {
                    Some(later) => deadline = later,
                    None => return Err(ClientError::Timeout { what: what(), secs: limit.as_secs() }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Real time, in short steps with wide margins (tokio's paused clock needs its `test-util`
    // feature, which would rebuild the workspace's dependency graph a second time).
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn a_silent_request_times_out_at_the_limit() {
        let waits = PersonWaits::default();
        let start = Instant::now();
        let r = bounded(&waits, ms(300), || "tools/list".into(), std::future::pending::<()>()).await;
        assert!(matches!(r, Err(ClientError::Timeout { .. })), "{r:?}");
        let took = start.elapsed();
        assert!(took >= ms(300) && took < ms(1300), "{took:?}");
    }

    #[tokio::test]
    async fn time_waiting_for_the_person_does_not_count() {
        let waits = PersonWaits::default();
        let start = Instant::now();
        let request = async {
            tokio::time::sleep(ms(200)).await;
            {
                let _person = waits.begin();
                tokio::time::sleep(ms(2500)).await; // a slow consent, far past the limit
            }
            tokio::time::sleep(ms(400)).await; // the retried request, within the limit again
            "done"
        };
        let r = bounded(&waits, ms(1000), || "tools/call".into(), request).await;
        assert_eq!(r.ok(), Some("done"));
        assert!(start.elapsed() >= ms(3100));
        // After the wait the count starts again from its end, and runs out.
        let start = Instant::now();
        let request = async {
            {
                let _person = waits.begin();
                tokio::time::sleep(ms(1500)).await;
            }
            std::future::pending::<()>().await
        };
        let r = bounded(&waits, ms(1000), || "tools/call".into(), request).await;
        assert!(matches!(r, Err(ClientError::Timeout { .. })), "{r:?}");
        let took = start.elapsed();
        assert!(took >= ms(2500) && took < ms(4000), "{took:?}");
    }
}
