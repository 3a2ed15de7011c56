//! Registry credentials as users have them: `credHelpers` and `credsStore` in the Docker config
//! file run `docker-credential-NAME get` (shell scripts of our own, on the PATH of the rcross
//! process), `<token>` user names become OAuth identity tokens, and a failing or missing helper
//! is named with its registry. Runs the real rcross binary against fake registries on
//! 127.0.0.1/127.0.0.2, and end to end against Debian's docker-registry behind htpasswd auth.

mod common_registry;
mod prereq;
mod push_common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Output};

use base64::Engine as _;
use common_registry::{FakeRegistry, RealRegistry, Reply};
use push_common::{Answer, Scripted};

const INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A directory for helper scripts and the Docker config, and the log each helper appends the
/// server URL it was asked about to.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        Setup { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn log(&self, helper: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{helper}.log"))).unwrap_or_default()
    }

    /// `docker-credential-NAME`: logs its argument and stdin, then runs `body` (sh) with the
    /// server URL in `$server`.
    fn helper(&self, name: &str, body: &str) {
        let path = self.bin().join(format!("docker-credential-{name}"));
        let log = self.dir.path().join(format!("{name}.log"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nserver=$(cat)\nprintf '%s %s\\n' \"$1\" \"$server\" >> '{}'\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A helper that answers `user`/`secret` for `server` and "not found" for anything else.
    fn answering(&self, name: &str, server: &str, user: &str, secret: &str) {
        self.helper(
            name,
            &format!(
                "if [ \"$server\" = '{server}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi"
            ),
        );
    }

    fn config(&self, json: &str) {
        std::fs::write(self.dir.path().join("docker/config.json"), json).unwrap();
    }

    /// rcross with this config and the helpers first on PATH.
    fn rcross(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_rcross"))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("PATH", path)
            .output()
            .unwrap();
        eprintln!(
            "rcross {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A registry that wants HTTP Basic `user`/`password`.
fn basic_registry(ip: &str, user: &str, password: &str) -> FakeRegistry {
    let expected = basic(user, password);
    FakeRegistry::start_on(ip, move |request, _| {
        if request.header("authorization") == Some(expected.as_str()) {
            Reply::ok(INDEX).header("Content-Type", "application/vnd.oci.image.index.v1+json")
        } else {
            Reply::json(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .header("WWW-Authenticate", r#"Basic realm="fake""#)
        }
    })
}

fn inspect(setup: &Setup, registry: &FakeRegistry) -> Output {
    setup.rcross(&["inspect", &format!("{}/app:1", registry.addr)])
}

/// credHelpers[registry] wins over credsStore, which wins over auths; each helper is asked
/// with the registry's server URL on stdin and `get` as its argument.
#[test]
fn the_helper_is_chosen_per_registry_and_its_credentials_are_used() {
    let setup = Setup::new();
    let a = basic_registry("127.0.0.1", "alice", "from-helper-a");
    let b = basic_registry("127.0.0.2", "bob", "from-store-b");
    setup.answering("rcx-a", &a.addr, "alice", "from-helper-a");
    setup.answering("rcx-b", &b.addr, "bob", "from-store-b");
    let wrong = base64::engine::general_purpose::STANDARD.encode("wrong:wrong");
    setup.config(&format!(
        r#"{{"auths":{{"{a}":{{"auth":"{wrong}"}},"{b}":{{"auth":"{wrong}"}}}},
            "credsStore":"rcx-b","credHelpers":{{"{a}":"rcx-a"}}}}"#,
        a = a.addr,
        b = b.addr
    ));
    assert!(inspect(&setup, &a).status.success());
    assert!(inspect(&setup, &b).status.success());
    assert_eq!(setup.log("rcx-a"), format!("get {}\n", a.addr));
    assert_eq!(setup.log("rcx-b"), format!("get {}\n", b.addr));
}

/// Only auths: used as before (no helper configured).
#[test]
fn without_helpers_auths_are_used() {
    let setup = Setup::new();
    let a = basic_registry("127.0.0.1", "alice", "pw");
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    setup.config(&format!(
        r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
        a.addr
    ));
    assert!(inspect(&setup, &a).status.success());
}

/// "credentials not found in native keychain" means no credentials: a public registry works,
/// and a 401 says the helper has none for that registry.
#[test]
fn not_found_in_the_helper_means_anonymous() {
    let setup = Setup::new();
    let open = FakeRegistry::start(|_, _| {
        Reply::ok(INDEX).header("Content-Type", "application/vnd.oci.image.index.v1+json")
    });
    let closed = basic_registry("127.0.0.2", "alice", "pw");
    setup.answering("rcx-none", "nothing", "x", "y");
    setup.config(r#"{"credsStore":"rcx-none"}"#);
    assert!(inspect(&setup, &open).status.success());
    let out = inspect(&setup, &closed);
    assert_eq!(out.status.code(), Some(3), "an environment failure");
    let err = stderr(&out);
    assert!(err.contains("docker-credential-rcx-none"), "{err}");
    assert!(err.contains(&closed.addr), "{err}");
}

/// A helper that fails (not "not found") is an error naming the helper, the registry and what
/// it said; nothing is sent anonymously instead.
#[test]
fn a_failing_helper_is_named_with_its_registry() {
    let setup = Setup::new();
    let a = basic_registry("127.0.0.1", "alice", "pw");
    setup.helper(
        "rcx-broken",
        "echo 'gpg: decryption failed: No secret key'; exit 1",
    );
    setup.config(&format!(
        r#"{{"credHelpers":{{"{}":"rcx-broken"}}}}"#,
        a.addr
    ));
    let out = inspect(&setup, &a);
    assert_eq!(out.status.code(), Some(3), "an environment failure");
    let err = stderr(&out);
    assert!(err.contains("docker-credential-rcx-broken"), "{err}");
    assert!(err.contains(&a.addr), "{err}");
    assert!(err.contains("decryption failed"), "{err}");
}

/// A helper answering something that is not credentials JSON: named, and its output (which
/// may hold a secret) is not quoted.
#[test]
fn a_helper_answering_garbage_is_named_without_quoting_it() {
    let setup = Setup::new();
    let a = basic_registry("127.0.0.1", "alice", "pw");
    setup.helper("rcx-garbage", "echo 'Secret: hunter2-not-json'");
    setup.config(&format!(
        r#"{{"credHelpers":{{"{}":"rcx-garbage"}}}}"#,
        a.addr
    ));
    let out = inspect(&setup, &a);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("docker-credential-rcx-garbage"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// A helper program that is not installed: named, with the registry and the fix.
#[test]
fn a_missing_helper_is_named_with_its_registry() {
    let setup = Setup::new();
    let a = basic_registry("127.0.0.1", "alice", "pw");
    setup.config(&format!(
        r#"{{"credHelpers":{{"{}":"rcx-absent"}}}}"#,
        a.addr
    ));
    let out = inspect(&setup, &a);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("docker-credential-rcx-absent"), "{err}");
    assert!(err.contains(&a.addr), "{err}");
    assert!(err.contains("PATH"), "{err}");
}

/// Credentials from a helper that the registry refuses: the hint names the helper instead of
/// telling the user to run `docker login`.
#[test]
fn refused_helper_credentials_name_the_helper() {
    let setup = Setup::new();
    let a = basic_registry("127.0.0.1", "alice", "pw");
    setup.answering("rcx-stale", &a.addr, "alice", "stale");
    setup.config(&format!(
        r#"{{"credHelpers":{{"{}":"rcx-stale"}}}}"#,
        a.addr
    ));
    let out = inspect(&setup, &a);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "credentials from docker-credential-rcx-stale were refused by {}",
            a.addr
        )),
        "{err}"
    );
    assert!(!err.contains("stale\""), "{err}");
}

/// A `<token>` user name: the secret is an identity (OAuth refresh) token, exchanged at the
/// token server with grant_type=refresh_token, never sent as a password.
#[test]
fn a_token_username_becomes_an_identity_token() {
    let setup = Setup::new();
    let fake = Scripted::start(|request, _| {
        if request.path() == "/token" {
            let form = String::from_utf8_lossy(&request.body).into_owned();
            let ok = request.method == "POST"
                && form.split('&').any(|p| p == "grant_type=refresh_token")
                && form.split('&').any(|p| p == "refresh_token=refresh-123")
                && request.header("authorization").is_none();
            return if ok {
                Answer::new(200)
                    .header("Content-Type", "application/json")
                    .body(br#"{"access_token":"access-456","expires_in":300}"#)
            } else {
                Answer::new(401).body(br#"{"details":"bad grant"}"#)
            };
        }
        if request.header("authorization") == Some("Bearer access-456") {
            return Answer::new(200)
                .header("Content-Type", "application/vnd.oci.image.index.v1+json")
                .body(INDEX.as_bytes());
        }
        let host = request.header("host").unwrap_or("");
        Answer::new(401).header(
            "WWW-Authenticate",
            &format!(
                r#"Bearer realm="http://{host}/token",service="fake",scope="repository:app:pull""#
            ),
        )
    });
    setup.answering("rcx-oauth", &fake.addr, "<token>", "refresh-123");
    setup.config(&format!(
        r#"{{"credHelpers":{{"{}":"rcx-oauth"}}}}"#,
        fake.addr
    ));
    let out = setup.rcross(&["inspect", &format!("{}/app:1", fake.addr)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token_requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/token")
        .collect();
    assert_eq!(token_requests.len(), 1, "{token_requests:?}");
    assert_eq!(token_requests[0].method, "POST");
}

/// A missing prerequisite fails the test, naming the package.
fn require(tool: &str, package: &str) {
    assert!(
        which::which(tool).is_ok(),
        "{tool} is required for this test: apt-get install -y {package}"
    );
}

/// End to end: `rcross push` of an OCI layout to Debian's docker-registry behind htpasswd
/// auth, with the credentials coming only from a credHelpers helper script; skopeo (with the
/// same credentials given directly) reads back the pushed index.
#[test]
fn a_config_with_cred_helpers_pushes_to_a_registry_behind_htpasswd() {
    require("docker-registry", "docker-registry");
    require("htpasswd", "apache2-utils");
    require("skopeo", "skopeo");
    let registry = RealRegistry::start_with_auth("builder", "s3cret-pw")
        .expect("docker-registry and htpasswd are installed");
    let setup = Setup::new();
    setup.answering("rcx-e2e", &registry.addr, "builder", "s3cret-pw");
    setup.config(&format!(
        r#"{{"auths":{{"{}":{{}}}},"credHelpers":{{"{}":"rcx-e2e"}}}}"#,
        registry.addr, registry.addr
    ));
    let layout_dir = setup.dir.path().join("layout");
    std::fs::create_dir(&layout_dir).unwrap();
    let layout = common_registry::write_layout(&layout_dir);
    let tag = format!("{}/private/hello:1", registry.addr);
    let out = setup.rcross(&["push", &format!("oci:{}:multi", layout_dir.display()), &tag]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains("s3cret-pw"), "secret leaked: {all}");
    assert!(setup
        .log("rcx-e2e")
        .starts_with(&format!("get {}\n", registry.addr)));

    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "builder:s3cret-pw",
            &format!("docker://{tag}"),
        ])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(common_registry::sha256(&raw.stdout), layout.index);

    // Without the helper's credentials the same push is refused, naming the helper.
    setup.answering("rcx-e2e", "elsewhere", "builder", "s3cret-pw");
    let denied = setup.rcross(&[
        "push",
        &format!("oci:{}:multi", layout_dir.display()),
        &format!("{}/private/other:1", registry.addr),
    ]);
    assert_eq!(denied.status.code(), Some(3));
    assert!(
        stderr(&denied).contains("docker-credential-rcx-e2e"),
        "{}",
        stderr(&denied)
    );
    drop(registry);
}
