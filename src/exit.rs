//! Documented exit codes (see README, "Exit codes").

use std::fmt;

/// Everything went as asked.
pub const OK: u8 = 0;
/// A check failed: a self-test did not pass, verification found offending files.
pub const CHECK_FAILED: u8 = 1;
/// The command line or an input file is wrong (unknown platform, malformed data).
pub const USAGE: u8 = 2;
/// The host cannot do what was asked (not root, binfmt_misc unavailable, emulator missing,
/// read-only /proc/sys, conflicting handler without --force).
pub const ENVIRONMENT: u8 = 3;
/// An unexpected I/O or system error.
pub const INTERNAL: u8 = 4;

/// An error that carries the exit code it should end the process with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: USAGE,
            error: error.into(),
        }
    }
    pub fn env(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: ENVIRONMENT,
            error: error.into(),
        }
    }
    pub fn check(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: CHECK_FAILED,
            error: error.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: INTERNAL,
            error: e.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Failure>;
