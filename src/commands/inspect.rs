//! `rcross inspect REF|oci:DIR`: the index, its platforms, digests and sizes, and the
//! verification verdict per platform.

use super::{image_failure, open_image};
use crate::cli::InspectArgs;
use crate::elf::Finding;
use crate::exit::{self, Failure};
use crate::image::ImageSource;
use crate::walk;
use serde::Serialize;
use serde_json::Value;

/// Manifests and configs are small; refuse anything larger than this.
const MAX_DOCUMENT: u64 = 4 << 20;

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
    ok: bool,
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn bad(src: &dyn ImageSource, what: &str, msg: impl std::fmt::Display) -> Failure {
    Failure::check(anyhow::anyhow!("{}: {what}: {msg}", src.describe()))
}

fn parse(src: &dyn ImageSource, what: &str, bytes: &[u8]) -> exit::Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| bad(src, what, format!("not JSON: {e}")))
}

fn platform_string(p: &Value) -> String {
    let mut s = format!(
        "{}/{}",
        p["os"].as_str().unwrap_or("unknown"),
        p["architecture"].as_str().unwrap_or("unknown")
    );
    if let Some(v) = p["variant"].as_str() {
        s.push('/');
        s.push_str(v);
    }
    s
}

fn manifest_info(
    src: &dyn ImageSource,
    digest: &str,
    size: u64,
    platform: Option<String>,
    bytes: &[u8],
) -> exit::Result<ManifestInfo> {
    let m = parse(src, digest, bytes)?;
    let layers: Vec<LayerInfo> = m["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| LayerInfo {
                    digest: l["digest"].as_str().unwrap_or("").to_string(),
                    size: l["size"].as_u64().unwrap_or(0),
                    media_type: l["mediaType"].as_str().unwrap_or("").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let config = m["config"]["digest"].as_str().map(str::to_string);
    let platform = match (platform, &config) {
        (Some(p), _) => p,
        (None, Some(c)) => {
            let cfg = src
                .blob_bytes(c, MAX_DOCUMENT)
                .map_err(|e| bad(src, c, e))?;
            platform_string(&parse(src, c, &cfg)?)
        }
        (None, None) => "unknown/unknown".into(),
    };
    Ok(ManifestInfo {
        platform,
        digest: digest.to_string(),
        size,
        layers_size: layers.iter().map(|l| l.size).sum(),
        layers,
        config,
        verification: None,
    })
}

pub fn run(args: InspectArgs, json: bool) -> exit::Result<u8> {
    let src = open_image(&args.target)?;
    let (media_type, root) = src
        .root()
        .map_err(|e| image_failure(walk::ImageError::Source(e)))?;
    let digest = sha256(&root);
    let doc = parse(src.as_ref(), "root", &root)?;
    let mut manifests = Vec::new();
    if let Some(list) = doc["manifests"].as_array() {
        for d in list {
            let md = d["digest"].as_str().unwrap_or("").to_string();
            let bytes = src
                .blob_bytes(&md, MAX_DOCUMENT)
                .map_err(|e| bad(src.as_ref(), &md, e))?;
            let platform = d.get("platform").map(platform_string);
            manifests.push(manifest_info(
                src.as_ref(),
                &md,
                d["size"].as_u64().unwrap_or(bytes.len() as u64),
                platform,
                &bytes,
            )?);
        }
    } else {
        manifests.push(manifest_info(
            src.as_ref(),
            &digest,
            root.len() as u64,
            None,
            &root,
        )?);
    }
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
        source: src.describe(),
        media_type,
        digest,
        size: root.len() as u64,
        manifests,
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
}
