//! The one rule for test prerequisites (a tool, a compiler, a kernel feature, a service), shared
//! by every integration test (`mod prereq;`, and each `tests/common*` module includes it too)
//! and by the library's unit tests (src/lib.rs includes this file under `#[cfg(test)]`).
//!
//! Strict mode: a missing prerequisite fails the test with a panic naming it and what to
//! install. `bash tests/run.sh` installs every prerequisite and exports RCROSS_TEST_STRICT=1, so
//! there nothing can pass by skipping. The rule: strict when RCROSS_TEST_STRICT or CI is set to
//! anything but "", "0" or "false" (any case) — CI systems set CI=true or CI=1. RCROSS_TEST_STRICT
//! cannot switch strictness off under CI.
//!
//! Otherwise (a plain `cargo test` on a machine without, say, a Docker engine) the test prints
//! `SKIPPED: …` on stderr and returns; cargo still reports it as passed, which is why the test
//! command never runs that way.

#![allow(dead_code)]

use std::ffi::OsString;

/// Whether a missing prerequisite fails the test (see the module documentation).
pub fn strict() -> bool {
    is_on(std::env::var_os("RCROSS_TEST_STRICT")) || is_on(std::env::var_os("CI"))
}

/// Whether an environment variable's value switches strict mode on. Its test is in src/lib.rs,
/// so that it runs once and not in every test binary that includes this file.
pub fn is_on(value: Option<OsString>) -> bool {
    let Some(value) = value else { return false };
    let value = value.to_string_lossy();
    let value = value.trim();
    !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
}

/// A missing prerequisite: panics in strict mode; otherwise prints a notice and returns `None`,
/// for the caller to return early. `what` names it, `install` says how to get it.
pub fn missing<T>(what: &str, install: &str) -> Option<T> {
    if strict() {
        panic!(
            "prerequisite missing: {what} (install: {install}); the test command \
             (bash tests/run.sh, RCROSS_TEST_STRICT=1) or CI does not skip"
        );
    }
    eprintln!(
        "SKIPPED: prerequisite missing: {what} (install: {install}); \
         RCROSS_TEST_STRICT=1 makes this a failure"
    );
    None
}

/// `ok`, or (when it is false) [`missing`]: false outside strict mode, a panic in it. `what`
/// names the prerequisite and how to install it.
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        missing::<()>(what, "see tests/install-deps.sh");
    }
    ok
}

/// Whether `program` is on PATH; when it is not, [`missing`] naming the Debian package.
pub fn tool(program: &str, package: &str) -> bool {
    if which::which(program).is_ok() {
        return true;
    }
    missing::<()>(program, &format!("apt-get install -y {package}"));
    false
}

/// Counts the cases a looping test ran, so that one which ran none fails instead of passing.
///
/// A case whose prerequisite is missing goes through [`Cases::missing`] (a panic in strict
/// mode); [`Cases::finish`] fails when no case ran unless some were skipped that way.
#[must_use = "call finish() to fail a test that ran no case"]
pub struct Cases {
    what: String,
    ran: usize,
    skipped: usize,
}

impl Cases {
    /// `what` names the cases in messages ("self-test programs").
    pub fn new(what: &str) -> Cases {
        Cases {
            what: what.to_string(),
            ran: 0,
            skipped: 0,
        }
    }

    /// One case ran.
    pub fn ran(&mut self) {
        self.ran += 1;
    }

    /// One case cannot run because `what` is missing: [`missing`].
    pub fn missing(&mut self, what: &str, install: &str) {
        missing::<()>(what, install);
        self.skipped += 1;
    }

    /// How many cases ran; panics when none did and none was skipped for a missing
    /// prerequisite (outside strict mode).
    pub fn finish(self) -> usize {
        if self.ran == 0 && self.skipped == 0 {
            panic!(
                "{}: ran zero cases; a test that tests nothing must not pass",
                self.what
            );
        }
        eprintln!(
            "{}: {} ran, {} skipped for a missing prerequisite",
            self.what, self.ran, self.skipped
        );
        self.ran
    }
}
