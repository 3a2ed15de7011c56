//! `rcross tags`: what a build of this checkout would be tagged and labelled with.

use crate::cli::{TagPolicyArgs, TagsArgs};
use crate::exit::{self, Failure};
use crate::tags::{self, CiEnv, Computed, Overrides, Policy, TagConfig, TagError};
use std::path::Path;

fn failure(e: TagError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

/// The flags as overrides of `[tags]`.
pub(super) fn overrides(args: &TagPolicyArgs) -> Overrides {
    Overrides {
        images: args.images.clone(),
        release: args.release_tags.clone(),
        default_branch: args.default_branch.clone(),
        edge: args.edge,
        no_sha: args.no_sha_tag,
        build_number: args.build_number.clone(),
        prefix: args.tag_prefix.clone(),
        extra: args.extra_tags.clone(),
        no_labels: args.no_git_labels,
        no_tags: args.no_git_tags,
    }
}

/// The policy's result for the checkout holding `dir`. `Ok(None)`: not a git work tree (or
/// git failed) and the policy names no images, so a build goes on without git facts; with
/// images, both are errors.
pub(super) fn compute_for(
    dir: &Path,
    file: &TagConfig,
    args: &TagPolicyArgs,
    required: bool,
) -> exit::Result<Option<Computed>> {
    let policy = Policy::resolve(file, &overrides(args)).map_err(failure)?;
    let required = required || !policy.images.is_empty();
    let epoch = tags::epoch_from_env(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
        .map_err(failure)?;
    let facts = match tags::read_git(dir) {
        Ok(Some(facts)) => facts,
        Ok(None) if required => {
            return Err(failure(TagError::NotGit {
                dir: dir.display().to_string(),
            }))
        }
        Ok(None) => return Ok(None),
        Err(e) if required => return Err(failure(e)),
        Err(e) => {
            eprintln!("warning: no git facts for the build (labels, SOURCE_DATE_EPOCH): {e}");
            return Ok(None);
        }
    };
    tags::compute(&facts, &policy, &CiEnv::from_process(), epoch)
        .map(Some)
        .map_err(failure)
}

pub fn run(args: TagsArgs, json: bool) -> exit::Result<u8> {
    // A directory without rcross.toml still has a git checkout to describe.
    let file = if args.dir.join(crate::build::config::FILE_NAME).exists() {
        crate::build::config::load(&args.dir)
            .map_err(Failure::usage)?
            .tags
    } else {
        TagConfig::default()
    };
    let computed = compute_for(&args.dir, &file, &args.policy, true)?
        .ok_or_else(|| Failure::usage(anyhow::anyhow!("no git facts")))?;
    if json {
        super::print_json(&computed)?;
    } else {
        let lines = if computed.references.is_empty() {
            &computed.tags
        } else {
            &computed.references
        };
        for line in lines {
            println!("{line}");
        }
        eprintln!(
            "version {}{}, commit {}, SOURCE_DATE_EPOCH {}",
            computed.version,
            computed
                .release
                .as_ref()
                .map(|r| format!(" (release tag {r})"))
                .unwrap_or_default(),
            computed.commit,
            computed.source_date_epoch
        );
    }
    Ok(exit::OK)
}
