//! Bearer scopes against a token server that grants exactly what it is asked for, in front of a
//! fake registry that enforces them the way distribution does (reads need `pull`, writes
//! `pull,push`, a cross-repository mount also `pull` on the source, else it opens an upload
//! session instead). The client must ask for the union of what the operation needs and what
//! the challenge names, each scope as its own `scope=` parameter, and cache tokens by the
//! scopes they were granted.

mod push_common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_common::{Answer, Req, Scripted};
use rcross::registry::{
    BlobOutcome, BlobSource, Client, ClientOptions, Credentials, DockerConfig, ImagePush, PushBlob,
    PushManifest, PushOptions, Reference,
};

fn sha256(bytes: &[u8]) -> String {
    rcross::oci::sha256_digest(bytes)
}

/// (repository, action)
type Grant = BTreeSet<(String, String)>;

/// How the fake registry words its challenges.
#[derive(Clone, Copy)]
enum Challenges {
    /// What the request needs, as distribution does.
    PerRequest,
    /// Always `repository:NAME:pull`, whatever the request (some registries and proxies do).
    PullOnly,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Grant>,
    blobs: HashMap<(String, String), Vec<u8>>,
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    /// The `scope` query parameters of each token request, in order, percent-decoded.
    token_requests: Vec<Vec<String>>,
    uploads: usize,
}

struct Fake {
    server: Scripted,
    state: Arc<Mutex<State>>,
}

impl Fake {
    fn token_requests(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().token_requests.clone()
    }
    fn reference(&self, repo: &str) -> Reference {
        format!("{}/{repo}", self.server.addr).parse().unwrap()
    }
    fn has_blob(&self, repo: &str, digest: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .blobs
            .contains_key(&(repo.to_string(), digest.to_string()))
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn query(target: &str) -> Vec<(String, String)> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `repository:a/b:pull,push` → {(a/b, pull), (a/b, push)}; several scopes may share a value,
/// space-separated, which is what the token server grants (it is lenient; the tests check how
/// the client words its request separately).
fn atoms(scope: &str) -> Grant {
    let mut out = Grant::new();
    for one in scope.split(' ').filter(|s| !s.is_empty()) {
        let (resource, actions) = one.rsplit_once(':').unwrap();
        let (kind, name) = resource.split_once(':').unwrap();
        assert_eq!(kind, "repository", "{one}");
        for action in actions.split(',') {
            out.insert((name.to_string(), action.to_string()));
        }
    }
    out
}

/// Starts the fake. `grant` may narrow what the token server grants (it then says so in the
/// answer's `scope`, as an OAuth server does).
fn start(challenges: Challenges, grant: impl Fn(Grant) -> Grant + Send + Sync + 'static) -> Fake {
    let state = Arc::new(Mutex::new(State::default()));
    let shared = Arc::clone(&state);
    let server =
        Scripted::start(move |request, nth| handle(&shared, challenges, &grant, request, nth));
    Fake { server, state }
}

fn handle(
    state: &Mutex<State>,
    challenges: Challenges,
    grant: &(dyn Fn(Grant) -> Grant + Send + Sync),
    request: &Req,
    nth: usize,
) -> Answer {
    let host = request.header("host").unwrap_or("").to_string();
    if request.path() == "/token" {
        assert_eq!(request.method, "GET");
        let scopes: Vec<String> = query(&request.target)
            .into_iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v)
            .collect();
        let asked: Grant = scopes.iter().flat_map(|s| atoms(s)).collect();
        let granted = grant(asked.clone());
        let token = format!("tok{nth}");
        let mut st = state.lock().unwrap();
        st.token_requests.push(scopes);
        st.tokens.insert(token.clone(), granted.clone());
        let body = if granted == asked {
            format!(r#"{{"token":"{token}","expires_in":300}}"#)
        } else {
            // Say what was granted, grouped per repository.
            let mut per: HashMap<&str, Vec<&str>> = HashMap::new();
            for (repo, action) in &granted {
                per.entry(repo).or_default().push(action);
            }
            let scope: Vec<String> = per
                .into_iter()
                .map(|(r, a)| format!("repository:{r}:{}", a.join(",")))
                .collect();
            format!(
                r#"{{"token":"{token}","expires_in":300,"scope":"{}"}}"#,
                scope.join(" ")
            )
        };
        return Answer::new(200)
            .header("Content-Type", "application/json")
            .body(body.as_bytes());
    }

    let path = request.path().to_string();
    let rest = path.strip_prefix("/v2/").expect("a /v2/ path");
    let (name, kind, tail) = ["/blobs/uploads/", "/blobs/", "/manifests/"]
        .iter()
        .find_map(|sep| {
            rest.find(sep).map(|i| {
                (
                    rest[..i].to_string(),
                    *sep,
                    rest[i + sep.len()..].to_string(),
                )
            })
        })
        .expect("a blob, upload or manifest path");
    let write = !matches!(request.method.as_str(), "GET" | "HEAD");
    let mut needed: Grant = [(name.clone(), "pull".to_string())].into();
    if write {
        needed.insert((name.clone(), "push".to_string()));
    }
    let granted = request
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| state.lock().unwrap().tokens.get(t).cloned())
        .unwrap_or_default();
    if !needed.is_subset(&granted) {
        let actions = match challenges {
            Challenges::PullOnly => "pull",
            Challenges::PerRequest if write => "pull,push",
            Challenges::PerRequest => "pull",
        };
        return Answer::new(401)
            .header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="http://{host}/token",service="fake",scope="repository:{name}:{actions}""#
                ),
            )
            .body(br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#);
    }

    let mut st = state.lock().unwrap();
    match (request.method.as_str(), kind) {
        ("HEAD" | "GET", "/blobs/") => match st.blobs.get(&(name.clone(), tail.clone())) {
            Some(bytes) => {
                let len = bytes.len().to_string();
                let body = if request.method == "GET" {
                    bytes.clone()
                } else {
                    Vec::new()
                };
                Answer::new(200).header("Content-Length", &len).body(&body)
            }
            None => Answer::new(404),
        },
        ("POST", "/blobs/uploads/") => {
            let q = query(&request.target);
            let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if let (Some(digest), Some(from)) = (get("mount"), get("from")) {
                let readable = granted.contains(&(from.clone(), "pull".to_string()));
                if let Some(bytes) = st.blobs.get(&(from, digest.clone())).cloned() {
                    if readable {
                        st.blobs.insert((name.clone(), digest.clone()), bytes);
                        return Answer::new(201)
                            .header("Location", &format!("/v2/{name}/blobs/{digest}"))
                            .header("Docker-Content-Digest", &digest);
                    }
                }
            }
            st.uploads += 1;
            Answer::new(202)
                .header("Location", &format!("/v2/{name}/blobs/uploads/u{nth}"))
                .header("Range", "0-0")
        }
        ("PUT", "/blobs/uploads/") => {
            let digest = get_digest(&request.target);
            assert_eq!(
                sha256(&request.body),
                digest,
                "uploaded bytes hash to their digest"
            );
            st.blobs
                .insert((name.clone(), digest.clone()), request.body.clone());
            Answer::new(201).header("Docker-Content-Digest", &digest)
        }
        ("PUT", "/manifests/") => {
            let digest = sha256(&request.body);
            let media = request.header("content-type").unwrap_or("").to_string();
            st.manifests.insert(
                (name.clone(), tail.clone()),
                (media.clone(), request.body.clone()),
            );
            st.manifests.insert(
                (name.clone(), digest.clone()),
                (media, request.body.clone()),
            );
            Answer::new(201).header("Docker-Content-Digest", &digest)
        }
        ("GET" | "HEAD", "/manifests/") => match st.manifests.get(&(name.clone(), tail.clone())) {
            Some((media, bytes)) => Answer::new(200)
                .header("Content-Type", media)
                .header("Docker-Content-Digest", &sha256(bytes))
                .body(bytes),
            None => Answer::new(404),
        },
        (method, kind) => panic!("unexpected {method} on {kind} ({})", request.target),
    }
}

fn get_digest(target: &str) -> String {
    query(target)
        .into_iter()
        .find(|(k, _)| k == "digest")
        .map(|(_, v)| v)
        .expect("a digest parameter")
}

fn client() -> Client {
    // Credentials make the token server's job realistic; the fake does not check them.
    let credentials = DockerConfig::default();
    Client::new(
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            idle_read_timeout: Duration::from_secs(5),
            small_body_timeout: Duration::from_secs(5),
            attempts: 1,
            ..ClientOptions::default()
        },
        credentials,
    )
}

fn client_with_credentials(fake: &Fake) -> Client {
    Client::new(
        ClientOptions {
            attempts: 1,
            ..ClientOptions::default()
        },
        DockerConfig::with_credentials(
            &fake.server.addr,
            Credentials {
                username: "u".into(),
                password: "p".into(),
            },
        ),
    )
}

fn blob(bytes: &[u8]) -> PushBlob {
    PushBlob {
        digest: sha256(bytes),
        size: bytes.len() as u64,
        source: BlobSource::Bytes(Arc::new(bytes.to_vec())),
    }
}

/// Two layers, a config and a manifest naming them.
fn image() -> ImagePush {
    let layers = [blob(b"layer one"), blob(b"layer two")];
    let config = blob(br#"{"architecture":"arm64","os":"linux"}"#);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        config.digest,
        config.size,
        layers
            .iter()
            .map(|l| format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                l.digest, l.size
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let root = PushManifest {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: sha256(manifest.as_bytes()),
        bytes: manifest.into_bytes(),
    };
    ImagePush {
        blobs: [layers.to_vec(), vec![config]].concat(),
        manifests: Vec::new(),
        root,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The first request of a push is a HEAD, whose challenge names only `pull`. The token asked
/// for then is the union with what the push needs, so one token serves the whole push.
#[test]
fn a_push_whose_first_challenge_is_pull_only_asks_for_push_at_once() {
    let fake = start(Challenges::PerRequest, |asked| asked);
    let client = client();
    let report = client
        .push_image(
            &fake.reference("team/app"),
            &image(),
            &["1".to_string()],
            &PushOptions {
                parallel: 1,
                ..PushOptions::default()
            },
        )
        .unwrap();
    assert_eq!(report.blobs_uploaded, 3);
    let requests = fake.token_requests();
    assert_eq!(
        requests.first().cloned().map(sorted),
        Some(vec!["repository:team/app:pull,push".to_string()]),
        "the first token request asks for pull and push: {requests:?}"
    );
    assert_eq!(
        requests.len(),
        1,
        "one token serves the whole push: {requests:?}"
    );
}

/// A registry whose challenges always say `pull`, even for uploads: answering the challenge
/// alone would never get a token that may push.
#[test]
fn a_push_to_a_registry_whose_challenges_say_only_pull_still_lands() {
    let fake = start(Challenges::PullOnly, |asked| asked);
    let image = image();
    let report = client_with_credentials(&fake)
        .push_image(
            &fake.reference("team/app"),
            &image,
            &["1".to_string()],
            &PushOptions::default(),
        )
        .unwrap();
    assert_eq!(report.digest, image.root.digest);
    for b in &image.blobs {
        assert!(fake.has_blob("team/app", &b.digest));
    }
}

/// A cross-repository mount needs `pull` on the source and `push` on the target, asked for as
/// two `scope=` parameters of one token request.
#[test]
fn a_cross_repository_mount_asks_for_pull_on_the_source_and_push_on_the_target() {
    let fake = start(Challenges::PerRequest, |asked| asked);
    let client = client();
    let layer = blob(b"shared base layer");
    client
        .push_blob(&fake.reference("base/os"), &layer, &PushOptions::default())
        .unwrap();
    let before = fake.token_requests().len();
    let uploads_before = fake.state.lock().unwrap().uploads;

    let mounted = client
        .mount_blob(&fake.reference("team/app"), &layer.digest, "base/os")
        .unwrap();
    assert!(mounted, "the registry mounted the blob");
    assert!(fake.has_blob("team/app", &layer.digest));
    assert_eq!(
        fake.state.lock().unwrap().uploads,
        uploads_before,
        "nothing uploaded"
    );
    let requests = fake.token_requests();
    let asked: Vec<Vec<String>> = requests[before..].iter().cloned().map(sorted).collect();
    assert_eq!(
        asked,
        vec![vec![
            "repository:base/os:pull".to_string(),
            "repository:team/app:pull,push".to_string(),
        ]],
        "one token request, each scope its own parameter: {requests:?}"
    );

    // push_blob with a blob that lives in the other repository mounts it the same way.
    let other = blob(b"another base layer");
    client
        .push_blob(&fake.reference("base/os"), &other, &PushOptions::default())
        .unwrap();
    let outcome = client
        .push_blob(
            &fake.reference("team/app"),
            &PushBlob {
                source: BlobSource::Registry(fake.reference("base/os:1")),
                ..other.clone()
            },
            &PushOptions::default(),
        )
        .unwrap();
    assert_eq!(outcome, BlobOutcome::Mounted);
}

/// The token cache is keyed by what was granted: a token that was refused `pull` on the mount
/// source is not used for reading that source later, and a token granted everything is reused
/// for anything it covers.
#[test]
fn tokens_are_cached_by_the_scopes_granted() {
    // The server never grants anything on base/os to the push token.
    let fake = start(Challenges::PerRequest, |asked: Grant| {
        let narrowed: Grant = asked
            .iter()
            .filter(|(repo, _)| repo != "base/os" || asked.iter().all(|(r, _)| r == "base/os"))
            .cloned()
            .collect();
        narrowed
    });
    let client = client();
    let layer = blob(b"base layer");
    client
        .push_blob(&fake.reference("base/os"), &layer, &PushOptions::default())
        .unwrap();
    // The mount is refused (no pull on base/os granted): the registry opens a session and the
    // client uploads.
    let outcome = client
        .push_blob(
            &fake.reference("team/app"),
            &layer,
            &PushOptions {
                mount_from: vec!["base/os".to_string()],
                ..PushOptions::default()
            },
        )
        .unwrap();
    assert_eq!(outcome, BlobOutcome::Uploaded);
    let after_push = fake.token_requests().len();
    // A pull of team/app is covered by the pull,push token already held: no new token.
    assert!(client
        .blob_exists(&fake.reference("team/app"), &layer.digest)
        .unwrap());
    assert_eq!(
        fake.token_requests().len(),
        after_push,
        "{:?}",
        fake.token_requests()
    );
    // Reading base/os is not covered by the granted scopes of the push token.
    let bytes = client
        .blob_bytes(&fake.reference("base/os"), &layer.digest, 1024)
        .unwrap();
    assert_eq!(bytes, b"base layer");
}

// ---------------------------------------------------------------------------------------------
// The same against Debian's docker-registry with token auth
// ---------------------------------------------------------------------------------------------

/// A missing prerequisite fails the test, naming the package.
fn require(tool: &str, package: &str) {
    assert!(
        which::which(tool).is_ok(),
        "{tool} is required for this test: apt-get install -y {package}"
    );
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn run(command: &mut std::process::Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A token server that signs JWTs (ES256, certificate in `x5c`) granting exactly the scopes
/// asked for, as distribution's token auth expects them.
struct TokenServer {
    server: Scripted,
    asked: Arc<Mutex<Vec<Vec<String>>>>,
    cert_pem: PathBuf,
    _dir: tempfile::TempDir,
}

const SERVICE: &str = "rcross-test";
const ISSUER: &str = "rcross-test-issuer";

impl TokenServer {
    fn start() -> TokenServer {
        require("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run(std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=rcross token signer",
            ])
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem")));
        run(std::process::Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("key.der")));
        run(std::process::Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(d.join("cert.pem"))
            .arg("-out")
            .arg(d.join("cert.der")));
        let pkcs8 = std::fs::read(d.join("key.der")).unwrap();
        let cert = std::fs::read(d.join("cert.der")).unwrap();
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &rng,
        )
        .unwrap();
        let header = {
            use base64::Engine as _;
            let x5c = base64::engine::general_purpose::STANDARD.encode(&cert);
            b64url(format!(r#"{{"typ":"JWT","alg":"ES256","x5c":["{x5c}"]}}"#).as_bytes())
        };
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let server = Scripted::start(move |request, nth| {
            assert_eq!(request.path(), "/token", "{}", request.target);
            let scopes: Vec<String> = query(&request.target)
                .into_iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v)
                .collect();
            let mut per: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
            for (repo, action) in scopes.iter().flat_map(|s| atoms(s)) {
                per.entry(repo).or_default().insert(action);
            }
            log.lock().unwrap().push(scopes);
            let access: Vec<String> = per
                .iter()
                .map(|(name, actions)| {
                    let actions: Vec<String> = actions.iter().map(|a| format!("\"{a}\"")).collect();
                    format!(
                        r#"{{"type":"repository","name":"{name}","actions":[{}]}}"#,
                        actions.join(",")
                    )
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let claims = format!(
                r#"{{"iss":"{ISSUER}","sub":"","aud":"{SERVICE}","exp":{},"nbf":{},"iat":{now},"jti":"j{nth}","access":[{}]}}"#,
                now + 300,
                now - 10,
                access.join(",")
            );
            let signing_input = format!("{header}.{}", b64url(claims.as_bytes()));
            let signature = key
                .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
                .unwrap();
            let token = format!("{signing_input}.{}", b64url(signature.as_ref()));
            Answer::new(200)
                .header("Content-Type", "application/json")
                .body(format!(r#"{{"token":"{token}","expires_in":300}}"#).as_bytes())
        });
        TokenServer {
            server,
            asked,
            cert_pem: d.join("cert.pem"),
            _dir: dir,
        }
    }

    fn asked(&self) -> Vec<Vec<String>> {
        self.asked.lock().unwrap().clone()
    }
}

/// Debian's docker-registry with token auth trusting `tokens`; killed when dropped.
struct TokenRegistry {
    addr: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl TokenRegistry {
    fn start(tokens: &TokenServer) -> TokenRegistry {
        require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\nauth:\n  token:\n    realm: http://{}/token\n    \
                 service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                dir.path().join("data").display(),
                tokens.server.addr,
                tokens.cert_pem.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = TokenRegistry {
            addr,
            child,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(registry._dir.path().join("log")).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn reference(&self, repo: &str) -> Reference {
        format!("{}/{repo}", self.addr).parse().unwrap()
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real registry enforces the token's `access` claim: a push asks for pull and push at
/// the first (pull-only) challenge and needs no second token; a mount from another
/// repository asks for pull there and push here in one request, and the registry mounts.
#[test]
fn a_real_registry_with_token_auth_gets_the_scopes_it_needs_at_once() {
    let tokens = TokenServer::start();
    let registry = TokenRegistry::start(&tokens);
    let client = client();
    let image = image();
    let report = client
        .push_image(
            &registry.reference("team/app"),
            &image,
            &["1".to_string()],
            &PushOptions {
                parallel: 1,
                ..PushOptions::default()
            },
        )
        .unwrap();
    assert_eq!(report.digest, image.root.digest);
    assert_eq!(
        tokens.asked(),
        vec![vec!["repository:team/app:pull,push".to_string()]],
        "one token, asked for pull and push at the first challenge"
    );
    assert_eq!(
        client
            .get_manifest(&registry.reference("team/app:1"))
            .unwrap()
            .digest,
        image.root.digest
    );

    let layer = &image.blobs[0];
    let mounted = client
        .mount_blob(&registry.reference("team/other"), &layer.digest, "team/app")
        .unwrap();
    assert!(mounted, "the registry mounted the blob");
    let asked = tokens.asked();
    assert_eq!(
        asked.last().cloned().map(sorted),
        Some(vec![
            "repository:team/app:pull".to_string(),
            "repository:team/other:pull,push".to_string(),
        ]),
        "{asked:?}"
    );
    assert!(client
        .blob_exists(&registry.reference("team/other"), &layer.digest)
        .unwrap());
}
