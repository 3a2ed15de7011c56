//! Credentials for pulls inside a Docker engine come from the same lookup as the registry
//! client (here a credHelpers helper script), and are never sent to an engine reached over
//! plain TCP. The engine is the machine's own (tests/run.sh starts it); "plain TCP" is a
//! loopback forwarder to its socket that records every byte rcross sends. The build image is
//! a busybox image in Debian's docker-registry behind htpasswd auth.

mod common_docker;
mod common_registry;
mod prereq;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common_registry::RealRegistry;
use rcross::engine::Endpoint;

const USER: &str = "builder";
const PASSWORD: &str = "s3cret-pw";

/// A missing prerequisite fails the test, naming what to install.
fn require(tool: &str, package: &str) {
    assert!(
        which::which(tool).is_ok(),
        "{tool} is required for this test: apt-get install -y {package}"
    );
}

fn engine() -> Endpoint {
    require("docker", "docker.io");
    let endpoint = Endpoint::Unix(PathBuf::from("/var/run/docker.sock"));
    rcross::engine::DockerEngine::connect(&endpoint).unwrap_or_else(|e| {
        panic!("the machine's Docker engine must answer (bash tests/run.sh starts it): {e}")
    });
    endpoint
}

/// A TCP listener on 127.0.0.1 forwarding to the engine's socket, keeping what clients send.
struct Forwarder {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Forwarder {
    fn start(socket: &Path) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let socket = socket.to_path_buf();
        let log = Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(engine) = UnixStream::connect(&socket) else {
                    continue;
                };
                let log = Arc::clone(&log);
                let (mut c_read, mut c_write) = (client.try_clone().unwrap(), client);
                let (mut e_read, mut e_write) = (engine.try_clone().unwrap(), engine);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    loop {
                        match c_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                log.lock().unwrap().extend_from_slice(&buf[..n]);
                                if e_write.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = e_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut e_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Forwarder { port, sent }
    }

    fn endpoint(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }
}

/// Helper scripts, the Docker config, a project and a busybox build image in the registry.
struct Setup {
    dir: tempfile::TempDir,
    image: String,
}

impl Setup {
    fn new(registry: &RealRegistry, config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        let helper = bin.join("docker-credential-rcx-engine");
        std::fs::write(
            &helper,
            format!(
                "#!/bin/sh\nserver=$(cat)\nprintf '%s %s\\n' \"$1\" \"$server\" >> '{}'\n\
                 if [ \"$server\" = '{}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
                 else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
                dir.path().join("helper.log").display(),
                registry.addr
            ),
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("docker/config.json"),
            config.replace("REGISTRY", &registry.addr),
        )
        .unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            project.join("rcross.toml"),
            r#"[image]
name = "hi"
platforms = ["linux/amd64"]

[build]
command = 'echo "hi from $RCROSS_PLATFORM" > "$RCROSS_OUT/hi.txt"'
container = "always"

[[artifact]]
from = "hi.txt"
to = "/hi.txt"
"#,
        )
        .unwrap();
        let image = format!("{}/tools/busybox-{}:1", registry.addr, std::process::id());
        Setup { dir, image }
    }

    fn helper_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("helper.log")).unwrap_or_default()
    }

    fn rcross(&self, args: &[&str], docker_host: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_rcross"))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("DOCKER_HOST", docker_host)
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env("HOME", self.dir.path())
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

    /// Pushes the busybox build image to the registry (through the helper's credentials).
    fn push_build_image(&self, engine: &Endpoint) {
        let layout = self.dir.path().join("busybox");
        common_docker::busybox_layout(&layout)
            .expect("/bin/busybox (apt-get install -y busybox-static)");
        let out = self.rcross(
            &[
                "push",
                &format!("oci:{}:busybox", layout.display()),
                &self.image,
            ],
            &engine.to_string(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn build(&self, docker_host: &str) -> Output {
        self.rcross(
            &[
                "build",
                &self.dir.path().join("project").display().to_string(),
                "--build-image",
                &self.image,
                "--output",
                &format!("oci:{}", self.dir.path().join("out").display()),
            ],
            docker_host,
        )
    }
}

/// Removes the pulled build image from the machine's engine, also when the test fails.
struct RemoveImage<'a>(&'a Endpoint, String);

impl Drop for RemoveImage<'_> {
    fn drop(&mut self) {
        let _ = common_docker::docker(self.0, &["rmi", "-f", &self.1]);
    }
}

/// The engine pulls the build image from a registry behind htpasswd auth with the
/// credentials of a credHelpers helper: the same lookup as `rcross push` uses.
#[test]
fn the_engine_pulls_with_the_helpers_credentials() {
    require("docker-registry", "docker-registry");
    require("htpasswd", "apache2-utils");
    let engine = engine();
    let registry = RealRegistry::start_with_auth(USER, PASSWORD).expect("docker-registry");
    let setup = Setup::new(
        &registry,
        r#"{"auths":{"REGISTRY":{}},"credHelpers":{"REGISTRY":"rcx-engine"}}"#,
    );
    setup.push_build_image(&engine);
    let _cleanup = RemoveImage(&engine, setup.image.clone());
    let _ = common_docker::docker(&engine, &["rmi", "-f", &setup.image]);

    let out = setup.build(&engine.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(PASSWORD), "secret leaked: {all}");
    assert!(
        setup
            .helper_log()
            .lines()
            .filter(|l| *l == format!("get {}", registry.addr))
            .count()
            >= 2,
        "the helper answered the push and the engine's pull: {}",
        setup.helper_log()
    );
}

/// Over plain TCP the engine gets no credentials, whether the config file holds them or a
/// helper does: the pull of an image that needs them fails with how to enable TLS, and no
/// X-Registry-Auth ever crosses the wire.
#[test]
fn credentials_are_never_sent_to_an_engine_over_plain_tcp() {
    require("docker-registry", "docker-registry");
    require("htpasswd", "apache2-utils");
    let engine = engine();
    let Endpoint::Unix(socket) = &engine else {
        unreachable!()
    };
    let registry = RealRegistry::start_with_auth(USER, PASSWORD).expect("docker-registry");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let in_file = format!(r#"{{"auths":{{"REGISTRY":{{"auth":"{auth}"}}}}}}"#);
    let setup = Setup::new(&registry, &in_file);
    setup.push_build_image(&engine);
    let _cleanup = RemoveImage(&engine, setup.image.clone());
    let _ = common_docker::docker(&engine, &["rmi", "-f", &setup.image]);

    for (config, helper) in [
        (in_file.clone(), false),
        (
            r#"{"credHelpers":{"REGISTRY":"rcx-engine"}}"#.to_string(),
            true,
        ),
    ] {
        std::fs::write(
            setup.dir.path().join("docker/config.json"),
            config.replace("REGISTRY", &registry.addr),
        )
        .unwrap();
        let forwarder = Forwarder::start(socket);
        let out = setup.build(&forwarder.endpoint());
        let sent = forwarder.sent();
        assert!(
            sent.contains("/images/create"),
            "the engine was asked to pull"
        );
        assert!(
            !sent.to_ascii_lowercase().contains("x-registry-auth"),
            "credentials went over plain TCP ({config})"
        );
        assert!(!sent.contains(PASSWORD) && !sent.contains(&auth));
        assert_ne!(out.status.code(), Some(0));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("plain TCP"), "{err}");
        assert!(
            err.contains("DOCKER_TLS_VERIFY") && err.contains("DOCKER_CERT_PATH"),
            "{err}"
        );
        assert!(
            err.contains(&format!("certs.d/127.0.0.1:{}", forwarder.port)),
            "{err}"
        );
        assert_eq!(
            err.contains("docker-credential-rcx-engine"),
            helper,
            "{err}"
        );
    }
    assert_eq!(setup.helper_log(), "", "the helper was not even asked");
}

/// Over plain TCP a build image that needs no credentials builds, even with a credsStore that
/// would answer for every registry.
#[test]
fn a_public_build_image_builds_over_plain_tcp_without_credentials() {
    require("docker-registry", "docker-registry");
    let engine = engine();
    let Endpoint::Unix(socket) = &engine else {
        unreachable!()
    };
    let registry = RealRegistry::start().expect("docker-registry");
    let setup = Setup::new(&registry, r#"{"credsStore":"rcx-engine"}"#);
    setup.push_build_image(&engine);
    let _cleanup = RemoveImage(&engine, setup.image.clone());
    let _ = common_docker::docker(&engine, &["rmi", "-f", &setup.image]);

    let forwarder = Forwarder::start(socket);
    let out = setup.build(&forwarder.endpoint());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = forwarder.sent();
    assert!(
        sent.contains("/images/create"),
        "the engine pulled the build image"
    );
    assert!(!sent.to_ascii_lowercase().contains("x-registry-auth"));
}
