//! The registry client against a fake registry on 127.0.0.1 that answers badly on purpose.

mod common_registry;
mod prereq;

use std::io::Read;
use std::time::Duration;

use common_registry::{sha256, FakeRegistry, Reply};
use rcross::image::{ImageSource, SourceError};
use rcross::registry::{
    Client, ClientOptions, Credentials, DockerConfig, RegistryError, RegistryImage,
    MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};

const INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// Short timeouts and backoff so hostile cases end quickly; no test asserts on time.
fn quick_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
        idle_read_timeout: Duration::from_secs(5),
        small_body_timeout: Duration::from_secs(5),
        // Three tries, as these tests count them (the default is bounded by retry_timeout).
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_retry_after: Duration::from_millis(50),
        ..ClientOptions::default()
    }
}

fn client() -> Client {
    Client::new(quick_options(), DockerConfig::default())
}

fn err<T: std::fmt::Debug>(result: Result<T, RegistryError>) -> RegistryError {
    match result {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn manifest_by_tag_sends_accept_headers_and_reports_media_type() {
    let fake =
        FakeRegistry::start(|_, _| Reply::ok(INDEX).header("Content-Type", MEDIA_TYPE_OCI_INDEX));
    let manifest = client().get_manifest(&fake.reference("app:1.0")).unwrap();
    assert_eq!(manifest.media_type, MEDIA_TYPE_OCI_INDEX);
    assert_eq!(manifest.bytes, INDEX.as_bytes());
    assert_eq!(manifest.digest, sha256(INDEX.as_bytes()));
    let requests = fake.requests();
    assert_eq!(requests[0].target, "/v2/app/manifests/1.0");
    let accept = requests[0].header("accept").unwrap();
    for media_type in [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ] {
        assert!(accept.contains(media_type), "{accept}");
    }
}

#[test]
fn manifest_with_wrong_digest_is_refused() {
    let fake = FakeRegistry::start(|_, _| Reply::ok(INDEX));
    let asked = sha256(b"something else");
    let reference = fake.reference(&format!("app@{asked}"));
    let e = err(client().get_manifest(&reference));
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    let message = e.to_string();
    assert!(
        message.contains(&asked) && message.contains(&sha256(INDEX.as_bytes())),
        "{message}"
    );
    assert!(
        message.contains(&format!("/v2/app/manifests/{asked}")),
        "{message}"
    );
}

#[test]
fn manifest_contradicting_its_docker_content_digest_is_refused() {
    let fake = FakeRegistry::start(|_, _| {
        Reply::ok(INDEX).header("Docker-Content-Digest", &sha256(b"other"))
    });
    let e = err(client().get_manifest(&fake.reference("app:1")));
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
}

#[test]
fn blob_with_wrong_content_fails_at_the_end_of_the_stream() {
    let fake = FakeRegistry::start(|_, _| Reply::ok(&b"tampered layer"[..]));
    let digest = sha256(b"original layer");
    let client = client();
    let reference = fake.reference("app:1");

    let mut reader = client.open_blob(&reference, &digest).unwrap();
    let mut bytes = Vec::new();
    let io_error = reader.read_to_end(&mut bytes).unwrap_err();
    assert_eq!(io_error.kind(), std::io::ErrorKind::InvalidData);
    assert!(io_error.to_string().contains(&digest), "{io_error}");
    // Further reads keep failing instead of looking like a clean end.
    assert!(reader.read(&mut [0u8; 16]).is_err());

    let e = err(client.blob_bytes(&reference, &digest, 1024));
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
}

#[test]
fn blob_with_right_content_streams_and_verifies() {
    let content = vec![7u8; 300_000];
    let digest = sha256(&content);
    let served = content.clone();
    let fake = FakeRegistry::start(move |_, _| Reply::ok(served.clone()).without_content_length());
    let mut bytes = Vec::new();
    client()
        .open_blob(&fake.reference("app:1"), &digest)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(bytes, content);
    assert_eq!(fake.requests()[0].target, format!("/v2/app/blobs/{digest}"));
}

#[test]
fn blob_redirect_to_storage_does_not_carry_the_token() {
    let content = b"layer bytes".to_vec();
    let digest = sha256(&content);
    let served = content.clone();
    let storage = FakeRegistry::start_on("127.0.0.2", move |_, _| Reply::ok(served.clone()));
    let location = format!("http://{}/signed/blob?sig=abc", storage.addr);
    let registry = FakeRegistry::start(move |request, _| {
        if request.path() == "/token" {
            return Reply::json(200, r#"{"access_token":"tok"}"#);
        }
        if request.header("authorization") != Some("Bearer tok") {
            let realm = format!("http://{}/token", request.header("host").unwrap_or(""));
            return Reply::status(401)
                .header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#));
        }
        Reply::status(307).header("Location", &location)
    });
    let mut bytes = Vec::new();
    client()
        .open_blob(&registry.reference("app:1"), &digest)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(bytes, content);
    let fetched = storage.requests();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].target, "/signed/blob?sig=abc");
    assert_eq!(
        fetched[0].header("authorization"),
        None,
        "token leaked to storage"
    );
}

#[test]
fn oversized_manifest_is_refused_whether_announced_or_not() {
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let announced = huge.clone();
    let fake = FakeRegistry::start(move |_, _| Reply::ok(announced.clone()));
    let e = err(client().get_manifest(&fake.reference("app:1")));
    assert!(
        matches!(
            e,
            RegistryError::TooLarge {
                size: Some(4194305),
                max: 4194304,
                ..
            }
        ),
        "{e}"
    );

    let fake = FakeRegistry::start(move |_, _| Reply::ok(huge.clone()).without_content_length());
    let e = err(client().get_manifest(&fake.reference("app:1")));
    assert!(
        matches!(e, RegistryError::TooLarge { size: None, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("4194304"), "{e}");
}

#[test]
fn blob_bytes_respects_its_limit() {
    let content = vec![1u8; 2000];
    let digest = sha256(&content);
    let fake = FakeRegistry::start(move |_, _| Reply::ok(content.clone()).without_content_length());
    let e = err(client().blob_bytes(&fake.reference("app:1"), &digest, 1000));
    assert!(
        matches!(e, RegistryError::TooLarge { max: 1000, .. }),
        "{e}"
    );
}

#[test]
fn garbage_manifest_is_an_invalid_response() {
    for body in [
        "<html>login page</html>",
        "[1,2,3]",
        r#"{"schemaVersion":2}"#,
        "",
    ] {
        let fake = FakeRegistry::start(move |_, _| Reply::ok(body));
        let e = err(client().get_manifest(&fake.reference("app:1")));
        assert!(
            matches!(e, RegistryError::InvalidResponse { .. }),
            "{body:?}: {e}"
        );
        assert!(e.to_string().contains("/v2/app/manifests/1"), "{e}");
    }
}

#[test]
fn bearer_challenge_is_answered_and_the_token_cached() {
    let fake = FakeRegistry::start(|request, _| {
        if request.path() == "/token" {
            // Credentials from the config go to the token endpoint, not to the registry.
            let expected = "Basic dXNlcjpzM2NyZXQ="; // user:s3cret
            if request.header("authorization") != Some(expected) {
                return Reply::status(401);
            }
            return Reply::json(200, r#"{"token":"tok123","expires_in":300}"#);
        }
        match request.header("authorization") {
            Some("Bearer tok123") => Reply::ok(INDEX).header("Content-Type", MEDIA_TYPE_OCI_INDEX),
            _ => {
                let realm = format!("http://{}/token", request.header("host").unwrap_or(""));
                Reply::json(
                    401,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                )
                .header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="{realm}",service="fake",scope="repository:team/app:pull""#
                    ),
                )
            }
        }
    });
    let credentials = DockerConfig::with_credentials(
        &fake.addr,
        Credentials {
            username: "user".into(),
            password: "s3cret".into(),
        },
    );
    let client = Client::new(quick_options(), credentials);
    let reference = fake.reference("team/app:1");
    for _ in 0..2 {
        assert_eq!(
            client.get_manifest(&reference).unwrap().bytes,
            INDEX.as_bytes()
        );
    }
    assert_eq!(fake.count("/token"), 1, "{:#?}", fake.requests());
    let token_request = fake
        .requests()
        .into_iter()
        .find(|r| r.path() == "/token")
        .unwrap();
    assert_eq!(
        token_request.target,
        "/token?service=fake&scope=repository%3Ateam%2Fapp%3Apull"
    );
    // One unauthenticated try, one with the fresh token, one with the cached token.
    assert_eq!(fake.count("/v2/"), 3);
}

#[test]
fn basic_auth_uses_docker_config_and_is_then_sent_up_front() {
    let fake = FakeRegistry::start(|request, _| {
        // "alice:pw" in base64.
        if request.header("authorization") == Some("Basic YWxpY2U6cHc=") {
            Reply::ok(INDEX)
        } else {
            Reply::status(401).header("WWW-Authenticate", r#"Basic realm="fake""#)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"YWxpY2U6cHc="}}}}}}"#,
            fake.addr
        ),
    )
    .unwrap();
    let client = Client::new(quick_options(), DockerConfig::load(&path).unwrap());
    let reference = fake.reference("app:1");
    client.get_manifest(&reference).unwrap();
    client.get_manifest(&reference).unwrap();
    assert_eq!(fake.requests().len(), 3, "{:#?}", fake.requests());
}

#[test]
fn unauthorized_without_credentials_says_to_log_in() {
    let fake = FakeRegistry::start(|_, _| {
        Reply::json(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
        .header("WWW-Authenticate", r#"Basic realm="fake""#)
    });
    let e = err(client().get_manifest(&fake.reference("app:1")));
    assert_eq!(e.status(), Some(401));
    let message = e.to_string();
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(
        message.contains("UNAUTHORIZED: authentication required"),
        "{message}"
    );
    assert!(
        message.contains(&format!("docker login {}", fake.addr)),
        "{message}"
    );
}

#[test]
fn token_endpoint_refusal_is_an_auth_error() {
    let fake = FakeRegistry::start(|request, _| {
        if request.path() == "/token" {
            return Reply::json(403, r#"{"details":"no access"}"#);
        }
        let realm = format!("http://{}/token", request.header("host").unwrap_or(""));
        Reply::status(401).header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#))
    });
    let e = err(client().get_manifest(&fake.reference("app:1")));
    assert!(matches!(e, RegistryError::Auth { .. }), "{e}");
    assert!(e.to_string().contains("403"), "{e}");
}

#[test]
fn oversized_token_answer_is_refused() {
    let fake = FakeRegistry::start(|request, _| {
        if request.path() == "/token" {
            return Reply::ok(vec![b'a'; 2 * 1024 * 1024]).without_content_length();
        }
        let realm = format!("http://{}/token", request.header("host").unwrap_or(""));
        Reply::status(401).header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#))
    });
    let e = err(client().get_manifest(&fake.reference("app:1")));
    assert!(matches!(e, RegistryError::TooLarge { .. }), "{e}");
}

#[test]
fn rate_limit_with_retry_after_is_retried() {
    let fake = FakeRegistry::start(|_, nth| {
        if nth == 0 {
            Reply::json(
                429,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            )
            .header("Retry-After", "3600")
        } else {
            Reply::ok(INDEX)
        }
    });
    // Retry-After is capped by max_retry_after, so this waits 50 ms, not an hour.
    let manifest = client().get_manifest(&fake.reference("app:1")).unwrap();
    assert_eq!(manifest.bytes, INDEX.as_bytes());
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn server_errors_are_retried_three_times_then_reported() {
    let fake = FakeRegistry::start(|_, _| {
        Reply::json(
            500,
            r#"{"errors":[{"code":"UNKNOWN","message":"storage backend down"}]}"#,
        )
    });
    let e = err(client().get_manifest(&fake.reference("app:1")));
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(e.status(), Some(500));
    let message = e.to_string();
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.contains("storage backend down"), "{message}");
    assert!(message.contains("retry later"), "{message}");
}

#[test]
fn client_errors_are_not_retried() {
    let fake = FakeRegistry::start(|_, _| {
        Reply::json(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
    });
    let e = err(client().get_manifest(&fake.reference("app:nope")));
    assert_eq!(fake.requests().len(), 1);
    assert!(e.to_string().contains("MANIFEST_UNKNOWN"), "{e}");
}

#[test]
fn silent_registry_times_out_after_all_attempts() {
    let fake = FakeRegistry::start(|_, _| Reply::Silent(Duration::from_secs(5)));
    let options = ClientOptions {
        response_timeout: Duration::from_millis(200),
        ..quick_options()
    };
    let e =
        err(Client::new(options, DockerConfig::default()).get_manifest(&fake.reference("app:1")));
    assert!(
        matches!(e, RegistryError::Transport { attempts: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[test]
fn registry_that_stalls_mid_body_times_out() {
    let fake = FakeRegistry::start(|_, _| Reply::Stalled {
        announced: 1000,
        sent: br#"{"schemaVersion":2,"#.to_vec(),
        then: Duration::from_secs(5),
    });
    let options = ClientOptions {
        idle_read_timeout: Duration::from_millis(200),
        ..quick_options()
    };
    let client = Client::new(options, DockerConfig::default());
    let e = err(client.get_manifest(&fake.reference("app:1")));
    assert!(matches!(e, RegistryError::Transport { .. }), "{e}");
    assert!(e.to_string().contains("reading the manifest"), "{e}");

    let mut reader = client
        .open_blob(&fake.reference("app:1"), &sha256(b"x"))
        .unwrap();
    assert!(reader.read_to_end(&mut Vec::new()).is_err());
}

#[test]
fn refused_connection_is_a_transport_error_naming_the_url() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let reference = format!("127.0.0.1:{port}/app:1").parse().unwrap();
    // Nothing listens there: reported after the first attempt, not retried (it cannot help).
    let e = err(Client::new(quick_options(), DockerConfig::default()).get_manifest(&reference));
    assert!(
        matches!(e, RegistryError::Transport { attempts: 1, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains(&format!("http://127.0.0.1:{port}/v2/app/manifests/1")),
        "{e}"
    );
}

#[test]
fn registry_image_serves_root_blobs_and_child_manifests() {
    let config = br#"{"architecture":"arm64","os":"linux"}"#.to_vec();
    let config_digest = sha256(&config);
    let child = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#.to_vec();
    let child_digest = sha256(&child);
    let (c, cd, m, md) = (
        config.clone(),
        config_digest.clone(),
        child.clone(),
        child_digest.clone(),
    );
    let fake = FakeRegistry::start(move |request, _| {
        let path = request.path();
        if path == "/v2/app/manifests/1" {
            Reply::ok(INDEX)
        } else if path == format!("/v2/app/blobs/{cd}") {
            Reply::ok(c.clone())
        } else if path == format!("/v2/app/manifests/{md}") {
            Reply::ok(m.clone())
        } else {
            Reply::json(
                404,
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
            )
        }
    });
    let image = RegistryImage::new(client(), fake.reference("app:1"));
    assert_eq!(image.describe(), format!("{}/app:1", fake.addr));
    let (media_type, bytes) = image.root().unwrap();
    assert_eq!(
        (media_type.as_str(), bytes.as_slice()),
        (MEDIA_TYPE_OCI_INDEX, INDEX.as_bytes())
    );
    image.root().unwrap();
    assert_eq!(fake.count("/v2/app/manifests/1"), 1, "root is fetched once");

    assert_eq!(image.blob_bytes(&config_digest, 1024).unwrap(), config);
    assert_eq!(image.blob_bytes(&child_digest, 1024).unwrap(), child);
    let manifest_media = rcross::registry::Client::get_manifest(
        &client(),
        &fake.reference(&format!("app@{child_digest}")),
    )
    .unwrap()
    .media_type;
    assert_eq!(manifest_media, MEDIA_TYPE_OCI_MANIFEST);

    let mut streamed = Vec::new();
    image
        .open_blob(&config_digest)
        .unwrap()
        .read_to_end(&mut streamed)
        .unwrap();
    assert_eq!(streamed, config);

    let missing = sha256(b"missing");
    match image.blob_bytes(&missing, 1024) {
        Err(SourceError::NotFound { what }) => assert!(what.contains(&missing), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match image.open_blob("sha256:nothex") {
        Err(SourceError::Invalid { message, .. }) => {
            assert!(message.contains("sha256:nothex"), "{message}")
        }
        Err(other) => panic!("expected an invalid-input error, got {other:?}"),
        Ok(_) => panic!("an invalid digest was accepted"),
    }
    match image.blob_bytes(&child_digest, 10) {
        Err(SourceError::TooLarge { max: 10, .. }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
