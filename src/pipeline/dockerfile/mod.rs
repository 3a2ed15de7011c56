//! The Dockerfile runtime: what runs a [`crate::dockerfile::BuildGraph`]'s steps.

pub mod copy;
pub mod ignore;
pub mod users;
