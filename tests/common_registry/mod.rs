//! Shared helpers for the registry tests: an in-process fake registry for hostile answers, the
//! real `docker-registry` started on loopback, and a minimal OCI layout built by hand.
//!
//! Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------------
// Fake registry
// ---------------------------------------------------------------------------------------------

/// One request as the fake registry saw it.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub method: String,
    /// Path and query, e.g. `/v2/app/manifests/1.0` or `/token?service=x&scope=y`.
    pub target: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
}

impl FakeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// What the fake registry does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// Send Content-Length (else the body ends when the connection closes).
        content_length: bool,
    },
    /// Say nothing for this long, then hang up.
    Silent(Duration),
    /// Announce a 200 with `announced` bytes, send `sent`, then say nothing for this long.
    Stalled {
        announced: usize,
        sent: Vec<u8>,
        then: Duration,
    },
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Http {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            content_length: true,
        }
    }
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::status(200).body(body)
    }
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::status(status)
            .header("Content-Type", "application/json")
            .body(body.as_bytes())
    }
    pub fn body(mut self, new: impl Into<Vec<u8>>) -> Reply {
        if let Reply::Http { body, .. } = &mut self {
            *body = new.into();
        }
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Http { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }
    pub fn without_content_length(mut self) -> Reply {
        if let Reply::Http { content_length, .. } = &mut self {
            *content_length = false;
        }
        self
    }
}

type Handler = dyn Fn(&FakeRequest, usize) -> Reply + Send + Sync;

/// A minimal HTTP/1.1 server on 127.0.0.1:0 answering each request with a handler that sees the
/// request and how many requests came before it. One request per connection.
pub struct FakeRegistry {
    pub addr: String,
    requests: Arc<Mutex<Vec<FakeRequest>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRegistry {
    pub fn start(handler: impl Fn(&FakeRequest, usize) -> Reply + Send + Sync + 'static) -> Self {
        FakeRegistry::start_on("127.0.0.1", handler)
    }

    /// On another loopback address (e.g. 127.0.0.2), to play a different host.
    pub fn start_on(
        ip: &str,
        handler: impl Fn(&FakeRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let requests = Arc::clone(&requests);
                    let handler = Arc::clone(&handler);
                    std::thread::spawn(move || serve(stream, &requests, &*handler));
                }
            });
        }
        FakeRegistry {
            addr,
            requests,
            stop,
        }
    }

    pub fn requests(&self) -> Vec<FakeRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self, path_prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.target.starts_with(path_prefix))
            .count()
    }

    /// A reference to `repo_and_tag` (e.g. `app:1.0`) in this registry.
    pub fn reference(&self, repo_and_tag: &str) -> rcross::registry::Reference {
        format!("{}/{repo_and_tag}", self.addr).parse().unwrap()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<FakeRequest>>, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let request = FakeRequest {
        method,
        target,
        headers,
    };
    let nth = {
        let mut all = requests.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let mut stream = stream;
    match handler(&request, nth) {
        Reply::Silent(how_long) => std::thread::sleep(how_long),
        Reply::Stalled {
            announced,
            sent,
            then,
        } => {
            let head = format!("HTTP/1.1 200 Fake\r\nContent-Length: {announced}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&sent);
            let _ = stream.flush();
            std::thread::sleep(then);
        }
        Reply::Http {
            status,
            headers,
            body,
            content_length,
        } => {
            let mut head = format!("HTTP/1.1 {status} Fake\r\nConnection: close\r\n");
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            if content_length {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            // The client may hang up early (oversized bodies): write errors are expected.
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.flush();
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// Prerequisites
// ---------------------------------------------------------------------------------------------

use crate::prereq;
/// Whether a tool is installed; a missing one is a missing prerequisite ([`prereq`]).
pub use prereq::tool as require_tool;

// ---------------------------------------------------------------------------------------------
// Real registry
// ---------------------------------------------------------------------------------------------

/// Debian's `docker-registry` serving a temporary directory on a free loopback port; killed when
/// dropped, also when the test fails.
pub struct RealRegistry {
    pub addr: String,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl RealRegistry {
    /// `None` when docker-registry is missing outside strict mode.
    pub fn start() -> Option<RealRegistry> {
        Self::start_with(None)
    }

    /// The same, with HTTP Basic auth from an htpasswd file (bcrypt, made with apache2-utils'
    /// htpasswd) for one user.
    pub fn start_with_auth(user: &str, password: &str) -> Option<RealRegistry> {
        Self::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Option<RealRegistry> {
        if !require_tool("docker-registry", "docker-registry") {
            return None;
        }
        if auth.is_some() && !require_tool("htpasswd", "apache2-utils") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n{}",
                dir.path().join("data").display(),
                match auth {
                    None => String::new(),
                    Some((user, password)) => {
                        let out = Command::new("htpasswd")
                            .args(["-Bbn", user, password])
                            .output()
                            .unwrap();
                        assert!(out.status.success(), "htpasswd failed");
                        let file = dir.path().join("htpasswd");
                        std::fs::write(&file, &out.stdout).unwrap();
                        format!(
                            "auth:\n  htpasswd:\n    realm: rcross-test\n    path: {}\n",
                            file.display()
                        )
                    }
                }
            ),
        )
        .unwrap();
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = RealRegistry { addr, child, dir };
        registry.wait_until_ready(&log_path);
        Some(registry)
    }

    fn wait_until_ready(&mut self, log_path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}) before answering:\n{}",
                    std::fs::read_to_string(log_path).unwrap_or_default()
                );
            }
            if matches!(http_status(&self.addr, "/v2/"), Some(200) | Some(401)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not answer /v2/ on {} within 30 s:\n{}",
                    self.addr,
                    std::fs::read_to_string(log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status of a plain GET, or `None` when nothing answers.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    let _ = BufReader::new(stream).take(1024).read_line(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// `skopeo copy` from an OCI layout to the registry over plain HTTP.
pub fn skopeo_push(layout: &Path, source_ref: &str, destination: &str, all: bool) {
    let mut command = Command::new("skopeo");
    command
        .args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .args(if all { &["--all"][..] } else { &[][..] })
        .arg(format!("oci:{}:{source_ref}", layout.display()))
        .arg(format!("docker://{destination}"));
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// OCI layout
// ---------------------------------------------------------------------------------------------

pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What [`write_layout`] put where: every blob, and the digests a test checks.
pub struct Layout {
    pub dir: PathBuf,
    pub blobs: HashMap<String, Vec<u8>>,
    pub layer: String,
    /// (architecture, config digest, manifest digest)
    pub images: Vec<(String, String, String)>,
    pub index: String,
}

/// A minimal OCI layout: one gzip layer shared by an amd64 and an arm64 image, each with its
/// own config and manifest, an image index over both tagged `multi`, and the amd64 manifest
/// tagged `single`.
pub fn write_layout(dir: &Path) -> Layout {
    let mut blobs = HashMap::new();
    let mut add = |bytes: Vec<u8>| {
        let digest = sha256(&bytes);
        blobs.insert(digest.clone(), bytes);
        digest
    };

    let tar = tar_with_file("hello.txt", b"hello from rcross\n");
    let diff_id = sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let layer_bytes = gz.finish().unwrap();
    let layer_size = layer_bytes.len();
    let layer = add(layer_bytes);

    let mut images = Vec::new();
    let mut descriptors = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let config_size = config.len();
        let config_digest = add(config.into_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{layer}","size":{layer_size}}}]}}"#
        );
        let manifest_size = manifest.len();
        let manifest_digest = add(manifest.into_bytes());
        descriptors.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
        ));
        images.push((arch.to_string(), config_digest, manifest_digest));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        descriptors.join(",")
    );
    let index_size = index.len();
    let index_digest = add(index.into_bytes());

    let (_, _, amd64_manifest) = &images[0];
    let amd64_size = blobs[amd64_manifest].len();
    let top = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{index_digest}","size":{index_size},"annotations":{{"org.opencontainers.image.ref.name":"multi"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{amd64_manifest}","size":{amd64_size},"annotations":{{"org.opencontainers.image.ref.name":"single"}}}}]}}"#
    );

    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir).unwrap();
    for (digest, bytes) in &blobs {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(blob_dir.join(hex), bytes).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), top).unwrap();
    Layout {
        dir: dir.to_path_buf(),
        blobs,
        layer,
        images,
        index: index_digest,
    }
}

/// A ustar archive holding one regular file.
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let mut field = |offset: usize, value: &str| {
        header[offset..offset + value.len()].copy_from_slice(value.as_bytes());
    };
    field(100, "0000644\0"); // mode
    field(108, "0000000\0"); // uid
    field(116, "0000000\0"); // gid
    field(124, &format!("{:011o}\0", content.len())); // size
    field(136, "00000000000\0"); // mtime
    field(156, "0"); // regular file
    field(257, "ustar\0");
    field(263, "00");
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.resize(out.len() + 1024, 0);
    out
}

// ---------------------------------------------------------------------------------------------
// Running rcross and skopeo
// ---------------------------------------------------------------------------------------------

/// The bundled example project.
pub fn example_hello() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello")
}

/// Run the rcross binary with extra environment; its output is echoed for failing tests.
/// Each call gets caches of its own (build outputs, unpacked roots) in a fresh directory under
/// the target directory, unless `env` names an `XDG_CACHE_HOME`: tests never read or fill the
/// user's cache, and one test's cached build never answers another's (whose command must run).
pub fn rcross(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let cache = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rcross"))
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .envs(env.iter().copied())
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

/// `skopeo inspect --raw` of an image (plain HTTP allowed), as JSON.
pub fn skopeo_raw(image: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", image])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The platforms of an image index, in order, as `os/arch[/variant]`.
pub fn platforms_of(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect()
}
