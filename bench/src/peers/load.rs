//! Workers and what one measurement unit (one target, one scenario, one round) records.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::oauth::{AuthServer, Jar};
use crate::proc;

/// What one worker keeps between units at one authorization server.
pub struct Worker {
    /// The server, with this worker's own client (where the server registers clients).
    pub auth: Arc<AuthServer>,
    /// Its browser session (sign-in cookies).
    pub jar: Jar,
    /// Its refresh-token family: the latest refresh token (none: the chain broke).
    pub refresh: Option<String>,
    /// Codes issued by the last `authorize` unit, with their PKCE verifiers, oldest first.
    pub codes: VecDeque<(String, String)>,
}

/// What a unit's workers did.
#[derive(Default)]
pub struct Outcome {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub elapsed: Duration,
    /// The first few error messages.
    pub samples: Vec<String>,
}

/// What a step did: a success (its latency counts), or nothing left to do (the worker stops).
pub enum Step {
    Done,
    NothingLeft,
}

/// Runs one worker per state until `deadline`, each calling `step` again and again. An error
/// counts and stops that worker for this unit (a failing server is not measured as fast).
pub async fn run<S, F, Fut>(states: Vec<S>, deadline: Instant, step: F) -> anyhow::Result<(Vec<S>, Outcome)>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (S, anyhow::Result<Step>)> + Send,
{
    let start = Instant::now();
    let mut handles = Vec::new();
    for state in states {
        let step = step.clone();
        handles.push(tokio::spawn(async move {
            let (mut state, mut latencies, mut error) = (state, Vec::new(), None);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let (next, result) = step(state).await;
                state = next;
                match result {
                    Ok(Step::Done) => latencies.push(t0.elapsed()),
                    Ok(Step::NothingLeft) => break,
                    Err(e) => {
                        error = Some(format!("{e:#}"));
                        break;
                    }
                }
            }
            (state, latencies, error)
        }));
    }
    let mut out = Outcome::default();
    let mut states = Vec::new();
    for h in handles {
        let (state, latencies, error) = h.await?;
        states.push(state);
        out.latencies.extend(latencies);
        if let Some(e) = error {
            out.errors += 1;
            if out.samples.len() < 3 {
                out.samples.push(e);
            }
        }
    }
    out.elapsed = start.elapsed();
    Ok((states, out))
}

/// `authorize`: GET the authorization endpoint with the worker's session; a code each time.
pub async fn authorize(workers: Vec<Worker>, deadline: Instant) -> anyhow::Result<(Vec<Worker>, Outcome)> {
    let mut workers = workers;
    workers.iter_mut().for_each(|w| w.codes.clear());
    run(workers, deadline, move |mut w: Worker| async move {
        let t = w.auth.clone();
        let r = t.authorize(&w.jar).await.map(|c| {
            w.codes.push_back(c);
            Step::Done
        });
        (w, r)
    })
    .await
}

/// `code`: each worker redeems the codes its `authorize` unit got, with their verifiers.
pub async fn code(workers: Vec<Worker>, deadline: Instant) -> anyhow::Result<(Vec<Worker>, Outcome)> {
    run(workers, deadline, move |mut w: Worker| async move {
        let t = w.auth.clone();
        let Some((code, verifier)) = w.codes.pop_front() else { return (w, Ok(Step::NothingLeft)) };
        let r = t.redeem(&code, &verifier).await.map(|_| Step::Done);
        (w, r)
    })
    .await
}

/// `refresh`: each worker rotates its own refresh-token family.
pub async fn refresh(workers: Vec<Worker>, deadline: Instant) -> anyhow::Result<(Vec<Worker>, Outcome)> {
    run(workers, deadline, move |mut w: Worker| async move {
        let t = w.auth.clone();
        let Some(current) = w.refresh.take() else {
            return (w, Err(anyhow::anyhow!("this worker's refresh family broke in an earlier unit")));
        };
        let r = t.refresh(&current).await.map(|next| {
            w.refresh = Some(next);
            Step::Done
        });
        (w, r)
    })
    .await
}

/// `tools_call`: each worker calls the tool on its own MCP session.
pub async fn tools_call(
    sessions: Vec<Arc<crate::mcp::Session>>,
    deadline: Instant,
) -> anyhow::Result<(Vec<Arc<crate::mcp::Session>>, Outcome)> {
    let states: Vec<(Arc<crate::mcp::Session>, u64)> = sessions.into_iter().map(|s| (s, 100)).collect();
    let (states, out) = run(states, deadline, |(s, id): (Arc<crate::mcp::Session>, u64)| async move {
        let r = s.call(id).await.map(|()| Step::Done);
        ((s, id + 1), r)
    })
    .await?;
    Ok((states.into_iter().map(|(s, _)| s).collect(), out))
}

/// Whose CPU a unit reads: the server process, and the PostgreSQL backends of its database.
#[derive(Clone)]
pub struct Probe {
    pub pid: u32,
    pub postgres_database: Option<String>,
}

/// CPU ticks around a unit.
#[derive(Default, Clone, Copy)]
pub struct Ticks {
    pub server: u64,
    pub database: u64,
    pub driver: u64,
    /// Every CPU's busy time, all processes (`/proc/stat`): what is left after server, database
    /// and driver is other load on the machine.
    pub machine: u64,
}

impl Probe {
    pub fn read(&self) -> anyhow::Result<Ticks> {
        Ok(Ticks {
            server: proc::process_ticks(self.pid)
                .ok_or_else(|| anyhow::anyhow!("reading /proc/{}/stat: the server is gone", self.pid))?,
            database: self.postgres_database.as_deref().map_or(0, proc::postgres_backend_ticks),
            driver: proc::own_ticks().unwrap_or(0),
            machine: proc::machine_busy_ticks().unwrap_or(0),
        })
    }
}

impl Ticks {
    pub fn since(self, before: Ticks) -> Ticks {
        Ticks {
            server: self.server.saturating_sub(before.server),
            database: self.database.saturating_sub(before.database),
            driver: self.driver.saturating_sub(before.driver),
            machine: self.machine.saturating_sub(before.machine),
        }
    }

    pub fn add(&mut self, other: Ticks) {
        self.server += other.server;
        self.database += other.database;
        self.driver += other.driver;
        self.machine += other.machine;
    }

    /// Busy CPU time of everything else on the machine.
    pub fn other(&self) -> u64 {
        self.machine.saturating_sub(self.server + self.database + self.driver)
    }
}
