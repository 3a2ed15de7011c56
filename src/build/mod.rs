//! `rcross build`: project file, per-platform orchestration.

pub mod artifacts;
pub mod base;
pub mod cache;
pub mod chroot;
pub mod config;
pub mod place;
pub mod reuse;
pub mod rootfs;
