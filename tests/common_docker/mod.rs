//! Shared helpers for the Docker engine tests: the machine's engine (tests/run.sh starts one
//! when none answers), a second private dockerd on a loopback TCP port, plain or TLS with
//! certificates made by the openssl CLI (a stand-in for a remote builder), and a small amd64
//! busybox image written with rcross's own OCI writer.
//!
//! A missing engine or dockerd is a missing prerequisite ([`prereq`]: a failure under
//! tests/run.sh and CI).
#![allow(dead_code)]

use crate::prereq;
pub use prereq::missing;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcross::engine::{DockerEngine, Endpoint};
use rcross::oci::{
    Compressor, Descriptor, FileContent, History, ImageSpec, LayerEntry, LayerOptions, OciLayout,
    RunConfig,
};

/// The default engine (`DOCKER_HOST`, else unix:///var/run/docker.sock) when it answers.
pub fn system_engine() -> Option<Endpoint> {
    let endpoint = match Endpoint::from_env() {
        Ok(e) => e,
        Err(e) => {
            return missing(
                &format!("DOCKER_HOST is not usable: {e}"),
                "fix DOCKER_HOST",
            )
        }
    };
    if which::which("docker").is_err() {
        return missing("the docker CLI", "apt-get install -y docker.io");
    }
    match DockerEngine::connect(&endpoint) {
        Ok(_) => Some(endpoint),
        Err(e) => missing(
            &format!("no Docker engine answers: {e}"),
            "bash tests/run.sh starts dockerd; or `sudo dockerd &`",
        ),
    }
}

/// `docker ARGS` against `endpoint`.
pub fn docker(endpoint: &Endpoint, args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", endpoint.to_string())
        .args(args)
        .output()
        .expect("run docker")
}

/// `docker ARGS`, which must succeed; its stdout.
pub fn docker_ok(endpoint: &Endpoint, args: &[&str]) -> String {
    let out = docker(endpoint, args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private dockerd on 127.0.0.1:PORT with its own data, exec root, pidfile, socket and
/// bridge, and no iptables rules, so it touches nothing of the machine's engine. Stopped, its
/// bridge deleted and its directories removed when dropped.
///
/// Not `--bridge=none`: with it, dockerd deletes the `docker0` interface at start, which takes
/// the network away from the machine's engine. The private bridge `rdkPORT` gets its own
/// subnet in 10.200.0.0/13 instead.
pub struct Dockerd {
    /// `tcp://127.0.0.1:PORT`.
    pub endpoint: Endpoint,
    /// The daemon's own unix socket (no TLS there): for the `docker` CLI and clean-ups.
    pub socket: Endpoint,
    /// For [`Dockerd::start_tls`]: the client's `ca.pem`, `cert.pem` and `key.pem` (a
    /// `DOCKER_CERT_PATH`).
    pub client_certs: Option<PathBuf>,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    bridge: Option<String>,
}

impl Dockerd {
    /// A plain-TCP engine. `None` (outside strict mode) when dockerd is not installed or cannot
    /// start here.
    pub fn start_tcp() -> Option<Dockerd> {
        Dockerd::start(false)
    }

    /// An engine that speaks only TLS and wants a client certificate (`--tlsverify`): a CA, a
    /// server certificate for 127.0.0.1 and a client certificate are made with the `openssl`
    /// CLI in the daemon's directory; the client's files are in [`Dockerd::client_certs`].
    /// `None` (outside strict mode) when dockerd or openssl is missing or dockerd cannot start
    /// here.
    pub fn start_tls() -> Option<Dockerd> {
        Dockerd::start(true)
    }

    fn start(tls: bool) -> Option<Dockerd> {
        let Ok(dockerd) = which::which("dockerd").or_else(|_| {
            let p = PathBuf::from("/usr/sbin/dockerd");
            if p.exists() {
                Ok(p)
            } else {
                Err(())
            }
        }) else {
            return missing("dockerd", "apt-get install -y docker.io");
        };
        if tls && which::which("openssl").is_err() {
            return missing("the openssl CLI", "apt-get install -y openssl");
        }
        // Short paths: the engine's and containerd's unix sockets live under these.
        let dir = tempfile::Builder::new()
            .prefix("rdk")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let d = dir.path().to_path_buf();
        let mut tls_args = Vec::new();
        let mut client_certs = None;
        if tls {
            let ca = d.join("ca");
            let server = d.join("server");
            let client = d.join("client");
            make_ca(&ca, "rcross test CA");
            make_cert(&server, &ca, "127.0.0.1", CertUse::Server);
            make_cert(&client, &ca, "rcross test client", CertUse::Client);
            tls_args = vec![
                "--tlsverify".to_string(),
                format!("--tlscacert={}", server.join("ca.pem").display()),
                format!("--tlscert={}", server.join("cert.pem").display()),
                format!("--tlskey={}", server.join("key.pem").display()),
            ];
            client_certs = Some(client);
        }
        let port = free_port();
        let bridge = format!("rdk{port}");
        let subnet = format!("10.{}.{}.1/24", 200 + (port >> 8) % 8, port & 0xff);
        for args in [
            vec!["link", "add", "name", &bridge, "type", "bridge"],
            vec!["addr", "add", &subnet, "dev", &bridge],
        ] {
            let ok = Command::new("ip")
                .args(&args)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("ip").args(["link", "del", &bridge]).status();
                return missing(
                    &format!("a private bridge for dockerd (ip {})", args.join(" ")),
                    "needs root and iproute2",
                );
            }
        }
        let log = std::fs::File::create(d.join("log")).expect("log file");
        let child = Command::new(dockerd)
            .arg(format!("--data-root={}", d.join("root").display()))
            .arg(format!("--exec-root={}", d.join("exec").display()))
            .arg(format!("--pidfile={}", d.join("pid").display()))
            .arg(format!("--host=unix://{}", d.join("sock").display()))
            .arg(format!("--host=tcp://127.0.0.1:{port}"))
            .args(&tls_args)
            .arg(format!("--bridge={bridge}"))
            .args(["--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn();
        let endpoint: Endpoint = format!("tcp://127.0.0.1:{port}").parse().expect("endpoint");
        let socket = Endpoint::Unix(d.join("sock"));
        let mut me = Dockerd {
            endpoint: endpoint.clone(),
            socket: socket.clone(),
            client_certs,
            child: None,
            dir: Some(dir),
            bridge: Some(bridge),
        };
        match child {
            Ok(c) => me.child = Some(c),
            Err(e) => return missing(&format!("dockerd cannot start: {e}"), "run as root"),
        }
        // Ready: the TCP engine answers. With TLS the engine client would need this process's
        // DOCKER_TLS_VERIFY, so the daemon's socket answering and the port listening instead.
        let ready = || {
            if tls {
                DockerEngine::connect(&socket).is_ok()
                    && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                DockerEngine::connect(&endpoint).is_ok()
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready() {
                return Some(me);
            }
            let exited = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = me.log();
                return missing(
                    &format!("a private dockerd did not come up ({exited:?}):\n{log}"),
                    "dockerd needs root",
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines of the daemon's log.
    pub fn log(&self) -> String {
        let text = self
            .dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("log")).ok())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets dockerd stop its containerd; SIGKILL only if it hangs.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(bridge) = self.bridge.take() {
            let _ = Command::new("ip").args(["link", "del", &bridge]).status();
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                // Something may still be mounted under the data root; unmount and retry.
                let _ = Command::new("umount")
                    .args(["-R", "-l"])
                    .arg(path.join("root"))
                    .status();
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// What a certificate from [`make_cert`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUse {
    /// An engine's: `subjectAltName IP:127.0.0.1`, `extendedKeyUsage serverAuth`.
    Server,
    /// A client's: `extendedKeyUsage clientAuth`.
    Client,
}

/// The extensions the test certificates get (an `openssl` config file).
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = rcross test
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
";

/// `openssl ARGS` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl_config(dir: &Path) -> String {
    let config = dir.join("openssl.cnf");
    std::fs::write(&config, OPENSSL_CONFIG).expect("openssl config");
    config.display().to_string()
}

/// A self-signed CA in `dir` (created): `ca.pem` and its key `ca-key.pem` (RSA 2048, valid
/// for two days).
pub fn make_ca(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).expect("CA dir");
    let config = openssl_config(dir);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-config",
            &config,
            "-extensions",
            "ca_ext",
        ],
    );
}

/// A certificate for `name` signed by the CA in `ca_dir` (see [`make_ca`]), in `dir`
/// (created) as a `DOCKER_CERT_PATH` holds it: `cert.pem`, `key.pem` and the CA's `ca.pem`.
pub fn make_cert(dir: &Path, ca_dir: &Path, name: &str, usage: CertUse) {
    std::fs::create_dir_all(dir).expect("cert dir");
    let config = openssl_config(dir);
    let ext = match usage {
        CertUse::Server => "server_ext",
        CertUse::Client => "client_ext",
    };
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            &format!("/CN={name}"),
            "-config",
            &config,
        ],
    );
    let serial = format!("0x{:x}{:08x}", std::process::id(), rand_u32());
    let ca = ca_dir.join("ca.pem").display().to_string();
    let ca_key = ca_dir.join("ca-key.pem").display().to_string();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            &config,
            "-extensions",
            ext,
            "-out",
            "cert.pem",
        ],
    );
    std::fs::copy(ca_dir.join("ca.pem"), dir.join("ca.pem")).expect("copy ca.pem");
}

/// Distinct enough serial numbers for certificates made in one test run.
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// A loopback port nothing listens on (right now).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An amd64 image in an OCI layout at `dir`, written with rcross's OCI writer: the host's
/// static busybox as /bin/busybox with `sh`, `cat`, `ls` and `echo` links. `None` (outside
/// strict mode) when busybox-static is missing.
pub fn busybox_layout(dir: &Path) -> Option<Descriptor> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        return missing("/bin/busybox", "apt-get install -y busybox-static");
    }
    let layout = OciLayout::create(dir).expect("layout");
    let mut entries = vec![
        LayerEntry::directory("bin"),
        LayerEntry::directory("tmp"),
        LayerEntry::file(
            "bin/busybox",
            FileContent::Path(busybox.to_path_buf()),
            0o755,
        ),
    ];
    for tool in [
        "sh", "cat", "ls", "echo", "mkdir", "id", "test", "touch", "ln",
    ] {
        entries.push(LayerEntry::symlink(format!("bin/{tool}"), "busybox"));
    }
    let layer = layout
        .write_layer(
            &entries,
            &LayerOptions {
                compression: Compressor::default(),
                threads: 0,
                mtime: 0,
            },
        )
        .expect("layer");
    let spec = ImageSpec {
        platform: "linux/amd64".parse().expect("platform"),
        layers: vec![layer],
        history: vec![History {
            created: None,
            created_by: Some("rcross tests: busybox".into()),
            comment: None,
            empty_layer: false,
        }],
        run: RunConfig {
            env: vec!["PATH=/bin".to_string()],
            ..RunConfig::default()
        },
        created: 0,
        annotations: Default::default(),
    };
    let manifest = layout.write_image(&spec).expect("image");
    layout.tag(&manifest, "busybox").expect("tag");
    Some(manifest)
}

/// Container IDs (all states) carrying the rcross build label.
pub fn build_containers(endpoint: &Endpoint) -> Vec<String> {
    docker_ok(
        endpoint,
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label={}", rcross::engine::JOB_LABEL),
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}
