//! `rcross cache prune`: shrink or empty the build cache.

use crate::cli::{CacheArgs, CacheCommand};
use crate::exit::{self, Failure};
use crate::pipeline::cache::BuildCache;

pub fn run(args: CacheArgs, json: bool) -> exit::Result<u8> {
    match args.command {
        CacheCommand::Prune { all, max_bytes } => {
            let cache = BuildCache::open_default().map_err(Failure::env)?;
            let limit = if all { 0 } else { max_bytes };
            let r = cache.prune(limit).map_err(Failure::env)?;
            if json {
                let v = serde_json::json!({
                    "cache": cache.root(),
                    "removed": r.removed,
                    "kept": r.kept,
                    "bytes_removed": r.bytes_removed,
                    "bytes_kept": r.bytes_kept,
                });
                println!("{v}");
            } else {
                println!(
                    "build cache {}: removed {} entries ({} bytes), kept {} ({} bytes)",
                    cache.root().display(),
                    r.removed,
                    r.bytes_removed,
                    r.kept,
                    r.bytes_kept
                );
            }
            Ok(0)
        }
    }
}
