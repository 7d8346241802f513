#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test harness: failing loudly is the point
//! In-process integration tests: the real router on a loopback port, a real SQLite file, a
//! manual clock. Test names carry the requirement ids they cover (mcp-auth-spec.md,
//! security-tests.md).

mod authorize_errors;
mod battery;
mod battery_as;
mod battery_more;
mod fetcher;
mod flow;
mod hardening;
mod hardening_access;
mod hardening_lifetimes;
mod metadata;
mod metrics;
mod overload;
mod pages;
mod races;
mod refresh_concurrency;
mod registration;
mod scopes_over_time;
mod token_errors;
