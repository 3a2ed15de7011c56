//! `rcross tags`: what a build of this checkout would be tagged and labelled with.

use crate::cli::TagsArgs;
use crate::exit::{self, Failure};
use crate::tags::{self, Checkout, TagConfig};

pub fn run(args: TagsArgs, json: bool) -> exit::Result<u8> {
    // A directory without rcross.toml still has a git checkout to describe.
    let file = if args.dir.join(crate::pipeline::config::FILE_NAME).exists() {
        crate::pipeline::config::load(&args.dir)
            .map_err(Failure::usage)?
            .tags
    } else {
        TagConfig::default()
    };
    let computed = match tags::compute_for(&args.dir, &file, &args.policy.overrides(), true) {
        Ok(Checkout::Computed(computed)) => computed,
        Ok(Checkout::NotGit | Checkout::Unreadable(_)) => {
            return Err(Failure::usage(anyhow::anyhow!("no git facts")))
        }
        Err(e) => {
            return Err(Failure {
                code: e.exit_code(),
                error: e.into(),
            })
        }
    };
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
