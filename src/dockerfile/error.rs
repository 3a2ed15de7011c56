//! The one error type of the Dockerfile front end: where (file, line, instruction) and what.

use std::fmt;

/// What kind of problem a [`DockerfileError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerfileErrorKind {
    /// The text is not a Dockerfile (BuildKit would refuse it too).
    Syntax,
    /// A parser directive (`# syntax=`, `# escape=`) is invalid or names another frontend.
    Directive,
    /// A variable could not be expanded (`${V:?}`, a bad substitution, an unterminated quote).
    Expansion,
    /// A value is invalid (a stage name, a platform, a mount option, a flag value).
    Invalid,
    /// `--target` names no stage.
    Target,
    /// Valid for BuildKit, but rcross does not do it (yet); the message says what to do.
    Refused,
}

/// A Dockerfile error: `path:line: INSTRUCTION: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileError {
    pub kind: DockerfileErrorKind,
    /// The Dockerfile as the user named it.
    pub path: String,
    /// 1-based line of the instruction; 0 when the error is about the whole file.
    pub line: usize,
    /// The instruction keyword (`RUN`, `COPY`…), empty when none applies.
    pub instruction: String,
    pub message: String,
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.instruction.is_empty() {
            write!(f, ": {}", self.instruction)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for DockerfileError {}

/// Where an error happened, to build [`DockerfileError`]s without repeating the path.
#[derive(Debug, Clone)]
pub(crate) struct Place<'a> {
    pub path: &'a str,
    pub line: usize,
    pub instruction: &'a str,
}

impl Place<'_> {
    pub fn error(&self, kind: DockerfileErrorKind, message: impl Into<String>) -> DockerfileError {
        DockerfileError {
            kind,
            path: self.path.to_string(),
            line: self.line,
            instruction: self.instruction.to_string(),
            message: message.into(),
        }
    }

    pub fn invalid(&self, message: impl Into<String>) -> DockerfileError {
        self.error(DockerfileErrorKind::Invalid, message)
    }

    pub fn refused(&self, message: impl Into<String>) -> DockerfileError {
        self.error(DockerfileErrorKind::Refused, message)
    }
}
