use crate::cli::PlanArgs;
use crate::exit::{self, Failure};
use crate::host::linux::LinuxHost;
use crate::toolchain::plan::{self, Strategy};
use std::path::Path;

pub fn run(args: PlanArgs, json: bool) -> exit::Result<u8> {
    let host = LinuxHost;
    let platforms = super::parse_platforms(&args.platforms)?;
    let lang = crate::toolchain::resolve_lang(&args.lang, Path::new("."))
        .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    let scope = crate::toolchain::Scope {
        platforms: Some(&platforms),
        lang: Some(lang),
        probe_cache: None,
    };
    let (catalog, _, facts) = super::load_toolchains(&host, &args.paths, scope)?;
    let items = plan::plan(&facts, &catalog, &platforms, lang).map_err(Failure::usage)?;
    if json {
        super::print_json(&items)?;
    } else {
        println!("plan for {lang} on {}:", facts.host);
        for i in &items {
            println!(
                "{:<15} {:<12} {}",
                i.platform.to_string(),
                i.strategy.to_string(),
                i.toolchain.as_deref().unwrap_or("")
            );
            println!("{:<15} why: {}", "", i.reason);
            println!("{:<15} programs run {}", "", i.run);
            for f in &i.fixes {
                println!(
                    "{:<15} to get {}: {}   # {}",
                    "", f.enables, f.command, f.why
                );
            }
        }
    }
    let unavailable = items.iter().any(|i| i.strategy == Strategy::Unavailable);
    Ok(if unavailable {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}
