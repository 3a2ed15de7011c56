use super::{image_failure, open_image, parse_target, Target};
use crate::cli::VerifyArgs;
use crate::elf::{self, Finding};
use crate::exit::{self, Failure};
use crate::platform::Platform;
use crate::walk::{self, FileClass};
use serde::Serialize;

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
    skipped_manifests: Vec<walk::contents::Skipped>,
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
                walk::walk_path(&path, &mut |p: &str, found: FileClass| match found {
                    FileClass::Elf(info) => {
                        group.elf_files += 1;
                        group
                            .findings
                            .extend(elf::check(&info, &target).into_iter().map(|f| f.at(p)));
                    }
                    FileClass::Corrupt(e) => {
                        group.elf_files += 1;
                        group.findings.push(Finding::corrupt(p, &e));
                    }
                    FileClass::Unreadable(e) => group.findings.push(Finding::unreadable(p, &e)),
                    FileClass::NotElf => non_elf += 1,
                    FileClass::Symlink(_) => symlinks += 1,
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
