//! Where each platform's build runs: on the host (native or cross toolchain), in a container of
//! the project's build image (emulated through binfmt_misc when the CPU differs), or on a remote
//! builder. Pure: the inputs are the plan and the project's settings.

use super::config::ContainerPolicy;
use crate::platform::Platform;
use crate::toolchain::plan::{PlanItem, Strategy};
use serde::Serialize;
use std::collections::BTreeMap;

/// Where one platform builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Placement {
    /// `sh -c COMMAND` on the host with the platform's toolchain environment.
    Host,
    /// In a container (or chroot) of the build image on this machine; `emulated` when the
    /// host CPU cannot run the platform's programs itself.
    Container { emulated: bool },
    /// In a container of the build image on another Docker engine.
    Builder { endpoint: String },
}

impl Placement {
    /// The strategy to report for this placement.
    pub fn strategy(&self, planned: Strategy) -> Strategy {
        match self {
            Placement::Host => planned,
            Placement::Container { emulated: true } => Strategy::Emulate,
            Placement::Container { emulated: false } => Strategy::Native,
            Placement::Builder { .. } => Strategy::Native,
        }
    }
}

/// What decides placements besides the plan.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub policy: ContainerPolicy,
    /// `[build] image` (or its override), if any.
    pub image: Option<&'a str>,
    pub builders: &'a BTreeMap<Platform, String>,
}

/// Why a platform cannot be built, with the ways to make it buildable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub platform: Platform,
    pub reason: String,
    pub fixes: Vec<String>,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.platform, self.reason)?;
        if !self.fixes.is_empty() {
            write!(f, "; fix: {}", self.fixes.join(" or "))?;
        }
        Ok(())
    }
}

/// Decide where `item.platform` builds on a `host` machine. `handler` says whether a working
/// binfmt_misc handler for the platform is registered (needed to run a foreign container here).
pub fn place(
    item: &PlanItem,
    host: Platform,
    handler: bool,
    s: &Settings,
) -> Result<Placement, Blocked> {
    let p = item.platform;
    if let Some(endpoint) = s.builders.get(&p) {
        return Ok(Placement::Builder {
            endpoint: endpoint.clone(),
        });
    }
    let blocked = |reason: String, fixes: Vec<String>| Blocked {
        platform: p,
        reason,
        fixes,
    };
    let plan_fixes = || -> Vec<String> {
        item.fixes
            .iter()
            .map(|f| format!("`{}`", f.command))
            .collect()
    };
    // The host CPU runs the platform's programs (the host itself, or a compat arch like 386).
    let runs_natively = item.strategy == Strategy::Native;
    // A toolchain on the host builds it: the host platform, or a cross/compat toolchain.
    let host_builds = match item.strategy {
        Strategy::Cross => true,
        Strategy::Native => p == host || item.toolchain.is_some(),
        Strategy::Emulate | Strategy::Unavailable => false,
    };
    let in_container = |why: &str| -> Result<Placement, Blocked> {
        if s.image.is_none() {
            return Err(blocked(
                format!("{why}, and the project names no build image to build in"),
                std::iter::once(format!(
                    "set [build] image in rcross.toml to an image with a {p} compiler (it runs emulated)"
                ))
                .chain(plan_fixes())
                .collect(),
            ));
        }
        if runs_natively {
            return Ok(Placement::Container { emulated: false });
        }
        if handler {
            return Ok(Placement::Container { emulated: true });
        }
        Err(blocked(
            format!("{why}, and no binfmt_misc handler for {p} is registered, so a {p} build container cannot run here"),
            vec![format!("`sudo rcross setup --platform {p}`")],
        ))
    };
    match s.policy {
        ContainerPolicy::Always => {
            in_container("containers are asked for every platform (container = \"always\")")
        }
        ContainerPolicy::Auto if host_builds => Ok(Placement::Host),
        ContainerPolicy::Auto => in_container(&item.reason),
        ContainerPolicy::Never if host_builds => Ok(Placement::Host),
        ContainerPolicy::Never => Err(blocked(
            format!(
                "{} (containerised builds are off: [build] container = \"never\")",
                item.reason
            ),
            plan_fixes(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolchain::plan::{Fix, Lang};

    fn item(p: &str, strategy: Strategy, toolchain: Option<&str>, fixes: usize) -> PlanItem {
        PlanItem {
            platform: p.parse().unwrap(),
            lang: Lang::C,
            strategy,
            reason: "why".into(),
            toolchain: toolchain.map(str::to_string),
            rust_target: None,
            run: String::new(),
            fixes: (0..fixes)
                .map(|i| Fix {
                    command: format!("fix{i}"),
                    enables: Strategy::Cross,
                    why: String::new(),
                })
                .collect(),
        }
    }

    fn amd64() -> Platform {
        "linux/amd64".parse().unwrap()
    }

    fn settings<'a>(
        policy: ContainerPolicy,
        image: Option<&'a str>,
        builders: &'a BTreeMap<Platform, String>,
    ) -> Settings<'a> {
        Settings {
            policy,
            image,
            builders,
        }
    }

    #[test]
    fn auto_keeps_host_toolchains_and_emulates_the_rest_in_the_image() {
        let none = BTreeMap::new();
        let s = settings(ContainerPolicy::Auto, Some("img"), &none);
        let host = item("linux/amd64", Strategy::Native, None, 0);
        assert_eq!(place(&host, amd64(), false, &s), Ok(Placement::Host));
        let cross = item("linux/arm64", Strategy::Cross, Some("gcc"), 0);
        assert_eq!(place(&cross, amd64(), true, &s), Ok(Placement::Host));
        let emu = item("linux/riscv64", Strategy::Emulate, None, 1);
        assert_eq!(
            place(&emu, amd64(), true, &s),
            Ok(Placement::Container { emulated: true })
        );
        // A compat arch (386 on amd64) without a toolchain builds natively in the image.
        let compat = item("linux/386", Strategy::Native, None, 1);
        assert_eq!(
            place(&compat, amd64(), false, &s),
            Ok(Placement::Container { emulated: false })
        );
    }

    #[test]
    fn emulation_without_an_image_or_handler_is_refused_with_the_fix() {
        let none = BTreeMap::new();
        let emu = item("linux/riscv64", Strategy::Emulate, None, 1);
        let e = place(
            &emu,
            amd64(),
            true,
            &settings(ContainerPolicy::Auto, None, &none),
        )
        .unwrap_err();
        assert!(e.to_string().contains("set [build] image"), "{e}");
        assert!(e.to_string().contains("`fix0`"), "{e}");
        let unavailable = item("linux/riscv64", Strategy::Unavailable, None, 2);
        let e = place(
            &unavailable,
            amd64(),
            false,
            &settings(ContainerPolicy::Auto, Some("img"), &none),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`sudo rcross setup --platform linux/riscv64`"),
            "{e}"
        );
        let e = place(
            &emu,
            amd64(),
            true,
            &settings(ContainerPolicy::Never, Some("img"), &none),
        )
        .unwrap_err();
        assert!(e.to_string().contains("container = \"never\""), "{e}");
    }

    #[test]
    fn always_puts_every_platform_in_the_image() {
        let none = BTreeMap::new();
        let s = settings(ContainerPolicy::Always, Some("img"), &none);
        let host = item("linux/amd64", Strategy::Native, None, 0);
        assert_eq!(
            place(&host, amd64(), false, &s),
            Ok(Placement::Container { emulated: false })
        );
        let cross = item("linux/arm64", Strategy::Cross, Some("gcc"), 0);
        assert_eq!(
            place(&cross, amd64(), true, &s),
            Ok(Placement::Container { emulated: true })
        );
        assert!(place(&cross, amd64(), false, &s).is_err());
    }

    #[test]
    fn a_builder_wins_over_everything() {
        let mut b = BTreeMap::new();
        b.insert("linux/arm64".parse().unwrap(), "tcp://arm:2375".to_string());
        let s = settings(ContainerPolicy::Never, Some("img"), &b);
        let unavailable = item("linux/arm64", Strategy::Unavailable, None, 1);
        assert_eq!(
            place(&unavailable, amd64(), false, &s),
            Ok(Placement::Builder {
                endpoint: "tcp://arm:2375".into()
            })
        );
    }
}
