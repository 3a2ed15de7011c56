//! Stage 6, publish: the assembled image goes where the job sends it — an OCI or docker
//! archive, the local Docker engine (`--load`), registries (`--push`: per repository blobs,
//! manifests by digest, the index, then the tags) — and the build's report ([`Metadata`], the
//! `--json` output) is written to `--metadata-file` and `--digest-file`.

use super::assemble::Assembled;
use super::load::{self, LoadPlan, Loaded};
use super::{Base, Job, Output, Reporter};
use crate::elf::Finding;
use crate::exit::{self, Failure};
use crate::platform::Platform;
use crate::registry::{PushOptions, PushReport, Reference};
use crate::toolchain::plan::Strategy;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// One platform's build, as reported.
#[derive(Debug, Serialize)]
pub struct PlatformResult {
    pub platform: Platform,
    pub strategy: Strategy,
    pub toolchain: Option<String>,
    /// Where it was built: "host", "docker ENDPOINT", "chroot", "builder ENDPOINT".
    pub runner: String,
    /// The image it was built in, for container builds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_image: Option<String>,
    pub seconds: f64,
    /// Whether the output came from the build cache (the command did not run).
    pub cached: bool,
    pub files: Vec<String>,
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The base image's manifest this platform is built on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_manifest: Option<String>,
    /// A Dockerfile build's steps: where each ran, emulated or not, cached or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<super::dockerfile::StepReport>,
}

/// The build's report: the `--json` output and the `--metadata-file` content.
#[derive(Debug, Serialize)]
pub struct Metadata {
    pub name: String,
    pub index_digest: Option<String>,
    pub output: Option<String>,
    pub tags: Vec<String>,
    pub platforms: Vec<PlatformResult>,
    pub pushed: Vec<Pushed>,
    /// What `--load` put into the local engine.
    pub loaded: Option<Loaded>,
    /// Layers taken from a registry instead of compressed (see `super::reuse`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reused_layers: Vec<ReusedLayer>,
    /// What the git checkout gave: version, tags, labels, SOURCE_DATE_EPOCH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<crate::tags::Computed>,
    pub ok: bool,
}

/// A layer of this build that a registry already had: not compressed, not uploaded.
#[derive(Debug, Serialize)]
pub struct ReusedLayer {
    pub platform: Platform,
    pub digest: String,
    pub from: String,
    /// Whether the blob is in the output (else only the registry has it).
    pub stored: bool,
}

/// What one repository received, as `push` and `build --push` report it.
#[derive(Debug, Serialize)]
pub struct Pushed {
    pub repository: String,
    tags: Vec<String>,
    pub digest: String,
    blobs_uploaded: usize,
    blobs_present: usize,
    blobs_mounted: usize,
    bytes_uploaded: u64,
}

impl Pushed {
    pub fn new(repo: &Reference, report: &PushReport) -> Pushed {
        Pushed {
            repository: repo.to_string(),
            tags: report.tags.clone(),
            digest: report.digest.clone(),
            blobs_uploaded: report.blobs_uploaded,
            blobs_present: report.blobs_present,
            blobs_mounted: report.blobs_mounted,
            bytes_uploaded: report.bytes_uploaded,
        }
    }
}

/// Group tags by repository: each repository gets its blobs once and all its tags.
pub fn by_repository(tags: &[Reference]) -> Vec<(Reference, Vec<String>)> {
    let mut repos: Vec<(Reference, Vec<String>)> = Vec::new();
    for t in tags {
        let tag = t.tag.clone().unwrap_or_else(|| "latest".into());
        match repos
            .iter_mut()
            .find(|(r, _)| r.registry == t.registry && r.repository == t.repository)
        {
            Some((_, ts)) => ts.push(tag),
            None => {
                let mut r = t.clone();
                r.tag = None;
                r.digest = None;
                repos.push((r, vec![tag]));
            }
        }
    }
    repos
}

/// Stage 6: the image → its archive, the engine, the registries; returns the report (written
/// to `--metadata-file` too).
pub fn publish(
    job: &Job,
    assembled: Assembled,
    base: Option<&Base>,
    loader: Option<&LoadPlan>,
    reporter: &dyn Reporter,
) -> exit::Result<Metadata> {
    write_archive(job, &assembled)?;
    let index = &assembled.index;
    reporter.line(&format!(
        "image index {} written to {}",
        index.digest, job.output_text
    ));
    let built: Vec<Platform> = assembled.platforms.iter().map(|r| r.platform).collect();
    let loaded = match loader {
        Some(loader) => Some(load::load_built(
            loader,
            &assembled.layout,
            &built,
            &assembled.manifests,
            &load::repo_tags(&job.tags, &job.project.name),
            reporter,
        )?),
        None => None,
    };
    let pushed = if job.push {
        push(job, &assembled, base, reporter)?
    } else {
        Vec::new()
    };
    if let Some(file) = &job.digest_file {
        write_digest_file(file, &index.digest, &pushed)?;
    }
    let meta = Metadata {
        name: job.project.name.clone(),
        index_digest: Some(index.digest.clone()),
        output: Some(job.output_text.clone()),
        tags: job.tags.iter().map(|t| t.to_string()).collect(),
        platforms: assembled.platforms,
        pushed,
        loaded,
        reused_layers: assembled.reused_layers,
        git: job.git.clone(),
        ok: true,
    };
    write_metadata(job, &meta)?;
    Ok(meta)
}

/// `--output oci-archive:FILE` or `docker-archive:FILE`: the layout as an archive (a layout
/// output is already where it goes).
fn write_archive(job: &Job, assembled: &Assembled) -> exit::Result<()> {
    let layout = &assembled.layout;
    match &job.output {
        Output::Layout(_) => {}
        Output::OciArchive(file) => {
            let f = create_file(file)?;
            let mut w = layout.write_archive(f).map_err(Failure::env)?;
            w.flush()
                .map_err(|e| Failure::env(anyhow::anyhow!("{}: {e}", file.display())))?;
        }
        Output::DockerArchive(file) => {
            let repo_tags = load::repo_tags(&job.tags, &job.project.name);
            let f = create_file(file)?;
            let first = assembled.manifests.first().ok_or_else(|| {
                Failure::from(anyhow::anyhow!("{}: no platform was built", file.display()))
            })?;
            let mut w = layout
                .write_docker_archive(first, &repo_tags, std::io::BufWriter::new(f))
                .map_err(|e| Failure {
                    code: e.exit_code(),
                    error: anyhow::anyhow!("writing {}: {e}", file.display()),
                })?;
            w.flush()
                .map_err(|e| Failure::env(anyhow::anyhow!("{}: {e}", file.display())))?;
        }
    }
    Ok(())
}

fn create_file(file: &Path) -> exit::Result<std::fs::File> {
    std::fs::File::create(file)
        .map_err(|e| Failure::env(anyhow::anyhow!("cannot create {}: {e}", file.display())))
}

/// `--push`: per repository, blobs, manifests by digest, the index, then the tags.
fn push(
    job: &Job,
    assembled: &Assembled,
    base: Option<&Base>,
    reporter: &dyn Reporter,
) -> exit::Result<Vec<Pushed>> {
    let client = super::resolve::registry_client(
        job.tags.iter().map(|t| t.registry.clone()),
        job.insecure,
        job.retry_timeout,
    )?;
    let plan = crate::registry::layout_push_plan(&assembled.layout, &assembled.names[0])
        .map_err(Failure::env)?;
    let mut pushed = Vec::new();
    // Blobs pushed before to another repository of a registry are mounted from there.
    let memo = super::push_memo::PushMemo::in_user_cache();
    for (repo, repo_tags) in by_repository(&job.tags) {
        reporter.line(&format!(
            "pushing to {repo} (tags: {})",
            repo_tags.join(", ")
        ));
        // Base layers already in the same registry are mounted instead of uploaded.
        let mut push_options = PushOptions::default();
        if let Some(from) = base.and_then(|b| b.image.reference.as_ref()) {
            if from.registry == repo.registry && from.repository != repo.repository {
                push_options.mount_from = vec![from.repository.clone()];
            }
        }
        if let Some(m) = &memo {
            push_options.blob_homes = m.homes(&repo.registry);
        }
        // An unchanged image pushed again to the same tags costs one HEAD per tag, or nothing
        // when the tags were read (for reusable layers) less than a second ago and named it.
        let known = named_already(&assembled.seen_roots, &repo, &repo_tags, &plan.root.digest)
            .map(|tags| crate::registry::report_present(&plan, tags));
        let report = match known.or_else(|| client.already_pushed(&repo, &plan, &repo_tags)) {
            Some(report) => report,
            None => client
                .push_image(&repo, &plan, &repo_tags, &push_options)
                .map_err(|e| Failure {
                    code: e.exit_code(),
                    error: e.into(),
                })?,
        };
        if let Some(m) = &memo {
            m.remember(
                &repo.registry,
                &repo.repository,
                plan.blobs.iter().map(|b| b.digest.as_str()),
            );
        }
        reporter.line(&format!(
            "pushed {}: {} blob(s) uploaded ({} bytes), {} already there, {} mounted",
            report.digest,
            report.blobs_uploaded,
            report.bytes_uploaded,
            report.blobs_present,
            report.blobs_mounted
        ));
        pushed.push(Pushed::new(&repo, &report));
    }
    Ok(pushed)
}

/// How recent a reading of a tag must be for a push to trust it instead of asking again.
const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Every tag of `repo` that a push with `tags` sets, when each was seen naming `root` less than
/// [`FRESH`] ago (`None` otherwise: then the registry is asked).
fn named_already(
    seen: &[super::reuse::SeenRoot],
    repo: &crate::registry::Reference,
    tags: &[String],
    root: &str,
) -> Option<Vec<String>> {
    let all = crate::registry::all_tags(repo, tags).ok()?;
    let named = |tag: &String| {
        seen.iter().any(|s| {
            s.reference.registry == repo.registry
                && s.reference.repository == repo.repository
                && s.reference.digest.is_none()
                && s.reference.manifest_ref() == tag
                && s.digest == root
                && s.at.elapsed() < FRESH
        })
    };
    (!all.is_empty() && all.iter().all(named)).then_some(all)
}

/// `--digest-file`: the index digest, then `REGISTRY/REPO@DIGEST` per pushed repository.
fn write_digest_file(file: &Path, digest: &str, pushed: &[Pushed]) -> exit::Result<()> {
    let mut text = format!("{digest}\n");
    for p in pushed {
        text.push_str(&format!("{}@{}\n", p.repository, p.digest));
    }
    std::fs::write(file, text).map_err(|e| {
        Failure::env(anyhow::anyhow!(
            "cannot write digest file {}: {e}; the push itself succeeded",
            file.display()
        ))
    })
}

/// `--metadata-file`: the report as pretty JSON (also after a rejection, with `ok: false`).
pub fn write_metadata(job: &Job, meta: &Metadata) -> exit::Result<()> {
    let Some(f) = &job.metadata_file else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(meta)?;
    std::fs::write(f, text + "\n")
        .map_err(|e| Failure::env(anyhow::anyhow!("cannot write {}: {e}", f.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Reference;

    fn seen(
        reference: &str,
        digest: &str,
        ago: std::time::Duration,
    ) -> super::super::reuse::SeenRoot {
        super::super::reuse::SeenRoot {
            reference: reference.parse().unwrap(),
            digest: digest.to_string(),
            at: std::time::Instant::now() - ago,
        }
    }

    #[test]
    fn a_push_trusts_only_a_fresh_reading_of_every_tag() {
        let now = std::time::Duration::ZERO;
        let repo: Reference = "127.0.0.1:5000/app".parse().unwrap();
        let tags = vec!["1".to_string(), "latest".to_string()];
        let both = [
            seen("127.0.0.1:5000/app:1", "sha256:r", now),
            seen("127.0.0.1:5000/app", "sha256:r", now),
        ];
        assert_eq!(
            named_already(&both, &repo, &tags, "sha256:r"),
            Some(tags.clone())
        );
        // Another root, a tag not read, another repository, an old reading: ask the registry.
        assert_eq!(named_already(&both, &repo, &tags, "sha256:other"), None);
        assert_eq!(named_already(&both[..1], &repo, &tags, "sha256:r"), None);
        let elsewhere = [
            seen("127.0.0.1:5000/app2:1", "sha256:r", now),
            seen("127.0.0.1:5000/app2", "sha256:r", now),
        ];
        assert_eq!(named_already(&elsewhere, &repo, &tags, "sha256:r"), None);
        let old = [
            seen("127.0.0.1:5000/app:1", "sha256:r", now),
            seen("127.0.0.1:5000/app", "sha256:r", FRESH * 2),
        ];
        assert_eq!(named_already(&old, &repo, &tags, "sha256:r"), None);
        assert_eq!(named_already(&both, &repo, &[], "sha256:r"), None);
    }
}
