//! Credentials (docker's config.json `auths`) and the registry's `WWW-Authenticate` challenges.
//!
//! Credential helpers (`credsStore`, `credHelpers`) and OAuth identity tokens are not consulted
//! yet; [`DockerConfig::uses_helpers`] tells a caller when the file relies on them.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::error::RegistryError;
use super::reference::{DOCKER_HUB, DOCKER_HUB_AUTH_KEY};

/// config.json files larger than this are refused rather than read into memory.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A user name and password (or personal access token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic …` header.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The credentials docker login stored, keyed by registry host.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    /// (normalised host, original key, credentials), in file order.
    auths: Vec<(String, String, Credentials)>,
    uses_helpers: bool,
}

#[derive(serde::Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: HashMap<String, RawAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl DockerConfig {
    /// Where docker keeps its config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    /// Takes the two variables as arguments so callers resolve the environment in one place.
    pub fn default_path(docker_config: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
        match (docker_config, home) {
            (Some(dir), _) if !dir.is_empty() => Some(Path::new(dir).join("config.json")),
            (_, Some(home)) if !home.is_empty() => {
                Some(Path::new(home).join(".docker").join("config.json"))
            }
            _ => None,
        }
    }

    /// Reads a config file; a missing file means no credentials.
    pub fn load(path: &Path) -> Result<DockerConfig, RegistryError> {
        let fail = |message: String| RegistryError::Config {
            path: path.display().to_string(),
            message,
        };
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig::default())
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
            &mut bytes,
        )
        .map_err(|e| fail(e.to_string()))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(fail(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        DockerConfig::parse(&bytes).map_err(fail)
    }

    /// Parses config.json content. Errors never quote credential material.
    pub fn parse(json: &[u8]) -> Result<DockerConfig, String> {
        let raw: RawConfig =
            serde_json::from_slice(json).map_err(|e| format!("not a docker config file: {e}"))?;
        let mut auths = Vec::new();
        let mut keys: Vec<&String> = raw.auths.keys().collect();
        keys.sort();
        for key in keys {
            let Some(entry) = raw.auths.get(key) else {
                continue;
            };
            let credentials = match (&entry.auth, &entry.username, &entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => decode_auth(auth)
                    .ok_or_else(|| format!("auths[{key:?}].auth is not base64 of user:password"))?,
                (_, Some(username), Some(password)) => Credentials {
                    username: username.clone(),
                    password: password.clone(),
                },
                // Only an identity token or nothing: not usable without OAuth support.
                _ => continue,
            };
            auths.push((normalise_key(key), key.clone(), credentials));
        }
        Ok(DockerConfig {
            auths,
            uses_helpers: raw.creds_store.is_some_and(|s| !s.is_empty())
                || !raw.cred_helpers.is_empty(),
        })
    }

    /// A config holding exactly one registry's credentials (for `--username`-style options).
    pub fn with_credentials(registry: &str, credentials: Credentials) -> DockerConfig {
        DockerConfig {
            auths: vec![(normalise_key(registry), registry.to_string(), credentials)],
            uses_helpers: false,
        }
    }

    /// Whether the file names a credential helper; those are not consulted yet.
    pub fn uses_helpers(&self) -> bool {
        self.uses_helpers
    }

    /// Credentials for a registry as written in a reference (`docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`). An exact key wins over a spelling variant.
    pub fn credentials_for(&self, registry: &str) -> Option<&Credentials> {
        let exact = if registry == DOCKER_HUB {
            DOCKER_HUB_AUTH_KEY
        } else {
            registry
        };
        let wanted = normalise_key(registry);
        self.auths
            .iter()
            .find(|(_, key, _)| key == exact)
            .or_else(|| self.auths.iter().find(|(host, _, _)| *host == wanted))
            .map(|(_, _, credentials)| credentials)
    }
}

fn decode_auth(auth: &str) -> Option<Credentials> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials {
        username: username.to_string(),
        password: password.trim_end_matches('\n').to_string(),
    })
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/v2/` → `host:5000`.
fn normalise_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// An authentication challenge from a 401's `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// The best challenge among a response's `WWW-Authenticate` values (Bearer over Basic).
pub(crate) fn pick_challenge<'a>(values: impl Iterator<Item = &'a str>) -> Option<Challenge> {
    let mut best = None;
    for value in values {
        match parse_challenge(value) {
            Some(bearer @ Challenge::Bearer { .. }) => return Some(bearer),
            Some(Challenge::Basic) => best = Some(Challenge::Basic),
            None => {}
        }
    }
    best
}

/// `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"` or `Basic realm=…`.
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params)?;
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm").filter(|r| !r.is_empty())?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k=v, k="quoted \" value"` → pairs; `None` on malformed input.
fn parse_params(input: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_auths_with_docker_hub_key() {
        let json = format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "ghcr.io":{{"auth":"{}"}},
                "http://127.0.0.1:5000/v2/":{{"username":"u","password":"p"}},
                "quay.io":{{"identitytoken":"x"}}
            }},"credsStore":"desktop"}}"#,
            b64("hub:secret:with:colons"),
            b64("gh:tok")
        );
        let config = DockerConfig::parse(json.as_bytes()).unwrap();
        let hub = config.credentials_for("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret:with:colons")
        );
        assert_eq!(config.credentials_for("ghcr.io").unwrap().username, "gh");
        assert_eq!(
            config.credentials_for("127.0.0.1:5000").unwrap().password,
            "p"
        );
        assert!(config.credentials_for("quay.io").is_none());
        assert!(config.credentials_for("example.com").is_none());
        assert!(config.uses_helpers());
        assert!(!format!("{hub:?}").contains("secret"));
    }

    #[test]
    fn bad_config_errors_do_not_leak_secrets() {
        let err = DockerConfig::parse(br#"{"auths":{"r":{"auth":"!!!secret!!!"}}}"#).unwrap_err();
        assert!(err.contains("\"r\"") && !err.contains("secret"), "{err}");
        assert!(DockerConfig::parse(b"not json").is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(DockerConfig::load(&dir.path().join("missing.json"))
            .unwrap()
            .credentials_for("docker.io")
            .is_none());
    }

    #[test]
    fn default_path() {
        assert_eq!(
            DockerConfig::default_path(Some("/d"), Some("/h")),
            Some(PathBuf::from("/d/config.json"))
        );
        assert_eq!(
            DockerConfig::default_path(None, Some("/h")),
            Some(PathBuf::from("/h/.docker/config.json"))
        );
        assert_eq!(DockerConfig::default_path(Some(""), None), None);
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer  realm = "a\"b" , scope=x"#),
            Some(Challenge::Bearer {
                realm: "a\"b".into(),
                service: None,
                scope: Some("x".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None, "no realm");
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            pick_challenge(["Basic realm=x", r#"Bearer realm="r""#].into_iter()),
            Some(Challenge::Bearer {
                realm: "r".into(),
                service: None,
                scope: None
            })
        );
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
