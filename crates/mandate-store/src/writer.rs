//! SQLite's single writer with group commit.
//!
//! SQLite lets one connection write at a time; competing pool connections wait in its busy
//! handler (sleeps of 1, 2, 5, 10, 15, 20 ms...), which made every write path's p99 ~55 ms. Here
//! one task owns the only writing connection. Each write is a job; the writer takes every job
//! queued, runs them in one `BEGIN IMMEDIATE` transaction, each inside a savepoint of its own (so
//! one job's failure undoes only that job), commits once — one fsync for the lot with
//! `synchronous = FULL` — and only then answers each caller. An answer therefore always means
//! the change is durable. The write-ahead log is checkpointed by a background task, never by a
//! request's commit.
//!
//! On PostgreSQL there is no writer: the same job runs in a transaction of its own on the pool.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use mandate_core::StoreError;
use mandate_core::error::StoreResult;
use sqlx::AnyConnection;
use sqlx::{Any, AnyPool, Connection, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::convert::map_err;
use crate::database_file::DatabaseFile;

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 256;
/// Jobs that may wait for the writer; past this, a write is refused at once as unavailable.
const QUEUE: usize = 4096;
/// How often the write-ahead log is folded into the database file, off the request path.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Reports a job's outcome once the batch it ran in is committed (or not).
type Finish = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// What a write does: runs inside its own savepoint and returns how to answer its caller.
type Work = Box<dyn for<'t> FnOnce(Transaction<'t, Any>) -> BoxFuture<'t, Finish> + Send>;

/// A write, and whether its caller still waits for it.
struct Job {
    work: Work,
    /// Set when the caller stopped waiting (its request passed its deadline, RL-08): the write
    /// is skipped if it has not started, so a request answered 503 changes nothing.
    abandoned: Arc<AtomicBool>,
}

/// Held by the caller while it waits; dropping it unanswered marks the job abandoned.
struct Waiting(Arc<AtomicBool>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

enum Message {
    Job(Job),
    /// Finish what is queued, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// The handle callers hold: cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Message>,
    depth: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("depth", &self.depth()).finish()
    }
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

impl Writer {
    /// Starts the writer on `conn`, which must be a SQLite connection not in a transaction;
    /// `file` (when on disk) is checked before each commit (see [`crate::database_file`]).
    pub(crate) fn start(conn: AnyConnection, file: Option<DatabaseFile>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let depth = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(conn, jobs, depth.clone(), file));
        Self { queue, depth }
    }

    /// Writes queued and not yet committed.
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Runs `op` in a savepoint of the next batch; its answer once that batch is committed.
    pub(crate) async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(Transaction<'t, Any>) -> BoxFuture<'t, StoreResult<T>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        let abandoned = Arc::new(AtomicBool::new(false));
        let waiting = Waiting(abandoned.clone());
        let work: Work = Box::new(move |tx| {
            Box::pin(async move {
                let result = AssertUnwindSafe(op(tx)).catch_unwind().await.unwrap_or_else(|_| {
                    tracing::error!("a database write panicked; it is undone");
                    Err(StoreError::Backend("a database write failed".into()))
                });
                let finish: Finish = Box::new(move |committed| {
                    let _ = answer.send(committed.and(result));
                });
                finish
            })
        });
        // A full queue is refused at once rather than waited on: under an overload, callers
        // get "unavailable" quickly instead of joining a queue that only grows (RL-14).
        self.depth.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.queue.try_send(Message::Job(Job { work, abandoned })) {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => {
                    StoreError::Unavailable("the database write queue is full".into())
                }
                mpsc::error::TrySendError::Closed(_) => unavailable(),
            });
        }
        let answer = answered.await.unwrap_or_else(|_| Err(unavailable()));
        drop(waiting);
        answer
    }

    /// Commits what is queued, then closes the writing connection.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Message::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

async fn run(
    mut conn: AnyConnection,
    mut queue: mpsc::Receiver<Message>,
    depth: Arc<AtomicUsize>,
    file: Option<DatabaseFile>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = None;
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Job(job) => batch.push(job),
                Message::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            depth.fetch_sub(batch.len(), Ordering::Relaxed);
            commit_batch(&mut conn, &mut batch, file.as_ref()).await;
        }
        if let Some(done) = closing.take() {
            queue.close();
            if let Err(e) = conn.close().await {
                tracing::warn!(error = %e, "closing the database writer");
            }
            let _ = done.send(());
            return;
        }
    }
}

/// Runs `jobs` in one transaction, then answers each with the commit's outcome.
async fn commit_batch(conn: &mut AnyConnection, jobs: &mut Vec<Job>, file: Option<&DatabaseFile>) {
    let mut finishes: Vec<Finish> = Vec::with_capacity(jobs.len());
    let committed = run_jobs(conn, jobs, &mut finishes, file).await;
    if let Err(e) = &committed {
        tracing::error!(error = %e, jobs = finishes.len(), "a batch of database writes could not be committed");
    }
    // Jobs never started (a failure before their turn) are dropped: their callers are told the
    // database is unavailable.
    jobs.clear();
    for finish in finishes {
        finish(committed.clone());
    }
}

async fn run_jobs(
    conn: &mut AnyConnection,
    jobs: &mut Vec<Job>,
    finishes: &mut Vec<Finish>,
    file: Option<&DatabaseFile>,
) -> StoreResult<()> {
    let mut batch = conn.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    for job in jobs.drain(..) {
        // Once the lock is held, a job whose caller has gone (it waited past its deadline) is
        // not started; dropping it tells no one, since no one waits.
        if job.abandoned.load(Ordering::Acquire) {
            continue;
        }
        let savepoint = batch.begin().await.map_err(map_err)?;
        finishes.push((job.work)(savepoint).await);
    }
    // A deleted, replaced or read-only file: roll back (dropping `batch`) rather than commit
    // writes that would not survive a restart.
    if let Some(file) = file {
        file.check()?;
    }
    batch.commit().await.map_err(map_err)
}

/// Folds the write-ahead log into the database file every [`CHECKPOINT_EVERY`] (PASSIVE: never
/// waits for, nor blocks, the writer or readers), so no request's commit pays for a checkpoint.
pub(crate) fn spawn_checkpointer(pool: AnyPool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "write-ahead log checkpoint failed; retrying");
            }
        }
    });
}
