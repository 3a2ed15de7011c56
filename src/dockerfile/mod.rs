//! Dockerfile front end (pure): text + build args + platforms → an expanded build graph.

pub mod lex;
pub mod error;
pub mod syntax;
