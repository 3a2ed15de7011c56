//! Debian base images for the tests, made by the tests: Debian bookworm `minbase` root
//! filesystems for amd64, arm64 and armhf built with Debian's `mmdebstrap` from the Debian
//! archive, converted to a one-layer-per-platform image index by `oci_layout.py` (python3, not
//! rcross's writer: tests of rcross read images rcross did not write) and pushed by skopeo to a
//! test registry as `library/debian:bookworm` and `library/debian:bookworm-slim` — what
//! `FROM debian:bookworm` reads once the registries file puts that registry in front of
//! `docker.io` ([`DebianImages::registries_config`]).
//!
//! The tarballs and the converted layout are cached outside the clone, so CI runs reuse them:
//! `${RCROSS_TEST_CACHE:-/var/cache/rcross-tests}/debian-bookworm-<arch>-v1.tar` and
//! `…/debian-bookworm-oci-v1/`. Each is written under a temporary name and renamed when
//! complete; a file lock (`…/debian-bookworm-v1.lock`) keeps parallel test binaries from
//! building them twice. The first build takes a few minutes (the foreign root filesystems run
//! their maintainer scripts under QEMU); later runs only push.
//!
//! A test using this module also declares `mod host_binfmt;` and `mod prereq;`: the foreign
//! builds need QEMU handlers with the `F` flag in the machine's binfmt_misc table, registered
//! with `rcross setup` for as long as they run when the table lacks them.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{host_binfmt, prereq};

/// Bump when the recipe changes (options, conversion): old cache entries are then ignored.
const CACHE_VERSION: &str = "v1";
const SUITE: &str = "bookworm";
/// Where the packages come from (`RCROSS_TEST_DEBIAN_MIRROR` overrides it).
const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// A build that takes longer than this has hung (a first build takes about 4 minutes).
const MMDEBSTRAP_TIMEOUT_SECS: u32 = 1800;

/// One platform of the index: Debian's architecture name, the platform as Docker Hub's
/// `debian` image lists it (arm64 with variant v8, armhf as arm/v7), and how a test names it.
pub struct DebianArch {
    pub debian: &'static str,
    /// `ARCH[/VARIANT]` as written into the image's config and the index.
    pub image: &'static str,
    /// The platform a test asks for (`linux/arm64`); containerd's rules normalise the variant.
    pub platform: &'static str,
    /// Whether the host runs it only under QEMU.
    pub foreign: bool,
}

pub const DEBIAN_ARCHES: [DebianArch; 3] = [
    DebianArch {
        debian: "amd64",
        image: "amd64",
        platform: "linux/amd64",
        foreign: false,
    },
    DebianArch {
        debian: "arm64",
        image: "arm64/v8",
        platform: "linux/arm64",
        foreign: true,
    },
    DebianArch {
        debian: "armhf",
        image: "arm/v7",
        platform: "linux/arm/v7",
        foreign: true,
    },
];

/// What [`debian_images`] pushed.
pub struct DebianImages {
    /// The registry (`127.0.0.1:PORT`).
    pub registry: String,
    /// `REGISTRY/library/debian:bookworm`.
    pub bookworm: String,
    /// `REGISTRY/library/debian:bookworm-slim` (the same index).
    pub bookworm_slim: String,
    /// The index's digest (both tags).
    pub index: String,
    pub platforms: Vec<DebianPlatform>,
}

/// One platform's image and where its root filesystem tarball is cached.
pub struct DebianPlatform {
    pub arch: &'static DebianArch,
    pub manifest: String,
    pub layer: String,
    pub tarball: PathBuf,
}

impl DebianImages {
    /// Writes `dir/registries.toml` making this registry Docker Hub's mirror, and returns its
    /// path (for `RCROSS_REGISTRIES_CONFIG`).
    pub fn registries_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("registries.toml");
        std::fs::write(
            &path,
            format!(
                "[registry.\"docker.io\"]\nmirrors = [\"{}\"]\n",
                self.registry
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// The layer blob of `platform` in the cached layout (the bytes the registry has).
    pub fn layer_blob(&self, platform: &DebianPlatform) -> PathBuf {
        layout_dir(&cache_dir())
            .join("blobs/sha256")
            .join(platform.layer.trim_start_matches("sha256:"))
    }
}

/// The cache directory: `$RCROSS_TEST_CACHE`, else /var/cache/rcross-tests.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("RCROSS_TEST_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/rcross-tests"))
}

fn tarball_path(cache: &Path, arch: &DebianArch) -> PathBuf {
    cache.join(format!(
        "debian-{SUITE}-{}-{CACHE_VERSION}.tar",
        arch.debian
    ))
}

fn layout_dir(cache: &Path) -> PathBuf {
    cache.join(format!("debian-{SUITE}-oci-{CACHE_VERSION}"))
}

/// Builds (once, cached) the Debian images and pushes them to `registry` (`host:port`, plain
/// HTTP). `None` outside strict mode when a prerequisite is missing (not root, no mmdebstrap,
/// arch-test, skopeo or python3, no QEMU handlers); in strict mode that is a failure.
pub fn debian_images(registry: &str) -> Option<DebianImages> {
    if !nix::unistd::geteuid().is_root() {
        return prereq::missing(
            "root (mmdebstrap --mode=root builds the Debian root filesystems)",
            "run the tests as root",
        );
    }
    for (program, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("arch-test", "arch-test"),
        ("skopeo", "skopeo"),
        ("python3", "python3"),
    ] {
        if !prereq::tool(program, package) {
            return None;
        }
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).unwrap_or_else(|e| {
        panic!(
            "cannot create the test cache {} (set RCROSS_TEST_CACHE to a writable directory): {e}",
            cache.display()
        )
    });
    let summary = {
        let _lock = lock(&cache);
        build_tarballs(&cache)?;
        build_layout(&cache)
    };
    let layout = layout_dir(&cache);
    let bookworm = format!("{registry}/library/debian:{SUITE}");
    let bookworm_slim = format!("{registry}/library/debian:{SUITE}-slim");
    for destination in [&bookworm, &bookworm_slim] {
        skopeo_copy(&layout, destination);
    }
    let platforms = DEBIAN_ARCHES
        .iter()
        .map(|arch| {
            let entry = summary["platforms"]
                .as_array()
                .and_then(|all| {
                    all.iter()
                        .find(|p| p["platform"] == format!("linux/{}", arch.image))
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{arch:?} missing from the layout's summary {summary}",
                        arch = arch.debian
                    )
                });
            DebianPlatform {
                arch,
                manifest: entry["manifest"].as_str().unwrap_or_default().to_string(),
                layer: entry["layer"].as_str().unwrap_or_default().to_string(),
                tarball: tarball_path(&cache, arch),
            }
        })
        .collect();
    Some(DebianImages {
        registry: registry.to_string(),
        bookworm,
        bookworm_slim,
        index: summary["index"].as_str().unwrap_or_default().to_string(),
        platforms,
    })
}

/// An exclusive lock on the cache's lock file, released when dropped.
fn lock(cache: &Path) -> nix::fcntl::Flock<File> {
    let path = cache.join(format!("debian-{SUITE}-{CACHE_VERSION}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {}: {e}", path.display()))
}

/// Every tarball that is not cached yet, built with mmdebstrap. A rebuilt tarball invalidates
/// the converted layout. Called under the lock.
fn build_tarballs(cache: &Path) -> Option<()> {
    let missing: Vec<&DebianArch> = DEBIAN_ARCHES
        .iter()
        .filter(|arch| !tarball_path(cache, arch).is_file())
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    // Handlers for the foreign builds, kept until they are done (and the table put back).
    let _handlers = if missing.iter().any(|arch| arch.foreign) {
        Some(host_binfmt::register("linux/arm64,linux/arm/v7")?)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(layout_dir(cache));
    let mirror = std::env::var("RCROSS_TEST_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_DEBIAN_MIRROR.to_string());
    for arch in missing {
        let done = tarball_path(cache, arch);
        let partial = done.with_extension("tar.partial");
        // Left by a run that was killed.
        let _ = std::fs::remove_file(&partial);
        let started = Instant::now();
        let mut command = Command::new("timeout");
        command
            .arg(MMDEBSTRAP_TIMEOUT_SECS.to_string())
            .arg("mmdebstrap")
            .args([
                "--variant=minbase",
                "--mode=root",
                "--format=tar",
                "--quiet",
            ])
            .arg(format!("--arch={}", arch.debian))
            .arg(SUITE)
            .arg(&partial)
            .arg(&mirror);
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        assert!(
            out.status.success(),
            "{command:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&partial, &done).unwrap_or_else(|e| {
            panic!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                done.display()
            )
        });
        eprintln!(
            "common_debian: built {} in {:.0?}",
            done.display(),
            started.elapsed()
        );
    }
    Some(())
}

/// The converted layout (cached), and its summary. Called under the lock.
fn build_layout(cache: &Path) -> serde_json::Value {
    let done = layout_dir(cache);
    let summary_path = done.join("summary.json");
    if !summary_path.is_file() {
        let partial = cache.join(format!("debian-{SUITE}-oci-{CACHE_VERSION}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common_debian/oci_layout.py");
        let mut command = Command::new("python3");
        command.arg(&script).arg(&partial).arg(SUITE);
        for arch in &DEBIAN_ARCHES {
            command.arg(format!(
                "{}={}",
                arch.image,
                tarball_path(cache, arch).display()
            ));
        }
        let started = Instant::now();
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        assert!(
            out.status.success(),
            "{command:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&done);
        std::fs::rename(&partial, &done).unwrap_or_else(|e| {
            panic!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                done.display()
            )
        });
        eprintln!(
            "common_debian: converted the root filesystems to {} in {:.0?}",
            done.display(),
            started.elapsed()
        );
    }
    let text = std::fs::read_to_string(&summary_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", summary_path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", summary_path.display()))
}

/// `skopeo copy --all` of the layout's index to `destination` over plain HTTP, digests kept.
fn skopeo_copy(layout: &Path, destination: &str) {
    let mut command = Command::new("skopeo");
    command
        .args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:{SUITE}", layout.display()))
        .arg(format!("docker://{destination}"));
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
