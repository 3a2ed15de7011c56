//! What to install so that each platform builds by cross-compiling and its programs run: a pure
//! decision from [`Facts`], carried out with the host's package manager through [`Host`].

use super::{Catalog, Facts, PackageManager};
use crate::host::{CommandSpec, Host, ProbeOutcome};
use crate::platform::Platform;
use serde::Serialize;

/// The state of one part (compiler or emulator) of a platform's toolchain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum ComponentState {
    /// Nothing to do: what is there.
    AlreadyInstalled(String),
    /// Will be installed: a description of what.
    Install(String),
    /// Not needed on this host: why.
    NotNeeded(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallItem {
    pub platform: Platform,
    pub compiler: ComponentState,
    pub emulator: ComponentState,
}

/// The whole decision: per platform, and the commands that carry it out, in order.
#[derive(Debug, Clone, Serialize)]
pub struct InstallPlan {
    pub items: Vec<InstallItem>,
    #[serde(serialize_with = "ser_commands")]
    pub commands: Vec<CommandSpec>,
}

fn ser_commands<S: serde::Serializer>(c: &[CommandSpec], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(c.iter().map(CommandSpec::display))
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("rcross has no toolchain data for {0}; add a file for it to {dir}", dir = super::USER_DIR)]
    NoCatalogEntry(Platform),
    #[error("this host has no package manager rcross drives (apt-get on Debian/Ubuntu, dnf on Fedora); install these yourself (Debian names): {0}")]
    NoPackageManager(String),
    #[error("no package for a {platform} compiler is known for {pm}; install a cross compiler for {platform} yourself, or add one to a toolchain file in {dir}", dir = super::USER_DIR)]
    NoPackages { platform: Platform, pm: String },
    #[error("installing packages needs root: run `sudo rcross toolchain install {0}` (or --dry-run to see the commands)")]
    NotRoot(String),
    #[error("`{command}` could not start: {source}")]
    Start {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); its own messages are above")]
    Failed { command: String, status: String },
}

fn push_unique(v: &mut Vec<String>, items: &[String]) {
    for i in items {
        if !v.contains(i) {
            v.push(i.clone());
        }
    }
}

/// Decide what to install for `platforms`.
pub fn plan(
    facts: &Facts,
    catalog: &Catalog,
    platforms: &[Platform],
) -> Result<InstallPlan, InstallError> {
    let pm = facts.package_manager;
    let mut system: Vec<String> = Vec::new();
    let mut pip: Vec<String> = Vec::new();
    let mut items = Vec::new();
    for p in platforms {
        let spec = catalog.get(p).ok_or(InstallError::NoCatalogEntry(*p))?;
        let tf = facts.target(p);
        let compiler = if *p == facts.host {
            ComponentState::NotNeeded(format!("the host is {p}"))
        } else if let Some(t) = tf.and_then(|t| t.toolchains.first()) {
            ComponentState::AlreadyInstalled(t.describe())
        } else {
            // The first compiler in the catalog's order that this host can install.
            let pick = spec.compilers.iter().find_map(|c| {
                let pkgs = match pm {
                    Some(PackageManager::AptGet) => &c.debian,
                    Some(PackageManager::Dnf) => &c.fedora,
                    None => &c.debian,
                };
                if !pkgs.is_empty() {
                    Some((c, pkgs.clone(), false))
                } else if !c.pip.is_empty() {
                    Some((c, c.pip.clone(), true))
                } else {
                    None
                }
            });
            let Some((c, pkgs, via_pip)) = pick else {
                return Err(InstallError::NoPackages {
                    platform: *p,
                    pm: match pm {
                        Some(PackageManager::Dnf) => "dnf".into(),
                        _ => "apt-get".into(),
                    },
                });
            };
            if via_pip {
                push_unique(&mut pip, &pkgs);
                if !facts.pip {
                    push_unique(&mut system, &["python3-pip".to_string()]);
                }
            } else {
                push_unique(&mut system, &pkgs);
            }
            let how = if via_pip { "pip" } else { "packages" };
            ComponentState::Install(format!(
                "{} {} ({how} {})",
                c.kind,
                c.triple,
                pkgs.join(" ")
            ))
        };
        let emulator = if facts.native.contains(p) {
            ComponentState::NotNeeded(format!("the host runs {p} programs natively"))
        } else if let Some(e) = tf.and_then(|t| t.emulator.as_ref()) {
            ComponentState::AlreadyInstalled(e.display().to_string())
        } else {
            let pkgs = match pm {
                Some(PackageManager::Dnf) => &spec.emulator_packages.fedora,
                _ => &spec.emulator_packages.debian,
            };
            push_unique(&mut system, pkgs);
            ComponentState::Install(format!("QEMU emulator (packages {})", pkgs.join(" ")))
        };
        items.push(InstallItem {
            platform: *p,
            compiler,
            emulator,
        });
    }
    let mut commands = Vec::new();
    if !system.is_empty() {
        match pm {
            Some(PackageManager::AptGet) => {
                commands.push(CommandSpec::new("apt-get").args(["update"]));
                commands.push(
                    CommandSpec::new("apt-get")
                        .args(["install", "-y", "--no-install-recommends"])
                        .args(system.iter())
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                );
            }
            Some(PackageManager::Dnf) => {
                commands.push(
                    CommandSpec::new("dnf")
                        .args(["install", "-y"])
                        .args(system.iter()),
                );
            }
            None => {
                let mut all = system.clone();
                all.extend(pip.iter().map(|p| format!("{p} (pip)")));
                return Err(InstallError::NoPackageManager(all.join(" ")));
            }
        }
    }
    if !pip.is_empty() {
        // Debian 12+ marks the system Python as externally managed; older pip ignores the
        // variable, newer pip installs anyway (zig is a self-contained binary in a wheel).
        commands.push(
            CommandSpec::new("python3")
                .args(["-m", "pip", "install"])
                .args(pip.iter())
                .env("PIP_BREAK_SYSTEM_PACKAGES", "1"),
        );
    }
    Ok(InstallPlan { items, commands })
}

/// Run the plan's commands in order, attached to the terminal so the package manager's
/// progress and errors reach the user. Stops at the first failure.
pub fn apply(host: &dyn Host, plan: &InstallPlan) -> Result<(), InstallError> {
    for c in &plan.commands {
        let command = c.display();
        let st = host.run_inherit(c).map_err(|source| InstallError::Start {
            command: command.clone(),
            source,
        })?;
        if st != ProbeOutcome::Exited(0) {
            let status = match st {
                ProbeOutcome::Exited(n) => format!("exit status {n}"),
                ProbeOutcome::Signaled(s) => format!("killed by signal {s}"),
                ProbeOutcome::ExecFormatError => "exec format error".into(),
            };
            return Err(InstallError::Failed { command, status });
        }
    }
    Ok(())
}
