//! The Dockerfile front end (issue 12), pure: Dockerfile text + build args + target and build
//! platforms → a typed, fully expanded [`BuildGraph`]. Nothing runs and nothing is fetched here;
//! base image configs come in through [`BuildOptions::base_configs`].
//!
//! Layers, bottom up: [`lex`] (BuildKit's shell-word lexer), [`syntax`] (rcross's syntax tree over
//! the `parse-dockerfile` crate, with BuildKit's line joining and heredoc reading), [`values`]
//! (argument parsers), `eval` (ARG scoping, stages, expansion per instruction) and [`graph`] (the
//! result types).

pub mod error;
mod eval;
pub mod graph;
pub mod lex;
mod mounts;
pub mod syntax;
pub mod values;

pub use error::{DockerfileError, DockerfileErrorKind};
pub use eval::platform_args;
pub use graph::*;

#[cfg(test)]
mod tests;

/// Read a Dockerfile and evaluate it for one target platform. `path` names the file in errors.
pub fn plan(path: &str, text: &str, options: &BuildOptions) -> Result<BuildGraph, DockerfileError> {
    if text.len() > MAX_DOCKERFILE_BYTES {
        return Err(DockerfileError {
            kind: DockerfileErrorKind::Syntax,
            path: path.to_string(),
            line: 0,
            instruction: String::new(),
            message: format!(
                "the file has {} bytes, more than the {MAX_DOCKERFILE_BYTES} rcross reads as a Dockerfile",
                text.len()
            ),
        });
    }
    let tree = syntax::parse(path, text)?;
    eval::evaluate(path, &tree, options)
}

/// Bytes of Dockerfile text [`plan`] accepts; larger input is refused before parsing.
pub const MAX_DOCKERFILE_BYTES: usize = 4 << 20;
