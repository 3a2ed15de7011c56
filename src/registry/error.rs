//! Registry failures. Each names the request (method and URL or reference), the HTTP status when
//! there is one, a short excerpt of the registry's own error, and what the user can do next.

use crate::exit;
use crate::image::SourceError;

use super::reference::ReferenceError;

/// Longest registry error excerpt kept in a message, in characters.
const MAX_EXCERPT_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    /// The registry answered with an error status.
    #[error("{method} {url}: HTTP {status}{}{}", excerpt_suffix(.excerpt), hint_suffix(.hint))]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        /// The registry's own words (`CODE: message` from its error JSON, or trimmed body text).
        excerpt: String,
        hint: String,
    },

    /// No answer: connection refused, reset, DNS, TLS, or a timeout — after all attempts.
    #[error("{method} {url}: {message} (after {attempts} attempt{}){}", if *.attempts == 1 { "" } else { "s" }, hint_suffix(.hint))]
    Transport {
        method: &'static str,
        url: String,
        message: String,
        attempts: u32,
        hint: String,
    },

    /// Content did not hash to the digest it was asked for or announced with.
    #[error("{url}: content digest is {actual}, expected {expected} (the registry or something between it and us altered the content)")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },

    /// A body larger than this client accepts for its kind.
    #[error("{url}: {what} is larger than the {max} bytes allowed{}", .size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
    TooLarge {
        url: String,
        what: &'static str,
        /// The announced or counted size, when known; `None` when reading stopped at the limit.
        size: Option<u64>,
        max: u64,
    },

    /// The registry answered 2xx with something that is not what the protocol says.
    #[error("{url}: invalid answer from the registry: {message}")]
    InvalidResponse { url: String, message: String },

    /// Credentials could not be used (token endpoint refused, malformed challenge, bad config).
    #[error("{registry}: authentication failed: {message}{}", hint_suffix(.hint))]
    Auth {
        registry: String,
        message: String,
        hint: String,
    },

    /// The docker credentials file could not be read.
    #[error("{path}: {message}")]
    Config { path: String, message: String },

    /// Local content to push could not be read or is not what it claims to be.
    #[error("{what}: {message}")]
    Local { what: String, message: String },
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    }
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" (hint: {hint})")
    }
}

impl RegistryError {
    /// The HTTP status, when the failure was an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The documented exit code (see `crate::exit`) a command should end with for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            RegistryError::Reference(_) => exit::USAGE,
            RegistryError::Status { status, .. } if *status == 404 => exit::USAGE,
            RegistryError::Status { .. }
            | RegistryError::Transport { .. }
            | RegistryError::Auth { .. }
            | RegistryError::Config { .. } => exit::ENVIRONMENT,
            RegistryError::DigestMismatch { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::InvalidResponse { .. } => exit::CHECK_FAILED,
            RegistryError::Local { .. } => exit::USAGE,
        }
    }

    /// The same failure in the vocabulary of [`crate::image::ImageSource`] readers.
    pub fn into_source_error(self, what: &str) -> SourceError {
        let what = what.to_string();
        match self {
            RegistryError::Status { status: 404, .. } => SourceError::NotFound { what },
            RegistryError::TooLarge { size, max, .. } => SourceError::TooLarge {
                what,
                size: size.unwrap_or(max.saturating_add(1)),
                max,
            },
            e @ (RegistryError::Reference(_)
            | RegistryError::DigestMismatch { .. }
            | RegistryError::InvalidResponse { .. }) => SourceError::Invalid {
                what,
                message: e.to_string(),
            },
            e => SourceError::Transport {
                what,
                message: e.to_string(),
            },
        }
    }
}

/// What to tell the user to do about an error status from `registry` for `repository`.
pub(crate) fn hint_for_status(status: u16, registry: &str, repository: &str) -> String {
    match status {
        401 => format!(
            "run `rcross login {registry}` (or `docker login {registry}`); credentials are \
             read from ~/.docker/config.json (or $DOCKER_CONFIG/config.json)"
        ),
        403 => format!("the credentials for {registry} are not allowed to access {repository}"),
        404 => format!("check that {registry}/{repository} and the tag or digest exist"),
        408 | 429 => {
            "the registry is rate-limiting or overloaded; log in for higher limits or retry later"
                .to_string()
        }
        500..=599 => "the registry is failing; retry later".to_string(),
        _ => String::new(),
    }
}

/// A short, printable excerpt of a registry error body: `CODE: message` for each entry of the
/// distribution spec's `{"errors":[…]}`, else the trimmed text.
pub(crate) fn error_excerpt(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    sanitise(&text)
}

/// One line, no control characters, at most [`MAX_EXCERPT_CHARS`].
pub(crate) fn sanitise(text: &str) -> String {
    let mut out = String::new();
    let mut last_space = true;
    for c in text.trim().chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if out.chars().count() >= MAX_EXCERPT_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_from_distribution_errors() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(error_excerpt(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_excerpt(b"  oops\n\x1b[31mred\r\n"), "oops [31mred");
        assert_eq!(error_excerpt(b""), "");
        let long = "x".repeat(10_000);
        assert!(error_excerpt(long.as_bytes()).chars().count() <= MAX_EXCERPT_CHARS + 1);
    }

    #[test]
    fn messages_name_url_status_and_hint() {
        let e = RegistryError::Status {
            method: "GET",
            url: "https://ghcr.io/v2/o/a/manifests/1".into(),
            status: 401,
            excerpt: "UNAUTHORIZED: authentication required".into(),
            hint: hint_for_status(401, "ghcr.io", "o/a"),
        };
        let s = e.to_string();
        assert!(
            s.contains("GET https://ghcr.io/v2/o/a/manifests/1: HTTP 401: UNAUTHORIZED"),
            "{s}"
        );
        assert!(s.contains("docker login ghcr.io"), "{s}");
        assert_eq!(e.exit_code(), exit::ENVIRONMENT);
        let t = RegistryError::TooLarge {
            url: "u".into(),
            what: "manifest",
            size: None,
            max: 10,
        };
        assert_eq!(
            t.to_string(),
            "u: manifest is larger than the 10 bytes allowed"
        );
    }
}
