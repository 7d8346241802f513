//! The report as people read it.

use std::fmt::Write;

use crate::{Report, Status};

fn label(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
    }
}

/// One block per check: outcome, id and title; what it saw; how to fix it (when not passed);
/// then a summary line.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "mandate doctor {}", report.url);
    for c in &report.checks {
        let _ = writeln!(out, "\n{:<4}  {}  {}", label(c.status), c.id, c.title);
        let _ = writeln!(out, "      saw: {}", c.saw);
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "      fix: {fix}");
        }
    }
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    let _ = writeln!(
        out,
        "\n{} passed, {} warning(s), {} failed",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
    );
    out
}
