//! `rcross push oci:DIR[:NAME] REF…`: push an image already in an OCI layout (what `rcross
//! build` wrote) without building it again: blobs the registry has are skipped, per-platform
//! manifests go by digest, the index, then the tags.

use crate::cli::PushArgs;
use crate::exit::{self, Failure};
use crate::oci::OciLayout;
use crate::registry::{PushOptions, Reference};
use serde::Serialize;
use std::path::PathBuf;

/// What one repository received, as `push` and `build --push` report it.
#[derive(Debug, Serialize)]
pub(crate) struct Pushed {
    pub(crate) repository: String,
    tags: Vec<String>,
    pub(crate) digest: String,
    blobs_uploaded: usize,
    blobs_present: usize,
    blobs_mounted: usize,
    bytes_uploaded: u64,
}

impl Pushed {
    pub(crate) fn new(repo: &Reference, report: &crate::registry::PushReport) -> Pushed {
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
pub(crate) fn by_repository(tags: &[Reference]) -> Vec<(Reference, Vec<String>)> {
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

pub fn run(args: PushArgs, json: bool) -> exit::Result<u8> {
    let spec = args.source.strip_prefix("oci:").ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "{}: the image to push must be an OCI layout, oci:DIR[:NAME]",
            args.source
        ))
    })?;
    // DIR may itself contain ':'; the name is whatever follows the last ':' when DIR exists
    // without it.
    let (dir, name) = match spec.rsplit_once(':') {
        Some((d, n)) if PathBuf::from(d).is_dir() => (PathBuf::from(d), n.to_string()),
        _ => (PathBuf::from(spec), "latest".to_string()),
    };
    let layout = OciLayout::open(&dir).map_err(Failure::usage)?;
    let plan = layout.push_plan(&name).map_err(Failure::usage)?;
    let tags: Vec<Reference> = args
        .tags
        .iter()
        .map(|t| t.parse::<Reference>().map_err(Failure::usage))
        .collect::<Result<_, _>>()?;
    // Checked for every reference before the first push, so a refusal pushes nothing.
    if let Some(t) = tags.iter().find(|t| t.digest.is_some()) {
        return Err(Failure::usage(anyhow::anyhow!(
            "{t}: cannot push to a digest: a registry names a manifest by its content, so the \
             digest is the result of a push, not its destination; push by tag \
             (REGISTRY/REPO:TAG) and take the digest rcross prints (or write it with \
             `rcross build --push --digest-file FILE`)"
        )));
    }
    let insecure: Vec<String> = if args.insecure {
        tags.iter().map(|t| t.registry.clone()).collect()
    } else {
        Vec::new()
    };
    let client = super::registry_client(&insecure, args.retry.retry_timeout)?;
    let mut out = Vec::new();
    for (repo, repo_tags) in by_repository(&tags) {
        let report = client
            .push_image(&repo, &plan, &repo_tags, &PushOptions::default())
            .map_err(|e| Failure {
                code: e.exit_code(),
                error: e.into(),
            })?;
        if !json {
            eprintln!(
                "pushed {} to {repo} (tags: {}): {} blob(s) uploaded, {} already there, {} mounted",
                report.digest,
                repo_tags.join(", "),
                report.blobs_uploaded,
                report.blobs_present,
                report.blobs_mounted
            );
        }
        out.push(Pushed::new(&repo, &report));
    }
    if json {
        super::print_json(&out)?;
    } else if let Some(p) = out.first() {
        println!("{}", p.digest);
    }
    Ok(exit::OK)
}
