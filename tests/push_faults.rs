//! Pushing and pulling through a hostile network (issue 10 §6): Debian's docker-registry on
//! 127.0.0.1 behind a proxy that faults a seeded-random 20% of requests with a mix of 500s,
//! 429s with `Retry-After: 1`, connection resets before the registry sees the request, and
//! answers dropped after the registry acted. Needs the `docker-registry` package (a missing one
//! fails these tests).
//!
//! The seed is printed; `RCROSS_FAULT_SEED=N cargo test --test push_faults` replays the same
//! sequence of fault decisions (parallel uploads may still interleave differently).

mod common_registry;
mod prereq;
mod push_common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common_registry::{sha256, FakeRegistry, RealRegistry, Reply};
use push_common::{build_image, Fault, Proxy};
use rcross::oci::Compressor;
use rcross::registry::{Client, ClientOptions, DockerConfig, PushOptions, Reference};

fn registry() -> RealRegistry {
    assert!(
        which::which("docker-registry").is_ok(),
        "docker-registry is required: apt-get install -y docker-registry"
    );
    RealRegistry::start().expect("docker-registry is required: apt-get install -y docker-registry")
}

/// Production settings except a short first backoff, so the test spends its time pushing.
/// `Retry-After: 1` is honoured as sent.
fn client() -> Client {
    Client::new(
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            idle_read_timeout: Duration::from_secs(30),
            small_body_timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(1),
            ..ClientOptions::default()
        },
        DockerConfig::default(),
    )
}

fn reference(addr: &str, repo: &str) -> Reference {
    format!("{addr}/{repo}").parse().unwrap()
}

fn seed() -> u64 {
    let seed = std::env::var("RCROSS_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fault seed: {seed} (replay with RCROSS_FAULT_SEED={seed})");
    seed
}

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Faults `percent`% of requests, each fault one of the four kinds, counted in `faults`.
fn hostile_proxy(upstream: &str, seed: u64, percent: u64, faults: Arc<[AtomicUsize; 4]>) -> Proxy {
    let rng = Mutex::new(Rng(seed.max(1)));
    Proxy::start(upstream, move |request, _| {
        if request.path() == "/v2/" {
            return Fault::Pass;
        }
        let (roll, kind) = {
            let mut rng = rng.lock().unwrap();
            (rng.next() % 100, (rng.next() % 4) as usize)
        };
        if roll >= percent {
            return Fault::Pass;
        }
        faults[kind].fetch_add(1, Ordering::SeqCst);
        match kind {
            0 => Fault::Status(500, Vec::new()),
            1 => Fault::Status(429, vec![("Retry-After".into(), "1".into())]),
            2 => Fault::Reset,
            _ => Fault::DropAnswer,
        }
    })
}

/// Panics unless `repo:tag` is absent, or names an index whose every manifest, config and layer
/// the registry has. Returns whether the tag exists.
fn assert_tag_complete(direct: &Client, addr: &str, repo: &str, tag: &str) -> bool {
    let tagged = match direct.get_manifest(&reference(addr, &format!("{repo}:{tag}"))) {
        Ok(manifest) => manifest,
        Err(e) if e.status() == Some(404) => return false,
        Err(e) => panic!("{repo}:{tag}: {e}"),
    };
    let index: serde_json::Value = serde_json::from_slice(&tagged.bytes).unwrap();
    let repository = reference(addr, repo);
    let manifests = index["manifests"].as_array().expect("an index");
    assert!(!manifests.is_empty());
    for descriptor in manifests {
        let digest = descriptor["digest"].as_str().unwrap();
        let manifest = direct
            .get_manifest(&repository.with_digest(digest))
            .unwrap_or_else(|e| panic!("{repo}:{tag} names {digest}, which is missing: {e}"));
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        let blobs = std::iter::once(&manifest["config"])
            .chain(manifest["layers"].as_array().unwrap().iter());
        for blob in blobs {
            let blob = blob["digest"].as_str().unwrap();
            assert!(
                direct.blob_exists(&repository, blob).unwrap(),
                "{repo}:{tag} names {digest}, whose blob {blob} is missing"
            );
        }
    }
    true
}

#[test]
fn twenty_pushes_through_twenty_percent_faults_all_land_the_clean_digest() {
    let started = Instant::now();
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "1", Compressor::default());
    let plan = rcross::registry::layout_push_plan(&built.layout, "1").unwrap();
    let tags = vec!["1".to_string()];

    let direct = client();
    let clean = direct
        .push_image(
            &reference(&registry.addr, "rcross/clean"),
            &plan,
            &tags,
            &PushOptions::default(),
        )
        .unwrap();
    assert_eq!(clean.digest, built.index.digest);

    let faults = Arc::new([0, 0, 0, 0].map(AtomicUsize::new));
    let proxy = hostile_proxy(&registry.addr, seed(), 20, Arc::clone(&faults));
    let through = client();
    let mut landed = 0;
    let mut failures = Vec::new();
    for round in 0..20 {
        let repo = format!("rcross/faults-{round}");
        match through.push_image(
            &reference(&proxy.addr, &repo),
            &plan,
            &tags,
            &PushOptions::default(),
        ) {
            Ok(report) if report.digest == clean.digest => {
                let tagged = direct
                    .get_manifest(&reference(&registry.addr, &format!("{repo}:1")))
                    .unwrap();
                assert_eq!(tagged.digest, clean.digest, "{repo}:1");
                assert!(assert_tag_complete(&direct, &registry.addr, &repo, "1"));
                landed += 1;
            }
            Ok(report) => failures.push(format!("{repo}: landed {}", report.digest)),
            Err(e) => failures.push(format!("{repo}: {e}")),
        }
    }
    let faults: Vec<usize> = faults.iter().map(|f| f.load(Ordering::SeqCst)).collect();
    eprintln!(
        "landed {landed}/20 in {:?}; {} requests, faults injected (500, 429, reset, dropped \
         answer): {faults:?}",
        started.elapsed(),
        proxy.log().len()
    );
    assert!(
        faults.iter().all(|&n| n > 0),
        "every kind of fault was injected"
    );
    assert_eq!(
        landed,
        20,
        "pushes that did not land:\n{}",
        failures.join("\n")
    );
}

/// `rcross push` of the layout in `dir` to `repo:1` through `proxy`, started.
fn spawn_push(
    dir: &std::path::Path,
    proxy: &Proxy,
    repo: &str,
    extra: &[&str],
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_rcross"))
        .arg("push")
        .arg(format!("oci:{}:1", dir.display()))
        .arg(format!("{}/{repo}:1", proxy.addr))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_push_killed_at_a_random_moment_never_leaves_a_tag_on_an_incomplete_index() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    build_image(dir.path(), "1", Compressor::default());
    let faults = Arc::new([0, 0, 0, 0].map(AtomicUsize::new));
    let seed = seed();
    // Faults slow the push down, so the kills land in every phase of it.
    let proxy = hostile_proxy(&registry.addr, seed, 20, faults);
    let direct = client();

    // A whole push first, to know how long one takes.
    let started = Instant::now();
    let output = spawn_push(dir.path(), &proxy, "rcross/unkilled", &[])
        .wait_with_output()
        .unwrap();
    let whole = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(assert_tag_complete(
        &direct,
        &registry.addr,
        "rcross/unkilled",
        "1"
    ));

    let mut rng = Rng(seed.rotate_left(17) | 1);
    let mut outcomes = vec![format!("a whole push took {whole:?}")];
    let mut killed = 0;
    for round in 0..8 {
        let repo = format!("rcross/killed-{round}");
        let delay = Duration::from_millis(rng.next() % (whole.as_millis() as u64).max(1));
        let mut child = spawn_push(dir.path(), &proxy, &repo, &[]);
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap();
        if finished.is_none() {
            // SIGKILL: no chance to clean up.
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let tagged = assert_tag_complete(&direct, &registry.addr, &repo, "1");
        outcomes.push(format!(
            "round {round}: after {delay:?}: {}, tag {}",
            if finished.is_some() {
                "had already exited"
            } else {
                "killed"
            },
            if tagged { "complete" } else { "absent" }
        ));
    }
    eprintln!("{}", outcomes.join("\n"));
    assert!(killed > 0, "no push was killed:\n{}", outcomes.join("\n"));
}

#[test]
fn the_retry_timeout_flag_bounds_how_long_a_push_keeps_retrying() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    build_image(dir.path(), "1", Compressor::default());
    let proxy = Proxy::start(&registry.addr, |request, _| {
        if request.path() == "/v2/" {
            Fault::Pass
        } else {
            Fault::Status(503, Vec::new())
        }
    });
    let started = Instant::now();
    let output = spawn_push(
        dir.path(),
        &proxy,
        "rcross/down",
        &["--retry-timeout", "3s"],
    )
    .wait_with_output()
    .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("HTTP 503") && stderr.contains("gave up after"),
        "{stderr}"
    );
    // The default budget is 5 minutes; 3 s of retries (each wait cut at the deadline) plus
    // the requests themselves end far sooner.
    assert!(took < Duration::from_secs(60), "took {took:?}: {stderr}");
    assert!(proxy.log().len() > 2, "it did retry: {:?}", proxy.log());
}

#[test]
fn a_failed_chunk_goes_on_at_the_offset_the_registry_confirms_or_in_a_new_session() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "1", Compressor::default());
    let plan = rcross::registry::layout_push_plan(&built.layout, "1").unwrap();
    // Only the 9 MiB layer goes up in chunks (4 + 4 + 1 MiB). Its second chunk is reset before
    // the registry sees it; the fourth PATCH sent is forwarded and its answer dropped.
    let patches = AtomicUsize::new(0);
    let proxy = Proxy::start(&registry.addr, move |request, _| {
        if request.method == "PATCH" {
            match patches.fetch_add(1, Ordering::SeqCst) {
                1 => return Fault::Reset,
                3 => return Fault::DropAnswer,
                _ => {}
            }
        }
        Fault::Pass
    });
    let report = client()
        .push_image(
            &reference(&proxy.addr, "rcross/chunks"),
            &plan,
            &["1".to_string()],
            &PushOptions::default(),
        )
        .unwrap();
    // The registry checks the digest over the bytes it assembled: a chunk sent at a wrong
    // offset would have failed the closing PUT.
    assert_eq!(report.digest, built.index.digest);
    assert!(assert_tag_complete(
        &client(),
        &registry.addr,
        "rcross/chunks",
        "1"
    ));
    let requests = proxy.requests();
    let starts: Vec<u64> = requests
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| {
            r.header("content-range")
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        })
        .collect();
    let status_queries = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path().contains("/blobs/uploads/"))
        .count();
    eprintln!("PATCH offsets: {starts:?}; upload status queries: {status_queries}");
    // After the reset the same session goes on at the offset the registry confirmed.
    assert_eq!(&starts[..3], &[0, 4 << 20, 4 << 20], "{starts:?}");
    assert!(status_queries >= 2, "each failed chunk asked the registry");
    // After the dropped answer: either the registry confirmed the whole chunk (nothing more to
    // send) or a new session started from 0.
    assert!(
        starts.len() == 4 || starts[4..] == [0, 4 << 20, 8 << 20],
        "{starts:?}"
    );
}

#[test]
fn after_a_lost_answer_a_head_decides_and_nothing_is_sent_twice() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "1", Compressor::default());
    let plan = rcross::registry::layout_push_plan(&built.layout, "1").unwrap();
    // The first closing PUT of a blob upload and the index's PUT both reach the registry, which
    // stores them; their answers are lost.
    let index = built.index.digest.clone();
    let blob_puts = AtomicUsize::new(0);
    let index_puts = AtomicUsize::new(0);
    let proxy = Proxy::start(&registry.addr, move |request, _| {
        if request.method == "PUT" {
            if request.target.contains("/blobs/uploads/")
                && blob_puts.fetch_add(1, Ordering::SeqCst) == 0
            {
                return Fault::DropAnswer;
            }
            if request.path().ends_with(&format!("/manifests/{index}"))
                && index_puts.fetch_add(1, Ordering::SeqCst) == 0
            {
                return Fault::DropAnswer;
            }
        }
        Fault::Pass
    });
    let report = client()
        .push_image(
            &reference(&proxy.addr, "rcross/lost"),
            &plan,
            &["1".to_string()],
            &PushOptions::default(),
        )
        .unwrap();
    assert_eq!(report.digest, built.index.digest);
    assert_eq!(report.blobs_uploaded, 7);
    assert!(assert_tag_complete(
        &client(),
        &registry.addr,
        "rcross/lost",
        "1"
    ));
    let log = proxy.log();
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        7,
        "the blob whose answer was lost was found by HEAD, not uploaded again: {log:?}"
    );
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 7, "{log:?}");
    assert_eq!(
        proxy.count("PUT", &format!("/manifests/{}", built.index.digest)),
        1,
        "{log:?}"
    );
    assert!(
        proxy.count("HEAD", &format!("/manifests/{}", built.index.digest)) >= 1,
        "{log:?}"
    );
}

#[test]
fn a_manifest_cut_part_way_is_asked_for_again() {
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let fake = FakeRegistry::start(move |_, n| {
        if n == 0 {
            Reply::Stalled {
                announced: index.len(),
                sent: index[..20].to_vec(),
                then: Duration::ZERO,
            }
        } else {
            Reply::ok(index.to_vec())
                .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        }
    });
    let manifest = client().get_manifest(&fake.reference("app:1")).unwrap();
    assert_eq!(manifest.bytes, index);
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn a_download_cut_mid_blob_resumes_with_range_and_checks_the_whole_digest() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "1", Compressor::default());
    let plan = rcross::registry::layout_push_plan(&built.layout, "1").unwrap();
    let direct = client();
    direct
        .push_image(
            &reference(&registry.addr, "rcross/resume"),
            &plan,
            &["1".to_string()],
            &PushOptions::default(),
        )
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&built.layout.read_blob(&built.manifests[0].digest).unwrap())
            .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    assert!(size > 4 << 20, "the shared layer is the big one");

    // The first two downloads of the layer are cut after 1 MiB and 3 MiB.
    let cuts = AtomicUsize::new(0);
    let wanted = format!("/blobs/{layer}");
    let proxy = Proxy::start(&registry.addr, move |request, _| {
        if request.method == "GET" && request.path().ends_with(&wanted) {
            match cuts.fetch_add(1, Ordering::SeqCst) {
                0 => return Fault::Truncate(1 << 20),
                1 => return Fault::Truncate(3 << 20),
                _ => {}
            }
        }
        Fault::Pass
    });
    let mut bytes = Vec::new();
    client()
        .open_blob(&reference(&proxy.addr, "rcross/resume"), &layer)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(sha256(&bytes), layer);
    let gets: Vec<Option<String>> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path().ends_with(&format!("/blobs/{layer}")))
        .map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(gets.len(), 3, "one download and two resumptions: {gets:?}");
    assert_eq!(gets[0], None);
    for range in &gets[1..] {
        let start: u64 = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("a resumption asks for the rest: {gets:?}"));
        assert!(start > 0 && start < size, "{gets:?}");
    }

    // `rcross verify` of the image reads the same layer through a proxy that cuts its first
    // download: it resumes and verifies instead of failing.
    let cut = AtomicUsize::new(0);
    let wanted = format!("/blobs/{layer}");
    let proxy = Proxy::start(&registry.addr, move |request, _| {
        if request.method == "GET"
            && request.path().ends_with(&wanted)
            && cut.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Fault::Truncate(2 << 20);
        }
        Fault::Pass
    });
    let output = Command::new(env!("CARGO_BIN_EXE_rcross"))
        .args(["verify", &format!("{}/rcross/resume:1", proxy.addr)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path().ends_with(&format!("/blobs/{layer}"))
                && r.header("range").is_some_and(|v| v != "bytes=0-")),
        "verify resumed with Range: {:?}",
        proxy.log()
    );
}
