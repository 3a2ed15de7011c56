//! `rcross login` / `logout`: check credentials against a registry the way `docker login` does
//! (the `/v2/` challenge, then a token request or a Basic request), and store or erase them
//! where the docker CLI would (docker/cli `cli/config/configfile/file.go`
//! `GetCredentialsStore`): the `credHelpers[registry]` helper, else the `credsStore` helper
//! (`docker-credential-NAME store` / `erase`), else `auths` in config.json.
//!
//! config.json is rewritten as a JSON value round trip, so keys rcross does not know survive;
//! it is written to a temporary file in the same directory and renamed over the old one
//! (readers never see half a file), created 0600 (an existing file keeps its mode), and the
//! read-modify-write runs under a lock on the directory, so concurrent logins to different
//! registries all land.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ureq::http;

use super::auth::{
    normalise_key, pick_challenge, server_url, Challenge, Credentials, DockerConfig,
};
use super::client::{describe_error, is_loopback_host, read_error_excerpt, transport_hint, Client};
use super::credentials::{HelperRunError, HelperRunner, HELPER_PREFIX, NOT_FOUND};
use super::error::{sanitise, RegistryError};
use super::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};
use crate::exit;

/// Why a login or logout did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The registry answered, and refused these credentials. Nothing was stored.
    #[error("{registry} refused the credentials of {username:?}: {detail} (nothing was stored; check the user name and password or token)")]
    Refused {
        registry: String,
        username: String,
        detail: String,
    },

    /// The registry could not be asked (unreachable, unexpected answer).
    #[error(transparent)]
    Registry(#[from] RegistryError),

    /// The credential helper could not store or erase.
    #[error(transparent)]
    Helper(Box<HelperError>),

    /// The Docker config file could not be read, parsed or written.
    #[error("{path}: {message}")]
    Config { path: String, message: String },

    /// The command line named no usable registry.
    #[error("{0}")]
    Usage(String),
}

/// A credential helper's failure to store or erase.
#[derive(Debug, thiserror::Error)]
#[error("credential helper {program} ({configured}) could not {action} the credentials for {registry}: {message} (hint: {hint})")]
pub struct HelperError {
    pub program: String,
    pub configured: String,
    pub action: &'static str,
    pub registry: String,
    pub message: String,
    pub hint: String,
}

impl LoginError {
    /// The documented exit code: refused credentials are a failed check (1), a bad argument a
    /// usage error (2), an unreachable registry, broken helper or unwritable file the host (3).
    pub fn exit_code(&self) -> u8 {
        match self {
            LoginError::Refused { .. } => exit::CHECK_FAILED,
            LoginError::Registry(e) => e.exit_code(),
            LoginError::Helper(_) | LoginError::Config { .. } => exit::ENVIRONMENT,
            LoginError::Usage(_) => exit::USAGE,
        }
    }
}

/// Where credentials were stored or erased.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Store {
    /// A credential helper program (`docker-credential-pass`).
    Helper { program: String },
    /// `auths` in the config file.
    File { path: PathBuf },
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Helper { program } => write!(f, "{program}"),
            Store::File { path } => write!(f, "{}", path.display()),
        }
    }
}

/// The registry as references write it (`ghcr.io`, `127.0.0.1:5000`, `docker.io`) from what
/// a user types after `login`: a scheme and a path are dropped, Docker Hub's names become
/// `docker.io`, no argument means Docker Hub (as with docker).
pub fn registry_name(arg: Option<&str>) -> Result<String, LoginError> {
    let Some(arg) = arg.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(DOCKER_HUB.to_string());
    };
    let name = normalise_key(arg);
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return Err(LoginError::Usage(format!(
            "{arg:?} is not a registry: give its host name and port, e.g. ghcr.io or 127.0.0.1:5000"
        )));
    }
    Ok(name)
}

/// Checks `credentials` against `registry` as `docker login` does: GET `/v2/`; a Basic
/// challenge is answered with the credentials, a Bearer challenge by asking its token server
/// for a token with them (no scope), which then must open `/v2/`.
pub fn check(client: &Client, registry: &str, credentials: &Credentials) -> Result<(), LoginError> {
    let host = if registry == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    };
    let plain = is_loopback_host(host)
        || client
            .options
            .insecure_registries
            .iter()
            .any(|r| r == registry || r == host);
    let url = format!("{}://{host}/v2/", if plain { "http" } else { "https" });
    let refused = |detail: String| LoginError::Refused {
        registry: registry.to_string(),
        username: credentials.username.clone(),
        detail,
    };
    let first = get(client, &url, None)?;
    let status = first.status().as_u16();
    if first.status().is_success() {
        // A registry that wants no credentials takes any; docker stores them all the same.
        return Ok(());
    }
    if status != 401 {
        return Err(unexpected("GET", &url, first));
    }
    let challenge = pick_challenge(
        first
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let authorization = match challenge {
        Some(Challenge::Bearer { realm, service, .. }) => {
            let allowed = realm.starts_with("https://") || (plain && realm.starts_with("http://"));
            if !allowed {
                return Err(RegistryError::Auth {
                    registry: registry.to_string(),
                    message: format!(
                        "token realm {:?} is not an https URL; refusing to send credentials to it",
                        sanitise(&realm)
                    ),
                    hint: String::new(),
                }
                .into());
            }
            let mut token_url = realm.clone();
            let mut separator = if token_url.contains('?') { '&' } else { '?' };
            if let Some(service) = service {
                token_url.push_str(&format!(
                    "{separator}service={}",
                    super::auth::percent_encode(&service)
                ));
                separator = '&';
            }
            token_url.push_str(&format!(
                "{separator}account={}",
                super::auth::percent_encode(&credentials.username)
            ));
            let answer = get(client, &token_url, Some(&credentials.basic_header()))?;
            let status = answer.status().as_u16();
            if matches!(status, 401 | 403) {
                return Err(refused(format!(
                    "its token server answered HTTP {status}{}",
                    excerpt(answer)
                )));
            }
            if !answer.status().is_success() {
                return Err(unexpected("GET", &token_url, answer));
            }
            #[derive(serde::Deserialize)]
            struct Token {
                #[serde(default)]
                token: Option<String>,
                #[serde(default)]
                access_token: Option<String>,
            }
            let body = answer
                .into_body()
                .with_config()
                .limit(super::client::MAX_TOKEN_RESPONSE_BYTES)
                .read_to_vec()
                .map_err(|e| RegistryError::InvalidResponse {
                    url: token_url.clone(),
                    message: format!("cannot read the token answer: {e}"),
                })?;
            let token: Token =
                serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidResponse {
                    url: token_url.clone(),
                    message: format!("the token answer is not JSON ({:?} error)", e.classify()),
                })?;
            let token = token
                .token
                .filter(|t| !t.is_empty())
                .or(token.access_token.filter(|t| !t.is_empty()))
                .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| RegistryError::InvalidResponse {
                    url: token_url.clone(),
                    message: "the token server answered without a usable token".to_string(),
                })?;
            format!("Bearer {token}")
        }
        Some(Challenge::Basic) | None => credentials.basic_header(),
    };
    let second = get(client, &url, Some(&authorization))?;
    let status = second.status().as_u16();
    if second.status().is_success() {
        return Ok(());
    }
    if matches!(status, 401 | 403) {
        return Err(refused(format!(
            "GET {url} answered HTTP {status}{}",
            excerpt(second)
        )));
    }
    Err(unexpected("GET", &url, second))
}

fn get(
    client: &Client,
    url: &str,
    authorization: Option<&str>,
) -> Result<http::Response<ureq::Body>, RegistryError> {
    let mut request = client.agent.get(url).header("Accept", "application/json");
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    request.call().map_err(|error| RegistryError::Transport {
        method: "GET",
        hint: transport_hint(&error, url),
        message: describe_error(&error),
        url: url.to_string(),
        attempts: 1,
    })
}

fn excerpt(response: http::Response<ureq::Body>) -> String {
    let text = read_error_excerpt(response);
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn unexpected(method: &'static str, url: &str, response: http::Response<ureq::Body>) -> LoginError {
    let status = response.status().as_u16();
    LoginError::Registry(RegistryError::Status {
        method,
        url: url.to_string(),
        status,
        excerpt: read_error_excerpt(response),
        hint: "check that this is a registry (its /v2/ endpoint) and that it is up".to_string(),
    })
}

/// Stores `credentials` for `registry` where the config file at `path` says (see the module
/// documentation); returns where. A helper gets `{"ServerURL","Username","Secret"}` on stdin;
/// as docker does, `auths` then keeps an empty entry for the registry.
pub fn store(
    path: &Path,
    registry: &str,
    credentials: &Credentials,
    runner: &dyn HelperRunner,
) -> Result<Store, LoginError> {
    let server = server_url(registry).to_string();
    edit_config(path, |config, value| {
        let entry = match config.helper_for(registry) {
            Some(name) => {
                let program = format!("{HELPER_PREFIX}{name}");
                let payload = serde_json::json!({
                    "ServerURL": server,
                    "Username": credentials.username,
                    "Secret": credentials.password,
                });
                let input = serde_json::to_vec(&payload).map_err(|e| LoginError::Config {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                run_helper(runner, config, path, registry, &program, "store", &input)?;
                (
                    serde_json::json!({}),
                    Store::Helper {
                        program: program.clone(),
                    },
                )
            }
            None => {
                let auth = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", credentials.username, credentials.password));
                (
                    serde_json::json!({ "auth": auth }),
                    Store::File {
                        path: path.to_path_buf(),
                    },
                )
            }
        };
        let auths = auths_of(value, path)?;
        remove_entries(auths, registry);
        auths.insert(server.clone(), entry.0);
        Ok(entry.1)
    })
}

/// What `logout` removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    /// The helper asked to erase, if one holds the registry's credentials.
    pub helper: Option<String>,
    /// Whether the helper had credentials to erase.
    pub helper_had_credentials: bool,
    /// `auths` keys removed from the config file.
    pub file_entries: Vec<String>,
}

impl Erased {
    /// Whether anything was logged out of.
    pub fn any(&self) -> bool {
        self.helper_had_credentials || !self.file_entries.is_empty()
    }
}

/// Removes `registry`'s credentials: from its helper (`erase`) and every `auths` key naming
/// the same host. Other registries' entries are untouched. A missing config file is nothing
/// to erase.
pub fn erase(path: &Path, registry: &str, runner: &dyn HelperRunner) -> Result<Erased, LoginError> {
    if !path.exists() {
        return Ok(Erased {
            helper: None,
            helper_had_credentials: false,
            file_entries: Vec::new(),
        });
    }
    let server = server_url(registry).to_string();
    edit_config(path, |config, value| {
        let mut erased = Erased {
            helper: None,
            helper_had_credentials: false,
            file_entries: Vec::new(),
        };
        if let Some(name) = config.helper_for(registry) {
            let program = format!("{HELPER_PREFIX}{name}");
            erased.helper_had_credentials = run_helper(
                runner,
                config,
                path,
                registry,
                &program,
                "erase",
                server.as_bytes(),
            )?;
            erased.helper = Some(program);
        }
        erased.file_entries = remove_entries(auths_of(value, path)?, registry);
        Ok(erased)
    })
}

/// Runs `program action`; `Ok(false)` when the helper says it has no such credentials.
fn run_helper(
    runner: &dyn HelperRunner,
    config: &DockerConfig,
    path: &Path,
    registry: &str,
    program: &str,
    action: &'static str,
    input: &[u8],
) -> Result<bool, LoginError> {
    let configured = if config.own_helper(registry).is_some() {
        format!(
            "credHelpers[{:?}] in {}",
            server_url(registry),
            path.display()
        )
    } else {
        format!("credsStore in {}", path.display())
    };
    let fail = |message: String, hint: String| {
        LoginError::Helper(Box::new(HelperError {
            program: program.to_string(),
            configured: configured.clone(),
            action,
            registry: registry.to_string(),
            message,
            hint,
        }))
    };
    let out = match runner.run(program, action, input) {
        Ok(out) => out,
        Err(HelperRunError::NotInstalled) => {
            return Err(fail(
                "no such program on PATH".to_string(),
                format!("install {program} or put it on PATH, or remove {configured}"),
            ))
        }
        Err(e) => {
            let message = match e {
                HelperRunError::TimedOut(after) => {
                    format!("it did not finish within {} s", after.as_secs())
                }
                HelperRunError::TooMuchOutput(max) => format!("it wrote more than {max} bytes"),
                HelperRunError::Io(e) => format!("cannot run it: {e}"),
                HelperRunError::NotInstalled => "no such program on PATH".to_string(),
            };
            return Err(fail(
                message,
                format!("check that `{program} {action}` works"),
            ));
        }
    };
    if out.success {
        return Ok(true);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if action == "erase" && (stdout.trim() == NOT_FOUND || stderr.trim() == NOT_FOUND) {
        return Ok(false);
    }
    // Never quote what we sent: it holds the secret. What the helper said is its error.
    let said = sanitise(&format!("{} {}", stdout.trim(), stderr.trim()));
    Err(fail(
        if said.is_empty() {
            out.status
        } else {
            format!("{}: {said}", out.status)
        },
        format!("fix the helper, or remove {configured} to store credentials in the file"),
    ))
}

/// The `auths` object of a config value, created when missing.
fn auths_of<'a>(
    value: &'a mut serde_json::Value,
    path: &Path,
) -> Result<&'a mut serde_json::Map<String, serde_json::Value>, LoginError> {
    let not_object = || LoginError::Config {
        path: path.display().to_string(),
        message: "`auths` is not a JSON object; fix or remove it".to_string(),
    };
    let top = value.as_object_mut().ok_or_else(not_object)?;
    let auths = top
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    auths.as_object_mut().ok_or_else(not_object)
}

/// Removes every `auths` key that names `registry`'s host (`https://host/v2/`, `host`);
/// returns the keys removed.
fn remove_entries(
    auths: &mut serde_json::Map<String, serde_json::Value>,
    registry: &str,
) -> Vec<String> {
    let wanted = normalise_key(registry);
    let keys: Vec<String> = auths
        .keys()
        .filter(|k| normalise_key(k) == wanted)
        .cloned()
        .collect();
    for k in &keys {
        auths.remove(k);
    }
    keys
}

/// Reads the config file at `path` (missing: `{}`), lets `change` edit it as a JSON value
/// (given the parsed config to choose a helper), and writes it back atomically, all under an
/// exclusive lock on the directory. Nothing is written when `change` fails.
fn edit_config<T>(
    path: &Path,
    change: impl FnOnce(&DockerConfig, &mut serde_json::Value) -> Result<T, LoginError>,
) -> Result<T, LoginError> {
    let fail = |path: &Path, message: String| LoginError::Config {
        path: path.display().to_string(),
        message,
    };
    // A config.json that is a symbolic link (dotfile managers) stays one: write its target.
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|e| fail(path, e.to_string()))?
        }
        _ => path.to_path_buf(),
    };
    let path = path.as_path();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(&dir, format!("cannot create the directory: {e}")))?;
    let dir_handle = std::fs::File::open(&dir).map_err(|e| fail(&dir, e.to_string()))?;
    let _lock = nix::fcntl::Flock::lock(dir_handle, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| fail(&dir, format!("cannot lock the directory: {e}")))?;

    let existing = match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(path, e.to_string())),
    };
    let (config, mut value) = match &existing {
        Some(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => {
            let config = DockerConfig::parse(bytes).map_err(|m| fail(path, m))?;
            let value: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| fail(path, format!("not a docker config file: {e}")))?;
            if !value.is_object() {
                return Err(fail(path, "not a JSON object".to_string()));
            }
            (config, value)
        }
        _ => (
            DockerConfig::default(),
            serde_json::Value::Object(serde_json::Map::new()),
        ),
    };
    let result = change(&config, &mut value)?;

    let mut text = serde_json::to_vec_pretty(&value).map_err(|e| fail(path, e.to_string()))?;
    text.push(b'\n');
    let mut temp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(&dir)
        .map_err(|e| fail(&dir, format!("cannot create a temporary file: {e}")))?;
    // New files are 0600 (tempfile's default); an existing file keeps its mode and owner.
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt as _;
        let mode = meta.permissions().mode() & 0o7777;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| fail(temp.path(), e.to_string()))?;
        // Only root may give a file away; for everyone else it is theirs already.
        let _ = std::os::unix::fs::fchown(temp.as_file(), Some(meta.uid()), Some(meta.gid()));
    }
    temp.write_all(&text)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| fail(temp.path(), e.to_string()))?;
    temp.persist(path)
        .map_err(|e| fail(path, format!("cannot replace it: {}", e.error)))?;
    // The rename is durable once the directory is.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::HelperOutput;
    use std::sync::Mutex;

    /// Records every run; answers success, or "not found" for erase of an unknown server.
    #[derive(Default)]
    struct Recorder {
        runs: Mutex<Vec<(String, String, String)>>,
        fail: bool,
    }

    impl HelperRunner for Recorder {
        fn get(&self, _: &str, _: &str) -> Result<HelperOutput, HelperRunError> {
            Err(HelperRunError::NotInstalled)
        }
        fn run(
            &self,
            program: &str,
            action: &str,
            input: &[u8],
        ) -> Result<HelperOutput, HelperRunError> {
            self.runs.lock().unwrap().push((
                program.into(),
                action.into(),
                String::from_utf8_lossy(input).into(),
            ));
            Ok(HelperOutput {
                success: !self.fail,
                status: if self.fail {
                    "exit status: 1".into()
                } else {
                    "exit status: 0".into()
                },
                stdout: if self.fail {
                    b"keychain locked".to_vec()
                } else {
                    Vec::new()
                },
                stderr: Vec::new(),
            })
        }
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    fn read(path: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn registry_names() {
        assert_eq!(registry_name(None).unwrap(), "docker.io");
        assert_eq!(
            registry_name(Some("https://index.docker.io/v1/")).unwrap(),
            "docker.io"
        );
        assert_eq!(
            registry_name(Some("http://127.0.0.1:5000/v2/")).unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_name(Some("GHCR.io")).unwrap(), "ghcr.io");
        assert!(registry_name(Some("a b")).is_err());
    }

    #[test]
    fn file_store_keeps_everything_else_and_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        let runner = Recorder::default();
        let at = store(&path, "127.0.0.1:5000", &creds("u", "p"), &runner).unwrap();
        assert_eq!(at, Store::File { path: path.clone() });
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path)["auths"]["127.0.0.1:5000"]["auth"], "dTpw");

        std::fs::write(
            &path,
            r#"{"auths":{"other.io":{"auth":"eDp5","email":"e"},"http://127.0.0.1:5000/v2/":{"identitytoken":"old"}},
               "proxies":{"default":{"httpProxy":"http://p"}},"psFormat":"x"}"#,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        store(&path, "127.0.0.1:5000", &creds("v", "q"), &runner).unwrap();
        let v = read(&path);
        assert_eq!(v["auths"]["other.io"]["email"], "e");
        assert_eq!(v["proxies"]["default"]["httpProxy"], "http://p");
        assert_eq!(v["psFormat"], "x");
        // The old spelling with its identity token would have won over the new password.
        assert!(v["auths"].get("http://127.0.0.1:5000/v2/").is_none());
        let config = DockerConfig::load(&path).unwrap();
        assert_eq!(
            config.credentials_for("127.0.0.1:5000"),
            Some(&creds("v", "q"))
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "an existing file keeps its mode");
        assert!(runner.runs.lock().unwrap().is_empty());
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);

        let erased = erase(&path, "127.0.0.1:5000", &runner).unwrap();
        assert_eq!(erased.file_entries, vec!["127.0.0.1:5000".to_string()]);
        assert!(erased.any());
        let v = read(&path);
        assert!(v["auths"].get("127.0.0.1:5000").is_none());
        assert_eq!(v["auths"]["other.io"]["auth"], "eDp5");
        assert!(!erase(&path, "127.0.0.1:5000", &runner).unwrap().any());
    }

    #[test]
    fn helpers_get_the_secret_on_stdin_and_the_file_an_empty_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"credsStore":"desktop","credHelpers":{"ghcr.io":"gh"}}"#,
        )
        .unwrap();
        let runner = Recorder::default();
        let at = store(&path, "ghcr.io", &creds("me", "tok"), &runner).unwrap();
        assert_eq!(
            at,
            Store::Helper {
                program: "docker-credential-gh".into()
            }
        );
        store(&path, "docker.io", &creds("hub", "pw"), &runner).unwrap();
        let runs = runner.runs.lock().unwrap().clone();
        assert_eq!(runs[0].0, "docker-credential-gh");
        assert_eq!(runs[0].1, "store");
        let sent: serde_json::Value = serde_json::from_str(&runs[0].2).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"ServerURL":"ghcr.io","Username":"me","Secret":"tok"})
        );
        assert_eq!(runs[1].0, "docker-credential-desktop");
        assert!(runs[1].2.contains("https://index.docker.io/v1/"));
        let v = read(&path);
        assert_eq!(v["auths"]["ghcr.io"], serde_json::json!({}));
        assert!(!v.to_string().contains("tok"), "no secret in the file");
        assert_eq!(v["credsStore"], "desktop");

        let erased = erase(&path, "ghcr.io", &runner).unwrap();
        assert_eq!(erased.helper.as_deref(), Some("docker-credential-gh"));
        let last = runner.runs.lock().unwrap().last().cloned().unwrap();
        assert_eq!((last.1.as_str(), last.2.as_str()), ("erase", "ghcr.io"));
        assert!(read(&path)["auths"].get("ghcr.io").is_none());
    }

    #[test]
    fn a_failing_helper_stores_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let before = r#"{"credsStore":"locked"}"#;
        std::fs::write(&path, before).unwrap();
        let runner = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let e = store(&path, "a.io", &creds("u", "hunter2"), &runner).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("docker-credential-locked")
                && text.contains("keychain locked")
                && text.contains("credsStore")
                && !text.contains("hunter2"),
            "{text}"
        );
        assert_eq!(e.exit_code(), exit::ENVIRONMENT);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn a_broken_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = store(&path, "a.io", &creds("u", "p"), &Recorder::default()).unwrap_err();
        assert!(e.to_string().contains("config.json"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
    }

    #[test]
    fn concurrent_stores_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::thread::scope(|s| {
            for i in 0..16 {
                let path = &path;
                s.spawn(move || {
                    store(
                        path,
                        &format!("r{i}.example"),
                        &creds("u", "p"),
                        &Recorder::default(),
                    )
                    .unwrap()
                });
            }
        });
        let v = read(&path);
        assert_eq!(v["auths"].as_object().unwrap().len(), 16);
    }
}
