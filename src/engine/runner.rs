//! [`ContainerRunner`] on a Docker engine: the build image for the job's platform (a local
//! image of that platform, else pulled for it; or loaded from an OCI layout), a container
//! created for that platform with the project copied in before it starts, its output streamed
//! into the log, `OUT_DIR` copied back on success, and the container always removed.

use super::stream::{self, StreamReader};
use super::{message, DockerEngine, LocalImage};
use crate::oci::{Descriptor, OciLayout};
use crate::runner::{
    unpack, BuildImage, ContainerJob, ContainerRunner, JobExit, RunnerError, OUT_DIR,
};
use bollard::errors::Error as BollardError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions, LogsOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Set once SIGINT or SIGTERM arrived during a containerised build: jobs still to start refuse,
/// running ones stop and remove their containers (an engine's containers outlive rcross).
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a containerised build was interrupted by a signal.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

fn interrupted_error(job: &ContainerJob, signal: &str) -> RunnerError {
    RunnerError::Other {
        what: format!("the {} build", job.platform),
        message: format!("interrupted by {signal}; its build container was removed"),
    }
}

/// Label on every build container, so leftovers can be found (`docker ps -a --filter label=…`).
pub const JOB_LABEL: &str = "org.rcross.build-platform";

/// Removes the container if the run unwinds before the explicit removal.
struct Removal<'a> {
    engine: &'a DockerEngine,
    id: String,
    armed: bool,
}

impl Drop for Removal<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.engine.remove_container(&self.id);
        }
    }
}

/// `REGISTRY/REPO` and the tag or digest to pull, for `fromImage` and `tag`.
fn pull_parts(reference: &str) -> Option<(String, String, crate::registry::Reference)> {
    let r: crate::registry::Reference = reference.parse().ok()?;
    let tag = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    Some((format!("{}/{}", r.registry, r.repository), tag, r))
}

/// The tag a layout's image is loaded under: the layout directory and the manifest, so the same
/// manifest from the same layout is loaded once.
pub fn layout_tag(dir: &Path, manifest: &str) -> String {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir_hash = crate::oci::sha256_digest(canonical.as_os_str().as_encoded_bytes());
    let dir_hash = dir_hash.trim_start_matches("sha256:");
    let hex = manifest.strip_prefix("sha256:").unwrap_or(manifest);
    let short = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    format!("rcross-build/{}:{}", short(dir_hash, 12), short(hex, 32))
}

impl DockerEngine {
    fn image_error(&self, job: &ContainerJob, message: String) -> RunnerError {
        RunnerError::Image {
            image: job.image.to_string(),
            platform: job.platform,
            message: format!("{message} ({})", self.name()),
        }
    }

    /// The ID of an image for the job's platform, pulled or loaded when needed.
    fn ensure_image(
        &self,
        job: &ContainerJob,
        log: &mut (dyn Write + Send),
    ) -> Result<String, RunnerError> {
        match &job.image {
            BuildImage::Registry(reference) => self.ensure_registry_image(job, reference, log),
            BuildImage::Layout { dir, manifest, .. } => {
                self.ensure_layout_image(job, dir, manifest, log)
            }
        }
    }

    fn check_platform(
        &self,
        job: &ContainerJob,
        what: &str,
        image: Option<LocalImage>,
    ) -> Result<LocalImage, RunnerError> {
        let image =
            image.ok_or_else(|| self.image_error(job, format!("{what} is not in the engine")))?;
        if image.platform() == Some(job.platform) {
            Ok(image)
        } else {
            Err(self.image_error(
                job,
                format!("{what} is {}, not {}", image.platform_name(), job.platform),
            ))
        }
    }

    fn ensure_registry_image(
        &self,
        job: &ContainerJob,
        reference: &str,
        log: &mut (dyn Write + Send),
    ) -> Result<String, RunnerError> {
        let local = self.inspect_image(reference)?;
        let why = match &local {
            Some(i) if i.platform() == Some(job.platform) => return Ok(i.id.clone()),
            Some(i) => format!(
                "the local {reference} is {}, not {}",
                i.platform_name(),
                job.platform
            ),
            None => format!("{reference} is not in the engine"),
        };
        let _ = writeln!(log, "rcross: {why}; pulling it for {}", job.platform);
        let Some((from_image, tag, parsed)) = pull_parts(reference) else {
            return Err(self.image_error(
                job,
                format!("{why}, and {reference:?} is not an image reference to pull"),
            ));
        };
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag: Some(tag),
            platform: job.platform.to_string(),
            ..Default::default()
        };
        let (credentials, withheld) = match self.pull_auth(job, &parsed)? {
            PullAuth::Sent(credentials) => (credentials, None),
            PullAuth::Withheld(why) => (None, Some(why)),
        };
        let pulled: Result<(), BollardError> = self.runtime.block_on(async {
            let mut progress = self.docker.create_image(Some(options), None, credentials);
            while let Some(p) = progress.next().await {
                let p = p?;
                // Per-layer byte counts are noise in a build log; keep the status lines.
                if p.progress_detail
                    .as_ref()
                    .is_some_and(|d| d.current.is_some())
                {
                    continue;
                }
                if let Some(status) = p.status {
                    let _ = match p.id {
                        Some(id) => writeln!(log, "{id}: {status}"),
                        None => writeln!(log, "{status}"),
                    };
                }
            }
            Ok(())
        });
        if let Err(e) = pulled {
            if super::is_transport(&e) {
                return Err(self.fail(format!("pulling {reference}"), &e));
            }
            if let Some(withheld) = withheld {
                return Err(self.image_error(
                    job,
                    format!("{why}, and pulling it failed: {}; {withheld}", message(&e)),
                ));
            }
            return Err(self.image_error(
                job,
                format!(
                    "{why}, and pulling it failed: {}; pull or load a {} image under that name, \
                     or check the name and the registry credentials (docker login, credHelpers, \
                     credsStore)",
                    message(&e),
                    job.platform
                ),
            ));
        }
        let image = self.inspect_image(reference)?;
        let image = self.check_platform(job, &format!("{reference} as pulled"), image)?;
        Ok(image.id)
    }

    fn ensure_layout_image(
        &self,
        job: &ContainerJob,
        dir: &Path,
        manifest: &str,
        log: &mut (dyn Write + Send),
    ) -> Result<String, RunnerError> {
        let layout = OciLayout::open(dir).map_err(|e| self.image_error(job, e.to_string()))?;
        let bytes = layout
            .read_blob(manifest)
            .map_err(|e| self.image_error(job, e.to_string()))?;
        let config = crate::image::ImageManifest::parse(&bytes)
            .map_err(|e| self.image_error(job, format!("manifest {manifest}: {e}")))?
            .config
            .digest;
        let tag = layout_tag(dir, manifest);
        if let Some(existing) = self.inspect_image(&tag)? {
            if existing.id == config || existing.id == manifest {
                let image = self.check_platform(job, &tag, Some(existing))?;
                return Ok(image.id);
            }
        }
        let _ = writeln!(log, "rcross: loading {} as {tag}", job.image);
        let temp = tempfile::Builder::new()
            .prefix("rcross-load-")
            .suffix(".tar")
            .tempfile()
            .map_err(|e| self.image_error(job, format!("cannot create a temporary file: {e}")))?;
        let descriptor = Descriptor {
            media_type: crate::oci::MEDIA_TYPE_MANIFEST.to_string(),
            digest: manifest.to_string(),
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        };
        let writer = BufWriter::with_capacity(stream::CHUNK, temp.as_file());
        let mut writer = layout
            .write_docker_archive(&descriptor, std::slice::from_ref(&tag), writer)
            .map_err(|e| self.image_error(job, format!("writing its docker archive: {e}")))?;
        writer.flush().map_err(|e| {
            self.image_error(job, format!("writing {}: {e}", temp.path().display()))
        })?;
        drop(writer);
        self.load(temp.path())?;
        let image = self.inspect_image(&tag)?;
        let image = self.check_platform(job, &format!("{tag} as loaded"), image)?;
        Ok(image.id)
    }

    fn create_container(&self, job: &ContainerJob, image: &str) -> Result<String, RunnerError> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec!["sh".into(), "-c".into(), job.command.clone()]),
            env: Some(job.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(job.container_workdir()),
            labels: Some(HashMap::from([(
                JOB_LABEL.to_string(),
                job.platform.to_string(),
            )])),
            tty: Some(false),
            attach_stdin: Some(false),
            open_stdin: Some(false),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: None,
            platform: job.platform.to_string(),
        };
        let created = self
            .runtime
            .block_on(self.docker.create_container(Some(options), body))
            .map_err(|e| {
                self.fail(
                    format!(
                        "creating a {} build container from {} ({image})",
                        job.platform, job.image
                    ),
                    &e,
                )
            })?;
        Ok(created.id)
    }

    /// Upload, start, log, wait, download: everything between create and remove.
    fn run_created(
        &self,
        job: &ContainerJob,
        id: &str,
        log: &mut (dyn Write + Send),
    ) -> Result<JobExit, RunnerError> {
        self.upload_context(job, id)?;
        self.runtime
            .block_on(self.docker.start_container(id, None))
            .map_err(|e| {
                self.fail(
                    format!("starting the {} build container {id}", job.platform),
                    &e,
                )
            })?;
        let logs = self.docker.logs(
            id,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let wait = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        let outcome = self.runtime.block_on(async {
            // The engine's container outlives rcross: on SIGINT/SIGTERM stop waiting, so the
            // caller removes it. Listening replaces the signal's default action for the process.
            let signalled = async {
                use tokio::signal::unix::{signal, SignalKind};
                match (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) {
                    (Ok(mut int), Ok(mut term)) => tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                    },
                    // Without handlers, wait forever: the default actions still apply.
                    _ => std::future::pending().await,
                }
            };
            let copy_logs = async {
                let mut logs = Box::pin(logs);
                while let Some(item) = logs.next().await {
                    match item {
                        Ok(out) => {
                            let _ = log.write_all(&out.into_bytes());
                        }
                        Err(e) => return Some(message(&e)),
                    }
                }
                None
            };
            let wait_exit = async { Box::pin(wait).next().await };
            tokio::select! {
                done = async { tokio::join!(copy_logs, wait_exit) } => Ok(done),
                sig = signalled => Err(sig),
            }
        });
        let (log_error, waited) = match outcome {
            Ok(done) => done,
            Err(sig) => {
                INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = writeln!(log, "rcross: {sig}: stopping the build");
                return Err(interrupted_error(job, sig));
            }
        };
        if let Some(e) = log_error {
            let _ = writeln!(log, "rcross: the container's output could not be read: {e}");
        }
        let code = match waited {
            Some(Ok(r)) => r.status_code,
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => {
                return Err(self.fail(format!("waiting for the build container {id}"), &e))
            }
            None => {
                return Err(RunnerError::Other {
                    what: format!("waiting for the build container {id} ({})", self.name()),
                    message: "the engine ended the wait without an exit code".into(),
                })
            }
        };
        let _ = log.flush();
        let exit = JobExit { code };
        if exit.success() {
            self.download_output(job, id)?;
        }
        Ok(exit)
    }

    fn upload_context(&self, job: &ContainerJob, id: &str) -> Result<(), RunnerError> {
        let what = format!(
            "copying the project {} into the build container",
            job.context.display()
        );
        let (writer, body) = stream::pipe();
        let project = job.context.clone();
        let producer = std::thread::spawn(move || {
            let mut buffered = BufWriter::with_capacity(stream::CHUNK, writer);
            let written = super::context::write_context(&project, &mut buffered)
                .map(|_| ())
                .map_err(|e| e.to_string())
                .and_then(|()| buffered.flush().map_err(|e| e.to_string()));
            let writer = match buffered.into_inner() {
                Ok(w) => w,
                Err(e) => e.into_parts().1.into_parts().0,
            };
            if let Err(m) = &written {
                writer.fail(m.clone());
            }
            written
        });
        let options = UploadToContainerOptions {
            path: "/".into(),
            // Files belong to the image's user, so a build as USER can write into the tree.
            copy_uidgid: Some("true".into()),
            no_overwrite_dir_non_dir: None,
        };
        let uploaded = self.runtime.block_on(self.docker.upload_to_container(
            id,
            Some(options),
            bollard::body_try_stream(body),
        ));
        let produced = producer.join().unwrap_or_else(|_| {
            Err("the thread writing the context archive stopped unexpectedly".into())
        });
        match (produced, uploaded) {
            (Err(m), Err(e)) if m.contains(stream::ENGINE_STOPPED_READING) => {
                Err(self.fail(what, &e))
            }
            (Err(m), _) => Err(RunnerError::Other { what, message: m }),
            (Ok(()), Err(e)) => Err(self.fail(what, &e)),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    fn download_output(&self, job: &ContainerJob, id: &str) -> Result<(), RunnerError> {
        let what = format!(
            "copying {OUT_DIR} of the {} build container into {}",
            job.platform,
            job.out_dir.display()
        );
        let body = self.docker.download_from_container(
            id,
            Some(DownloadFromContainerOptions {
                path: OUT_DIR.to_string(),
            }),
        );
        let reader = StreamReader {
            runtime: &self.runtime,
            stream: Box::pin(body.map(|r| r.map_err(|e| message(&e)))),
            chunk: bytes::Bytes::new(),
        };
        let top = Path::new(OUT_DIR)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        unpack::unpack_output(reader, &top, &job.out_dir).map_err(|e| RunnerError::Other {
            what,
            message: e.to_string(),
        })?;
        Ok(())
    }
}

/// What a pull inside the engine is authenticated with.
enum PullAuth {
    /// Sent with the pull (the engine is local, or reached over TLS or ssh).
    Sent(Option<bollard::auth::DockerCredentials>),
    /// The config has credentials for the registry, but the engine is reached over plain TCP,
    /// where anyone on the path could read them: pulled without, and this says why.
    Withheld(String),
}

/// Whether this process reaches `endpoint` over TCP without TLS (as [`DockerEngine::connect`]
/// decided from the same environment).
fn plain_tcp(endpoint: &super::Endpoint) -> bool {
    matches!(endpoint, super::Endpoint::Tcp { .. })
        && !matches!(
            endpoint.tls_files(&super::TlsEnv::from_process(), &|p: &Path| p.exists()),
            Ok(Some(_))
        )
}

impl DockerEngine {
    /// The credentials for pulling `reference` inside the engine, from the same lookup the
    /// registry client uses (credHelpers, credsStore, auths). Over plain TCP none are sent.
    fn pull_auth(
        &self,
        job: &ContainerJob,
        reference: &crate::registry::Reference,
    ) -> Result<PullAuth, RunnerError> {
        use crate::registry::{CredentialStore, Secret};
        let store = CredentialStore::from_environment()
            .map_err(|e| self.image_error(job, e.to_string()))?;
        let registry = &reference.registry;
        if plain_tcp(&self.endpoint) {
            if !store.has_source(registry) {
                return Ok(PullAuth::Sent(None));
            }
            let hostport = self.endpoint.to_string();
            let hostport = hostport.trim_start_matches("tcp://");
            return Ok(PullAuth::Withheld(format!(
                "the credentials for {registry}{} were not sent, because {} is reached over \
                 plain TCP, where anyone on the path can read them; enable TLS for it \
                 (DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH=DIR holding ca.pem, cert.pem and \
                 key.pem, or those three files in ~/.docker/certs.d/{hostport}/), reach it \
                 over ssh://, or pull the image into that engine yourself",
                store
                    .helper_program(registry)
                    .map(|p| format!(" (from {p})"))
                    .unwrap_or_default(),
                self.name()
            )));
        }
        let found = store
            .lookup(registry)
            .map_err(|e| self.image_error(job, e.to_string()))?;
        let serveraddress = Some(crate::registry::server_url(registry).to_string());
        Ok(PullAuth::Sent(found.map(|found| match found.secret {
            Secret::Basic(c) => bollard::auth::DockerCredentials {
                username: Some(c.username),
                password: Some(c.password),
                serveraddress,
                ..Default::default()
            },
            Secret::IdentityToken(token) => bollard::auth::DockerCredentials {
                identitytoken: Some(token),
                serveraddress,
                ..Default::default()
            },
        })))
    }
}

impl ContainerRunner for DockerEngine {
    fn describe(&self) -> String {
        self.name()
    }

    fn run(
        &self,
        job: &ContainerJob,
        log: &mut (dyn Write + Send),
    ) -> Result<JobExit, RunnerError> {
        if interrupted() {
            return Err(interrupted_error(job, "a signal"));
        }
        let image = self.ensure_image(job, log)?;
        let id = self.create_container(job, &image)?;
        let mut guard = Removal {
            engine: self,
            id: id.clone(),
            armed: true,
        };
        let result = self.run_created(job, &id, log);
        let removed = self.remove_container(&id);
        guard.armed = false;
        match (result, removed) {
            (Err(e), _) => Err(e),
            (Ok(exit), Ok(())) => Ok(exit),
            (Ok(exit), Err(e)) => Err(RunnerError::Other {
                what: format!(
                    "removing the build container {id} ({}) after it exited with {}",
                    self.name(),
                    exit.code
                ),
                message: format!("{}; remove it with `docker rm -f {id}`", message(&e)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_name_the_repository_and_the_tag_or_digest() {
        let (name, tag, _) = pull_parts("debian:12").unwrap();
        assert_eq!(
            (name.as_str(), tag.as_str()),
            ("docker.io/library/debian", "12")
        );
        let (name, tag, _) = pull_parts("127.0.0.1:5000/tools").unwrap();
        assert_eq!(
            (name.as_str(), tag.as_str()),
            ("127.0.0.1:5000/tools", "latest")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let (_, tag, _) = pull_parts(&format!("ghcr.io/x/y@{digest}")).unwrap();
        assert_eq!(tag, digest);
        assert!(pull_parts("Not A Reference").is_none());
    }

    #[test]
    fn layout_tags_depend_on_the_directory_and_the_manifest() {
        let a = layout_tag(
            Path::new("/nonexistent/a"),
            "sha256:0123456789abcdef0123456789abcdef0123456789",
        );
        let b = layout_tag(
            Path::new("/nonexistent/b"),
            "sha256:0123456789abcdef0123456789abcdef0123456789",
        );
        assert_ne!(a, b);
        assert!(a.starts_with("rcross-build/"), "{a}");
        assert!(a.ends_with(":0123456789abcdef0123456789abcdef"), "{a}");
        assert!(a.parse::<crate::registry::Reference>().is_ok(), "{a}");
    }
}
