use crate::cli::{EnvArgs, EnvFormatArg};
use crate::exit::{self, Failure};
use crate::host::linux::LinuxHost;
use crate::platform::Platform;
use crate::toolchain::render::{self, EnvFormat};

pub fn run(args: EnvArgs, json: bool) -> exit::Result<u8> {
    let host = LinuxHost;
    let p: Platform = args.platform.parse().map_err(Failure::usage)?;
    // env hands out the first usable C toolchain (and derives the Rust/Go variables from it).
    let scope = crate::toolchain::Scope {
        platforms: Some(std::slice::from_ref(&p)),
        lang: Some(crate::toolchain::plan::Lang::C),
        probe_cache: None,
    };
    let (catalog, _, facts) = super::load_toolchains(&host, &args.paths, scope)?;
    let toolchain = facts.target(&p).and_then(|t| t.toolchains.first());
    if toolchain.is_none() && p != facts.host {
        eprintln!("rcross: warning: no C cross compiler for {p} is installed, so CC and friends are not set; run `sudo rcross toolchain install {p}`");
    }
    let sysroot = args.sysroot.map(|s| s.to_string_lossy().into_owned());
    let input = super::env_input(&host, &catalog, &facts, p, sysroot)?;
    let format = match (args.format, json) {
        (_, true) | (EnvFormatArg::Json, _) => EnvFormat::Json,
        (EnvFormatArg::Sh, _) => EnvFormat::Sh,
        (EnvFormatArg::Github, _) => EnvFormat::Github,
        (EnvFormatArg::Make, _) => EnvFormat::Make,
    };
    let vars = render::env_vars(&input);
    let text = render::render_env(&vars, format).map_err(Failure::usage)?;
    print!("{text}");
    Ok(exit::OK)
}
