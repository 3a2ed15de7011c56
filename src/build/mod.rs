//! `rcross build`: project file, per-platform orchestration.

pub mod artifacts;
pub mod config;
