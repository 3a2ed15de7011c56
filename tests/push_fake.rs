//! Pushing against a scripted registry on 127.0.0.1: the requests follow the distribution
//! protocol, and hostile or broken answers end in clear, typed errors without leaking
//! credentials. No test asserts on time.

mod prereq;
mod push_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use push_common::{Answer, Req, Scripted};
use rcross::registry::{
    BlobOutcome, BlobSource, Client, ClientOptions, Credentials, DockerConfig, ImagePush, PushBlob,
    PushManifest, PushOptions, Reference, RegistryError,
};

fn sha256(bytes: &[u8]) -> String {
    rcross::oci::sha256_digest(bytes)
}

fn client_with(attempts: u32, credentials: DockerConfig) -> Client {
    Client::new(
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            idle_read_timeout: Duration::from_secs(5),
            small_body_timeout: Duration::from_secs(5),
            attempts,
            backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_millis(20),
            ..ClientOptions::default()
        },
        credentials,
    )
}

fn client() -> Client {
    client_with(3, DockerConfig::default())
}

fn repo(fake: &Scripted) -> Reference {
    format!("{}/app", fake.addr).parse().unwrap()
}

fn blob(bytes: &[u8]) -> PushBlob {
    PushBlob {
        digest: sha256(bytes),
        size: bytes.len() as u64,
        source: BlobSource::Bytes(Arc::new(bytes.to_vec())),
    }
}

fn err<T: std::fmt::Debug>(result: Result<T, RegistryError>) -> RegistryError {
    match result {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// A registry that follows the protocol, storing uploads in memory; `hook` may answer first.
fn protocol(
    hook: impl Fn(&Req, usize) -> Option<Answer> + Send + Sync + 'static,
) -> (Scripted, Arc<Mutex<Vec<u8>>>) {
    let uploaded = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&uploaded);
    let fake = Scripted::start(move |request, n| {
        if let Some(answer) = hook(request, n) {
            return answer;
        }
        let path = request.path();
        match request.method.as_str() {
            "HEAD" => Answer::new(404),
            "POST" if path.ends_with("/blobs/uploads/") => {
                store.lock().unwrap().clear();
                Answer::new(202).header("Location", "/v2/app/blobs/uploads/u1?_state=s1")
            }
            "PATCH" => {
                let mut data = store.lock().unwrap();
                data.extend_from_slice(&request.body);
                let end = data.len() - 1;
                Answer::new(202)
                    .header("Location", "/v2/app/blobs/uploads/u1?_state=s2")
                    .header("Range", &format!("0-{end}"))
            }
            "PUT" if path.contains("/blobs/uploads/") => {
                let mut data = store.lock().unwrap();
                data.extend_from_slice(&request.body);
                let digest = sha256(&data);
                let asked = request.target.split("digest=").nth(1).unwrap_or("");
                if asked.replace("%3A", ":") != digest {
                    return Answer::new(400).body(br#"{"errors":[{"code":"DIGEST_INVALID"}]}"#);
                }
                Answer::new(201).header("Docker-Content-Digest", &digest)
            }
            "PUT" if path.contains("/manifests/") => {
                Answer::new(201).header("Docker-Content-Digest", &sha256(&request.body))
            }
            _ => Answer::new(404),
        }
    });
    (fake, uploaded)
}

#[test]
fn small_blobs_go_up_in_one_put_and_large_ones_in_chunks() {
    let (fake, stored) = protocol(|_, _| None);
    let options = PushOptions {
        chunk_size: 1024,
        monolithic_max: 1024,
        ..PushOptions::default()
    };
    let small = blob(b"small config");
    assert_eq!(
        client().push_blob(&repo(&fake), &small, &options).unwrap(),
        BlobOutcome::Uploaded
    );
    let requests = fake.requests();
    let summary: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path()))
        .collect();
    assert_eq!(
        summary,
        [
            ("HEAD", format!("/v2/app/blobs/{}", small.digest).as_str()),
            ("POST", "/v2/app/blobs/uploads/"),
            ("PUT", "/v2/app/blobs/uploads/u1"),
        ]
    );
    let put = &requests[2];
    assert!(
        put.target.contains("_state=s1&digest=sha256%3A"),
        "{}",
        put.target
    );
    assert_eq!(put.body, b"small config");

    let large: Vec<u8> = (0..3000u32).map(|i| (i % 200) as u8).collect();
    let large_blob = blob(&large);
    assert_eq!(
        client()
            .push_blob(&repo(&fake), &large_blob, &options)
            .unwrap(),
        BlobOutcome::Uploaded
    );
    let requests = fake.requests();
    let patches: Vec<&Req> = requests.iter().filter(|r| r.method == "PATCH").collect();
    let ranges: Vec<&str> = patches
        .iter()
        .map(|r| r.header("content-range").unwrap())
        .collect();
    assert_eq!(ranges, ["0-1023", "1024-2047", "2048-2999"]);
    assert!(
        patches[1].target.contains("_state=s2"),
        "follows each new Location"
    );
    let last = requests.last().unwrap();
    assert_eq!(last.method, "PUT");
    assert!(last.body.is_empty());
    assert_eq!(*stored.lock().unwrap(), large);
}

#[test]
fn present_blobs_are_skipped_and_mount_202_falls_back_to_an_upload() {
    let (fake, _) = protocol(|request, _| {
        if request.method == "HEAD" && request.path().ends_with(&sha256(b"there")) {
            return Some(Answer::new(200).header("Content-Length", "5"));
        }
        None
    });
    let options = PushOptions {
        mount_from: vec!["other/repo".into()],
        ..PushOptions::default()
    };
    let client = client();
    assert_eq!(
        client
            .push_blob(&repo(&fake), &blob(b"there"), &options)
            .unwrap(),
        BlobOutcome::Present
    );
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(
        client
            .push_blob(&repo(&fake), &blob(b"elsewhere"), &options)
            .unwrap(),
        BlobOutcome::Uploaded
    );
    let post = &fake.requests()[2];
    assert_eq!(post.method, "POST");
    assert!(
        post.target.contains("mount=sha256%3A") && post.target.contains("from=other%2Frepo"),
        "{}",
        post.target
    );
    assert!(client.blob_exists(&repo(&fake), &sha256(b"there")).unwrap());
    assert!(!client.blob_exists(&repo(&fake), &sha256(b"nope")).unwrap());
}

#[test]
fn hostile_upload_answers_are_typed_errors() {
    type Hook = fn(&Req, usize) -> Option<Answer>;
    let cases: [(Hook, &str); 6] = [
        (
            |r, _| (r.method == "POST").then(|| Answer::new(202)),
            "without a Location",
        ),
        (
            |r, _| {
                (r.method == "POST")
                    .then(|| Answer::new(202).header("Location", "ftp://evil.example/x"))
            },
            "ftp://evil.example/x",
        ),
        (
            |r, _| {
                (r.method == "PUT").then(|| {
                    Answer::new(201).header("Docker-Content-Digest", &sha256(b"something else"))
                })
            },
            "content digest is",
        ),
        (
            |r, _| (r.method == "HEAD").then(|| Answer::new(200).header("Content-Length", "999")),
            "as 999 bytes",
        ),
        (
            |r, _| {
                (r.method == "PATCH").then(|| {
                    Answer::new(202)
                        .header("Location", "/v2/app/blobs/uploads/u1")
                        .header("Range", "0-10")
                })
            },
            "says it holds",
        ),
        (
            |r, _| (r.method == "POST").then(|| Answer::new(200)),
            "expected 202",
        ),
    ];
    let large = vec![9u8; 5000];
    for (hook, needle) in cases {
        let (fake, _) = protocol(hook);
        let options = PushOptions {
            chunk_size: 2048,
            monolithic_max: 100,
            ..PushOptions::default()
        };
        let e = err(client().push_blob(&repo(&fake), &blob(&large), &options));
        let message = e.to_string();
        assert!(
            matches!(
                e,
                RegistryError::InvalidResponse { .. } | RegistryError::DigestMismatch { .. }
            ),
            "{message}"
        );
        assert!(message.contains(needle), "{needle:?} not in {message}");
        assert!(!message.contains("_state"), "{message}");
        let posts = fake
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count();
        assert!(posts <= 1, "invalid answers are not retried: {posts}");
    }
}

#[test]
fn client_errors_are_not_retried_and_server_errors_are() {
    for status in [400, 401, 403, 404] {
        let (fake, _) = protocol(move |r, _| (r.method == "POST").then(|| Answer::new(status)));
        let e = err(client_with(5, DockerConfig::default()).push_blob(
            &repo(&fake),
            &blob(b"x"),
            &PushOptions::default(),
        ));
        assert_eq!(e.status(), Some(status), "{e}");
        let posts = fake
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count();
        assert_eq!(posts, 1, "HTTP {status} must not be retried");
    }
    for status in [408, 429, 500, 503] {
        let (fake, _) = protocol(move |r, n| {
            (r.method == "POST" && n < 4).then(|| Answer::new(status).header("Retry-After", "1"))
        });
        let outcome = client_with(5, DockerConfig::default())
            .push_blob(&repo(&fake), &blob(b"x"), &PushOptions::default())
            .unwrap();
        assert_eq!(outcome, BlobOutcome::Uploaded, "HTTP {status} is retried");
    }
    // Bounded: a registry that always fails is given up on.
    let (fake, _) = protocol(|r, _| (r.method == "POST").then(|| Answer::new(500)));
    let e = err(client_with(4, DockerConfig::default()).push_blob(
        &repo(&fake),
        &blob(b"x"),
        &PushOptions::default(),
    ));
    assert!(e.to_string().contains("gave up after 4 attempts"), "{e}");
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        4
    );
}

#[test]
fn credentials_go_to_the_registry_only_and_never_into_errors() {
    const PASSWORD: &str = "hunter2-very-secret";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("me:{PASSWORD}"));
    let storage = Scripted::start_on("127.0.0.2", |_, _| Answer::new(201));
    let storage_addr = storage.addr.clone();
    let expected = format!("Basic {basic}");
    let fake = Scripted::start(move |request, _| {
        if request.header("authorization") != Some(expected.as_str()) {
            return Answer::new(401).header("WWW-Authenticate", r#"Basic realm="registry""#);
        }
        match request.method.as_str() {
            "HEAD" => Answer::new(404),
            "POST" => Answer::new(202).header(
                "Location",
                &format!("http://{storage_addr}/upload/u9?sig=abc"),
            ),
            _ => Answer::new(403)
                .body(br#"{"errors":[{"code":"DENIED","message":"requested access is denied"}]}"#),
        }
    });
    let credentials = DockerConfig::with_credentials(
        &fake.addr,
        Credentials {
            username: "me".into(),
            password: PASSWORD.into(),
        },
    );
    let client = client_with(3, credentials);
    // The upload goes to the storage host, without our credentials.
    assert_eq!(
        client
            .push_blob(&repo(&fake), &blob(b"layer"), &PushOptions::default())
            .unwrap(),
        BlobOutcome::Uploaded
    );
    let at_storage = storage.requests();
    assert_eq!(at_storage.len(), 1);
    assert!(at_storage[0].header("authorization").is_none());

    // A refused manifest: the error names the URL and status, not the secret.
    let bytes = b"{}".to_vec();
    let manifest = PushManifest {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: sha256(&bytes),
        bytes,
    };
    let e = err(client.put_manifest(&repo(&fake), "1", &manifest));
    assert_eq!(e.status(), Some(403));
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(PASSWORD) && !text.contains(&basic), "{text}");
        assert!(text.contains("DENIED"), "{text}");
    }
}

#[test]
fn bad_local_input_fails_before_any_request() {
    let (fake, _) = protocol(|_, _| None);
    let bytes = b"{}".to_vec();
    let lying = PushManifest {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        digest: sha256(b"not these bytes"),
        bytes,
    };
    let image = ImagePush {
        blobs: vec![blob(b"x")],
        manifests: Vec::new(),
        root: lying.clone(),
    };
    let e = err(client().push_image(&repo(&fake), &image, &[], &PushOptions::default()));
    assert!(matches!(e, RegistryError::Local { .. }), "{e}");
    let good = PushManifest {
        digest: sha256(&lying.bytes),
        ..lying
    };
    let image = ImagePush {
        root: good,
        ..image
    };
    let e = err(client().push_image(
        &repo(&fake),
        &image,
        &["bad tag".to_string()],
        &PushOptions::default(),
    ));
    assert!(matches!(e, RegistryError::Reference(_)), "{e}");
    let missing = PushBlob {
        digest: sha256(b"gone"),
        size: 4,
        source: BlobSource::File("/nonexistent/rcross/blob".into()),
    };
    let e = err(client().push_blob(&repo(&fake), &missing, &PushOptions::default()));
    assert!(e.to_string().contains("/nonexistent/rcross/blob"), "{e}");
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.method == "HEAD" || r.method == "POST"),
        "nothing was uploaded"
    );
}

#[test]
fn push_image_orders_blobs_manifests_index_then_tags() {
    let (fake, _) = protocol(|_, _| None);
    let manifest_bytes = br#"{"schemaVersion":2,"m":1}"#.to_vec();
    let manifest = PushManifest {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: sha256(&manifest_bytes),
        bytes: manifest_bytes,
    };
    let index_bytes = br#"{"schemaVersion":2,"i":1}"#.to_vec();
    let index = PushManifest {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        digest: sha256(&index_bytes),
        bytes: index_bytes,
    };
    let image = ImagePush {
        blobs: vec![blob(b"a"), blob(b"b"), blob(b"a")],
        manifests: vec![manifest.clone()],
        root: index.clone(),
    };
    let target: Reference = format!("{}/app:t1", fake.addr).parse().unwrap();
    let report = client()
        .push_image(
            &target,
            &image,
            &["t2".to_string()],
            // The fake keeps one upload at a time.
            &PushOptions {
                parallel: 1,
                ..PushOptions::default()
            },
        )
        .unwrap();
    assert_eq!(report.blobs_uploaded, 2, "duplicates pushed once");
    assert_eq!(report.tags, ["t2", "t1"]);
    let puts: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path().contains("/manifests/"))
        .map(|r| r.path().rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        puts,
        [manifest.digest, index.digest, "t2".into(), "t1".into()]
    );
    let last_blob_put = fake
        .requests()
        .iter()
        .rposition(|r| r.path().contains("/blobs/"))
        .unwrap();
    let first_manifest_put = fake
        .requests()
        .iter()
        .position(|r| r.path().contains("/manifests/"))
        .unwrap();
    assert!(last_blob_put < first_manifest_put);
}
