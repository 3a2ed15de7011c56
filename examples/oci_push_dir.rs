//! The push benchmark's driver (bench/push.sh): one layer per directory into an OCI layout
//! through the image writer, then an optional push through the registry client, each phase
//! timed and printed as JSON. A bench program, not part of the `rcross` binary:
//! `cargo build --release --example oci_push_dir`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use rcross::exit::{self, Failure};
use rcross::oci::{
    entries_from_dir, source_date_epoch, Compressor, History, ImageSpec, Layer, LayerOptions,
    OciError, OciLayout, RunConfig,
};
use rcross::registry::{
    BlobSource, Client, ClientOptions, DockerConfig, PushBlob, PushOptions, Reference,
    RegistryError,
};
use rcross::Platform;

/// One layer per directory into an OCI layout, optionally pushed; prints timings as JSON.
#[derive(Debug, Parser)]
#[command(name = "oci_push_dir")]
struct Args {
    /// Directories; each becomes one layer holding its tree at the image root.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,

    /// The OCI layout to write (created when missing).
    #[arg(long, value_name = "DIR")]
    layout: PathBuf,

    /// The image's platform.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,

    /// zstd layers instead of gzip.
    #[arg(long)]
    zstd: bool,

    /// Compressor level (gzip 1-9, zstd 1-19).
    #[arg(long)]
    level: Option<i32>,

    /// Name of the image in the layout.
    #[arg(long, default_value = "latest")]
    tag: String,

    /// Push the image to this reference (REGISTRY/REPO:TAG).
    #[arg(long, value_name = "REF")]
    push: Option<String>,
}

fn oci_failure(e: OciError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

fn registry_failure(e: RegistryError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

fn registry_client() -> exit::Result<Client> {
    let config_path = DockerConfig::default_path(
        std::env::var("DOCKER_CONFIG").ok().as_deref(),
        std::env::var("HOME").ok().as_deref(),
    );
    let credentials = match config_path {
        Some(path) => DockerConfig::load(&path).map_err(Failure::env)?,
        None => DockerConfig::default(),
    };
    Ok(Client::new(ClientOptions::default(), credentials))
}

fn run(args: Args) -> exit::Result<()> {
    let platform: Platform = args.platform.parse().map_err(Failure::usage)?;
    let epoch = source_date_epoch(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
        .map_err(oci_failure)?;
    let compression = match (args.zstd, args.level) {
        (true, level) => Compressor::Zstd {
            level: level.unwrap_or(3),
        },
        (false, level) => Compressor::Gzip {
            level: level.map_or(6, |l| l.clamp(1, 9).unsigned_abs()),
        },
    };
    let options = LayerOptions {
        compression,
        threads: 0,
        mtime: epoch,
    };
    let target = match &args.push {
        Some(target) => Some(target.parse::<Reference>().map_err(Failure::usage)?),
        None => None,
    };
    let client = match target {
        Some(_) => Some(registry_client()?),
        None => None,
    };
    let started = Instant::now();
    let layout = OciLayout::create(&args.layout).map_err(oci_failure)?;
    // Each layer is uploaded while the next one is written, so compression and the
    // registry's intake overlap; the final push then finds every layer present.
    let layers = std::thread::scope(|scope| -> exit::Result<Vec<Layer>> {
        let (tx, rx) = std::sync::mpsc::channel::<PushBlob>();
        let uploader = scope.spawn(|| -> Result<(), RegistryError> {
            if let (Some(client), Some(target)) = (&client, &target) {
                for blob in rx {
                    client.push_blob(target, &blob, &PushOptions::default())?;
                }
            }
            Ok(())
        });
        let mut layers = Vec::new();
        for dir in &args.dirs {
            let entries = entries_from_dir(dir, "/").map_err(oci_failure)?;
            let layer = layout
                .write_layer(&entries, &options)
                .map_err(oci_failure)?;
            let path = layout.blob_path(&layer.digest).map_err(oci_failure)?;
            // A closed channel means the uploader failed; its error is reported below.
            let _ = tx.send(PushBlob {
                digest: layer.digest.clone(),
                size: layer.size,
                source: BlobSource::File(path),
            });
            layers.push(layer);
        }
        drop(tx);
        match uploader.join() {
            Ok(Ok(())) => Ok(layers),
            Ok(Err(e)) => Err(registry_failure(e)),
            Err(_) => Err(Failure::from(anyhow::anyhow!("the upload thread panicked"))),
        }
    })?;
    let history = layers
        .iter()
        .map(|_| History {
            created: Some(rcross::oci::rfc3339_utc(epoch)),
            created_by: Some("rcross oci-push-dir".to_string()),
            ..History::default()
        })
        .collect();
    let spec = ImageSpec {
        platform,
        layers: layers.clone(),
        history,
        run: RunConfig::default(),
        created: epoch,
        annotations: BTreeMap::new(),
    };
    let manifest = layout.write_image(&spec).map_err(oci_failure)?;
    let index = layout
        .write_index(&[manifest], &BTreeMap::new())
        .map_err(oci_failure)?;
    layout.tag(&index, &args.tag).map_err(oci_failure)?;
    let written = started.elapsed();

    let mut push = serde_json::Value::Null;
    if let (Some(client), Some(reference)) = (&client, &target) {
        let plan = rcross::registry::layout_push_plan(&layout, &args.tag).map_err(oci_failure)?;
        let report = client
            .push_image(reference, &plan, &[], &PushOptions::default())
            .map_err(registry_failure)?;
        push = serde_json::json!({
            "total_seconds": started.elapsed().as_secs_f64(),
            "digest": report.digest,
            "uploaded": report.blobs_uploaded,
            "present": report.blobs_present,
            "bytes_uploaded": report.bytes_uploaded,
        });
    }
    let report = serde_json::json!({
        "index": index.digest,
        "write_seconds": written.as_secs_f64(),
        "layers": layers.iter().map(|l| serde_json::json!({
            "digest": l.digest,
            "size": l.size,
            "diff_id": l.diff_id,
            "uncompressed_size": l.uncompressed_size,
        })).collect::<Vec<_>>(),
        "push": push,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("oci_push_dir: error: {f}");
            ExitCode::from(f.code)
        }
    }
}
