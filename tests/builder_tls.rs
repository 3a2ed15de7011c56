//! `tcp://` builders with TLS against a live engine: a private dockerd with `--tlsverify` on a
//! loopback port, its CA, server and client certificates made by the openssl CLI
//! (tests/common_docker). The engine client connects and describes the engine with
//! `DOCKER_TLS_VERIFY` + `DOCKER_CERT_PATH`; `rcross build --builder linux/amd64=tcp://…`
//! builds there with those and with `~/.docker/certs.d/HOST:PORT/`; no certificates, a client
//! certificate of another CA, a CA that did not sign the engine's certificate, a missing key
//! and a key.pem without a key fail the platform quickly, naming the endpoint and the fix, as
//! does TLS to a plain-HTTP port.
//!
//! The rcross processes get their own HOME and no DOCKER_* variables of this process.
//! Missing prerequisites (dockerd, openssl, root, busybox-static) fail in strict mode
//! (tests/prereq) and skip with a notice otherwise.

mod common_docker;
mod prereq;

use common_docker::{busybox_layout, make_ca, make_cert, CertUse, Dockerd};
use rcross::engine::{DockerEngine, Endpoint};
use rcross::runner::RunnerError;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: the in-process engine client reads this process's DOCKER_TLS_VERIFY
/// and DOCKER_CERT_PATH, which a test sets.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The variables that decide TLS, set for this process until dropped.
struct TlsVars {
    saved: Vec<(&'static str, Option<std::ffi::OsString>)>,
}

impl TlsVars {
    fn set(vars: &[(&'static str, Option<&Path>)]) -> TlsVars {
        let mut saved = Vec::new();
        for (k, v) in vars {
            saved.push((*k, std::env::var_os(k)));
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        TlsVars { saved }
    }
}

impl Drop for TlsVars {
    fn drop(&mut self) {
        for (k, v) in self.saved.drain(..) {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

/// Variables for an rcross process.
type Env<'a> = Vec<(&'a str, &'a Path)>;

/// `rcross ARGS` with HOME=`home`, no DOCKER_* variables but `env`.
fn rcross(args: &[&str], home: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rcross"));
    cmd.args(args).env("HOME", home);
    for k in [
        "DOCKER_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "rcross {} ({env:?})\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A one-platform project that copies a file out of the build.
fn project(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("data.txt"), "built over TLS\n").unwrap();
    std::fs::write(
        dir.join("rcross.toml"),
        r#"[image]
name = "tls-data"
platforms = ["linux/amd64"]

[build]
command = 'cp data.txt "$RCROSS_OUT/" && echo "copied for $RCROSS_PLATFORM"'

[[artifact]]
from = "data.txt"
to = "/data.txt"
"#,
    )
    .unwrap();
}

#[test]
fn the_engine_client_connects_over_tls() {
    let _serial = serial();
    let Some(dockerd) = Dockerd::start_tls() else {
        return;
    };
    let certs = dockerd.client_certs.clone().unwrap();
    let want = DockerEngine::connect(&dockerd.socket)
        .unwrap()
        .info()
        .unwrap();
    let home = tempfile::tempdir().unwrap();

    let vars = TlsVars::set(&[
        ("DOCKER_TLS_VERIFY", Some(Path::new("1"))),
        ("DOCKER_CERT_PATH", Some(&certs)),
        ("HOME", Some(home.path())),
    ]);
    let engine = DockerEngine::connect(&dockerd.endpoint)
        .unwrap_or_else(|e| panic!("{e}\ndockerd log:\n{}", dockerd.log()));
    let info = engine.info().unwrap();
    assert_eq!(info.server_version, want.server_version, "{info:?}");
    assert_eq!(info.negotiated_api_version, want.negotiated_api_version);
    assert_eq!(info.os, "linux");
    assert_eq!(info.architecture, want.architecture);
    // Several connections at once, as parallel platforms make them.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| assert_eq!(engine.info().unwrap().server_version, want.server_version));
        }
    });
    drop(engine);
    drop(vars);

    // The per-host directory, without DOCKER_TLS_VERIFY.
    let per_host = home
        .path()
        .join(".docker/certs.d")
        .join(dockerd.endpoint.to_string().trim_start_matches("tcp://"));
    std::fs::create_dir_all(per_host.parent().unwrap()).unwrap();
    copy_dir(&certs, &per_host);
    let _vars = TlsVars::set(&[
        ("DOCKER_TLS_VERIFY", None),
        ("DOCKER_CERT_PATH", None),
        ("HOME", Some(home.path())),
    ]);
    let engine = DockerEngine::connect(&dockerd.endpoint)
        .unwrap_or_else(|e| panic!("{e}\ndockerd log:\n{}", dockerd.log()));
    assert_eq!(engine.info().unwrap().server_version, want.server_version);
    drop(engine);

    // Without certificates: plain HTTP to a TLS port is refused with what to set.
    std::fs::remove_dir_all(&per_host).unwrap();
    let e = match DockerEngine::connect(&dockerd.endpoint) {
        Ok(_) => panic!("plain HTTP to a TLS engine connected"),
        Err(e) => e,
    };
    assert!(matches!(e, RunnerError::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&dockerd.endpoint.to_string()), "{text}");
    assert!(text.contains("DOCKER_TLS_VERIFY"), "{text}");
    assert!(text.contains("speaks only TLS"), "{text}");

    // TLS to a plain-HTTP listener: said so, not a corrupt message.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in plain.incoming().flatten() {
            let mut c = c;
            let mut buf = [0u8; 512];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let _ = std::io::Write::write_all(&mut c, b"HTTP/1.0 400 Bad Request\r\n\r\n");
        }
    });
    let _vars = TlsVars::set(&[
        ("DOCKER_TLS_VERIFY", Some(Path::new("1"))),
        ("DOCKER_CERT_PATH", Some(&certs)),
    ]);
    let endpoint: Endpoint = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let text = match DockerEngine::connect(&endpoint) {
        Ok(_) => panic!("TLS to a plain-HTTP listener connected"),
        Err(e) => e.to_string(),
    };
    assert!(text.contains(&endpoint.to_string()), "{text}");
    assert!(
        text.contains("did not answer in TLS") && text.contains("plain-HTTP"),
        "{text}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

#[test]
fn rcross_build_runs_a_platform_on_a_tls_builder() {
    let _serial = serial();
    let Some(dockerd) = Dockerd::start_tls() else {
        return;
    };
    let certs = dockerd.client_certs.clone().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("busybox");
    if busybox_layout(&layout).is_none() {
        return;
    }
    let dir = tmp.path().join("proj");
    project(&dir);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let endpoint = dockerd.endpoint.to_string();
    let build = |out_dir: &Path, env: &[(&str, &Path)]| {
        rcross(
            &[
                "--json",
                "build",
                &dir.display().to_string(),
                "--build-image",
                &format!("oci:{}", layout.display()),
                "--builder",
                &format!("linux/amd64={endpoint}"),
                "--output",
                &format!("oci:{}", out_dir.display()),
            ],
            &home,
            env,
        )
    };
    let check = |out: &Output, out_dir: &Path| {
        assert!(
            out.status.success(),
            "build failed: {}\ndockerd log:\n{}",
            stderr(out),
            dockerd.log()
        );
        let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
        let entry = meta["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["platform"] == "linux/amd64")
            .unwrap_or_else(|| panic!("linux/amd64 not in {meta}"));
        assert_eq!(entry["runner"], format!("builder {endpoint}"), "{meta}");
        let e = stderr(out);
        assert!(e.contains(&format!("builder {endpoint}: Docker")), "{e}");
        assert!(e.contains("copied for linux/amd64"), "{e}");
        assert!(out_dir.join("index.json").is_file());
    };

    // DOCKER_TLS_VERIFY + DOCKER_CERT_PATH.
    let out_dir = tmp.path().join("out-env");
    let out = build(
        &out_dir,
        &[
            ("DOCKER_TLS_VERIFY", Path::new("1")),
            ("DOCKER_CERT_PATH", &certs),
        ],
    );
    check(&out, &out_dir);

    // ~/.docker/certs.d/127.0.0.1:PORT/ alone.
    let per_host = home
        .join(".docker/certs.d")
        .join(endpoint.trim_start_matches("tcp://"));
    copy_dir(&certs, &per_host);
    let out_dir = tmp.path().join("out-per-host");
    let out = build(&out_dir, &[]);
    check(&out, &out_dir);
}

#[test]
fn a_tls_builder_with_wrong_certificates_fails_its_platform_naming_it_and_the_fix() {
    let _serial = serial();
    let Some(dockerd) = Dockerd::start_tls() else {
        return;
    };
    let certs = dockerd.client_certs.clone().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rcross.toml"),
        "[image]\nname = \"x\"\nplatforms = [\"linux/amd64\"]\n\n[build]\n\
         command = 'true'\nimage = \"127.0.0.1:9/none:1\"\n\n\
         [[artifact]]\nfrom = \"x\"\nto = \"/x\"\n",
    )
    .unwrap();

    // Another CA, and a client certificate it signed (with the engine's CA as ca.pem, so the
    // engine's certificate is trusted and only the client's is wrong).
    let rogue_ca = tmp.path().join("rogue-ca");
    make_ca(&rogue_ca, "rcross rogue CA");
    let rogue_client = tmp.path().join("rogue-client");
    make_cert(&rogue_client, &rogue_ca, "rogue client", CertUse::Client);
    std::fs::copy(certs.join("ca.pem"), rogue_client.join("ca.pem")).unwrap();
    // The right client certificate, but a ca.pem that did not sign the engine's.
    let wrong_ca = tmp.path().join("wrong-ca");
    copy_dir(&certs, &wrong_ca);
    std::fs::copy(rogue_ca.join("ca.pem"), wrong_ca.join("ca.pem")).unwrap();
    // No key.
    let no_key = tmp.path().join("no-key");
    copy_dir(&certs, &no_key);
    std::fs::remove_file(no_key.join("key.pem")).unwrap();

    // A key.pem that holds no key (the certificate again).
    let not_a_key = tmp.path().join("not-a-key");
    copy_dir(&certs, &not_a_key);
    std::fs::copy(certs.join("cert.pem"), not_a_key.join("key.pem")).unwrap();

    let verify = Path::new("1");
    let cases: Vec<(&str, Env, Vec<String>)> = vec![
        (
            "no certificates",
            vec![],
            vec![
                "TLS".into(),
                "DOCKER_TLS_VERIFY".into(),
                "certs.d/127.0.0.1:".into(),
            ],
        ),
        (
            "a client certificate of another CA",
            vec![
                ("DOCKER_TLS_VERIFY", verify),
                ("DOCKER_CERT_PATH", &rogue_client),
            ],
            vec![
                "refused the client certificate".into(),
                rogue_client.join("cert.pem").display().to_string(),
                "--tlscacert".into(),
            ],
        ),
        (
            "a CA that did not sign the engine's certificate",
            vec![
                ("DOCKER_TLS_VERIFY", verify),
                ("DOCKER_CERT_PATH", &wrong_ca),
            ],
            vec![
                "engine's certificate".into(),
                wrong_ca.join("ca.pem").display().to_string(),
            ],
        ),
        (
            "a missing key",
            vec![("DOCKER_TLS_VERIFY", verify), ("DOCKER_CERT_PATH", &no_key)],
            vec![
                no_key.join("key.pem").display().to_string(),
                "DOCKER_TLS_VERIFY".into(),
            ],
        ),
        (
            "a key.pem without a key",
            vec![
                ("DOCKER_TLS_VERIFY", verify),
                ("DOCKER_CERT_PATH", &not_a_key),
            ],
            vec![format!(
                "{} holds no private key",
                not_a_key.join("key.pem").display()
            )],
        ),
    ];
    let endpoint = dockerd.endpoint.to_string();
    // Every case runs; the failures are reported together.
    let mut failed = Vec::new();
    for (case, env, wants) in cases {
        let started = Instant::now();
        let out = rcross(
            &[
                "build",
                &dir.display().to_string(),
                "--builder",
                &format!("linux/amd64={endpoint}"),
                "--output",
                &format!("oci:{}", tmp.path().join("out").display()),
            ],
            &home,
            &env,
        );
        let e = stderr(&out);
        let mut wants = wants;
        wants.push(format!("linux/amd64: builder {endpoint}"));
        let missing: Vec<String> = wants.into_iter().filter(|w| !e.contains(w)).collect();
        if out.status.code() != Some(1) || !missing.is_empty() {
            failed.push(format!("{case}: {} without {missing:?}:\n{e}", out.status));
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{case}: fails fast"
        );
        assert!(!tmp.path().join("out").exists(), "nothing is assembled");
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
