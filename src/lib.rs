//! rcross: make a build machine produce software and container images for other CPU architectures.
//!
//! `rcross build` runs as stages in [`pipeline`]: resolve (rcross.toml + flags → a job) → plan
//! (per platform: native, cross or emulated, and where it runs) → run (a runner per platform, in
//! parallel) → verify (every ELF file against its platform) → assemble (layers, configs,
//! manifests, index) → publish (layout, archives, engine, registry).
//!
//! Dependencies point one way, from the top of this list down (`tests/layering.rs` checks it):
//! [`commands`] (the only modules that print) → [`pipeline`] → [`engine`], [`registry`],
//! [`toolchain`], [`setup`], [`binfmt`], [`detect`] → [`runner`] (the runner contract),
//! [`oci`] (writing images) → [`walk`], [`image`] (the one read model), [`elf`] →
//! [`platform`] → [`host`], the bottom layer: the only door to the kernel and processes.

pub mod binfmt;
pub mod cli;
pub mod commands;
pub mod detect;
pub mod dockerfile;
pub mod elf;
pub mod engine;
pub mod exit;
pub mod host;
pub mod image;
pub mod oci;
pub mod pipeline;
pub mod platform;
pub mod registry;
pub mod runner;
pub mod setup;
pub mod tags;
pub mod toolchain;
pub mod userdir;
pub mod walk;

pub use platform::Platform;

/// The test-prerequisite rule shared with the integration tests (one file for both).
#[cfg(test)]
#[path = "../tests/prereq/mod.rs"]
pub(crate) mod prereq;

#[cfg(test)]
mod prereq_rule {
    use crate::prereq::is_on;

    #[test]
    fn a_variable_is_on_when_set_to_anything_but_empty_zero_or_false() {
        for v in ["1", "true", "TRUE", "yes", "on", "github"] {
            assert!(is_on(Some(v.into())), "{v}");
        }
        for v in ["", " ", "0", "false", "False", "FALSE"] {
            assert!(!is_on(Some(v.into())), "{v:?}");
        }
        assert!(!is_on(None));
    }
}
