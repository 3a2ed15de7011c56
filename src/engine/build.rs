//! Dockerfile builds on an engine: a build context (see
//! [`write_dockerfile_context`](super::context::write_dockerfile_context)) sent to `/build`
//! for one platform with the classic builder, its output streamed into a log; the image it
//! made saved as a docker-archive; the image removed.
//!
//! The classic builder is the one every engine has (BuildKit through the API needs a session
//! the client must serve); it takes `platform` for its base images and RUN containers.

use super::stream::StreamReader;
use super::{is_not_found, message, DockerEngine};
use crate::platform::Platform;
use crate::runner::RunnerError;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{BuildImageOptions, BuilderVersion, RemoveImageOptions};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::path::Path;

/// What one platform's build asks of the engine.
#[derive(Debug, Clone)]
pub struct DockerfileBuild<'a> {
    /// The Dockerfile's path inside the context tar.
    pub dockerfile: &'a str,
    pub platform: Platform,
    pub build_args: &'a BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<&'a str>,
    /// `--no-cache`: the engine's build cache is not used.
    pub no_cache: bool,
}

/// Why an engine build failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineBuildError {
    /// The Dockerfile failed on the engine: a step (named as the engine printed it, e.g.
    /// `Step 3/5 : RUN make`) or the Dockerfile itself; `message` is the engine's.
    #[error("the {platform} build on {engine} failed{}: {message}", step.as_ref().map(|s| format!(" at {s}")).unwrap_or_default())]
    Dockerfile {
        platform: Platform,
        engine: String,
        step: Option<String>,
        message: String,
    },
    /// The engine could not be used (unreachable, the context unreadable, no image ID).
    #[error(transparent)]
    Engine(#[from] RunnerError),
}

impl EngineBuildError {
    /// The exit code: a failing Dockerfile is a failed build (1), as a failing step of the
    /// daemonless builder; an unusable engine is the environment's.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineBuildError::Dockerfile { .. } => crate::exit::CHECK_FAILED,
            EngineBuildError::Engine(e) => e.exit_code(),
        }
    }
}

/// The image ID in a classic builder's last line, `Successfully built 0123456789ab`.
fn built_id(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("Successfully built ")
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The step a classic builder's output line starts, `Step 3/5 : RUN make`.
fn step_line(line: &str) -> Option<&str> {
    let line = line.trim();
    line.starts_with("Step ").then_some(line)
}

impl DockerEngine {
    /// Builds the Dockerfile `build.dockerfile` of the context tar `context_tar` for
    /// `build.platform` with the classic builder; every output line goes to `log`. Returns the
    /// image ID. The image stays in the engine: save it ([`DockerEngine::save_image`]), then
    /// remove it ([`DockerEngine::remove_image`]).
    pub fn build_dockerfile(
        &self,
        context_tar: &Path,
        build: &DockerfileBuild,
        log: &mut (dyn Write + Send),
    ) -> Result<String, EngineBuildError> {
        let what = format!("the {} build", build.platform);
        let file = std::fs::File::open(context_tar).map_err(|e| RunnerError::Other {
            what: what.clone(),
            message: format!("cannot open the context {}: {e}", context_tar.display()),
        })?;
        let body = bollard::body_try_stream(super::stream::read_stream(file));
        let buildargs: HashMap<String, String> = build
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let options = BuildImageOptions {
            dockerfile: build.dockerfile.to_string(),
            nocache: build.no_cache,
            rm: true,
            forcerm: true,
            buildargs: (!buildargs.is_empty()).then_some(buildargs),
            platform: build.platform.to_string(),
            target: build.target.unwrap_or_default().to_string(),
            version: BuilderVersion::BuilderV1,
            ..Default::default()
        };
        let mut id: Option<String> = None;
        let mut step: Option<String> = None;
        let result: Result<(), BollardError> = self.runtime.block_on(async {
            let mut answers = self.docker.build_image(options, None, Some(body));
            while let Some(answer) = answers.next().await {
                let info = answer?;
                if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                    for line in text.lines() {
                        if let Some(s) = step_line(line) {
                            step = Some(s.to_string());
                        }
                        if let Some(short) = built_id(line) {
                            id.get_or_insert_with(|| short.to_string());
                        }
                        let _ = writeln!(log, "{line}");
                    }
                }
                if let Some(full) = info.aux.and_then(|a| a.id) {
                    id = Some(full);
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(BollardError::DockerStreamError { error }) => {
                return Err(EngineBuildError::Dockerfile {
                    platform: build.platform,
                    engine: self.name(),
                    step,
                    message: error.trim().to_string(),
                })
            }
            // The engine refuses a malformed Dockerfile or an unknown target before any step.
            Err(BollardError::DockerResponseServerError {
                status_code,
                message,
            }) if status_code < 500 || step.is_none() => {
                return Err(EngineBuildError::Dockerfile {
                    platform: build.platform,
                    engine: self.name(),
                    step,
                    message: format!("the engine answered {status_code}: {}", message.trim()),
                })
            }
            Err(e) => return Err(self.fail(what, &e).into()),
        }
        id.ok_or_else(|| {
            RunnerError::Other {
                what: format!("{what} ({})", self.name()),
                message: "the engine finished without naming the image it built".into(),
            }
            .into()
        })
    }

    /// Writes the image `id` as a docker-archive (what `docker save` writes) to `to`.
    pub fn save_image(&self, id: &str, to: &Path) -> Result<(), RunnerError> {
        let what = format!("saving image {id} to {}", to.display());
        let other = |message: String| RunnerError::Other {
            what: what.clone(),
            message,
        };
        let file =
            std::fs::File::create(to).map_err(|e| other(format!("cannot create it: {e}")))?;
        let mut out = BufWriter::with_capacity(super::stream::CHUNK, file);
        let mut body = StreamReader {
            runtime: &self.runtime,
            stream: Box::pin(self.docker.export_image(id)),
            chunk: bytes::Bytes::new(),
        };
        std::io::copy(&mut body, &mut out).map_err(|e| other(e.to_string()))?;
        out.flush().map_err(|e| other(e.to_string()))?;
        Ok(())
    }

    /// Removes the image `id` (an image another name still holds stays under that name); an
    /// image already gone is no error.
    pub fn remove_image(&self, id: &str) -> Result<(), RunnerError> {
        let options = RemoveImageOptions {
            force: true,
            noprune: false,
            platforms: None,
        };
        match self
            .runtime
            .block_on(self.docker.remove_image(id, Some(options), None))
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(RunnerError::Other {
                what: format!("removing image {id} ({})", self.name()),
                message: message(&e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_builders_lines_name_the_step_and_the_image() {
        assert_eq!(built_id("Successfully built 0123abcd\n"), Some("0123abcd"));
        assert_eq!(built_id("Successfully built "), None);
        assert_eq!(built_id("Successfully built not-hex"), None);
        assert_eq!(built_id(" ---> 0123abcd"), None);
        assert_eq!(
            step_line("Step 2/3 : RUN false\n"),
            Some("Step 2/3 : RUN false")
        );
        assert_eq!(step_line(" ---> Running in 1234"), None);
    }

    #[test]
    fn a_failing_dockerfile_is_a_failed_build_and_an_unusable_engine_the_environments() {
        let failed = EngineBuildError::Dockerfile {
            platform: "linux/arm64".parse().unwrap(),
            engine: "docker unix:///var/run/docker.sock".into(),
            step: Some("Step 2/3 : RUN false".into()),
            message: "The command '/bin/sh -c false' returned a non-zero code: 1".into(),
        };
        assert_eq!(failed.exit_code(), crate::exit::CHECK_FAILED);
        let text = failed.to_string();
        assert!(
            text.contains("linux/arm64") && text.contains("at Step 2/3 : RUN false"),
            "{text}"
        );
        let engine = EngineBuildError::from(RunnerError::Unreachable {
            endpoint: "docker tcp://h:2375".into(),
            message: "no answer".into(),
        });
        assert_eq!(engine.exit_code(), crate::exit::ENVIRONMENT);
    }
}
