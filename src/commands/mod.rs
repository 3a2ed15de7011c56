//! One module per subcommand: each turns arguments into calls of the library modules and is the
//! only place that prints.

pub mod build;
pub mod cache;
pub mod elf;
pub mod env;
pub mod info;
pub mod inspect;
pub mod login;
pub mod manifest;
pub mod plan;
pub mod push;
pub mod run;
pub mod setup;
pub mod tags;
pub mod toolchain;
pub mod verify;

use crate::binfmt;
use crate::cli::{Cli, Command, ToolchainPaths};
use crate::exit::{self, Failure};
use crate::host::Host;
use crate::image::LayoutSource;
use crate::image::{ImageSource, SourceError};
use crate::platform::{self, Platform};
use crate::registry::{Client, Reference, RegistryImage};
use crate::toolchain::{render::EnvInput, Catalog, Facts, Scope};
use crate::walk::ImageError;
use std::path::PathBuf;
use std::time::Duration;

/// Run one command; returns the exit code for a normal finish.
pub fn run(cli: Cli) -> exit::Result<u8> {
    match cli.command {
        Command::Info(a) => info::run(a, cli.json),
        Command::Setup(a) => setup::run(a, cli.json),
        Command::Elf(a) => elf::run(a, cli.json),
        Command::Verify(a) => verify::run(a, cli.json),
        Command::Toolchain(a) => toolchain::run(a, cli.json),
        Command::Plan(a) => plan::run(a, cli.json),
        Command::Env(a) => env::run(a, cli.json),
        Command::Run(a) => run::run(a),
        Command::Build(a) => build::run(*a, cli.json),
        Command::Inspect(a) => inspect::run(a, cli.json),
        Command::Push(a) => push::run(a, cli.json),
        Command::Manifest(a) => manifest::run(a, cli.json),
        Command::Login(a) => login::run_login(a, cli.json),
        Command::Logout(a) => login::run_logout(a, cli.json),
        Command::Tags(a) => tags::run(a, cli.json),
        Command::Cache(a) => cache::run(a, cli.json),
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> exit::Result<()> {
    let s = serde_json::to_string_pretty(v)?;
    println!("{s}");
    Ok(())
}

/// Every `--platform` argument as one list (see [`platform::parse_lists`]).
pub(crate) fn parse_platforms(args: &[String]) -> exit::Result<Vec<Platform>> {
    platform::parse_lists(args).map_err(Failure::usage)
}

/// The catalogs and host facts a toolchain command starts from, probing only what `scope`
/// needs (see [`Scope`]).
pub(crate) fn load_toolchains(
    host: &dyn Host,
    paths: &ToolchainPaths,
    scope: Scope,
) -> exit::Result<(Catalog, binfmt::Catalog, Facts)> {
    crate::toolchain::load(
        host,
        &paths.toolchain_dir,
        &paths.host.binfmt_dir,
        &paths.host.binfmt_misc,
        scope,
    )
    .map_err(|e| Failure {
        code: e.exit_code(),
        error: e.into(),
    })
}

/// [`crate::toolchain::env_input`], a linker wrapper that cannot be written reported on stderr.
pub(crate) fn env_input<'a>(
    host: &dyn Host,
    catalog: &'a Catalog,
    facts: &'a Facts,
    p: Platform,
    sysroot: Option<String>,
) -> exit::Result<EnvInput<'a>> {
    crate::toolchain::env_input(host, catalog, facts, p, sysroot, &mut |w| {
        eprintln!("rcross: warning: {w}")
    })
    .map_err(Failure::usage)
}

/// A registry client with credentials from the Docker config file; `insecure` registries use
/// plain HTTP (loopback registries always do); failing requests are retried for
/// `retry_timeout`.
pub(crate) fn registry_client(
    insecure: &[String],
    retry_timeout: Duration,
) -> exit::Result<Client> {
    Client::from_environment_with(insecure, retry_timeout).map_err(Failure::usage)
}

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
        let layout = LayoutSource::from_spec(spec)
            .map_err(|e| Failure::usage(anyhow::anyhow!("{spec}: {e}")))?;
        return Ok(Box::new(layout));
    }
    let reference: Reference = spec.parse().map_err(Failure::usage)?;
    let client = registry_client(&[], crate::registry::DEFAULT_RETRY_TIMEOUT)?;
    Ok(Box::new(RegistryImage::new(client, reference)))
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
