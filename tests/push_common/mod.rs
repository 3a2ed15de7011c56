//! Helpers for the push tests: a scripted fake registry that reads request bodies, a counting
//! and fault-injecting HTTP proxy, and a small multi-platform image built with `rcross::oci`.
//!
//! Everything listens on 127.0.0.1:0 and serves one request per connection.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcross::oci::{
    Compressor, Descriptor, FileContent, History, ImageSpec, LayerEntry, LayerOptions, OciLayout,
    RunConfig,
};

/// One request as seen by the fake registry or the proxy.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn content_length(&self) -> usize {
        assert!(
            self.header("transfer-encoding").is_none(),
            "the client sent a chunked body; these helpers expect Content-Length"
        );
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads a request head (not its body).
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Req> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    Some(Req {
        method,
        target,
        headers,
        body: Vec::new(),
    })
}

fn read_body(reader: &mut BufReader<TcpStream>, request: &mut Req) -> Option<()> {
    let mut body = vec![0u8; request.content_length()];
    reader.read_exact(&mut body).ok()?;
    request.body = body;
    Some(())
}

fn write_response(stream: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status} Scripted\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // A HEAD answer may announce the size of what a GET would send.
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// Accepts connections on 127.0.0.1:0 until dropped, each served by `serve` on its own thread.
struct Listener {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn start(ip: &str, serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Listener {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                    let serve = Arc::clone(&serve);
                    std::thread::spawn(move || serve(stream));
                }
            });
        }
        Listener { addr, stop }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted fake registry
// ---------------------------------------------------------------------------------------------

/// A reply of the scripted registry.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn new(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, body: &[u8]) -> Answer {
        self.body = body.to_vec();
        self
    }
}

/// A registry whose every answer comes from a handler that sees the request (body included)
/// and how many came before it.
pub struct Scripted {
    pub addr: String,
    requests: Arc<Mutex<Vec<Req>>>,
    _listener: Listener,
}

impl Scripted {
    pub fn start(handler: impl Fn(&Req, usize) -> Answer + Send + Sync + 'static) -> Scripted {
        Scripted::start_on("127.0.0.1", handler)
    }

    /// On another loopback address (e.g. 127.0.0.2), to play a different host.
    pub fn start_on(
        ip: &str,
        handler: impl Fn(&Req, usize) -> Answer + Send + Sync + 'static,
    ) -> Scripted {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let listener = Listener::start(ip, move |stream| {
            let Ok(read_half) = stream.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(read_half);
            let Some(mut request) = read_head(&mut reader) else {
                return;
            };
            if read_body(&mut reader, &mut request).is_none() {
                return;
            }
            let nth = {
                let mut all = seen.lock().unwrap();
                all.push(request.clone());
                all.len() - 1
            };
            let answer = handler(&request, nth);
            let mut stream = stream;
            write_response(&mut stream, answer.status, &answer.headers, &answer.body);
        });
        Scripted {
            addr: listener.addr.clone(),
            requests,
            _listener: listener,
        }
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------------------------

/// What the proxy does with one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward it to the registry and relay the answer.
    Pass,
    /// Hang up without answering, leaving the body unread (the kernel sends a reset).
    Reset,
    /// Answer this status (with these headers) without asking the registry.
    Status(u16, Vec<(String, String)>),
    /// Forward it, let the registry act and answer, then hang up without relaying a byte of
    /// the answer: the client cannot tell whether its request had an effect.
    DropAnswer,
    /// Forward it and relay only the first this many bytes of the answer (head included),
    /// then hang up: a download cut part way.
    Truncate(usize),
}

/// An HTTP proxy in front of a registry that logs every request and injects faults.
pub struct Proxy {
    pub addr: String,
    log: Arc<Mutex<Vec<(String, String)>>>,
    heads: Arc<Mutex<Vec<Req>>>,
    _listener: Listener,
}

impl Proxy {
    pub fn start(
        upstream: &str,
        fault: impl Fn(&Req, usize) -> Fault + Send + Sync + 'static,
    ) -> Proxy {
        let upstream = upstream.to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen_heads = Arc::clone(&heads);
        let listener = Listener::start("127.0.0.1", move |stream| {
            let Ok(read_half) = stream.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(read_half);
            let Some(mut request) = read_head(&mut reader) else {
                return;
            };
            let nth = {
                let mut all = seen.lock().unwrap();
                all.push((request.method.clone(), request.target.clone()));
                seen_heads.lock().unwrap().push(request.clone());
                all.len() - 1
            };
            let mut stream = stream;
            match fault(&request, nth) {
                Fault::Reset => {
                    // Unread data at close makes the kernel answer with RST.
                    drop(reader);
                    drop(stream);
                    return;
                }
                Fault::Status(status, headers) => {
                    if read_body(&mut reader, &mut request).is_some() {
                        write_response(&mut stream, status, &headers, b"{\"errors\":[{\"code\":\"INJECTED\",\"message\":\"fault injected by the test proxy\"}]}");
                    }
                }
                Fault::Pass => {
                    if read_body(&mut reader, &mut request).is_none() {
                        return;
                    }
                    forward(&upstream, &request, &mut stream, usize::MAX);
                }
                Fault::DropAnswer => {
                    if read_body(&mut reader, &mut request).is_none() {
                        return;
                    }
                    forward(&upstream, &request, &mut std::io::sink(), usize::MAX);
                    // Closing without a byte of the answer: the client cannot know the outcome.
                    drop(reader);
                    drop(stream);
                    return;
                }
                Fault::Truncate(bytes) => {
                    if read_body(&mut reader, &mut request).is_none() {
                        return;
                    }
                    forward(&upstream, &request, &mut stream, bytes);
                    drop(reader);
                    drop(stream);
                    return;
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
        });
        Proxy {
            addr: listener.addr.clone(),
            log,
            heads,
            _listener: listener,
        }
    }

    /// Every (method, target) seen, faults included.
    pub fn log(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }

    /// Requests with this method whose target contains `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.log()
            .iter()
            .filter(|(m, t)| m == method && t.contains(needle))
            .count()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
        self.heads.lock().unwrap().clear();
    }

    /// Every request seen, with its headers (bodies are not kept).
    pub fn requests(&self) -> Vec<Req> {
        self.heads.lock().unwrap().clone()
    }
}

/// Sends `request` to `upstream` and copies at most `limit` bytes of the answer to `client`.
fn forward(upstream: &str, request: &Req, client: &mut dyn Write, limit: usize) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = server.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        if name != "connection" {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    if server.write_all(head.as_bytes()).is_err() || server.write_all(&request.body).is_err() {
        return;
    }
    let _ = std::io::copy(&mut (&mut server).take(limit as u64), client);
}

// ---------------------------------------------------------------------------------------------
// A test image
// ---------------------------------------------------------------------------------------------

pub const PLATFORMS: [&str; 3] = ["linux/amd64", "linux/arm64", "linux/arm/v7"];

/// What [`build_image`] wrote.
pub struct Built {
    pub layout: OciLayout,
    pub index: Descriptor,
    /// Per platform: the manifest descriptor.
    pub manifests: Vec<Descriptor>,
}

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A three-platform image in an OCI layout at `dir`, tagged `name`: a shared 9 MiB layer of
/// noise (so it is pushed in chunks) plus one small layer per platform.
pub fn build_image(dir: &Path, name: &str, compression: Compressor) -> Built {
    let layout = OciLayout::create(dir).unwrap();
    let options = LayerOptions {
        compression,
        threads: 2,
        mtime: 1_700_000_000,
    };
    let shared = layout
        .write_layer(
            &[LayerEntry::file(
                "data/noise.bin",
                FileContent::Bytes(noise(9 * 1024 * 1024, 42)),
                0o644,
            )],
            &options,
        )
        .unwrap();
    let mut manifests = Vec::new();
    for platform in PLATFORMS {
        let platform: rcross::Platform = platform.parse().unwrap();
        let app = layout
            .write_layer(
                &[LayerEntry::file(
                    "usr/local/bin/hello",
                    FileContent::Bytes(format!("hello for {platform}\n").into_bytes()),
                    0o755,
                )],
                &options,
            )
            .unwrap();
        let spec = ImageSpec {
            platform,
            layers: vec![shared.clone(), app],
            history: vec![
                History {
                    created_by: Some("shared data".into()),
                    ..History::default()
                },
                History {
                    created_by: Some("rcross build".into()),
                    ..History::default()
                },
            ],
            run: RunConfig {
                entrypoint: Some(vec!["/usr/local/bin/hello".into()]),
                env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
                labels: [(
                    "org.opencontainers.image.title".to_string(),
                    "hello".to_string(),
                )]
                .into(),
                ..RunConfig::default()
            },
            created: 1_700_000_000,
            annotations: BTreeMap::new(),
        };
        manifests.push(layout.write_image(&spec).unwrap());
    }
    let index = layout.write_index(&manifests, &BTreeMap::new()).unwrap();
    layout.tag(&index, name).unwrap();
    Built {
        layout,
        index,
        manifests,
    }
}
