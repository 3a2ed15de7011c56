//! `rcross build`: project file, per-platform orchestration.

pub mod config;
