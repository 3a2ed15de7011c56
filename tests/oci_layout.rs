//! Layouts and archives written by `rcross::oci`: the same inputs give the same digests, and
//! independent tools read what we write — skopeo reads the layout and the oci-archive, GNU tar
//! and zstd read the layers. A missing tool fails in strict mode (tests/prereq: tests/run.sh,
//! CI) and skips with a notice otherwise.

mod common_registry;
mod prereq;
mod push_common;

use std::path::Path;
use std::process::Command;

use common_registry::require_tool;
use push_common::{build_image, PLATFORMS};
use rcross::oci::{
    entries_from_dir, Compressor, FileContent, LayerEntry, LayerOptions, OciLayout,
    MEDIA_TYPE_INDEX,
};

fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Every file of a layout, by relative path.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((name, std::fs::read(&path).unwrap()));
    }
    out.sort();
    out.push((
        "index.json".into(),
        std::fs::read(dir.join("index.json")).unwrap(),
    ));
    out
}

#[test]
fn same_inputs_give_the_same_index_digest() {
    for compression in [Compressor::default(), Compressor::Zstd { level: 3 }] {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = build_image(a.path(), "1", compression);
        let second = build_image(b.path(), "1", compression);
        assert_eq!(first.index, second.index, "{compression:?}");
        assert_eq!(files(a.path()), files(b.path()), "{compression:?}");
        assert_eq!(first.index.media_type, MEDIA_TYPE_INDEX);
    }
}

#[test]
fn the_same_tree_gives_the_same_layer_whatever_the_host_metadata() {
    use std::os::unix::fs::PermissionsExt as _;
    let make = |mode: u32| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let app = dir.path().join("bin/app");
        std::fs::write(&app, b"\x7fELF pretend").unwrap();
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::write(dir.path().join("README"), b"hi").unwrap();
        dir
    };
    let one = make(0o700);
    // Different permissions (but still executable) and later times.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let two = make(0o755);
    let layer = |dir: &Path| {
        let entries = entries_from_dir(dir, "/").unwrap();
        rcross::oci::write_layer(&entries, &LayerOptions::default(), Vec::new())
            .unwrap()
            .0
    };
    assert_eq!(layer(one.path()), layer(two.path()));
    let later = rcross::oci::write_layer(
        &entries_from_dir(one.path(), "/").unwrap(),
        &LayerOptions {
            mtime: 1,
            ..LayerOptions::default()
        },
        Vec::new(),
    )
    .unwrap()
    .0;
    assert_ne!(
        later.diff_id,
        layer(one.path()).diff_id,
        "SOURCE_DATE_EPOCH counts"
    );
}

#[test]
fn gnu_tar_and_zstd_read_our_layers() {
    if !require_tool("tar", "tar") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let entries = [
        LayerEntry::file("usr/bin/app", FileContent::Bytes(b"app".to_vec()), 0o755),
        LayerEntry::symlink("bin", "usr/bin"),
        LayerEntry::file(
            format!("deep/{}/file", "d".repeat(120)),
            FileContent::Bytes(b"long path".to_vec()),
            0o644,
        ),
    ];
    let options = LayerOptions {
        mtime: 1_700_000_000,
        ..LayerOptions::default()
    };
    let gz = layout.write_layer(&entries, &options).unwrap();
    let path = layout.blob_path(&gz.digest).unwrap();
    let listing = String::from_utf8(run(
        "tar",
        &["--numeric-owner", "-tvzf", path.to_str().unwrap()],
    ))
    .unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 7, "{listing}");
    assert!(lines.iter().all(|l| l.contains(" 0/0 ")), "{listing}");
    assert!(
        lines.iter().all(|l| l.contains("2023-11-14 22:13")),
        "{listing}"
    );
    assert!(listing.contains("bin -> usr/bin"), "{listing}");
    assert!(listing.contains(&"d".repeat(120)), "{listing}");
    let app: Vec<&str> = lines
        .iter()
        .find(|l| l.ends_with("usr/bin/app"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(app[..3], ["-rwxr-xr-x", "0/0", "3"], "{listing}");

    if require_tool("zstd", "zstd") {
        let zst = layout
            .write_layer(
                &entries,
                &LayerOptions {
                    compression: Compressor::Zstd { level: 3 },
                    ..options.clone()
                },
            )
            .unwrap();
        assert_eq!(zst.diff_id, gz.diff_id, "same tar under either compression");
        let path = layout.blob_path(&zst.digest).unwrap();
        let tar = run("zstd", &["-dc", path.to_str().unwrap()]);
        assert_eq!(rcross::oci::sha256_digest(&tar), zst.diff_id);
    }
}

#[test]
fn skopeo_reads_our_layout_and_archive() {
    if !require_tool("skopeo", "skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "1", Compressor::default());
    built.layout.tag(&built.index, "latest").unwrap();
    let index_bytes = built.layout.read_blob(&built.index.digest).unwrap();
    let layout_ref = format!("oci:{}:1", dir.path().display());

    assert_eq!(
        run("skopeo", &["inspect", "--raw", &layout_ref]),
        index_bytes
    );
    let index: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
    assert_eq!(
        index["manifests"].as_array().unwrap().len(),
        PLATFORMS.len()
    );
    for (arch, variant) in [("amd64", ""), ("arm64", "v8"), ("arm", "v7")] {
        let mut args = vec!["inspect".to_string(), format!("--override-arch={arch}")];
        if !variant.is_empty() {
            args.push(format!("--override-variant={variant}"));
        }
        args.push(layout_ref.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let image: serde_json::Value = serde_json::from_slice(&run("skopeo", &args)).unwrap();
        assert_eq!(image["Architecture"], arch, "{image}");
        assert_eq!(image["Layers"].as_array().unwrap().len(), 2, "{image}");
        assert_eq!(
            image["Labels"]["org.opencontainers.image.title"], "hello",
            "{image}"
        );
    }

    // skopeo copies out of it (verifying every digest) into a fresh layout.
    let copy = tempfile::tempdir().unwrap();
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--all",
            &format!("oci:{}:latest", dir.path().display()),
            &format!("oci:{}:copied", copy.path().display()),
        ],
    );

    // The archive form.
    let archive = dir.path().join("..").join(format!(
        "{}.tar",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    let file = std::fs::File::create(&archive).unwrap();
    built.layout.write_archive(file).unwrap();
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:1", archive.display()),
        ],
    );
    assert_eq!(raw, index_bytes);
    // Two archives of the same layout are the same bytes.
    let again = built.layout.write_archive(Vec::new()).unwrap();
    assert_eq!(std::fs::read(&archive).unwrap(), again);
    std::fs::remove_file(&archive).unwrap();
}
