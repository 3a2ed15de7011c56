//! The images a Dockerfile names (`FROM`, `COPY --from`, `RUN --mount=from=`), resolved once
//! per reference and platform: short names as Docker reads them (`debian:bookworm` is
//! `docker.io/library/debian:bookworm`), registry mirrors tried first
//! ([`crate::registry::mirrors`]), the platform's manifest chosen from the index (a missing
//! platform is an error naming those the image has).

use crate::dockerfile::{Healthcheck, ImageConfig as StageConfig};
use crate::exit::{self, Failure};
use crate::image::ImageSource;
use crate::pipeline::base::{self, BasePlatform};
use crate::pipeline::Reporter;
use crate::platform::Platform;
use crate::registry::{Client, Reference};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One image for one platform.
pub struct ResolvedBase {
    /// The reference as the Dockerfile wrote it (after expansion).
    pub written: String,
    /// The registry (a mirror, or the image's own) that served it, as a reference.
    pub served_by: String,
    pub source: Box<dyn ImageSource + Send + Sync>,
    pub part: BasePlatform,
}

impl ResolvedBase {
    /// The config a stage built on it starts from.
    pub fn stage_config(&self) -> StageConfig {
        let s = &self.part.settings;
        StageConfig {
            env: s.env.clone().unwrap_or_default(),
            labels: s.labels.clone().unwrap_or_default(),
            working_dir: s.working_dir.clone().unwrap_or_default(),
            user: s.user.clone().unwrap_or_default(),
            exposed_ports: s
                .exposed_ports
                .clone()
                .unwrap_or_default()
                .into_keys()
                .collect(),
            volumes: s.volumes.clone().unwrap_or_default().into_keys().collect(),
            cmd: s.cmd.clone(),
            entrypoint: s.entrypoint.clone(),
            shell: s.shell.clone().filter(|v| !v.is_empty()),
            stop_signal: s.stop_signal.clone().filter(|v| !v.is_empty()),
            healthcheck: s.healthcheck.as_ref().map(|h| Healthcheck {
                test: h.test.clone().unwrap_or_default(),
                interval: h.interval.map(Duration::from_nanos),
                timeout: h.timeout.map(Duration::from_nanos),
                start_period: h.start_period.map(Duration::from_nanos),
                start_interval: h.start_interval.map(Duration::from_nanos),
                retries: h.retries.and_then(|r| u32::try_from(r).ok()),
            }),
            onbuild: s.onbuild.clone().unwrap_or_default(),
            author: None,
        }
    }
}

/// The images of one build, each resolved once.
pub struct BaseImages {
    insecure: bool,
    retry_timeout: Duration,
    mirrors: crate::registry::mirrors::Mirrors,
    resolved: Mutex<BTreeMap<(String, Platform), Arc<ResolvedBase>>>,
}

impl BaseImages {
    pub fn new(
        mirrors: crate::registry::mirrors::Mirrors,
        insecure: bool,
        retry_timeout: Duration,
    ) -> BaseImages {
        BaseImages {
            insecure,
            retry_timeout,
            mirrors,
            resolved: Mutex::new(BTreeMap::new()),
        }
    }

    /// `written` for `platform`, resolved on first use.
    pub fn get(
        &self,
        written: &str,
        platform: Platform,
        reporter: &dyn Reporter,
    ) -> exit::Result<Arc<ResolvedBase>> {
        let key = (written.to_string(), platform);
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        let resolved = Arc::new(self.resolve(written, platform, reporter)?);
        self.lock().insert(key, resolved.clone());
        Ok(resolved)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, Platform), Arc<ResolvedBase>>> {
        match self.resolved.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn resolve(
        &self,
        written: &str,
        platform: Platform,
        reporter: &dyn Reporter,
    ) -> exit::Result<ResolvedBase> {
        let reference: Reference = written.parse().map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "FROM {written}: {e}; name an image as REGISTRY/REPOSITORY:TAG or NAME:TAG"
            ))
        })?;
        let insecure: Vec<String> = if self.insecure {
            vec![reference.registry.clone()]
        } else {
            Vec::new()
        };
        let client =
            Client::from_environment_with(&insecure, self.retry_timeout).map_err(Failure::env)?;
        let found = crate::registry::mirrors::open_image(&client, &reference, &self.mirrors)
            .map_err(|e| Failure {
                code: e.exit_code(),
                error: anyhow::anyhow!("FROM {written}: {e}"),
            })?;
        for skipped in &found.skipped {
            reporter.line(&format!(
                "{written}: skipped {}: {}",
                skipped.candidate, skipped.error
            ));
        }
        let served_by = found.served_by.to_string();
        if found.served_by.mirror.is_some() {
            reporter.line(&format!("{written}: served by {served_by}"));
        }
        let image = found.image;
        let parts = base::resolve(&image, &[platform])
            .map_err(|e| Failure::env(anyhow::anyhow!("FROM {written} for {platform}: {e}")))?;
        let part = parts.into_iter().next().ok_or_else(|| {
            Failure::env(anyhow::anyhow!(
                "FROM {written}: the image has no {platform} manifest"
            ))
        })?;
        Ok(ResolvedBase {
            written: written.to_string(),
            served_by,
            source: Box::new(image),
            part,
        })
    }
}
