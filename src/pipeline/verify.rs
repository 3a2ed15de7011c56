//! Stage 4, verify: every artifact of every platform, placed where the image will hold it, and
//! each ELF file checked against its platform. One mismatch anywhere stops the build here,
//! before anything is assembled or published.

use super::artifacts::{self, Placed};
use super::publish::{Metadata, PlatformResult};
use super::{Base, Built, Job, Stopped};
use crate::elf::Finding;
use crate::exit::{self, Failure};
use crate::walk::{self, FileClass};

/// The verdicts: every platform's report and the files its layer holds (in the job's order).
#[derive(Debug)]
pub struct Verified {
    pub platforms: Vec<(PlatformResult, Vec<Placed>)>,
}

/// Verification found artifacts that do not run on their platform: the report (`ok: false`,
/// each platform with its findings) and the error naming every mismatch.
#[derive(Debug)]
pub struct Rejected {
    pub report: Metadata,
    pub failure: Failure,
}

/// Stage 4: the built output trees → their verdicts, or the rejection when any finding.
/// Artifacts resolved when a platform finished building are taken from `built`, not resolved
/// again.
pub fn verify(job: &Job, built: &mut Built, base: Option<&Base>) -> Result<Verified, Stopped> {
    let mut platforms = Vec::new();
    for b in &mut built.platforms {
        let p = b.platform;
        let placed = match b.placed.take() {
            Some(placed) => placed,
            None => artifacts::resolve(&job.project.artifacts, &b.out_dir, &p.to_string())
                .map_err(Failure::check)?,
        };
        let findings = check(&placed, p, &job.project.verify_ignore)?;
        let result = PlatformResult {
            platform: p,
            strategy: b.strategy,
            toolchain: b.toolchain.clone(),
            runner: b.runner.clone(),
            build_image: b.build_image.clone(),
            seconds: b.seconds,
            cached: b.cached,
            files: placed.iter().map(|a| a.target.clone()).collect(),
            findings,
            manifest: None,
            base_manifest: base
                .and_then(|b| b.part(p))
                .map(|part| part.manifest.clone()),
            steps: Vec::new(),
        };
        platforms.push((result, placed));
    }
    let bad: Vec<String> = platforms
        .iter()
        .flat_map(|(r, _)| {
            r.findings
                .iter()
                .map(move |f| format!("{}: {}: {}", r.platform, f.path, f.message))
        })
        .collect();
    if bad.is_empty() {
        return Ok(Verified { platforms });
    }
    Err(Stopped::Rejected(Box::new(Rejected {
        report: Metadata {
            name: job.project.name.clone(),
            index_digest: None,
            output: None,
            tags: job.tags.iter().map(|t| t.to_string()).collect(),
            platforms: platforms.into_iter().map(|(r, _)| r).collect(),
            pushed: Vec::new(),
            loaded: None,
            reused_layers: Vec::new(),
            git: job.git.clone(),
            ok: false,
        },
        failure: Failure::check(anyhow::anyhow!(
            "verification failed; nothing was assembled or pushed:\n{}",
            bad.join("\n")
        )),
    })))
}

/// The findings of every ELF file among `placed`, by the path it gets in the image.
/// The findings of the placed files; those `[verify] ignore` names are not judged.
fn check(
    placed: &[Placed],
    p: crate::platform::Platform,
    ignore: &[String],
) -> exit::Result<Vec<Finding>> {
    let ignored = super::dockerfile::ignore::DockerIgnore::parse(&ignore.join("\n"))
        .map_err(Failure::usage)?;
    let mut findings = Vec::new();
    for a in placed {
        if ignored.is_excluded(a.target.trim_start_matches('/')) {
            continue;
        }
        match walk::classify_file(&a.source) {
            FileClass::Elf(info) => findings.extend(
                crate::elf::check(&info, &p)
                    .into_iter()
                    .map(|f| f.at(&a.target)),
            ),
            FileClass::Corrupt(e) => findings.push(Finding::corrupt(&a.target, &e)),
            FileClass::Unreadable(e) => {
                return Err(Failure::from(anyhow::anyhow!(
                    "cannot read {}: {e}",
                    a.source.display()
                )))
            }
            FileClass::NotElf | FileClass::Symlink(_) => {}
        }
    }
    Ok(findings)
}
