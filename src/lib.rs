//! rcross: make a build machine produce software and container images for other CPU architectures.
//!
//! Data flows one way: CLI → resolve (host facts + catalogs) → plan → execute → verify → output.
//! Modules below `commands` never print; only `host` touches the outside world.

pub mod binfmt;
pub mod build;
pub mod cli;
pub mod commands;
pub mod detect;
pub mod elf;
pub mod engine;
pub mod exit;
pub mod host;
pub mod image;
pub mod oci;
pub mod platform;
pub mod registry;
pub mod setup;
pub mod toolchain;
pub mod userdir;
pub mod walk;

pub use platform::Platform;
