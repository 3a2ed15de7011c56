//! The Docker Engine edge of rcross: connect to an engine (local socket, TCP with or without
//! TLS, SSH), negotiate the API version, describe it, load docker-archive images, run
//! containerised builds ([`ContainerRunner`](crate::runner::ContainerRunner)) and build
//! Dockerfiles with the engine's classic builder ([`build`]).
//!
//! The engine client is async; [`DockerEngine`] owns its own tokio runtime and offers a
//! blocking API that several threads may call at once. Nothing here prints.
//!
//! The client library (bollard 0.21) never puts the API version into request paths, so its own
//! negotiation has no effect and every request would be read as the engine's newest API
//! version. [`DockerEngine::connect`] therefore asks the engine for its version unversioned
//! (`GET /version`), picks the lower of the engine's and the client's, and prefixes every
//! later request with `/vX.Y` itself. Engines older than [`MIN_API_VERSION`] are refused.

pub mod build;
pub mod context;
mod runner;
mod ssh;
pub mod stream;
mod tls;

pub use crate::runner::endpoint::{Endpoint, EndpointError, TlsEnv, TlsFiles};
pub use build::{DockerfileBuild, EngineBuildError};
pub use runner::{layout_tag, JOB_LABEL};

use crate::platform::Platform;
use crate::runner::RunnerError;
use bollard::errors::Error as BollardError;
use bollard::Docker;
use futures_util::StreamExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The oldest engine API rcross talks to: Docker 20.10, the first to take `platform` when a
/// container is created.
pub const MIN_API_VERSION: (u32, u32) = (1, 41);
/// How long the first request may take before the engine counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The same for an `ssh://` engine, whose first answer needs a login and a `docker` process
/// there; reaching the host itself still has [`CONNECT_TIMEOUT`] (ssh's `ConnectTimeout`).
pub const SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The limit for any later request to start answering (an image load or a large context
/// upload answers only when the engine has read everything).
const REQUEST_TIMEOUT_SECS: u64 = 3600;

/// A connected Docker engine.
pub struct DockerEngine {
    endpoint: Endpoint,
    docker: Docker,
    runtime: tokio::runtime::Runtime,
    api_version: String,
}

/// What [`DockerEngine::info`] reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EngineInfo {
    /// The engine's release, e.g. `20.10.24+dfsg1`.
    pub server_version: String,
    /// The highest API version the engine speaks, e.g. `1.41`.
    pub api_version: String,
    /// The API version rcross uses with it (the lower of the engine's and the client's).
    pub negotiated_api_version: String,
    /// `linux`
    pub os: String,
    /// The machine in OCI terms (`amd64`, `arm64`, `arm`): what the engine's containers run
    /// natively.
    pub architecture: String,
    /// The OCI variant when known (`v7` for an ARMv7 machine).
    pub variant: Option<String>,
}

/// An image in the engine's store, with the platform its config declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// The image ID (`sha256:` of the config, or of the manifest with the containerd store).
    pub id: String,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl LocalImage {
    /// The platform rcross knows it as, if any.
    pub fn platform(&self) -> Option<Platform> {
        Platform::from_oci(&self.os, &self.architecture, self.variant.as_deref()).ok()
    }

    /// `os/arch[/variant]` as the engine reports it.
    pub fn platform_name(&self) -> String {
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// Whether a client error is about the connection rather than the request.
fn is_transport(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_)
            | BollardError::HyperResponseError { .. }
            | BollardError::HttpClientError { .. }
    )
}

/// The error text of a client error, with the engine's own message when it sent one.
fn message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("the engine answered {status_code}: {message}"),
        BollardError::DockerStreamError { error } => error.clone(),
        BollardError::RequestTimeoutError => "the engine did not answer in time".to_string(),
        e => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                let text = inner.to_string();
                if !s.contains(&text) {
                    s.push_str(": ");
                    s.push_str(&text);
                }
                source = inner.source();
            }
            s
        }
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `1.41` → (1, 41).
fn parse_api_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Prefixes the request path with `/v{version}` once the version is negotiated.
fn versioned(
    mut req: bollard::BollardRequest,
    version: &OnceLock<String>,
) -> bollard::BollardRequest {
    let Some(v) = version.get() else {
        return req;
    };
    let uri = req.uri();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if path.starts_with("/v1.") {
        return req;
    }
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return req;
    };
    if let Ok(new) = format!("{scheme}://{authority}/v{v}{path}").parse() {
        *req.uri_mut() = new;
    }
    req
}

/// What a TLS-only listener answered a plain-HTTP request to a `tcp://` endpoint with, if
/// that is what happened (Go's TLS server answers 400 "Client sent an HTTP request to an
/// HTTPS server.").
fn wants_tls<'a>(endpoint: &Endpoint, e: &'a BollardError) -> Option<&'a str> {
    match (endpoint, e) {
        (
            Endpoint::Tcp { .. },
            BollardError::DockerResponseServerError {
                status_code: 400,
                message,
            },
        ) if message.contains("HTTPS server") => Some(message.trim()),
        _ => None,
    }
}

fn unreachable_fix(endpoint: &Endpoint, message: &str) -> String {
    match endpoint {
        Endpoint::Unix(_) => {
            "start the engine (`sudo systemctl start docker`, or `sudo dockerd &`), or name a \
             running one (DOCKER_HOST, --engine, --builder or [builders])"
                .to_string()
        }
        Endpoint::Tcp { .. } => {
            "check the builder's address and port and that its engine listens there (dockerd -H \
             tcp://0.0.0.0:PORT, with --tlsverify for anything but a trusted network), or fix \
             the endpoint (DOCKER_HOST, --engine, --builder or [builders])"
                .to_string()
        }
        // What to fix depends on what ssh said.
        Endpoint::Ssh { user, host, port } => ssh::Target {
            user: user.clone(),
            host: host.clone(),
            port: *port,
        }
        .fix(message),
    }
}

impl DockerEngine {
    /// Connects to the engine at `endpoint` and negotiates the API version. An engine that
    /// does not answer within [`CONNECT_TIMEOUT`] ([`SSH_CONNECT_TIMEOUT`] for `ssh://`) is
    /// [`RunnerError::Unreachable`].
    pub fn connect(endpoint: &Endpoint) -> Result<DockerEngine, RunnerError> {
        let name = endpoint.to_string();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rcross-engine")
            .enable_all()
            .build()
            .map_err(|e| RunnerError::Other {
                what: format!("docker {name}"),
                message: format!("cannot start the engine client's runtime: {e}"),
            })?;
        let unreachable = |message: String| RunnerError::Unreachable {
            endpoint: format!("docker {name}"),
            message: format!("{message}; {}", unreachable_fix(endpoint, &message)),
        };
        let connect_timeout = match endpoint {
            Endpoint::Ssh { .. } => SSH_CONNECT_TIMEOUT,
            _ => CONNECT_TIMEOUT,
        };
        let version = Arc::new(OnceLock::new());
        let docker = {
            let _guard = runtime.enter();
            let api = bollard::API_DEFAULT_VERSION;
            let connected = match endpoint {
                Endpoint::Unix(path) => {
                    Docker::connect_with_unix(&path.to_string_lossy(), REQUEST_TIMEOUT_SECS, api)
                }
                Endpoint::Tcp { host, port } => {
                    let addr = format!("tcp://{host}:{port}");
                    let files = endpoint
                        .tls_files(&TlsEnv::from_process(), &|p: &Path| p.exists())
                        .map_err(|e| RunnerError::Other {
                            what: format!("docker {name}"),
                            message: e.to_string(),
                        })?;
                    match &files {
                        Some(f) => Ok(tls::docker(host, *port, f, REQUEST_TIMEOUT_SECS, api)
                            .map_err(|message| RunnerError::Other {
                                what: format!("docker {name}"),
                                message,
                            })?),
                        None => Docker::connect_with_http(&addr, REQUEST_TIMEOUT_SECS, api),
                    }
                }
                Endpoint::Ssh { user, host, port } => ssh::docker(
                    &ssh::Target {
                        user: user.clone(),
                        host: host.clone(),
                        port: *port,
                    },
                    CONNECT_TIMEOUT,
                    REQUEST_TIMEOUT_SECS,
                    api,
                ),
            };
            match connected {
                Ok(d) => d,
                Err(e @ BollardError::SocketNotFoundError(_)) => {
                    return Err(unreachable(format!("no engine socket ({})", message(&e))))
                }
                Err(e) if is_transport(&e) => return Err(unreachable(message(&e))),
                Err(e) => {
                    return Err(RunnerError::Other {
                        what: format!("docker {name}"),
                        message: format!("cannot set up the connection: {}", message(&e)),
                    })
                }
            }
        };
        let v = Arc::clone(&version);
        let docker = docker.with_request_modifier(move |req| versioned(req, &v));

        let probe = docker.clone().with_timeout(connect_timeout);
        let answer = runtime
            .block_on(async { tokio::time::timeout(connect_timeout, probe.version()).await });
        let server = match answer {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    connect_timeout.as_secs()
                )))
            }
            // TLS failures say what to fix themselves.
            Ok(Err(e)) if tls::failure(&e).is_some() => {
                return Err(RunnerError::Unreachable {
                    endpoint: format!("docker {name}"),
                    message: tls::failure(&e).map(|f| f.0).unwrap_or_default(),
                })
            }
            Ok(Err(e)) if is_transport(&e) => {
                return Err(unreachable(format!("cannot connect: {}", message(&e))))
            }
            Ok(Err(e)) if wants_tls(endpoint, &e).is_some() => {
                return Err(RunnerError::Unreachable {
                    endpoint: format!("docker {name}"),
                    message: format!(
                        "the engine speaks only TLS (it answered \"{}\"), but no certificates \
                         are set up for it; set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to a \
                         directory with the engine's CA as ca.pem and your client certificate \
                         and key as cert.pem and key.pem, or put those three in \
                         ~/.docker/certs.d/{}/",
                        wants_tls(endpoint, &e).unwrap_or_default(),
                        endpoint.to_string().trim_start_matches("tcp://")
                    ),
                })
            }
            Ok(Err(e)) => {
                return Err(unreachable(format!(
                    "answered, but not as a Docker engine ({})",
                    message(&e)
                )))
            }
            Ok(Ok(v)) => v,
        };
        let server_api = server.api_version.clone().unwrap_or_default();
        let Some(parsed) = parse_api_version(&server_api) else {
            return Err(unreachable(format!(
                "answered without a usable API version ({server_api:?}); is it a Docker engine?"
            )));
        };
        if parsed < MIN_API_VERSION {
            return Err(RunnerError::Other {
                what: format!("docker {name}"),
                message: format!(
                    "the engine speaks API {server_api} (Docker {}), rcross needs {}.{} \
                     (Docker 20.10) or newer; upgrade the engine",
                    server.version.as_deref().unwrap_or("?"),
                    MIN_API_VERSION.0,
                    MIN_API_VERSION.1
                ),
            });
        }
        let client = bollard::API_DEFAULT_VERSION;
        let client = (client.major_version as u32, client.minor_version as u32);
        let use_version = parsed.min(client);
        let api_version = format!("{}.{}", use_version.0, use_version.1);
        let _ = version.set(api_version.clone());
        Ok(DockerEngine {
            endpoint: endpoint.clone(),
            docker,
            runtime,
            api_version,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The API version used with this engine (`1.41` for Docker 20.10).
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// `docker ENDPOINT`, for messages.
    fn name(&self) -> String {
        format!("docker {}", self.endpoint)
    }

    /// A client failure while doing `what`: unreachable when the connection broke.
    fn fail(&self, what: impl Into<String>, e: &BollardError) -> RunnerError {
        let what = what.into();
        if is_transport(e) {
            RunnerError::Unreachable {
                endpoint: self.name(),
                message: format!("{what}: the engine stopped answering: {}", message(e)),
            }
        } else {
            RunnerError::Other {
                what: format!("{what} ({})", self.name()),
                message: message(e),
            }
        }
    }

    /// The engine's version and the machine it runs on.
    pub fn info(&self) -> Result<EngineInfo, RunnerError> {
        let v = self
            .runtime
            .block_on(self.docker.version())
            .map_err(|e| self.fail("reading the engine version", &e))?;
        // `/info` reports the kernel's machine name (x86_64, aarch64, armv7l), which tells the
        // ARM variant too; `/version` has Go's name (amd64, arm64, arm) as a fallback.
        let machine = self
            .runtime
            .block_on(self.docker.info())
            .ok()
            .and_then(|i| i.architecture);
        let os = v.os.clone().unwrap_or_else(|| "linux".into());
        let platform = machine
            .as_deref()
            .and_then(|m| Platform::from_uname(m).ok())
            .or_else(|| {
                v.arch
                    .as_deref()
                    .and_then(|a| Platform::from_oci(&os, a, None).ok())
            });
        let (architecture, variant) = match platform {
            Some(p) => (p.arch().to_string(), p.variant().map(str::to_string)),
            None => (
                v.arch
                    .clone()
                    .or(machine)
                    .unwrap_or_else(|| "unknown".into()),
                None,
            ),
        };
        Ok(EngineInfo {
            server_version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            negotiated_api_version: self.api_version.clone(),
            os,
            architecture,
            variant,
        })
    }

    /// The image `reference` (a name, `name:tag` or ID) in the engine's store, or `None`.
    pub fn inspect_image(&self, reference: &str) -> Result<Option<LocalImage>, RunnerError> {
        match self.runtime.block_on(self.docker.inspect_image(reference)) {
            Ok(i) => Ok(Some(LocalImage {
                id: i.id.unwrap_or_default(),
                os: i.os.unwrap_or_default(),
                architecture: i.architecture.unwrap_or_default(),
                variant: i.variant.filter(|v| !v.is_empty()),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.fail(format!("inspecting image {reference}"), &e)),
        }
    }

    /// Loads a docker-archive (what `docker save` writes) into the engine, streaming the file;
    /// returns the names the engine reports (`name:tag`, or the image ID for untagged images).
    pub fn load(&self, archive: &Path) -> Result<Vec<String>, RunnerError> {
        let what = format!("loading {} into the engine", archive.display());
        let file = std::fs::File::open(archive).map_err(|e| RunnerError::Other {
            what: what.clone(),
            message: format!("cannot open it: {e}"),
        })?;
        let body = bollard::body_try_stream(stream::read_stream(file));
        let options = bollard::query_parameters::ImportImageOptions {
            quiet: true,
            platform: None,
        };
        let mut names = Vec::new();
        let result: Result<(), BollardError> = self.runtime.block_on(async {
            let mut answers = self.docker.import_image(options, body, None);
            while let Some(answer) = answers.next().await {
                let info = answer?;
                if let Some(line) = info.stream {
                    for line in line.lines() {
                        let name = line
                            .strip_prefix("Loaded image: ")
                            .or_else(|| line.strip_prefix("Loaded image ID: "));
                        if let Some(n) = name {
                            names.push(n.trim().to_string());
                        }
                    }
                }
            }
            Ok(())
        });
        result.map_err(|e| self.fail(what, &e))?;
        Ok(names)
    }

    /// Removes a container and its anonymous volumes, running or not.
    fn remove_container(&self, id: &str) -> Result<(), BollardError> {
        let options = bollard::query_parameters::RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        match self
            .runtime
            .block_on(self.docker.remove_container(id, Some(options)))
        {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_as_numbers() {
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(parse_api_version(" 1.9 "), Some((1, 9)));
        assert!(parse_api_version("1.9").unwrap() < MIN_API_VERSION);
        assert!(parse_api_version("1.100").unwrap() > MIN_API_VERSION);
        assert_eq!(parse_api_version("x"), None);
        assert_eq!(parse_api_version(""), None);
    }

    #[test]
    fn requests_carry_the_negotiated_version() {
        let v = OnceLock::new();
        let req = |uri: &str| {
            let mut r = bollard::BollardRequest::new(bollard::body_full(bytes::Bytes::new()));
            *r.uri_mut() = uri.parse().unwrap();
            r
        };
        let unversioned = versioned(req("http://h:2375/containers/json?all=1"), &v);
        assert_eq!(
            unversioned.uri().to_string(),
            "http://h:2375/containers/json?all=1"
        );
        v.set("1.41".to_string()).unwrap();
        let r = versioned(req("http://h:2375/containers/json?all=1"), &v);
        assert_eq!(
            r.uri().to_string(),
            "http://h:2375/v1.41/containers/json?all=1"
        );
        let r = versioned(req("unix://2f746d70/version"), &v);
        assert_eq!(r.uri().to_string(), "unix://2f746d70/v1.41/version");
        let r = versioned(req("http://h:2375/v1.40/version"), &v);
        assert_eq!(r.uri().to_string(), "http://h:2375/v1.40/version");
    }

    #[test]
    fn a_tls_only_engine_is_told_from_other_bad_requests() {
        let tcp: Endpoint = "tcp://h:2376".parse().unwrap();
        let answer = |message: &str| BollardError::DockerResponseServerError {
            status_code: 400,
            message: message.to_string(),
        };
        let https = answer("Client sent an HTTP request to an HTTPS server.\n");
        assert_eq!(
            wants_tls(&tcp, &https),
            Some("Client sent an HTTP request to an HTTPS server.")
        );
        assert_eq!(wants_tls(&tcp, &answer("bad request")), None);
        let unix: Endpoint = "unix:///s".parse().unwrap();
        assert_eq!(wants_tls(&unix, &https), None);
    }

    #[test]
    fn local_images_name_their_platform() {
        let i = LocalImage {
            id: "sha256:1".into(),
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        assert_eq!(i.platform_name(), "linux/arm/v7");
        assert_eq!(i.platform(), "linux/arm/v7".parse().ok());
        let i = LocalImage {
            variant: None,
            architecture: "arm64".into(),
            ..i
        };
        assert_eq!(i.platform(), "linux/arm64".parse().ok());
    }
}
