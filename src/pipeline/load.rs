//! `rcross build --load`: one platform's image from the assembled layout into the local Docker
//! engine (the default endpoint: `DOCKER_HOST`, else unix:///var/run/docker.sock), streamed
//! through the API as a docker-archive and tagged with each `-t` (or `NAME:latest`).
//!
//! An engine holds one image per tag, so one platform is loaded: the only one built, else the
//! host's own platform when it was built; otherwise the build is refused before it starts
//! (buildx refuses `--load` for multi-platform builds too).

use super::Reporter;
use crate::engine::{DockerEngine, Endpoint};
use crate::exit::{self, Failure};
use crate::oci::{Descriptor, OciLayout};
use crate::platform::Platform;
use crate::registry::Reference;
use serde::Serialize;
use std::io::Write;

/// What `--load` put into the engine (the `loaded` field of `--json` and `--metadata-file`).
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    pub platform: Platform,
    pub engine: String,
    pub tags: Vec<String>,
    /// The engine's image ID.
    pub image: String,
}

/// The platform `--load` takes, decided before anything is built.
pub struct LoadPlan {
    platform: Platform,
    engine: DockerEngine,
}

/// Which of `built` to load: the only one, else `host` when it is among them.
pub fn choose(built: &[Platform], host: Option<Platform>) -> Result<Platform, String> {
    match built {
        [one] => Ok(*one),
        [] => Err("--load: no platform to build".into()),
        many => {
            if let Some(h) = host.filter(|h| many.contains(h)) {
                return Ok(h);
            }
            let list: Vec<String> = many.iter().map(Platform::to_string).collect();
            Err(format!(
                "--load puts one platform's image into the local engine, but {} platforms are \
                 built ({}) and the host's platform{} is not among them; add --platform P with \
                 one of them (e.g. --platform {}), or push the multi-platform image with --push \
                 or --output oci-archive:FILE",
                many.len(),
                list.join(", "),
                host.map(|h| format!(" ({h})")).unwrap_or_default(),
                list[0]
            ))
        }
    }
}

/// The names the image is loaded under: each `-t` with `latest` for a missing tag, else
/// `NAME:latest` (as `--output docker-archive:FILE` names it).
pub fn repo_tags(tags: &[Reference], name: &str) -> Vec<String> {
    if tags.is_empty() {
        return vec![format!("{name}:latest")];
    }
    tags.iter()
        .map(|t| {
            let mut t = t.clone();
            t.tag.get_or_insert_with(|| "latest".into());
            t.to_string()
        })
        .collect()
}

/// Chooses the platform (a usage error when it cannot) and connects to the local engine, so an
/// unreachable engine stops the build before it starts.
pub fn prepare(built: &[Platform]) -> exit::Result<LoadPlan> {
    let host = crate::detect::host_platform(&crate::host::linux::LinuxHost).ok();
    let platform = choose(built, host).map_err(|m| Failure::usage(anyhow::anyhow!(m)))?;
    let endpoint =
        Endpoint::from_env().map_err(|e| Failure::usage(anyhow::anyhow!("--load: {e}")))?;
    let engine = DockerEngine::connect(&endpoint).map_err(|e| Failure {
        code: e.exit_code(),
        error: anyhow::anyhow!("--load: {e}"),
    })?;
    Ok(LoadPlan { platform, engine })
}

impl LoadPlan {
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// Loads the manifest built for the chosen platform (`built` pairs each platform with its
    /// manifest) from `layout`, and checks the engine sees the right platform.
    pub fn load(
        &self,
        layout: &OciLayout,
        built: &[(Platform, &Descriptor)],
        repo_tags: &[String],
    ) -> exit::Result<Loaded> {
        let p = self.platform;
        let engine = self.engine.endpoint().to_string();
        let fail =
            |m: String| Failure::env(anyhow::anyhow!("--load {p} into docker {engine}: {m}"));
        let manifest = built
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, d)| *d)
            .ok_or_else(|| fail("that platform was not built".into()))?;
        let temp = tempfile::Builder::new()
            .prefix("rcross-load-")
            .suffix(".tar")
            .tempfile()
            .map_err(|e| fail(format!("cannot create a temporary file: {e}")))?;
        let writer = std::io::BufWriter::with_capacity(1 << 20, temp.as_file());
        let mut writer = layout
            .write_docker_archive(manifest, repo_tags, writer)
            .map_err(|e| Failure {
                code: e.exit_code(),
                error: anyhow::anyhow!("--load {p}: writing the docker archive: {e}"),
            })?;
        writer
            .flush()
            .map_err(|e| fail(format!("writing {}: {e}", temp.path().display())))?;
        drop(writer);
        self.engine.load(temp.path()).map_err(|e| Failure {
            code: e.exit_code(),
            error: anyhow::anyhow!("--load {p}: {e}"),
        })?;
        let first = repo_tags.first().cloned().unwrap_or_default();
        let image = self
            .engine
            .inspect_image(&first)
            .map_err(|e| Failure {
                code: e.exit_code(),
                error: anyhow::anyhow!("--load {p}: {e}"),
            })?
            .ok_or_else(|| fail(format!("the engine does not show {first} after loading it")))?;
        if image.platform() != Some(p) {
            return Err(fail(format!(
                "the engine reads {first} as {}, not {p}",
                image.platform_name()
            )));
        }
        Ok(Loaded {
            platform: p,
            engine,
            tags: repo_tags.to_vec(),
            image: image.id,
        })
    }
}

/// The `--load` step of `rcross build`, after the image is assembled: `platforms` and
/// `manifests` are the built platforms and their manifests, in the same order; `repo_tags` the
/// names (see [`repo_tags`]).
pub fn load_built(
    loader: &LoadPlan,
    layout: &OciLayout,
    platforms: &[Platform],
    manifests: &[Descriptor],
    repo_tags: &[String],
    reporter: &dyn Reporter,
) -> exit::Result<Loaded> {
    let built: Vec<(Platform, &Descriptor)> =
        platforms.iter().copied().zip(manifests.iter()).collect();
    let loaded = loader.load(layout, &built, repo_tags)?;
    reporter.line(&format!(
        "loaded {} into docker {} as {}",
        loaded.platform,
        loaded.engine,
        loaded.tags.join(", ")
    ));
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn one_platform_or_the_host_one() {
        let amd = p("linux/amd64");
        let arm = p("linux/arm64");
        let v7 = p("linux/arm/v7");
        assert_eq!(choose(&[arm], Some(amd)), Ok(arm));
        assert_eq!(choose(&[arm, amd, v7], Some(amd)), Ok(amd));
        let e = choose(&[arm, v7], Some(amd)).unwrap_err();
        assert!(
            e.contains("linux/arm64, linux/arm/v7") && e.contains("--platform linux/arm64"),
            "{e}"
        );
        assert!(e.contains("(linux/amd64)"), "{e}");
        assert!(choose(&[arm, v7], None).is_err());
        assert!(choose(&[], Some(amd)).is_err());
    }

    #[test]
    fn tags_default_to_latest_and_the_project_name() {
        let t: Vec<Reference> = vec!["127.0.0.1:5000/hello".parse().unwrap()];
        assert_eq!(repo_tags(&t, "x"), ["127.0.0.1:5000/hello:latest"]);
        assert_eq!(repo_tags(&[], "hello"), ["hello:latest"]);
    }
}
