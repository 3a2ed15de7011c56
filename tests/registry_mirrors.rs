//! Registry mirrors against real parts: Debian's docker-registry on 127.0.0.1 as a mirror in
//! front of `docker.io`, behind mirrors that refuse the connection, answer 404 or never answer.
//! The test cannot reach the internet: every request not to 127.0.0.1 goes to a proxy address
//! where nothing listens (refused at once, and a refused connection is not retried), so Docker
//! Hub is "unreachable" in a way that does not hang.

mod common_registry;
mod prereq;

use std::path::Path;
use std::time::{Duration, Instant};

use common_registry::{require_tool, skopeo_push, write_layout, FakeRegistry, RealRegistry, Reply};
use rcross::image::ImageSource;
use rcross::registry::{
    open_image, Client, ClientOptions, DockerConfig, MirrorError, Mirrors, Reference,
};

/// A loopback address where nothing listens, held (a socket bound to it, never listening)
/// for as long as the returned descriptor lives, so that no server this test starts on
/// 127.0.0.1:0 is given the same port: a connection is refused at once.
fn closed_port() -> (std::os::fd::OwnedFd, String) {
    use nix::libc;
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket calls on a descriptor this function owns, with sockaddr_in buffers
    // of the size passed.
    unsafe {
        let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let r = libc::bind(raw, (&addr as *const libc::sockaddr_in).cast(), len);
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        let mut len = len;
        let r = libc::getsockname(raw, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len);
        assert_eq!(r, 0, "getsockname: {}", std::io::Error::last_os_error());
        (fd, format!("127.0.0.1:{}", u16::from_be(addr.sin_port)))
    }
}

fn mirrors(dir: &Path, text: &str) -> Mirrors {
    let file = dir.join("registries.toml");
    std::fs::write(&file, text).unwrap();
    Mirrors::from_file(&file).unwrap()
}

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

/// A client whose limits keep the silent mirror's case short.
fn client() -> Client {
    Client::new(
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_millis(500),
            retry_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(50),
            ..ClientOptions::default()
        },
        DockerConfig::default(),
    )
}

/// One test, so that the proxy variables are set before any other thread of this binary runs.
#[test]
fn mirrors_serve_docker_hub_names_and_failures_are_listed() {
    // ureq reads these when a client is made: nothing but loopback leaves this process.
    let (_held_proxy, proxy) = closed_port();
    std::env::set_var("ALL_PROXY", format!("http://{proxy}"));
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::remove_var("HTTPS_PROXY");
    std::env::remove_var("HTTP_PROXY");

    let Some(registry) = RealRegistry::start() else {
        return;
    };
    if !require_tool("skopeo", "skopeo") {
        return;
    }
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = write_layout(layout_dir.path());
    // The mirror keeps Docker Hub's names under a path prefix.
    skopeo_push(
        &layout.dir,
        "multi",
        &format!("{}/hub/library/debian:bookworm", registry.addr),
        true,
    );

    let not_found = FakeRegistry::start(|_, _| {
        Reply::json(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}"#,
        )
    });
    let silent = FakeRegistry::start(|_, _| {
        std::thread::sleep(Duration::from_secs(5));
        Reply::status(200)
    });
    let (_held_mirror, refused) = closed_port();
    let config_dir = tempfile::tempdir().unwrap();
    let config = mirrors(
        config_dir.path(),
        &format!(
            "[registry.\"docker.io\"]\nmirrors = [\"{refused}\", \"{}\", \"{}\", \"{}/hub\"]\n",
            not_found.addr, silent.addr, registry.addr
        ),
    );

    // A short name, served by the fourth candidate; the three before it are skipped with why.
    let started = Instant::now();
    let opened = open_image(&client(), &reference("debian:bookworm"), &config).unwrap();
    let took = started.elapsed();
    assert_eq!(
        opened.served_by.reference.to_string(),
        format!("{}/hub/library/debian:bookworm", registry.addr)
    );
    assert!(opened.served_by.mirror.is_some());
    let skipped: Vec<String> = opened
        .skipped
        .iter()
        .map(|f| format!("{}: {}", f.candidate, f.error))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:#?}");
    assert!(skipped[0].contains(&refused), "{}", skipped[0]);
    assert_eq!(
        opened.skipped[1].error.status(),
        Some(404),
        "{}",
        skipped[1]
    );
    assert!(skipped[1].contains("MANIFEST_UNKNOWN"), "{}", skipped[1]);
    assert!(skipped[2].contains("timed out"), "{}", skipped[2]);
    assert!(
        took < Duration::from_secs(15),
        "the silent mirror held us for {took:?}"
    );
    assert_eq!(
        not_found.requests()[0].path(),
        "/v2/library/debian/manifests/bookworm",
        "the 404 mirror is asked without the served mirror's prefix"
    );

    // The image reads through the mirror: the index it was probed with, then its blobs.
    let (_, root) = opened.image.root().unwrap();
    assert_eq!(root, layout.blobs[&layout.index]);
    let (_, config_digest, _) = &layout.images[1];
    assert_eq!(
        opened.image.blob_bytes(config_digest, 1 << 20).unwrap(),
        layout.blobs[config_digest]
    );

    // A digest reference keeps its digest on the mirror (and is checked against it).
    let pinned = reference(&format!("debian@{}", layout.index));
    let opened = open_image(&client(), &pinned, &only_prefixed(&registry.addr)).unwrap();
    assert_eq!(
        opened.served_by.reference.digest.as_deref(),
        Some(layout.index.as_str())
    );
    assert_eq!(opened.image.root().unwrap().1, layout.blobs[&layout.index]);

    // A tag no mirror has: every candidate is listed with its failure, Docker Hub last, and
    // the unreachable Docker Hub fails at once.
    let started = Instant::now();
    let e = match open_image(
        &client(),
        &reference("debian:nope"),
        &mirrors(
            config_dir.path(),
            &format!(
                "[registry.\"docker.io\"]\nmirrors = [\"{}\", \"{}/hub\"]\n",
                not_found.addr, registry.addr
            ),
        ),
    ) {
        Ok(opened) => panic!("served by {}", opened.served_by),
        Err(e) => e,
    };
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    let MirrorError::NoCandidateServed { failures, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(failures.len(), 3, "{e}");
    assert_eq!(failures[0].error.status(), Some(404), "{e}");
    assert_eq!(failures[1].error.status(), Some(404), "{e}");
    assert_eq!(failures[2].candidate.mirror, None, "{e}");
    assert_eq!(
        failures[2].candidate.reference.to_string(),
        "docker.io/library/debian:nope"
    );
    assert!(
        failures[2].error.to_string().contains("refused"),
        "Docker Hub must be unreachable here: {e}"
    );
    let text = e.to_string();
    eprintln!("{text}");
    assert!(
        text.starts_with("docker.io/library/debian:nope: no registry served it:")
            && text.contains(&format!("mirror {}/library/debian:nope", not_found.addr))
            && text.contains(&format!("mirror {}/hub/library/debian:nope", registry.addr))
            && text.contains("registry-1.docker.io"),
        "{text}"
    );

    // With no mirror for the registry the image is returned unprobed, as before mirrors.
    let requests = not_found.requests().len();
    let opened = open_image(
        &client(),
        &reference("ghcr.io/o/a:1"),
        &only_prefixed(&registry.addr),
    )
    .unwrap();
    assert_eq!(opened.served_by.mirror, None);
    assert_eq!(opened.image.describe(), "ghcr.io/o/a:1");
    assert_eq!(not_found.requests().len(), requests);
}

/// Docker Hub mirrored only by the real registry under its `hub` prefix.
fn only_prefixed(addr: &str) -> Mirrors {
    let dir = tempfile::tempdir().unwrap();
    mirrors(
        dir.path(),
        &format!("[registry.\"docker.io\"]\nmirrors = [\"{addr}/hub\"]\n"),
    )
}
