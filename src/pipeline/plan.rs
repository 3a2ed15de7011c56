//! Stage 2, plan: per platform, how it builds (native, cross or emulated, with which toolchain),
//! where (on the host, in a build container here, or on a remote builder) and with which
//! environment. Pure but for the linker wrapper a host build may need written (see
//! [`crate::toolchain::linker`]).

use super::place::{self, Placement};
use super::{Job, Reporter};
use crate::exit::{self, Failure};
use crate::host::Host;
use crate::toolchain::catalog::TargetSpec;
use crate::toolchain::plan::PlanItem;
use crate::toolchain::render;
use crate::toolchain::{Catalog, Facts, NoToolchainData};

/// One platform's plan.
#[derive(Debug, Clone)]
pub struct PlatformPlan {
    /// The toolchain planner's decision: strategy, toolchain, why.
    pub item: PlanItem,
    pub placement: Placement,
    /// The build command's environment: the platform's toolchain variables (or, in a
    /// container, what describes the platform) and the `--build-arg`s.
    pub env: Vec<(String, String)>,
}

/// Every platform's plan, in the job's order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub platforms: Vec<PlatformPlan>,
}

/// Stage 2: the job and the host's toolchains (`catalog`, `facts`) → the plan. Every platform
/// must be placed somewhere, or the build does not start (the error lists each blocked one and
/// its fixes). A linker wrapper that cannot be written is reported and left out.
pub fn plan(
    job: &Job,
    facts: &Facts,
    catalog: &Catalog,
    host: &dyn Host,
    reporter: &dyn Reporter,
) -> exit::Result<Plan> {
    let items = crate::toolchain::plan::plan(facts, catalog, &job.platforms, job.lang)
        .map_err(Failure::usage)?;
    let settings = place::Settings {
        policy: job.policy,
        image: job.project.build.image.as_deref(),
        builders: &job.builders,
    };
    let mut placements = Vec::new();
    let mut blocked = Vec::new();
    for item in &items {
        let handler = facts
            .target(&item.platform)
            .is_some_and(|t| t.handler.is_some());
        match place::place(item, facts.host, handler, &settings) {
            Ok(pl) => placements.push(pl),
            Err(b) => blocked.push(b.to_string()),
        }
    }
    if !blocked.is_empty() {
        return Err(Failure::env(anyhow::anyhow!(
            "cannot build every platform:\n  {}",
            blocked.join("\n  ")
        )));
    }
    let mut platforms = Vec::new();
    for (item, placement) in items.into_iter().zip(placements) {
        let p = item.platform;
        let spec = catalog
            .get(&p)
            .ok_or_else(|| Failure::usage(NoToolchainData(p)))?;
        let mut env = if placement == Placement::Host {
            let mut warn = |w| reporter.line(&format!("rcross: warning: {w}"));
            let input = crate::toolchain::env_input(host, catalog, facts, p, None, &mut warn)
                .map_err(Failure::usage)?;
            render::env_vars(&input)
        } else {
            container_env(spec)
        };
        env.extend(job.build_args.iter().cloned());
        platforms.push(PlatformPlan {
            item,
            placement,
            env,
        });
    }
    Ok(Plan { platforms })
}

/// The environment of a containerised build: what describes the platform, not the host's
/// toolchain (the build image brings its own native compiler, so CC and friends are its own).
pub fn container_env(spec: &TargetSpec) -> Vec<(String, String)> {
    let mut v = vec![
        ("RCROSS_PLATFORM".to_string(), spec.platform.to_string()),
        ("GOOS".to_string(), "linux".to_string()),
        ("GOARCH".to_string(), spec.goarch.clone()),
    ];
    if let Some(a) = &spec.goarm {
        v.push(("GOARM".to_string(), a.clone()));
    }
    v
}
