//! `rcross login` / `logout` end to end: the real rcross binary against Debian's
//! docker-registry behind htpasswd auth, a private DOCKER_CONFIG, and a credential helper that
//! is a shell script on the PATH of the rcross process.

mod common_registry;
mod prereq;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common_registry::RealRegistry;

const USER: &str = "builder";
const PASSWORD: &str = "s3cret-pw-4711";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        Env { dir }
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    fn config_path(&self) -> PathBuf {
        self.config_dir().join("config.json")
    }

    fn config(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.config_path()).unwrap()).unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_rcross"));
        command
            .args(args)
            .env("DOCKER_CONFIG", self.config_dir())
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// rcross with `stdin` on its standard input.
    fn rcross(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self.command(args).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "rcross {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(PASSWORD), "the password was echoed: {all}");
        out
    }

    fn login(&self, registry: &str, password: &str) -> Output {
        self.rcross(
            &["login", registry, "-u", USER, "--password-stdin"],
            &format!("{password}\n"),
        )
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn layout(dir: &Path) -> PathBuf {
    let layout_dir = dir.join("layout");
    std::fs::create_dir_all(&layout_dir).unwrap();
    common_registry::write_layout(&layout_dir);
    layout_dir
}

fn push(env: &Env, layout_dir: &Path, tag: &str) -> Output {
    env.rcross(
        &["push", &format!("oci:{}:multi", layout_dir.display()), tag],
        "",
    )
}

/// Wrong password: exit 1, nothing stored. Login: stored in auths (0600), used by push. Logout:
/// removed, and the next push is refused with the login hint.
#[test]
fn login_push_logout_against_htpasswd_registry() {
    let Some(registry) = RealRegistry::start_with_auth(USER, PASSWORD) else {
        return;
    };
    let env = Env::new();
    let layout_dir = layout(env.dir.path());
    let tag = format!("{}/private/hello:1", registry.addr);

    let wrong = env.login(&registry.addr, "not-the-password");
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("refused"), "{}", stderr(&wrong));
    assert!(
        !env.config_path().exists(),
        "a refused login must store nothing"
    );

    let ok = env.login(&registry.addr, PASSWORD);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let mode = std::fs::metadata(env.config_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let auth = env.config()["auths"][&registry.addr]["auth"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!auth.is_empty());

    let pushed = push(&env, &layout_dir, &tag);
    assert!(pushed.status.success(), "{}", stderr(&pushed));

    let out = env.rcross(&["--json", "logout", &registry.addr], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["logged_out"], true);
    assert!(env.config()["auths"].get(&registry.addr).is_none());

    let refused = push(
        &env,
        &layout_dir,
        &format!("{}/private/other:1", registry.addr),
    );
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("rcross login {}", registry.addr)),
        "{}",
        stderr(&refused)
    );
}

/// Two logins at the same moment, to two registries: both entries land, and an entry and key
/// rcross does not know survive.
#[test]
fn concurrent_logins_to_two_registries_both_land() {
    let (Some(a), Some(b)) = (
        RealRegistry::start_with_auth(USER, PASSWORD),
        RealRegistry::start_with_auth(USER, PASSWORD),
    ) else {
        return;
    };
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_path(),
        r#"{"auths":{"elsewhere.example":{"auth":"eDp5"}},"detachKeys":"ctrl-x"}"#,
    )
    .unwrap();
    for _round in 0..3 {
        let children: Vec<_> = [&a.addr, &b.addr]
            .iter()
            .map(|addr| {
                let mut child = env
                    .command(&["login", addr, "-u", USER, "--password-stdin"])
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(PASSWORD.as_bytes()).unwrap();
                drop(stdin);
                child
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let config = env.config();
        for addr in [&a.addr, &b.addr] {
            assert!(
                config["auths"][addr]["auth"].is_string(),
                "{addr} missing: {config}"
            );
        }
        assert_eq!(config["auths"]["elsewhere.example"]["auth"], "eDp5");
        assert_eq!(config["detachKeys"], "ctrl-x");
        // The next round starts from one registry logged out.
        let out = env.rcross(&["logout", &a.addr], "");
        assert!(out.status.success());
    }
}

/// With `credsStore` set, login stores through `docker-credential-x store` (the secret on its
/// stdin, never in config.json), push reads it back with `get`, logout runs `erase`.
#[test]
fn login_through_a_credential_helper() {
    let Some(registry) = RealRegistry::start_with_auth(USER, PASSWORD) else {
        return;
    };
    let env = Env::new();
    let vault = env.dir.path().join("vault");
    std::fs::create_dir(&vault).unwrap();
    let log = env.dir.path().join("helper.log");
    // A file-backed helper: one file per server URL holding the JSON it was given.
    let helper = env.dir.path().join("bin/docker-credential-x");
    std::fs::write(
        &helper,
        format!(
            r#"#!/bin/sh
input=$(cat)
echo "$1" >> '{log}'
case "$1" in
store)
  server=$(printf '%s' "$input" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
  key=$(printf '%s' "$server" | tr '/:' '__')
  printf '%s' "$input" > '{vault}'/"$key" ;;
get)
  key=$(printf '%s' "$input" | tr '/:' '__')
  if [ -f '{vault}'/"$key" ]; then cat '{vault}'/"$key"; else echo 'credentials not found in native keychain'; exit 1; fi ;;
erase)
  key=$(printf '%s' "$input" | tr '/:' '__')
  if [ -f '{vault}'/"$key" ]; then rm '{vault}'/"$key"; else echo 'credentials not found in native keychain'; exit 1; fi ;;
*) exit 2 ;;
esac
"#,
            log = log.display(),
            vault = vault.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(env.config_path(), r#"{"credsStore":"x"}"#).unwrap();

    let wrong = env.login(&registry.addr, "nope");
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");

    let ok = env.rcross(
        &[
            "--json",
            "login",
            &registry.addr,
            "-u",
            USER,
            "--password-stdin",
        ],
        PASSWORD,
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let answer: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(answer["stored_in"]["program"], "docker-credential-x");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(!config.contains(PASSWORD), "{config}");
    assert_eq!(env.config()["auths"][&registry.addr], serde_json::json!({}));
    assert_eq!(env.config()["credsStore"], "x");
    let stored = std::fs::read_to_string(vault.join(registry.addr.replace(':', "_"))).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"ServerURL": registry.addr, "Username": USER, "Secret": PASSWORD})
    );

    let layout_dir = layout(env.dir.path());
    let pushed = push(
        &env,
        &layout_dir,
        &format!("{}/private/hello:1", registry.addr),
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));

    let out = env.rcross(&["logout", &registry.addr], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("docker-credential-x"));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "store\nget\nerase\n"
    );
    assert!(std::fs::read_dir(&vault).unwrap().next().is_none());
    let refused = push(
        &env,
        &layout_dir,
        &format!("{}/private/other:1", registry.addr),
    );
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        stderr(&refused).contains("docker-credential-x has no credentials"),
        "{}",
        stderr(&refused)
    );
}

/// `-p` works but warns; no password at all is a usage error that says how to give one.
#[test]
fn password_arguments() {
    let Some(registry) = RealRegistry::start_with_auth(USER, "argument-pw") else {
        return;
    };
    let env = Env::new();
    let out = env.rcross(
        &["login", &registry.addr, "-u", USER, "-p", "argument-pw"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--password-stdin"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("argument-pw"));
    let out = env.rcross(&["login", &registry.addr, "-u", USER], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--password-stdin"));
}

/// A registry with a token server (Bearer challenge): login asks the token server with Basic
/// credentials, as docker does (service and account, no scope), then opens /v2/ with the
/// token; a token server's 401 is refused credentials (exit 1, nothing stored).
#[test]
fn login_through_a_token_server() {
    use base64::Engine as _;
    use common_registry::{FakeRegistry, Reply};
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let tokens = FakeRegistry::start(move |request, _| {
        if request.path() == "/token" && request.header("authorization") == Some(&expected) {
            Reply::json(200, r#"{"token":"tok-123","expires_in":300}"#)
        } else {
            Reply::json(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad creds"}]}"#,
            )
        }
    });
    let realm = format!("http://{}/token", tokens.addr);
    let registry = FakeRegistry::start_on("127.0.0.2", move |request, _| {
        if request.path() == "/v2/" && request.header("authorization") == Some("Bearer tok-123") {
            Reply::json(200, "{}")
        } else {
            Reply::json(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="fake-registry""#),
            )
        }
    });
    let env = Env::new();
    let wrong = env.login(&registry.addr, "wrong");
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("token server answered HTTP 401"));
    assert!(!env.config_path().exists());

    let ok = env.login(&registry.addr, PASSWORD);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(env.config()["auths"][&registry.addr]["auth"].is_string());
    let asked: Vec<String> = tokens.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        asked.last().map(String::as_str),
        Some(format!("/token?service=fake-registry&account={USER}").as_str()),
        "{asked:?}"
    );
}

/// At a terminal (a pseudo-terminal from util-linux's `script`), login asks for the user name
/// and, without echo, the password.
#[test]
fn login_prompts_at_a_terminal() {
    if !prereq::tool("script", "bsdutils") {
        return;
    }
    let Some(registry) = RealRegistry::start_with_auth(USER, PASSWORD) else {
        return;
    };
    let env = Env::new();
    let command = format!("{} login {}", env!("CARGO_BIN_EXE_rcross"), registry.addr);
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DOCKER_CONFIG", env.config_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The terminal's output, as it comes.
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let wait_for = |what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !String::from_utf8_lossy(&seen.lock().unwrap()).contains(what) {
            assert!(std::time::Instant::now() < deadline, "no {what:?} prompt");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for("Username: ");
    stdin.write_all(format!("{USER}\n").as_bytes()).unwrap();
    // The password only once the prompt for it shows: the echo is off by then.
    wait_for("Password: ");
    stdin.write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let all = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();

    eprintln!("{all}");
    assert!(status.success(), "{all}");
    assert!(
        all.contains("Username: ") && all.contains("Password: "),
        "{all}"
    );
    assert!(all.contains("Login Succeeded"), "{all}");
    assert!(!all.contains(PASSWORD), "the password was echoed: {all}");
    assert!(env.config()["auths"][&registry.addr]["auth"].is_string());
}
