//! Tests that need a backend this machine may not have (PostgreSQL, Redis, the Python SDKs)
//! skip without it, and say so where it counts: `scripts/test.sh` sets `TENANTGATE_SKIP_LOG`
//! and reports each such test as skipped, not passed. Shared by the test suites of several
//! crates (`#[path]`), so the convention has one definition.

/// The value of `var` (a backend's URL), or `None` after recording that this test is skipped
/// for want of it.
pub fn backend_url(var: &str) -> Option<String> {
    if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
        return Some(v);
    }
    skip(&format!("{var} is not set"));
    None
}

/// Records that the running test did not exercise what it names, and why.
pub fn skip(reason: &str) {
    // libtest names each test's thread after the test.
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    let line = format!("{}::{test}: {reason}", env!("CARGO_CRATE_NAME"));
    eprintln!("skipping {line}");
    if let Some(path) = std::env::var_os("TENANTGATE_SKIP_LOG") {
        use std::io::Write;
        // One short O_APPEND write per line: concurrent test processes do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}
