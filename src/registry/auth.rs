//! The Docker config file (`auths`, `credsStore`, `credHelpers`) and the registry's
//! `WWW-Authenticate` challenges and bearer scopes. Running credential helpers and choosing
//! among the sources is [`super::credentials`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// What a registry is authenticated with: a user name and password, or an identity token
/// (an OAuth refresh token, which only a token server accepts).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Basic(Credentials),
    IdentityToken(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Basic(c) => c.fmt(f),
            Secret::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// The credentials docker login stored, keyed by registry host, and the credential helpers
/// the file names.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    /// (normalised host, original key, secret), sorted by key.
    auths: Vec<(String, String, Secret)>,
    /// `credsStore`: the helper for every registry without its own.
    creds_store: Option<String>,
    /// `credHelpers`: (normalised host, original key, helper suffix), sorted by key.
    cred_helpers: Vec<(String, String, String)>,
    /// The file this came from, for messages.
    path: Option<PathBuf>,
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
    #[serde(default)]
    identitytoken: Option<String>,
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
        let mut config = DockerConfig::parse(&bytes).map_err(fail)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
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
            // As docker's file store: an identity token wins over a user name and password.
            let secret = match (
                &entry.identitytoken,
                &entry.auth,
                &entry.username,
                &entry.password,
            ) {
                (Some(token), _, _, _) if !token.is_empty() => Secret::IdentityToken(token.clone()),
                (_, Some(auth), _, _) if !auth.is_empty() => {
                    Secret::Basic(decode_auth(auth).ok_or_else(|| {
                        format!("auths[{key:?}].auth is not base64 of user:password")
                    })?)
                }
                (_, _, Some(username), Some(password)) => Secret::Basic(Credentials {
                    username: username.clone(),
                    password: password.clone(),
                }),
                // `{}`: docker login wrote the secret to a credential helper.
                _ => continue,
            };
            auths.push((normalise_key(key), key.clone(), secret));
        }
        let mut cred_helpers: Vec<(String, String, String)> = raw
            .cred_helpers
            .into_iter()
            .filter(|(_, helper)| !helper.is_empty())
            .map(|(key, helper)| (normalise_key(&key), key, helper))
            .collect();
        cred_helpers.sort_by(|a, b| a.1.cmp(&b.1));
        for (_, key, helper) in &cred_helpers {
            check_helper_name(helper).map_err(|why| format!("credHelpers[{key:?}] {why}"))?;
        }
        let creds_store = raw.creds_store.filter(|s| !s.is_empty());
        if let Some(helper) = &creds_store {
            check_helper_name(helper).map_err(|why| format!("credsStore {why}"))?;
        }
        Ok(DockerConfig {
            auths,
            creds_store,
            cred_helpers,
            path: None,
        })
    }

    /// A config holding exactly one registry's credentials (for `--username`-style options).
    pub fn with_credentials(registry: &str, credentials: Credentials) -> DockerConfig {
        DockerConfig {
            auths: vec![(
                normalise_key(registry),
                registry.to_string(),
                Secret::Basic(credentials),
            )],
            ..DockerConfig::default()
        }
    }

    /// Whether the file names a credential helper (`credsStore` or any `credHelpers`).
    pub fn uses_helpers(&self) -> bool {
        self.creds_store.is_some() || !self.cred_helpers.is_empty()
    }

    /// The file this was read from, if it was.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The helper suffix (`pass` for `docker-credential-pass`) that holds `registry`'s
    /// credentials, as the docker CLI picks it: `credHelpers[registry]`, else `credsStore`.
    /// `None`: the file's `auths` hold them.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        self.own_helper(registry).or(self.creds_store.as_deref())
    }

    /// `registry`'s own `credHelpers` entry.
    pub(crate) fn own_helper(&self, registry: &str) -> Option<&str> {
        find_key(&self.cred_helpers, registry).map(|(_, _, helper)| helper.as_str())
    }

    /// Credentials for a registry as written in a reference (`docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`) from the file's `auths` only (no helper is run; an identity token is
    /// not a user name and password). An exact key wins over a spelling variant.
    pub fn credentials_for(&self, registry: &str) -> Option<&Credentials> {
        match self.secret_in_file(registry) {
            Some(Secret::Basic(credentials)) => Some(credentials),
            _ => None,
        }
    }

    /// The secret `auths` holds for `registry`.
    pub fn secret_in_file(&self, registry: &str) -> Option<&Secret> {
        find_key(&self.auths, registry).map(|(_, _, secret)| secret)
    }
}

/// The key docker uses for `registry` in config.json and with credential helpers: Docker
/// Hub's historical URL, else the registry as written (`ghcr.io`, `127.0.0.1:5000`).
pub fn server_url(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY
    } else {
        registry
    }
}

/// The entry of `entries` (normalised key, key, value) for `registry`: the exact key first,
/// then any spelling of the same host.
fn find_key<'a, T>(
    entries: &'a [(String, String, T)],
    registry: &str,
) -> Option<&'a (String, String, T)> {
    let exact = server_url(registry);
    let wanted = normalise_key(registry);
    entries
        .iter()
        .find(|(_, key, _)| key == exact)
        .or_else(|| entries.iter().find(|(host, _, _)| *host == wanted))
}

/// A helper suffix becomes part of a program name looked up on PATH: no path separators, no
/// option-looking names.
fn check_helper_name(helper: &str) -> Result<(), String> {
    let ok = !helper.starts_with('-')
        && helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{helper:?} is not a credential helper name (docker-credential-NAME, NAME of letters, digits, -, _ and .)"
        ))
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
pub(crate) fn normalise_key(key: &str) -> String {
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

/// A set of token scopes (`repository:team/app:pull,push`), as actions per resource, so that
/// `pull,push` and `push,pull` are the same scope and a token granted `pull,push` covers a
/// request that needs only `pull`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scopes(BTreeMap<(String, String), BTreeSet<String>>);

impl Scopes {
    /// Space-separated scopes, as in a challenge's `scope` or a token answer's `scope`.
    /// Malformed entries are dropped: they cannot be asked for meaningfully.
    pub(crate) fn parse(list: &str) -> Scopes {
        let mut scopes = Scopes::default();
        for one in list.split_whitespace() {
            // TYPE:NAME:ACTIONS where NAME may itself hold ':' (e.g. a registry port).
            let Some((resource, actions)) = one.rsplit_once(':') else {
                continue;
            };
            let Some((kind, name)) = resource.split_once(':') else {
                continue;
            };
            if kind.is_empty() || name.is_empty() {
                continue;
            }
            let entry = scopes
                .0
                .entry((kind.to_string(), name.to_string()))
                .or_default();
            entry.extend(
                actions
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
            );
        }
        scopes.0.retain(|_, actions| !actions.is_empty());
        scopes
    }

    /// Every scope of `self` and of `other`.
    pub(crate) fn union(&self, other: &Scopes) -> Scopes {
        let mut out = self.clone();
        for (resource, actions) in &other.0 {
            out.0
                .entry(resource.clone())
                .or_default()
                .extend(actions.iter().cloned());
        }
        out
    }

    /// Whether a token granted `self` may do everything `needed` names.
    pub(crate) fn covers(&self, needed: &Scopes) -> bool {
        needed.0.iter().all(|(resource, actions)| {
            self.0
                .get(resource)
                .is_some_and(|granted| actions.is_subset(granted))
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One string per resource (`repository:team/app:pull,push`), each to be sent as its own
    /// `scope=` parameter, as the distribution token spec, docker and containerd do.
    pub(crate) fn to_params(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|((kind, name), actions)| {
                let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
                format!("{kind}:{name}:{}", actions.join(","))
            })
            .collect()
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
    fn scopes_union_cover_and_params() {
        let asked = Scopes::parse("repository:team/app:pull");
        let needed = Scopes::parse("repository:team/app:push,pull repository:base/os:pull");
        let union = asked.union(&needed);
        assert_eq!(
            union.to_params(),
            vec![
                "repository:base/os:pull".to_string(),
                "repository:team/app:pull,push".to_string()
            ]
        );
        assert!(union.covers(&needed) && union.covers(&asked));
        assert!(!asked.covers(&needed));
        assert!(union.covers(&Scopes::default()));
        let odd = Scopes::parse("repository:host:5000/x:pull junk :a:b repository:y:");
        assert_eq!(
            odd.to_params(),
            vec!["repository:host:5000/x:pull".to_string()]
        );
        assert!(Scopes::parse("").is_empty());
    }

    #[test]
    fn helpers_and_identity_tokens_in_the_file() {
        let config = DockerConfig::parse(
            br#"{"auths":{"https://index.docker.io/v1/":{},"ghcr.io":{"auth":"dTpw","identitytoken":"refresh"}},
                "credsStore":"desktop","credHelpers":{"https://ghcr.io":"gh","127.0.0.1:5000":"pass"}}"#,
        )
        .unwrap();
        assert_eq!(config.helper_for("ghcr.io"), Some("gh"));
        assert_eq!(config.helper_for("127.0.0.1:5000"), Some("pass"));
        assert_eq!(config.helper_for("docker.io"), Some("desktop"));
        assert_eq!(
            config.secret_in_file("ghcr.io"),
            Some(&Secret::IdentityToken("refresh".into()))
        );
        assert!(config.secret_in_file("docker.io").is_none());
        assert!(!format!("{:?}", config.secret_in_file("ghcr.io")).contains("refresh"));
        assert_eq!(DockerConfig::default().helper_for("ghcr.io"), None);
        for bad in [
            r#"{"credsStore":"../../bin/sh"}"#,
            r#"{"credHelpers":{"r":"-rf"}}"#,
        ] {
            let e = DockerConfig::parse(bad.as_bytes()).unwrap_err();
            assert!(e.contains("not a credential helper name"), "{e}");
        }
        assert_eq!(server_url("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_url("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
