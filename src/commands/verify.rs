use crate::cli::VerifyArgs;
use crate::elf::{self, Finding};
use crate::exit::{self, Failure};
use crate::image::{ImageSource, SourceError};
use crate::platform::Platform;
use crate::registry::{Reference, RegistryImage};
use crate::walk::{self, Found, ImageError, OciLayout};
use serde::Serialize;
use std::path::PathBuf;

/// What one command-line argument names.
pub(crate) enum Target {
    Path(PathBuf),
    /// `oci:DIR[:REF]` or a registry reference.
    Image(String),
}

/// Decide what an argument is: `oci:DIR`, an existing path, or else, when it looks like one, a
/// registry image reference.
pub(crate) fn parse_target(arg: &str) -> Target {
    if arg.starts_with("oci:")
        || (crate::registry::looks_like_image_reference(arg) && explicit_image(arg))
    {
        return Target::Image(arg.to_string());
    }
    Target::Path(PathBuf::from(arg))
}

/// A missing `out/bin` is far more likely a mistyped path than Docker Hub's `out/bin:latest`:
/// treat an argument as an image only when it names a registry host, a tag or a digest.
fn explicit_image(arg: &str) -> bool {
    let first = arg.split('/').next().unwrap_or("");
    let last = arg.rsplit('/').next().unwrap_or("");
    arg.contains('@')
        || last.contains(':')
        || (arg.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost"))
}

/// Map an image error to the exit code it deserves: a missing or unreadable source is a usage
/// error, a damaged image a failed check.
pub(crate) fn image_failure(e: ImageError) -> Failure {
    match e {
        ImageError::Source(SourceError::NotFound { .. })
        | ImageError::NoPlatform { .. }
        | ImageError::Source(SourceError::Invalid { .. }) => Failure::usage(e),
        ImageError::Source(SourceError::Io { .. }) => Failure::from(anyhow::Error::new(e)),
        // The registry could not be reached or refused us: the host's problem, not the image's.
        ImageError::Source(SourceError::Transport { .. }) => Failure::env(e),
        _ => Failure::check(e),
    }
}

/// Open `oci:DIR[:REF]` as a layout, anything else as a registry image (credentials from the
/// Docker config file, plain HTTP only for loopback registries).
pub(crate) fn open_image(spec: &str) -> exit::Result<Box<dyn ImageSource>> {
    if spec.starts_with("oci:") {
        let layout = OciLayout::from_spec(spec)
            .map_err(|e| Failure::usage(anyhow::anyhow!("{spec}: {e}")))?;
        return Ok(Box::new(layout));
    }
    let reference: Reference = spec.parse().map_err(Failure::usage)?;
    let client = super::push::client(&[], crate::registry::DEFAULT_RETRY_TIMEOUT)?;
    Ok(Box::new(RegistryImage::new(client, reference)))
}

/// Findings for one platform, from one argument.
#[derive(Serialize)]
struct Group {
    target: String,
    platform: Platform,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    elf_files: usize,
    findings: Vec<Finding>,
}

#[derive(Serialize)]
struct Report {
    ok: bool,
    groups: Vec<Group>,
    non_elf_files: u64,
    symlinks: u64,
    skipped_manifests: Vec<walk::image::Skipped>,
}

pub fn run(args: VerifyArgs, json: bool) -> exit::Result<u8> {
    let platform: Option<Platform> = match &args.platform {
        Some(p) => Some(p.parse().map_err(Failure::usage)?),
        None => None,
    };
    let mut report = Report {
        ok: true,
        groups: Vec::new(),
        non_elf_files: 0,
        symlinks: 0,
        skipped_manifests: Vec::new(),
    };
    for arg in &args.targets {
        match parse_target(arg) {
            Target::Image(spec) => {
                let source = open_image(&spec)?;
                let r = walk::verify_image(source.as_ref(), platform).map_err(image_failure)?;
                for p in r.platforms {
                    report.groups.push(Group {
                        target: r.source.clone(),
                        platform: p.platform,
                        manifest: Some(p.manifest),
                        elf_files: p.elf_files,
                        findings: p.findings,
                    });
                }
                report.skipped_manifests.extend(r.skipped);
            }
            Target::Path(path) => {
                let Some(target) = platform else {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "{arg}: files, directories and archives need --platform (e.g. --platform linux/arm64); only images (oci:DIR) carry their own platforms"
                    )));
                };
                let mut group = Group {
                    target: arg.clone(),
                    platform: target,
                    manifest: None,
                    elf_files: 0,
                    findings: Vec::new(),
                };
                let (mut non_elf, mut symlinks) = (0u64, 0u64);
                walk::walk_path(&path, &mut |p: &str, found: Found| match found {
                    Found::Elf(info) => {
                        group.elf_files += 1;
                        group
                            .findings
                            .extend(elf::check(&info, &target).into_iter().map(|f| f.at(p)));
                    }
                    Found::Corrupt(e) => {
                        group.elf_files += 1;
                        group.findings.push(Finding::corrupt(p, &e));
                    }
                    Found::Unreadable(e) => group.findings.push(Finding::unreadable(p, &e)),
                    Found::NotElf => non_elf += 1,
                    Found::Symlink(_) => symlinks += 1,
                })
                .map_err(Failure::usage)?;
                report.non_elf_files += non_elf;
                report.symlinks += symlinks;
                report.groups.push(group);
            }
        }
    }
    report.ok = report.groups.iter().all(|g| g.findings.is_empty());
    if json {
        super::print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(if report.ok {
        exit::OK
    } else {
        exit::CHECK_FAILED
    })
}

fn print_human(r: &Report) {
    // One heading per platform, whatever number of arguments or images it came from.
    let mut order: Vec<Platform> = Vec::new();
    for g in &r.groups {
        if !order.contains(&g.platform) {
            order.push(g.platform);
        }
    }
    for platform in order {
        let groups: Vec<&Group> = r.groups.iter().filter(|g| g.platform == platform).collect();
        let elf_files: usize = groups.iter().map(|g| g.elf_files).sum();
        let findings: Vec<&Finding> = groups.iter().flat_map(|g| &g.findings).collect();
        let from: Vec<String> = groups
            .iter()
            .map(|g| match &g.manifest {
                Some(m) => format!("{} ({m})", g.target),
                None => g.target.clone(),
            })
            .collect();
        let from = from.join(", ");
        if findings.is_empty() {
            println!("{platform}: ok, {elf_files} ELF files in {from}");
            continue;
        }
        println!(
            "{platform}: {} finding(s) in {elf_files} ELF files of {from}",
            findings.len(),
        );
        for f in findings {
            if f.kind == elf::FindingKind::Corrupt || f.kind == elf::FindingKind::Unreadable {
                println!("  {}", f.message);
            } else {
                println!("  {}: {}", f.path, f.message);
            }
        }
    }
    for s in &r.skipped_manifests {
        println!("skipped {} manifest {}: {}", s.platform, s.digest, s.reason);
    }
    if r.non_elf_files > 0 || r.symlinks > 0 {
        println!(
            "({} non-ELF files skipped, {} symlinks not followed)",
            r.non_elf_files, r.symlinks
        );
    }
    if !r.ok {
        let n: usize = r.groups.iter().map(|g| g.findings.len()).sum();
        eprintln!("rcross: verify failed: {n} finding(s)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_recognised() {
        for s in [
            "docker.io/library/alpine:3.19",
            "localhost:5000/app:1.0",
            "127.0.0.1:5000/app",
            "ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "alpine:3.19",
        ] {
            assert!(matches!(parse_target(s), Target::Image(_)), "{s}");
        }
        for s in [
            "./build",
            "out/bin",
            "/nonexistent/file",
            "file.tar.gz",
            "build/out.tar",
        ] {
            assert!(matches!(parse_target(s), Target::Path(_)), "{s}");
        }
    }
}
