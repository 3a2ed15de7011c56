//! `rcross push oci:DIR[:NAME] REF…`: push an image already in an OCI layout (what `rcross
//! build` wrote) without building it again: blobs the registry has are skipped, per-platform
//! manifests go by digest, the index, then the tags.

use crate::cli::PushArgs;
use crate::exit::{self, Failure};
use crate::oci::OciLayout;
use crate::pipeline::{by_repository, Pushed};
use crate::registry::{PushOptions, Reference};
use std::path::PathBuf;

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
    let plan = crate::registry::layout_push_plan(&layout, &name).map_err(Failure::usage)?;
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
