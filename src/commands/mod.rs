//! One module per subcommand: each turns arguments into calls of the library modules and is the
//! only place that prints.

pub mod build;
pub mod cache;
mod containers;
pub mod elf;
pub mod env;
pub mod info;
pub mod inspect;
pub mod load;
pub mod login;
pub mod manifest;
pub mod oci_push_dir;
pub mod plan;
pub mod push;
pub mod run;
pub mod setup;
pub mod tags;
pub mod toolchain;
pub mod verify;

use crate::cli::{Cli, Command, ToolchainPaths};
use crate::exit::{self, Failure};
use crate::host::Host;
use crate::platform::{self, Platform};
use crate::binfmt;
use crate::toolchain::{render::EnvInput, Catalog, Facts, Scope};

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
        Command::OciPushDir(a) => oci_push_dir::run(a),
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
