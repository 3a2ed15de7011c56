//! Where a registry's credentials come from, chosen as the docker CLI chooses them
//! (docker/cli `cli/config/configfile/file.go`, `GetCredentialsStore` and
//! `getConfiguredCredentialStore`): the helper `credHelpers[registry]` names, else the
//! `credsStore` helper, else the file's `auths`. A helper, once chosen, is the only source for
//! that registry; its "credentials not found in native keychain" means anonymous, as in the
//! CLI's native store (`cli/config/credentials/native_store.go`).
//!
//! Helpers speak docker/docker-credential-helpers' protocol: `docker-credential-NAME get` with
//! the server URL on stdin answers `{"ServerURL","Username","Secret"}` on stdout; a `Username`
//! of `<token>` makes `Secret` an identity token. Every run is bounded in time and output.
//!
//! One [`CredentialStore`] serves the registry client and the Docker engine's pulls, so both
//! see the same credentials; it runs each helper at most once per registry.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::{server_url, Credentials, DockerConfig, Secret};
use super::error::{sanitise, RegistryError};

/// Helper programs are `docker-credential-` + the name in the config file.
pub const HELPER_PREFIX: &str = "docker-credential-";
/// A helper that has not answered by then is killed (cloud helpers may fetch a token first).
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(60);
/// A helper writing more than this (on stdout or stderr) is killed and refused.
pub const MAX_HELPER_OUTPUT: usize = 1024 * 1024;
/// What every helper prints, exiting non-zero, when it has nothing for the server.
pub(crate) const NOT_FOUND: &str = "credentials not found in native keychain";
/// The user name under which helpers keep identity tokens.
const TOKEN_USERNAME: &str = "<token>";

/// Where a secret came from, for messages about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A credential helper program (`docker-credential-pass`).
    Helper(String),
    /// The config file's `auths` (or credentials given directly, without a file).
    File(Option<PathBuf>),
}

/// A secret and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretWithSource {
    pub secret: Secret,
    pub source: Source,
}

/// What a helper run produced.
#[derive(Debug, Clone)]
pub struct HelperOutput {
    pub success: bool,
    /// How it ended, for messages (`exit status: 1`).
    pub status: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a helper could not be run to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperRunError {
    NotInstalled,
    TimedOut(Duration),
    TooMuchOutput(usize),
    Io(String),
}

/// Runs `PROGRAM get` with the server URL on stdin. A trait so the pure choice and
/// interpretation can be tested without processes.
pub trait HelperRunner: Send + Sync {
    fn get(&self, program: &str, server_url: &str) -> Result<HelperOutput, HelperRunError>;

    /// Runs `PROGRAM ACTION` (`store`, `erase`) with `input` on stdin, for `rcross login` and
    /// `logout`. Runners that only read credentials need not support it.
    fn run(
        &self,
        program: &str,
        action: &str,
        input: &[u8],
    ) -> Result<HelperOutput, HelperRunError> {
        let _ = (program, input);
        Err(HelperRunError::Io(format!(
            "this credential runner cannot `{action}`"
        )))
    }
}

/// Runs helpers as child processes found on PATH, bounded by `timeout` and `max_output`.
#[derive(Debug, Clone)]
pub struct ProcessRunner {
    pub timeout: Duration,
    pub max_output: usize,
}

impl Default for ProcessRunner {
    fn default() -> Self {
        ProcessRunner {
            timeout: HELPER_TIMEOUT,
            max_output: MAX_HELPER_OUTPUT,
        }
    }
}

impl HelperRunner for ProcessRunner {
    fn get(&self, program: &str, server_url: &str) -> Result<HelperOutput, HelperRunError> {
        self.run(program, "get", server_url.as_bytes())
    }

    fn run(
        &self,
        program: &str,
        action: &str,
        input: &[u8],
    ) -> Result<HelperOutput, HelperRunError> {
        let path = which::which(program).map_err(|_| HelperRunError::NotInstalled)?;
        let mut child = Command::new(path)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HelperRunError::Io(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading makes this fail; its answer still counts.
            let _ = stdin.write_all(input);
        }
        let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
        let limit = u64::try_from(self.max_output)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        for (slot, pipe) in pipes.into_iter().enumerate() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(pipe) = pipe {
                    let _ = pipe.take(limit).read_to_end(&mut bytes);
                }
                let _ = tx.send((slot, bytes));
            });
        }
        drop(tx);

        let deadline = Instant::now() + self.timeout;
        let mut outputs: [Option<Vec<u8>>; 2] = [None, None];
        let mut status = None;
        loop {
            while let Ok((slot, bytes)) = rx.try_recv() {
                if bytes.len() > self.max_output {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HelperRunError::TooMuchOutput(self.max_output));
                }
                if let Some(out) = outputs.get_mut(slot) {
                    *out = Some(bytes);
                }
            }
            if status.is_none() {
                status = child
                    .try_wait()
                    .map_err(|e| HelperRunError::Io(e.to_string()))?;
            }
            if let (Some(status), [Some(_), Some(_)]) = (status, &outputs) {
                let [stdout, stderr] = outputs;
                return Ok(HelperOutput {
                    success: status.success(),
                    status: status.to_string(),
                    stdout: stdout.unwrap_or_default(),
                    stderr: stderr.unwrap_or_default(),
                });
            }
            // Also when the helper exited but something it started still holds its output.
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HelperRunError::TimedOut(self.timeout));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The credentials of every registry, from one Docker config file and its helpers.
pub struct CredentialStore {
    config: DockerConfig,
    runner: Arc<dyn HelperRunner>,
    /// Registry → what its source answered (errors are not kept: they end the operation).
    answers: Mutex<HashMap<String, Option<SecretWithSource>>>,
    /// Held while a helper runs, so parallel requests that all met a 401 run it once.
    running: Mutex<()>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("config", &self.config.path())
            .finish_non_exhaustive()
    }
}

impl CredentialStore {
    /// Helpers run as processes found on PATH.
    pub fn new(config: DockerConfig) -> CredentialStore {
        CredentialStore::with_runner(config, Arc::new(ProcessRunner::default()))
    }

    pub fn with_runner(config: DockerConfig, runner: Arc<dyn HelperRunner>) -> CredentialStore {
        CredentialStore {
            config,
            runner,
            answers: Mutex::new(HashMap::new()),
            running: Mutex::new(()),
        }
    }

    /// The store of this process's Docker config file (`$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`; none at all means no credentials). Shared by every caller
    /// that names the same file, so the registry client and the engine's pulls see the same
    /// answers and each helper runs once per registry per process; a file that cannot be read
    /// is an error each time.
    pub fn from_environment() -> Result<Arc<CredentialStore>, RegistryError> {
        static SHARED: Mutex<Option<(Option<PathBuf>, Arc<CredentialStore>)>> = Mutex::new(None);
        let env = |k: &str| std::env::var(k).ok();
        let path =
            DockerConfig::default_path(env("DOCKER_CONFIG").as_deref(), env("HOME").as_deref());
        let mut shared = SHARED.lock().map_err(|_| RegistryError::Config {
            path: path
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
            message: "the credential store's lock is poisoned".to_string(),
        })?;
        if let Some((cached, store)) = shared.as_ref() {
            if *cached == path {
                return Ok(Arc::clone(store));
            }
        }
        let config = match &path {
            Some(path) => DockerConfig::load(path)?,
            None => DockerConfig::default(),
        };
        let store = Arc::new(CredentialStore::new(config));
        *shared = Some((path, Arc::clone(&store)));
        Ok(store)
    }

    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The helper program that holds `registry`'s credentials, if one is configured.
    pub fn helper_program(&self, registry: &str) -> Option<String> {
        self.config
            .helper_for(registry)
            .map(|name| format!("{HELPER_PREFIX}{name}"))
    }

    /// Whether the config names any source for `registry` (without running a helper).
    pub fn has_source(&self, registry: &str) -> bool {
        self.config.helper_for(registry).is_some() || self.config.secret_in_file(registry).is_some()
    }

    /// The secret for `registry` (as written in references: `docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`), running its helper the first time. `Ok(None)`: no credentials, the
    /// registry is used anonymously.
    pub fn lookup(&self, registry: &str) -> Result<Option<SecretWithSource>, RegistryError> {
        if let Some(answer) = self.answered(registry) {
            return Ok(answer);
        }
        // A poisoned lock only means another lookup panicked; running again is safe.
        let _running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(answer) = self.answered(registry) {
            return Ok(answer);
        }
        let answer = match self.config.helper_for(registry) {
            Some(name) => {
                let program = format!("{HELPER_PREFIX}{name}");
                let url = server_url(registry);
                let run = self.runner.get(&program, url);
                interpret(run)
                    .map_err(|why| self.helper_error(&program, registry, why))?
                    .map(|secret| SecretWithSource {
                        secret,
                        source: Source::Helper(program),
                    })
            }
            None => self
                .config
                .secret_in_file(registry)
                .map(|secret| SecretWithSource {
                    secret: secret.clone(),
                    source: Source::File(self.config.path().map(PathBuf::from)),
                }),
        };
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(registry.to_string(), answer.clone());
        }
        Ok(answer)
    }

    /// What [`CredentialStore::lookup`] answered for `registry` before, without running
    /// anything.
    pub fn answered(&self, registry: &str) -> Option<Option<SecretWithSource>> {
        self.answers
            .lock()
            .ok()
            .and_then(|answers| answers.get(registry).cloned())
    }

    /// What to do about a 401 from `registry`, given what we had to offer it.
    pub fn unauthorized_hint(&self, registry: &str) -> String {
        let config = self.config.path().map_or(
            "~/.docker/config.json (or $DOCKER_CONFIG/config.json)".to_string(),
            |p| p.display().to_string(),
        );
        match self.answered(registry).flatten() {
            Some(SecretWithSource {
                secret: Secret::IdentityToken(_),
                source,
            }) => format!(
                "the identity token{} was refused by {registry}, or {registry} wants a user name \
                 and password (an identity token only works with a token server); log in again \
                 with `rcross login {registry}` (or `docker login {registry}`)",
                match source {
                    Source::Helper(program) => format!(" from {program}"),
                    Source::File(_) => format!(" in {config}"),
                }
            ),
            Some(SecretWithSource {
                source: Source::Helper(program),
                ..
            }) => format!(
                "credentials from {program} were refused by {registry}; check what `echo {} | \
                 {program} get` answers, or log in again with `rcross login {registry}` (or \
                 `docker login {registry}`)",
                server_url(registry)
            ),
            Some(SecretWithSource {
                source: Source::File(Some(path)),
                ..
            }) => format!(
                "the credentials for {registry} in {} were refused; log in again with `rcross login \
                 {registry}` (or `docker login {registry}`)",
                path.display()
            ),
            Some(SecretWithSource {
                source: Source::File(None),
                ..
            }) => format!("the credentials given for {registry} were refused"),
            None => match self.helper_program(registry) {
                Some(program) => format!(
                    "{program} has no credentials for {registry}; run `rcross login {registry}` \
                     (or `docker login {registry}`; both store them through {program}), or \
                     change credHelpers/credsStore in {config}"
                ),
                None => format!(
                    "run `rcross login {registry}` (or `docker login {registry}`); credentials \
                     are read from {config}, credHelpers and credsStore"
                ),
            },
        }
    }

    fn helper_error(&self, program: &str, registry: &str, why: HelperFailure) -> RegistryError {
        let config = self
            .config
            .path()
            .map_or("the Docker config file".to_string(), |p| {
                p.display().to_string()
            });
        let configured = if self.config.own_helper(registry).is_some() {
            format!("credHelpers[{:?}] in {config}", server_url(registry))
        } else {
            format!("credsStore in {config}")
        };
        let (message, hint) = match why {
            HelperFailure::NotInstalled => (
                format!("credential helper {program} ({configured}) is not installed: no such program on PATH"),
                format!("install {program} or put it on PATH, or remove {configured}"),
            ),
            HelperFailure::TimedOut(after) => (
                format!(
                    "credential helper {program} ({configured}) did not answer within {} s",
                    after.as_secs()
                ),
                format!(
                    "check that `echo {} | {program} get` answers without waiting for input",
                    server_url(registry)
                ),
            ),
            HelperFailure::TooMuchOutput(max) => (
                format!("credential helper {program} ({configured}) wrote more than {max} bytes"),
                format!("check what `echo {} | {program} get` prints", server_url(registry)),
            ),
            HelperFailure::Failed(what) => (
                format!("credential helper {program} ({configured}) failed: {what}"),
                format!(
                    "fix the helper (try `echo {} | {program} get`), log in again with \
                     `docker login {registry}`, or remove {configured}",
                    server_url(registry)
                ),
            ),
        };
        RegistryError::Auth {
            registry: registry.to_string(),
            message,
            hint,
        }
    }
}

/// Why a helper gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HelperFailure {
    NotInstalled,
    TimedOut(Duration),
    TooMuchOutput(usize),
    /// Exited non-zero (other than "not found"), or answered something that is not credentials.
    Failed(String),
}

/// A helper's run as a secret (`None`: it has none for this server), following
/// docker-credential-helpers' `client.Get`.
fn interpret(run: Result<HelperOutput, HelperRunError>) -> Result<Option<Secret>, HelperFailure> {
    let out = match run {
        Ok(out) => out,
        Err(HelperRunError::NotInstalled) => return Err(HelperFailure::NotInstalled),
        Err(HelperRunError::TimedOut(after)) => return Err(HelperFailure::TimedOut(after)),
        Err(HelperRunError::TooMuchOutput(max)) => return Err(HelperFailure::TooMuchOutput(max)),
        Err(HelperRunError::Io(e)) => {
            return Err(HelperFailure::Failed(format!("cannot run it: {e}")))
        }
    };
    if !out.success {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stdout.trim() == NOT_FOUND || stderr.trim() == NOT_FOUND {
            return Ok(None);
        }
        // What a failing helper says is an error message (the protocol puts it on stdout).
        let said = sanitise(&format!("{} {}", stdout.trim(), stderr.trim()));
        return Err(HelperFailure::Failed(if said.is_empty() {
            out.status
        } else {
            format!("{}: {said}", out.status)
        }));
    }

    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    // Never quote the output: it may hold the secret.
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|e| {
        HelperFailure::Failed(format!(
            "it answered something that is not credentials JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == TOKEN_USERNAME {
        Secret::IdentityToken(answer.secret)
    } else {
        Secret::Basic(Credentials {
            username: answer.username,
            password: answer.secret,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Run = Result<HelperOutput, HelperRunError>;

    /// Answers from a table: (program, server URL) → output.
    struct Fake {
        answers: HashMap<(String, String), Run>,
        calls: Mutex<Vec<(String, String)>>,
    }

    impl HelperRunner for Fake {
        fn get(&self, program: &str, url: &str) -> Result<HelperOutput, HelperRunError> {
            self.calls
                .lock()
                .unwrap()
                .push((program.to_string(), url.to_string()));
            // Long enough for parallel lookups to overlap.
            std::thread::sleep(Duration::from_millis(20));
            self.answers
                .get(&(program.to_string(), url.to_string()))
                .cloned()
                .unwrap_or(Err(HelperRunError::NotInstalled))
        }
    }

    fn ok(stdout: &str) -> Run {
        Ok(HelperOutput {
            success: true,
            status: "exit status: 0".into(),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        })
    }

    fn failed(stdout: &str) -> Run {
        Ok(HelperOutput {
            success: false,
            status: "exit status: 1".into(),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        })
    }

    fn store(config: &str, answers: Vec<((&str, &str), Run)>) -> (CredentialStore, Arc<Fake>) {
        let fake = Arc::new(Fake {
            answers: answers
                .into_iter()
                .map(|((p, u), a)| ((p.to_string(), u.to_string()), a))
                .collect(),
            calls: Mutex::new(Vec::new()),
        });
        let config = DockerConfig::parse(config.as_bytes()).unwrap();
        (
            CredentialStore::with_runner(config, Arc::clone(&fake) as Arc<dyn HelperRunner>),
            fake,
        )
    }

    fn basic(user: &str, password: &str) -> Secret {
        Secret::Basic(Credentials {
            username: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn precedence_is_the_docker_clis() {
        let (store, fake) = store(
            r#"{"auths":{"a.io":{"auth":"dTpw"},"c.io":{"auth":"dTpw"}},
                "credsStore":"store","credHelpers":{"a.io":"own"}}"#,
            vec![
                (
                    ("docker-credential-own", "a.io"),
                    ok(r#"{"ServerURL":"a.io","Username":"alice","Secret":"s1"}"#),
                ),
                (
                    ("docker-credential-store", "https://index.docker.io/v1/"),
                    ok(r#"{"Username":"hub","Secret":"s2"}"#),
                ),
                (
                    ("docker-credential-store", "c.io"),
                    failed("credentials not found in native keychain\n"),
                ),
            ],
        );
        let a = store.lookup("a.io").unwrap().unwrap();
        assert_eq!(a.secret, basic("alice", "s1"));
        assert_eq!(a.source, Source::Helper("docker-credential-own".into()));
        // Docker Hub is asked for under its historical URL.
        assert_eq!(
            store.lookup("docker.io").unwrap().unwrap().secret,
            basic("hub", "s2")
        );
        // The store has nothing for c.io: anonymous, the auths entry is not used (as docker).
        assert_eq!(store.lookup("c.io").unwrap(), None);
        // Answers are kept: a second lookup runs nothing.
        store.lookup("a.io").unwrap();
        assert_eq!(fake.calls.lock().unwrap().len(), 3);
        assert!(store
            .unauthorized_hint("a.io")
            .contains("credentials from docker-credential-own were refused by a.io"));
        assert!(store
            .unauthorized_hint("c.io")
            .contains("docker-credential-store has no credentials for c.io"));
    }

    #[test]
    fn parallel_lookups_run_the_helper_once() {
        let (store, fake) = store(
            r#"{"credsStore":"s"}"#,
            vec![(
                ("docker-credential-s", "a.io"),
                ok(r#"{"Username":"u","Secret":"p"}"#),
            )],
        );
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| assert!(store.lookup("a.io").unwrap().is_some()));
            }
        });
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
    }

    #[test]
    fn auths_when_no_helper_is_configured() {
        let (store, fake) = store(r#"{"auths":{"a.io":{"auth":"dTpw"}}}"#, Vec::new());
        let a = store.lookup("a.io").unwrap().unwrap();
        assert_eq!(a.secret, basic("u", "p"));
        assert_eq!(a.source, Source::File(None));
        assert_eq!(store.lookup("b.io").unwrap(), None);
        assert!(fake.calls.lock().unwrap().is_empty());
        assert!(store
            .unauthorized_hint("b.io")
            .contains("docker login b.io"));
    }

    #[test]
    fn token_user_names_are_identity_tokens() {
        let (store, _) = store(
            r#"{"credsStore":"s"}"#,
            vec![(
                ("docker-credential-s", "a.io"),
                ok(r#"{"ServerURL":"a.io","Username":"<token>","Secret":"refresh"}"#),
            )],
        );
        assert_eq!(
            store.lookup("a.io").unwrap().unwrap().secret,
            Secret::IdentityToken("refresh".into())
        );
        let hint = store.unauthorized_hint("a.io");
        assert!(
            hint.contains("identity token from docker-credential-s was refused by a.io"),
            "{hint}"
        );
    }

    #[test]
    fn failures_name_the_helper_the_registry_and_the_fix() {
        let (store, _) = store(
            r#"{"credHelpers":{"a.io":"broken","b.io":"garbage","c.io":"gone","d.io":"slow"}}"#,
            vec![
                (
                    ("docker-credential-broken", "a.io"),
                    failed("gpg: no secret key"),
                ),
                (
                    ("docker-credential-garbage", "b.io"),
                    ok("Secret: hunter2, not JSON"),
                ),
                (
                    ("docker-credential-slow", "d.io"),
                    Err(HelperRunError::TimedOut(Duration::from_secs(60))),
                ),
            ],
        );
        let e = store.lookup("a.io").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-broken")
                && e.contains("a.io")
                && e.contains("gpg: no secret key")
                && e.contains("credHelpers"),
            "{e}"
        );
        let e = store.lookup("b.io").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-garbage") && !e.contains("hunter2"),
            "{e}"
        );
        let e = store.lookup("c.io").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-gone") && e.contains("PATH"),
            "{e}"
        );
        let e = store.lookup("d.io").unwrap_err().to_string();
        assert!(e.contains("did not answer within 60 s"), "{e}");
        assert_eq!(store.answered("a.io"), None, "failures are not kept");
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn process_runs_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let runner = ProcessRunner {
            timeout: Duration::from_millis(500),
            max_output: 1000,
        };
        let echo = script(dir.path(), "echo", r#"read -r x; printf '%s|%s' "$1" "$x""#);
        let out = runner.get(&echo, "srv").unwrap();
        assert!(out.success);
        assert_eq!(out.stdout, b"get|srv");
        let sleepy = script(dir.path(), "sleepy", "exec sleep 30");
        let started = Instant::now();
        assert_eq!(
            runner.get(&sleepy, "srv").unwrap_err(),
            HelperRunError::TimedOut(Duration::from_millis(500))
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let chatty = script(dir.path(), "chatty", "yes");
        assert_eq!(
            runner.get(&chatty, "srv").unwrap_err(),
            HelperRunError::TooMuchOutput(1000)
        );
        assert_eq!(
            runner
                .get(&dir.path().join("absent").display().to_string(), "srv")
                .unwrap_err(),
            HelperRunError::NotInstalled
        );
        let failing = script(dir.path(), "failing", "echo nope; exit 3");
        let out = runner.get(&failing, "srv").unwrap();
        assert!(!out.success && out.status.contains('3'), "{}", out.status);
    }
}
