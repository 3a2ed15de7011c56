//! A real foreign root filesystem as an OCI image layout, for tests that run builds in it: Debian
//! packages downloaded with apt (never installed), unpacked with `dpkg-deb -x`, busybox applets
//! linked by hand (`busybox --install` cannot run on the build machine), written as a one-layer
//! image by rcross's own writer.
//!
//! Everything is cached under `target/rcross-fixtures/`, keyed by architecture, package list and
//! links: the downloaded packages in `debs-<key>/` (so later runs are offline) and the finished
//! layout in `rootfs-<key>/layout` (complete once `rootfs-<key>/done` exists). A file lock keeps
//! parallel tests and test binaries from building the same fixture twice.
//!
//! A failed download is a missing prerequisite ([`prereq`]: a failure under tests/run.sh and CI;
//! [`try_arm64_tcc_layout`]).

#![allow(dead_code)]

use crate::prereq;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcross::oci::{
    entries_from_dir, Compressor, History, ImageSpec, LayerOptions, OciLayout, RunConfig,
};

/// Bump when the way a fixture is built changes, so cached ones are rebuilt.
const FIXTURE_VERSION: &str = "1";

/// A Debian root filesystem to build.
pub struct RootfsSpec<'a> {
    /// Debian architecture (`arm64`).
    pub arch: &'a str,
    /// OCI platform of the image (`linux/arm64`).
    pub platform: &'a str,
    /// Package names without architecture.
    pub packages: &'a [&'a str],
    /// Busybox applets linked in `/bin` (`sh` among them).
    pub busybox_applets: &'a [&'a str],
}

/// Applets a build script commonly uses.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "ls", "cat", "cp", "mv", "ln", "rm", "mkdir", "rmdir", "chmod", "echo", "printf",
    "test", "[", "true", "false", "env", "grep", "sed", "sort", "uniq", "head", "tail", "wc", "tr",
    "cut", "find", "xargs", "touch", "uname", "basename", "dirname", "pwd", "sleep", "id", "tar",
    "gzip", "diff", "awk", "expr", "stat", "readlink", "date",
];

/// busybox, the Tiny C Compiler and the C library it links against: a C build root.
pub const ARM64_TCC: RootfsSpec<'static> = RootfsSpec {
    arch: "arm64",
    platform: "linux/arm64",
    packages: &[
        "busybox-static",
        "tcc",
        "libc6",
        "libc6-dev",
        "libgcc-s1",
        "linux-libc-dev",
        "libcrypt-dev",
        "libcrypt1",
    ],
    busybox_applets: APPLETS,
};

/// `target/rcross-fixtures` (or under `CARGO_TARGET_DIR`).
pub fn fixtures_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("rcross-fixtures")
}

/// The arm64 busybox + tcc image layout (`linux/arm64`, tagged `latest`); panics when it cannot
/// be built.
pub fn arm64_tcc_layout() -> PathBuf {
    debian_layout(&ARM64_TCC).unwrap_or_else(|e| panic!("arm64 tcc fixture: {e}"))
}

/// [`arm64_tcc_layout`], or (outside strict mode) `None` with a notice when it cannot be built.
pub fn try_arm64_tcc_layout() -> Option<PathBuf> {
    match debian_layout(&ARM64_TCC) {
        Ok(p) => Some(p),
        Err(e) => prereq::missing(
            &format!("the arm64 tcc root filesystem fixture ({e})"),
            "network access to the Debian archive for apt-get download, and dpkg-deb",
        ),
    }
}

fn key(spec: &RootfsSpec) -> String {
    use sha2::Digest as _;
    let text = format!(
        "{FIXTURE_VERSION}\n{}\n{}\n{}\n{}",
        spec.arch,
        spec.platform,
        spec.packages.join(" "),
        spec.busybox_applets.join(" ")
    );
    let hex = format!("{:x}", sha2::Sha256::digest(text.as_bytes()));
    format!("{}-{}", spec.arch, &hex[..12])
}

/// Build (or find) the layout of `spec`.
pub fn debian_layout(spec: &RootfsSpec) -> Result<PathBuf, String> {
    let base = fixtures_dir();
    fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let key = key(spec);
    let dir = base.join(format!("rootfs-{key}"));
    let layout = dir.join("layout");
    let lock_path = base.join(format!("rootfs-{key}.lock"));
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("locking {}: {e}", lock_path.display()))?;
    if dir.join("done").exists() {
        return Ok(layout);
    }
    let _ = fs::remove_dir_all(&dir);
    let debs = download(spec, &base.join(format!("debs-{key}")), &base.join("apt"))?;
    let root = dir.join("root");
    fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    for deb in &debs {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
    }
    let bin = root.join("bin");
    if !bin.join("busybox").exists() {
        return Err("the packages hold no /bin/busybox (is busybox-static among them?)".into());
    }
    for applet in spec.busybox_applets {
        let link = bin.join(applet);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link)
                .map_err(|e| format!("{}: {e}", link.display()))?;
        }
    }
    for d in ["tmp", "root", "proc", "dev", "etc"] {
        fs::create_dir_all(root.join(d)).map_err(|e| format!("{d}: {e}"))?;
    }
    write_layout(spec, &root, &layout)?;
    fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    fs::write(dir.join("done"), key).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(layout)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: cannot run: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The package files in `dir`, one per package, downloading what is missing.
fn download(spec: &RootfsSpec, dir: &Path, apt_state: &Path) -> Result<Vec<PathBuf>, String> {
    let find = |dir: &Path| -> BTreeMap<String, PathBuf> {
        let mut found = BTreeMap::new();
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".deb") else {
                continue;
            };
            let mut parts = stem.split('_');
            let (Some(pkg), Some(_version), Some(arch)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if arch == spec.arch || arch == "all" {
                found.insert(pkg.to_string(), e.path());
            }
        }
        found
    };
    let have = find(dir);
    if spec.packages.iter().all(|p| have.contains_key(*p)) {
        return Ok(spec.packages.iter().map(|p| have[*p].clone()).collect());
    }
    for d in [
        dir.to_path_buf(),
        apt_state.join("lists/partial"),
        apt_state.join("cache/archives/partial"),
    ] {
        fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let apt = |dir: &Path| {
        let mut c = Command::new("apt-get");
        c.current_dir(dir)
            .arg("-q")
            .arg("-o")
            .arg(format!("APT::Architectures=amd64,{}", spec.arch))
            .arg("-o")
            .arg(format!(
                "Dir::State::Lists={}",
                apt_state.join("lists").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt_state.join("cache").display()))
            .arg("-o")
            .arg("Debug::NoLocking=1")
            .arg("-o")
            .arg("APT::Sandbox::User=root");
        c
    };
    run(apt(dir).arg("update")).map_err(|e| format!("downloading the package lists: {e}"))?;
    let mut download = apt(dir);
    download.arg("download");
    for p in spec.packages {
        download.arg(format!("{p}:{}", spec.arch));
    }
    run(&mut download).map_err(|e| format!("downloading the packages: {e}"))?;
    let have = find(dir);
    spec.packages
        .iter()
        .map(|p| {
            have.get(*p)
                .cloned()
                .ok_or_else(|| format!("apt-get download gave no {p}_*_{}.deb", spec.arch))
        })
        .collect()
}

fn write_layout(spec: &RootfsSpec, root: &Path, dir: &Path) -> Result<(), String> {
    let err = |e: rcross::oci::OciError| format!("writing the layout {}: {e}", dir.display());
    let layout = OciLayout::create(dir).map_err(err)?;
    let entries = entries_from_dir(root, "").map_err(err)?;
    let layer = layout
        .write_layer(
            &entries,
            &LayerOptions {
                compression: Compressor::default(),
                threads: 2,
                mtime: 0,
            },
        )
        .map_err(err)?;
    let platform: rcross::Platform = spec
        .platform
        .parse()
        .map_err(|e| format!("{}: {e}", spec.platform))?;
    let manifest = layout
        .write_image(&ImageSpec {
            platform,
            layers: vec![layer],
            history: vec![History {
                created_by: Some(format!("dpkg-deb -x {}", spec.packages.join(" "))),
                ..History::default()
            }],
            run: RunConfig {
                env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
                ..RunConfig::default()
            },
            created: 0,
            annotations: BTreeMap::new(),
        })
        .map_err(err)?;
    let index = layout
        .write_index(&[manifest], &BTreeMap::new())
        .map_err(err)?;
    layout.tag(&index, "latest").map_err(err)?;
    Ok(())
}

/// The digest of the `platform` manifest in the layout at `dir`.
pub fn platform_manifest(dir: &Path, platform: &str) -> String {
    let layout = rcross::image::LayoutSource::open(dir, None).expect("fixture layout");
    let platform: rcross::Platform = platform.parse().expect("platform");
    let parts = rcross::pipeline::base::resolve(&layout, &[platform]).expect("fixture manifest");
    parts[0].manifest.clone()
}
