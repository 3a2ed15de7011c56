//! The pieces of a build that [`crate::pipeline`] runs in stages: the project file, base images,
//! placements, the build cache, the chroot runner, artifacts and layer reuse.

pub mod artifacts;
pub mod base;
pub mod cache;
pub mod chroot;
pub mod config;
pub mod place;
pub mod reuse;
pub mod rootfs;
