use crate::binfmt::Catalog;
use crate::cli::InfoArgs;
use crate::detect::{self, BinfmtState, Emulator, PlatformRun, RunMode};
use crate::engine::{DockerEngine, Endpoint};
use crate::exit::{self, Failure};
use crate::host::{linux::LinuxHost, CpuInfo, Host};
use crate::platform::Platform;
use serde::Serialize;

#[derive(Debug, Serialize)]
struct HostReport {
    platform: Platform,
    machine: String,
    kernel: String,
    cpu: CpuInfo,
    /// What kind of container this runs in, if any.
    container: Option<String>,
}

#[derive(Debug, Serialize)]
struct DockerReport {
    available: bool,
    version: Option<String>,
}

#[derive(Debug, Serialize)]
struct InfoReport {
    host: HostReport,
    binfmt_misc: BinfmtState,
    /// Every platform rcross knows, and how it runs here.
    platforms: Vec<PlatformRun>,
    native: Vec<Platform>,
    emulated: Vec<Platform>,
    emulators: Vec<Emulator>,
    docker: DockerReport,
}

pub fn run(args: InfoArgs, json: bool) -> exit::Result<u8> {
    let host = LinuxHost;
    let catalog = Catalog::load(&args.paths.binfmt_dir).map_err(Failure::usage)?;
    // The engine's answer (a few round trips on its socket) comes while the probes run.
    let report = std::thread::scope(|s| {
        let docker = s.spawn(docker_version);
        gather(&host, &catalog, &args.paths.binfmt_misc, || {
            docker.join().ok().flatten()
        })
    })?;
    if json {
        super::print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(exit::OK)
}

/// The Docker engine's version when one answers: DOCKER_HOST (unix, tcp or ssh) or the default
/// socket, with the API version in use.
fn docker_version() -> Option<String> {
    let endpoint = Endpoint::from_env().ok()?;
    let engine = DockerEngine::connect(&endpoint).ok()?;
    let info = engine.info().ok()?;
    Some(format!(
        "{} (API {}, {endpoint})",
        info.server_version, info.negotiated_api_version
    ))
}

fn gather(
    host: &dyn Host,
    catalog: &Catalog,
    dir: &std::path::Path,
    docker_version: impl FnOnce() -> Option<String>,
) -> exit::Result<InfoReport> {
    let platform = detect::host_platform(host).map_err(Failure::env)?;
    let uname = host
        .uname()
        .map_err(|e| Failure::env(anyhow::anyhow!("uname: {e}")))?;
    let binfmt = detect::binfmt_state(host, dir, catalog);
    // The outcomes of an unchanged host and binfmt_misc come from the probe cache.
    let cache = detect::ProbeCache::in_user_cache();
    let platforms = detect::probe_platforms_cached(host, platform, &binfmt, cache.as_ref());
    let pick = |want: fn(&RunMode) -> bool| -> Vec<Platform> {
        platforms
            .iter()
            .filter(|r| want(&r.mode))
            .map(|r| r.platform)
            .collect()
    };
    let native = pick(|m| *m == RunMode::Native);
    let emulated = pick(|m| matches!(m, RunMode::Emulated { .. }));
    let emulators = catalog
        .handlers
        .iter()
        .filter_map(|h| detect::find_emulator(host, h))
        .collect();
    let version = docker_version();
    Ok(InfoReport {
        host: HostReport {
            platform,
            machine: uname.machine,
            kernel: uname.release,
            cpu: host.cpu(),
            container: host.container(),
        },
        binfmt_misc: binfmt,
        platforms,
        native,
        emulated,
        emulators,
        docker: DockerReport {
            available: version.is_some(),
            version,
        },
    })
}

fn list(ps: &[Platform]) -> String {
    if ps.is_empty() {
        return "none".into();
    }
    ps.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_text(r: &InfoReport) {
    let h = &r.host;
    println!(
        "host        {} ({}), kernel {}",
        h.platform, h.machine, h.kernel
    );
    println!(
        "cpu         {}, {} cores, {} flags",
        h.cpu.model,
        h.cpu.cores,
        h.cpu.flags.len()
    );
    println!("container   {}", h.container.as_deref().unwrap_or("no"));
    let b = &r.binfmt_misc;
    let state = match (b.mounted, b.enabled) {
        (false, _) => "not mounted (`sudo rcross setup` mounts it)".to_string(),
        (true, Some(true)) => "mounted, enabled".into(),
        (true, Some(false)) => "mounted, DISABLED (echo 1 > status to enable)".into(),
        (true, None) => "mounted, status unreadable".into(),
    };
    println!("binfmt_misc {} at {}", state, b.path.display());
    for e in &b.reports {
        println!(
            "  {:<24} {:<8} {} [{}]{}{}",
            e.name,
            if e.enabled { "enabled" } else { "disabled" },
            e.interpreter,
            e.flags,
            if e.platforms.is_empty() {
                String::new()
            } else {
                format!(" -> {}", list(&e.platforms))
            },
            if e.ours { " (rcross)" } else { "" }
        );
    }
    for (name, why) in &b.unreadable {
        println!("  {name:<24} unreadable: {why}");
    }
    println!("native      {}", list(&r.native));
    println!("emulated    {}", list(&r.emulated));
    let no: Vec<&PlatformRun> = r
        .platforms
        .iter()
        .filter(|p| matches!(p.mode, RunMode::No { .. }))
        .collect();
    if !no.is_empty() {
        println!("not runnable");
        for p in no {
            if let RunMode::No { reason } = &p.mode {
                println!("  {:<16} {reason}", p.platform.to_string());
            }
        }
    }
    println!("emulators");
    if r.emulators.is_empty() {
        println!("  none (install qemu-user-static)");
    }
    for e in &r.emulators {
        let link = match &e.linkage {
            detect::Linkage::Static => "static".to_string(),
            detect::Linkage::Dynamic => "dynamic".to_string(),
            detect::Linkage::Unknown(w) => format!("unknown: {w}"),
        };
        println!("  {:<12} {} ({link})", e.handler, e.path.display());
    }
    match &r.docker.version {
        Some(v) => println!("docker      engine {v}"),
        None => println!("docker      no engine answers"),
    }
}
