//! `rcross build`: project file, per-platform orchestration.

pub mod artifacts;
pub mod base;
pub mod config;
pub mod progress;
pub mod reuse;
pub mod runner;
