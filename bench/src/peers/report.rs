//! What the rounds add up to, per scenario and target, printed as markdown tables with the
//! ratios mandate/peer, and as JSON lines.

use std::time::Duration;

use serde_json::json;

use crate::load::{Outcome, Ticks};

/// Every unit of one target in one scenario, over the counted rounds.
pub struct Record {
    pub scenario: &'static str,
    pub target: String,
    pub mandate: bool,
    /// For `tools_call`: the server this endpoint belongs to, and whether auth is on.
    pub auth: Option<(String, bool)>,
    /// Whether the database column applies (a PostgreSQL target).
    pub has_database: bool,
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub elapsed: Duration,
    pub round_rates: Vec<f64>,
    pub ticks: Ticks,
    pub samples: Vec<String>,
}

impl Record {
    pub fn new(
        scenario: &'static str,
        target: &str,
        mandate: bool,
        auth: Option<(String, bool)>,
        has_database: bool,
    ) -> Self {
        Self {
            scenario,
            target: target.to_owned(),
            mandate,
            auth,
            has_database,
            latencies: Vec::new(),
            errors: 0,
            elapsed: Duration::ZERO,
            round_rates: Vec::new(),
            ticks: Ticks::default(),
            samples: Vec::new(),
        }
    }

    pub fn add(&mut self, o: Outcome, ticks: Ticks) {
        self.round_rates.push(o.latencies.len() as f64 / o.elapsed.as_secs_f64().max(1e-9));
        self.latencies.extend(o.latencies);
        self.errors += o.errors;
        self.elapsed += o.elapsed;
        self.ticks.add(ticks);
        for s in o.samples {
            if self.samples.len() < 3 {
                self.samples.push(s);
            }
        }
    }

    fn ok(&self) -> usize {
        self.latencies.len()
    }

    /// Successful requests per second over all its units.
    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p` quantile in ms (sorts the latencies).
    fn percentile(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        let n = self.latencies.len();
        self.latencies.get(((n as f64 * p) as usize).min(n.saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    fn per_request(&self, ticks: u64, hz: u64) -> f64 {
        ticks as f64 * 1e6 / hz as f64 / self.ok().max(1) as f64
    }

    /// Usable for a ratio: requests succeeded and none failed.
    fn valid(&self) -> bool {
        self.errors == 0 && self.ok() > 0
    }
}

struct Row {
    rate: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
    valid: bool,
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}×", a / b) } else { "–".to_owned() }
}

/// Prints every scenario's table, the ratios, and a JSON line per record; returns whether any
/// record had errors or no success.
pub fn print(records: &mut [Record], hz: u64, seconds_note: &str) -> bool {
    let mut failed = false;
    let mut rows = Vec::new();
    for r in records.iter_mut() {
        let (p50, p99) = (r.percentile(0.5), r.percentile(0.99));
        rows.push(Row { rate: r.rate(), p50, p99, cpu: r.per_request(r.ticks.server, hz), valid: r.valid() });
    }
    println!("\n## Results ({seconds_note})\n");
    let mut scenarios: Vec<&'static str> = records.iter().map(|r| r.scenario).collect();
    scenarios.dedup();
    for scenario in &scenarios {
        println!("### {scenario}\n");
        println!(
            "| target | req/s | per round | p50 ms | p99 ms | errors | server CPU µs/req | DB CPU µs/req | driver CPU | other load |"
        );
        println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for (r, row) in records.iter().zip(&rows).filter(|(r, _)| r.scenario == *scenario) {
            let (min, max) = r.round_rates.iter().fold((f64::MAX, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
            let db =
                if r.has_database { format!("{:.0}", r.per_request(r.ticks.database, hz)) } else { "–".to_owned() };
            let share = |ticks: u64| ticks as f64 / hz as f64 / r.elapsed.as_secs_f64().max(1e-9) * 100.0;
            let (driver, other) = (share(r.ticks.driver), share(r.ticks.other()));
            let flag = if row.valid { String::new() } else { " **not counted: errors**".to_owned() };
            println!(
                "| {}{flag} | {:.0} | {:.0}–{:.0} | {:.2} | {:.2} | {} | {:.0} | {db} | {driver:.0}% | {other:.0}% |",
                r.target, row.rate, min, max, row.p50, row.p99, r.errors, row.cpu
            );
            failed |= !row.valid;
        }
        println!();
        ratios(records, &rows, scenario);
    }
    for r in records.iter().filter(|r| !r.samples.is_empty()) {
        println!("errors, {} on {}: {}", r.scenario, r.target, r.samples.join(" | "));
    }
    for (r, row) in records.iter().zip(&rows) {
        println!(
            "{}",
            json!({"scenario": r.scenario, "target": r.target, "ok": r.ok(), "errors": r.errors, "rps": row.rate,
                   "round_rps": r.round_rates, "p50_ms": row.p50, "p99_ms": row.p99, "server_cpu_us_per_req": row.cpu,
                   "db_cpu_us_per_req": r.has_database.then(|| r.per_request(r.ticks.database, hz)),
                   "driver_cpu_share": r.ticks.driver as f64 / hz as f64 / r.elapsed.as_secs_f64().max(1e-9),
                   "other_cpu_share": r.ticks.other() as f64 / hz as f64 / r.elapsed.as_secs_f64().max(1e-9)})
        );
    }
    failed
}

fn ratios(records: &[Record], rows: &[Row], scenario: &str) {
    let here: Vec<(&Record, &Row)> = records.iter().zip(rows).filter(|(r, _)| r.scenario == scenario).collect();
    let mut lines = Vec::new();
    if scenario == "tools_call" {
        // Auth overhead of each server: its endpoint with auth against its twin without.
        for (on, on_row) in here.iter().filter(|(r, _)| r.auth.as_ref().is_some_and(|(_, on)| *on)) {
            let Some((server, _)) = &on.auth else { continue };
            let twin = here.iter().find(|(r, _)| r.auth.as_ref().is_some_and(|(s, on)| s == server && !on));
            let Some((_, off_row)) = twin else { continue };
            if on_row.valid && off_row.valid {
                println!(
                    "auth overhead, {server}: throughput off/on {} ({:.0} → {:.0} req/s), p50 {:.2} → {:.2} ms, server CPU {:.0} → {:.0} µs/call ({:+.0})",
                    ratio(off_row.rate, on_row.rate),
                    off_row.rate,
                    on_row.rate,
                    off_row.p50,
                    on_row.p50,
                    off_row.cpu,
                    on_row.cpu,
                    on_row.cpu - off_row.cpu
                );
            }
        }
    }
    for (m, m_row) in here.iter().filter(|(r, _)| r.mandate) {
        for (p, p_row) in here.iter().filter(|(r, _)| !r.mandate) {
            // tools_call: compare like with like (auth on with auth on).
            if m.auth.as_ref().map(|a| a.1) != p.auth.as_ref().map(|a| a.1) {
                continue;
            }
            if !(m_row.valid && p_row.valid) {
                lines.push(format!("| {} | {} | n/a: errors | | |", m.target, p.target));
                continue;
            }
            lines.push(format!(
                "| {} | {} | {} | {} | {} |",
                m.target,
                p.target,
                ratio(m_row.rate, p_row.rate),
                ratio(m_row.p50, p_row.p50),
                ratio(m_row.cpu, p_row.cpu)
            ));
        }
    }
    if !lines.is_empty() {
        println!(
            "\n| mandate | peer | throughput mandate/peer | p50 mandate/peer | server CPU per request mandate/peer |"
        );
        println!("|---|---|---:|---:|---:|");
        lines.iter().for_each(|l| println!("{l}"));
    }
    println!();
}
