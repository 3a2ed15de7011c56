//! `rcross build`: the flags into a [`Request`], the pipeline ([`crate::pipeline`]) run with the
//! progress on stderr, and its report printed: the index digest on stdout, or with `--json` the
//! whole report.

mod reporter;

use crate::cli::BuildArgs;
use crate::exit;
use crate::pipeline::{self, Metadata, Request, Stopped};

pub fn run(args: BuildArgs, json: bool) -> exit::Result<u8> {
    let request = request(args)?;
    let reporter = reporter::StderrReporter::new();
    match pipeline::build(&request, &reporter) {
        Ok(report) => {
            print(&report, json)?;
            Ok(exit::OK)
        }
        Err(Stopped::Rejected(rejected)) => {
            print(&rejected.report, json)?;
            Err(rejected.failure)
        }
        Err(Stopped::Failed(f)) => Err(f),
    }
}

/// The flags as the pipeline takes them.
fn request(args: BuildArgs) -> exit::Result<Request> {
    Ok(Request {
        platforms: super::parse_platforms(&args.platforms)?,
        tag_policy: args.tag_policy.overrides(),
        dir: args.dir,
        dockerfile: args.file,
        target: args.target,
        secrets: args.secrets,
        tags: args.tags,
        push: args.push,
        load: args.load,
        output: args.output,
        metadata_file: args.metadata_file,
        digest_file: args.digest_file,
        build_args: args.build_args,
        compression: args.compression,
        compression_level: args.compression_level,
        cache_from: args.cache_from,
        jobs: args.jobs,
        no_cache: args.no_cache,
        insecure: args.insecure,
        builders: args.builders,
        container: args.container,
        build_image: args.build_image,
        engine: args.engine,
        retry_timeout: args.retry.retry_timeout,
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        toolchain_dir: args.paths.toolchain_dir,
        binfmt_dir: args.paths.host.binfmt_dir,
        binfmt_misc: args.paths.host.binfmt_misc,
    })
}

/// The report: the whole of it as JSON with `--json`, else the index digest (when there is
/// one).
fn print(report: &Metadata, json: bool) -> exit::Result<()> {
    if json {
        super::print_json(report)?;
    } else if let Some(d) = &report.index_digest {
        println!("{d}");
    }
    Ok(())
}
