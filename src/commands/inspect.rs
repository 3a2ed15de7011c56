//! `rcross inspect REF|oci:DIR`: the index, its platforms (nested indexes descended, attestations
//! listed as skipped), digests and sizes, and the verification verdict per platform.

use super::{image_failure, open_image};
use crate::cli::InspectArgs;
use crate::elf::Finding;
use crate::exit;
use crate::image::{self, ImageSource, PlatformImage, ReadError, ResolveLimits, SkippedManifest};
use crate::walk;
use serde::Serialize;

#[derive(Debug, Serialize)]
struct LayerInfo {
    digest: String,
    size: u64,
    media_type: String,
}

#[derive(Debug, Serialize)]
struct Verdict {
    ok: bool,
    elf_files: usize,
    findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
struct ManifestInfo {
    platform: String,
    digest: String,
    size: u64,
    config: Option<String>,
    layers: Vec<LayerInfo>,
    /// Compressed size of all layers.
    layers_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<Verdict>,
}

#[derive(Debug, Serialize)]
struct Inspection {
    source: String,
    media_type: String,
    digest: String,
    size: u64,
    manifests: Vec<ManifestInfo>,
    /// Attestations and other manifests that are not images of a platform.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<SkippedManifest>,
    ok: bool,
}

/// One image manifest of the source: its platform as written, digest, size, config, layers.
fn manifest_info(
    src: &dyn ImageSource,
    mut image: PlatformImage,
) -> Result<ManifestInfo, ReadError> {
    let loaded = image.take_loaded(src)?;
    let layers: Vec<LayerInfo> = loaded
        .manifest
        .layers
        .iter()
        .map(|l| LayerInfo {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
        })
        .collect();
    let size = match image.descriptor.size {
        0 => loaded.bytes.len() as u64,
        size => size,
    };
    Ok(ManifestInfo {
        platform: image.platform.display(),
        digest: image.descriptor.digest,
        size,
        layers_size: layers.iter().map(|l| l.size).sum(),
        layers,
        config: Some(loaded.manifest.config.digest),
        verification: None,
    })
}

pub fn run(args: InspectArgs, json: bool) -> exit::Result<u8> {
    let src = open_image(&args.target)?;
    // The same walk `verify` makes: nested indexes are descended, attestations skipped.
    let resolved = image::resolve(src.as_ref(), ResolveLimits::default())
        .map_err(|e| image_failure(e.into()))?;
    let root = resolved.root;
    let mut manifests = resolved
        .images
        .into_iter()
        .map(|i| manifest_info(src.as_ref(), i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| image_failure(e.into()))?;
    let mut ok = true;
    if !args.no_verify {
        let report = walk::verify_image(src.as_ref(), None).map_err(image_failure)?;
        for p in report.platforms {
            if let Some(m) = manifests.iter_mut().find(|m| m.digest == p.manifest) {
                ok &= p.findings.is_empty();
                m.verification = Some(Verdict {
                    ok: p.findings.is_empty(),
                    elf_files: p.elf_files,
                    findings: p.findings,
                });
            }
        }
    }
    let out = Inspection {
        source: resolved.source,
        media_type: root.media_type,
        digest: root.digest,
        size: root.bytes.len() as u64,
        manifests,
        skipped: resolved.skipped,
        ok,
    };
    if json {
        super::print_json(&out)?;
    } else {
        print_text(&out);
    }
    Ok(if ok { exit::OK } else { exit::CHECK_FAILED })
}

fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_text(i: &Inspection) {
    println!("{}", i.source);
    println!("  {} {} ({})", i.digest, i.media_type, human(i.size));
    for m in &i.manifests {
        let verdict = match &m.verification {
            None => "not verified".to_string(),
            Some(v) if v.ok => format!("verified: ok ({} ELF files)", v.elf_files),
            Some(v) => format!("verified: {} finding(s)", v.findings.len()),
        };
        println!(
            "  {:<16} {}  {} layer(s), {}  {verdict}",
            m.platform,
            m.digest,
            m.layers.len(),
            human(m.layers_size)
        );
        if let Some(v) = &m.verification {
            for f in &v.findings {
                println!("      {}: {}", f.path, f.message);
            }
        }
    }
    for s in &i.skipped {
        println!("  {:<16} {}  skipped: {}", s.platform, s.digest, s.reason);
    }
}
