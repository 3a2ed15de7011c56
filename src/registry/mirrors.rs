//! Registry mirrors: where to read an image before its own registry, as buildkitd.toml and
//! containers-registries.conf configure it. A file of
//!
//! ```toml
//! [registry."docker.io"]
//! mirrors = ["127.0.0.1:5000", "mirror.example.com/dockerhub"]
//!
//! [registry."127.0.0.1:5000"]
//! http = true   # plain HTTP (loopback registries always are)
//! ```
//!
//! makes `debian:bookworm` (`docker.io/library/debian:bookworm`) read from
//! `127.0.0.1:5000/library/debian:bookworm`, then `mirror.example.com/dockerhub/library/debian:bookworm`
//! (a mirror's path is kept as a prefix), then Docker Hub itself. The first file that exists of
//! `$RCROSS_REGISTRIES_CONFIG`, `$XDG_CONFIG_HOME/rcross/registries.toml` (else
//! `~/.config/rcross/registries.toml`) and `/etc/rcross/registries.toml` is used; they are not
//! merged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::exit;

use super::client::{Client, ClientOptions};
use super::error::RegistryError;
use super::reference::{normalise_registry, validate_registry, validate_repository, Reference};
use super::source::RegistryImage;

/// The environment variable naming the registries file to use instead of the user's or the
/// system's (a file that must exist).
pub const REGISTRIES_CONFIG_ENV: &str = "RCROSS_REGISTRIES_CONFIG";
/// The system-wide registries file, used when neither the variable nor the user's file is there.
pub const SYSTEM_REGISTRIES_CONFIG: &str = "/etc/rcross/registries.toml";
/// A mirror that does not accept a connection, or answer a request, in this time is skipped.
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
/// A mirror that keeps failing (resets, 5xx, timeouts) for this long is skipped: the image's own
/// registry is still there to try, with the caller's full retry budget.
pub const MIRROR_RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// The registries file: mirrors and plain-HTTP flags per registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrors {
    /// The file the settings were read from; `None` when there is none.
    file: Option<PathBuf>,
    /// By registry name as references normalise it (`docker.io` for any Docker Hub alias).
    registries: BTreeMap<String, RegistrySettings>,
}

/// One `[registry."NAME"]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RegistrySettings {
    mirrors: Vec<MirrorLocation>,
    http: bool,
}

/// A mirror as configured: a registry host and an optional repository path prefix
/// (`mirror.example.com/dockerhub` → host `mirror.example.com`, prefix `dockerhub`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MirrorLocation {
    pub host: String,
    /// Slash-separated repository components put before the image's repository; may be empty.
    pub prefix: String,
}

impl fmt::Display for MirrorLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{}", self.host)
        } else {
            write!(f, "{}/{}", self.host, self.prefix)
        }
    }
}

/// One place to read an image from: a mirror, or the image's own registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The reference to read there: the mirror's host, its prefix before the repository, and
    /// the same tag and digest.
    pub reference: Reference,
    /// The mirror it comes from; `None` for the image's own registry.
    pub mirror: Option<MirrorLocation>,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mirror {
            Some(_) => write!(f, "mirror {}", self.reference),
            None => write!(f, "{}", self.reference),
        }
    }
}

/// A candidate that could not serve the image, and why.
#[derive(Debug)]
pub struct CandidateFailure {
    pub candidate: Candidate,
    pub error: RegistryError,
}

/// The image [`open_image`] found, where, and the candidates it skipped on the way.
#[derive(Debug)]
pub struct MirroredImage {
    pub image: RegistryImage,
    pub served_by: Candidate,
    pub skipped: Vec<CandidateFailure>,
}

/// Why the registries file cannot be used, or why no candidate served an image.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("cannot read registries file {}: {source}; make it readable, or set {REGISTRIES_CONFIG_ENV} to another file", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registries file {}{}: {message}; fix the file (format: [registry.\"docker.io\"] mirrors = [\"host[:port][/prefix]\"], http = true|false)", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        /// 1-based, when the fault has a place in the file.
        line: Option<usize>,
        message: String,
    },
    #[error("{reference}: no registry served it:{}", list_failures(.failures))]
    NoCandidateServed {
        reference: String,
        /// Every candidate in the order tried, with its failure.
        failures: Vec<CandidateFailure>,
    },
}

fn list_failures(failures: &[CandidateFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("\n  - {}: {}", f.candidate, f.error))
        .collect()
}

impl MirrorError {
    /// The documented exit code: a bad file is a usage error; when no candidate served the
    /// image, the image's own registry's failure decides.
    pub fn exit_code(&self) -> u8 {
        match self {
            MirrorError::Read { .. } | MirrorError::Invalid { .. } => exit::USAGE,
            MirrorError::NoCandidateServed { failures, .. } => failures
                .last()
                .map_or(exit::ENVIRONMENT, |f| f.error.exit_code()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    registry: BTreeMap<toml::Spanned<String>, RawRegistry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    mirrors: Vec<toml::Spanned<String>>,
    #[serde(default)]
    http: bool,
}

impl Mirrors {
    /// The settings of the first registries file that exists: `$RCROSS_REGISTRIES_CONFIG`
    /// (which must exist when set), the user's (`$XDG_CONFIG_HOME/rcross/registries.toml`,
    /// else `~/.config/rcross/registries.toml`), the system's ([`SYSTEM_REGISTRIES_CONFIG`]).
    /// None: no mirrors.
    pub fn load() -> Result<Mirrors, MirrorError> {
        let env = |name: &str| std::env::var(name).ok();
        match config_file(&env, &|path: &Path| path.exists()) {
            Some(path) => Mirrors::from_file(&path),
            None => Ok(Mirrors::default()),
        }
    }

    /// The settings of one registries file.
    pub fn from_file(path: &Path) -> Result<Mirrors, MirrorError> {
        let text = std::fs::read_to_string(path).map_err(|source| MirrorError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Mirrors::parse(&text, path)
    }

    /// The settings in `text`, the contents of `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Mirrors, MirrorError> {
        let invalid =
            |span: Option<std::ops::Range<usize>>, message: String| MirrorError::Invalid {
                path: path.to_path_buf(),
                line: span.map(|s| line_of(text, s.start)),
                message,
            };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_string()))?;
        let mut registries: BTreeMap<String, RegistrySettings> = BTreeMap::new();
        for (name, settings) in raw.registry {
            let span = name.span();
            let name = name.into_inner();
            validate_registry(&name).map_err(|reason| {
                invalid(Some(span.clone()), format!("[registry.{name:?}]: {reason}"))
            })?;
            let key = normalise_registry(&name);
            let mut mirrors = Vec::new();
            for mirror in settings.mirrors {
                let span = mirror.span();
                let location = parse_mirror(mirror.get_ref()).map_err(|reason| {
                    invalid(
                        Some(span),
                        format!(
                            "[registry.{name:?}] mirror {:?}: {reason}",
                            mirror.get_ref()
                        ),
                    )
                })?;
                mirrors.push(location);
            }
            if registries.contains_key(&key) {
                return Err(invalid(
                    Some(span),
                    format!("[registry.{name:?}] names {key} again; write each registry once"),
                ));
            }
            registries.insert(
                key,
                RegistrySettings {
                    mirrors,
                    http: settings.http,
                },
            );
        }
        Ok(Mirrors {
            file: Some(path.to_path_buf()),
            registries,
        })
    }

    /// The file the settings came from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Where to read `reference` from, in order: its registry's mirrors, then the reference
    /// itself. A mirror keeps its path prefix and the tag and digest.
    pub fn candidates(&self, reference: &Reference) -> Vec<Candidate> {
        let mirrors = self
            .registries
            .get(&reference.registry)
            .map_or(&[][..], |s| s.mirrors.as_slice());
        let mut candidates: Vec<Candidate> = mirrors
            .iter()
            .map(|mirror| Candidate {
                reference: Reference {
                    registry: mirror.host.clone(),
                    repository: if mirror.prefix.is_empty() {
                        reference.repository.clone()
                    } else {
                        format!("{}/{}", mirror.prefix, reference.repository)
                    },
                    tag: reference.tag.clone(),
                    digest: reference.digest.clone(),
                },
                mirror: Some(mirror.clone()),
            })
            .collect();
        candidates.push(Candidate {
            reference: reference.clone(),
            mirror: None,
        });
        candidates
    }

    /// The registries marked `http = true`: reached over plain HTTP.
    pub fn plain_http_registries(&self) -> Vec<String> {
        self.registries
            .iter()
            .filter(|(_, s)| s.http)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// The registries file to read, if any (see [`Mirrors::load`]); `env` reads a variable and
/// `exists` tells whether a file is there.
fn config_file(
    env: &dyn Fn(&str) -> Option<String>,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(path) = env(REGISTRIES_CONFIG_ENV).filter(|p| !p.is_empty()) {
        // Named on purpose: a missing file is reported when it is read, not passed over.
        return Some(PathBuf::from(path));
    }
    let absolute = |name: &str| env(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let user = absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".config")))
        .map(|dir| dir.join("rcross").join("registries.toml"));
    user.into_iter()
        .chain([PathBuf::from(SYSTEM_REGISTRIES_CONFIG)])
        .find(|path| exists(path))
}

/// `host[:port][/path/prefix]`, without a scheme.
fn parse_mirror(text: &str) -> Result<MirrorLocation, String> {
    if text.contains("://") {
        return Err("write it without a URL scheme (host[:port][/prefix]); \
                    plain HTTP is `http = true` in the mirror's own [registry.\"HOST\"] table"
            .to_string());
    }
    let (host, prefix) = text.split_once('/').unwrap_or((text, ""));
    let prefix = prefix.trim_end_matches('/');
    validate_registry(host)?;
    if !prefix.is_empty() {
        validate_repository(prefix)?;
    }
    Ok(MirrorLocation {
        host: normalise_registry(host),
        prefix: prefix.to_string(),
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `reference` opened at the first candidate that serves its manifest (or index): the mirrors
/// of [`Mirrors::candidates`], then its own registry. A mirror that is unreachable, refuses us
/// or lacks the tag or digest is skipped, its failure kept; a mirror gets at most
/// [`MIRROR_TIMEOUT`] to connect and to answer, and [`MIRROR_RETRY_TIMEOUT`] of retries, the image's
/// own registry the caller's `client` options. With no mirror for the registry, the image is
/// returned without a request, to be read as [`RegistryImage::new`] reads it.
///
/// `client` carries the credentials, the retry budget and the caller's plain-HTTP registries;
/// the file's `http = true` registries are added to them.
pub fn open_image(
    client: &Client,
    reference: &Reference,
    mirrors: &Mirrors,
) -> Result<MirroredImage, MirrorError> {
    let http = mirrors.plain_http_registries();
    let client = if http.is_empty() {
        client.clone()
    } else {
        let mut options = client.options().clone();
        options.insecure_registries.extend(http);
        client.with_options(options)
    };
    let mut candidates = mirrors.candidates(reference);
    if candidates.len() == 1 {
        let served_by = candidates.remove(0);
        return Ok(MirroredImage {
            image: RegistryImage::new(client, served_by.reference.clone()),
            served_by,
            skipped: Vec::new(),
        });
    }
    let probe = client.with_options(mirror_options(client.options()));
    let mut failures = Vec::new();
    for candidate in candidates {
        let via = if candidate.mirror.is_some() {
            &probe
        } else {
            &client
        };
        match via.get_manifest(&candidate.reference) {
            Ok(root) => {
                return Ok(MirroredImage {
                    image: RegistryImage::with_root(
                        client.clone(),
                        candidate.reference.clone(),
                        root,
                    ),
                    served_by: candidate,
                    skipped: failures,
                })
            }
            Err(error) => failures.push(CandidateFailure { candidate, error }),
        }
    }
    Err(MirrorError::NoCandidateServed {
        reference: reference.to_string(),
        failures,
    })
}

/// The options a mirror is tried with: the caller's, with at most the mirror limits.
fn mirror_options(options: &ClientOptions) -> ClientOptions {
    ClientOptions {
        connect_timeout: options.connect_timeout.min(MIRROR_TIMEOUT),
        response_timeout: options.response_timeout.min(MIRROR_TIMEOUT),
        retry_timeout: options.retry_timeout.min(MIRROR_RETRY_TIMEOUT),
        ..options.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn file() -> PathBuf {
        PathBuf::from("/etc/rcross/registries.toml")
    }

    fn parse(text: &str) -> Mirrors {
        Mirrors::parse(text, &file()).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn parse_err(text: &str) -> String {
        match Mirrors::parse(text, &file()) {
            Ok(m) => panic!("{text:?} should fail, got {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn reference(s: &str) -> Reference {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn names(candidates: &[Candidate]) -> Vec<String> {
        candidates.iter().map(|c| c.reference.to_string()).collect()
    }

    const EXAMPLE: &str = r#"
[registry."docker.io"]
mirrors = ["127.0.0.1:5000", "mirror.example.com/dockerhub"]

[registry."127.0.0.1:5000"]
http = true
"#;

    #[test]
    fn short_names_go_to_the_mirrors_first_with_their_prefix() {
        let mirrors = parse(EXAMPLE);
        let candidates = mirrors.candidates(&reference("debian:bookworm"));
        assert_eq!(
            names(&candidates),
            [
                "127.0.0.1:5000/library/debian:bookworm",
                "mirror.example.com/dockerhub/library/debian:bookworm",
                "docker.io/library/debian:bookworm",
            ]
        );
        assert_eq!(
            candidates[1].mirror,
            Some(MirrorLocation {
                host: "mirror.example.com".into(),
                prefix: "dockerhub".into()
            })
        );
        assert_eq!(candidates[2].mirror, None);
        assert_eq!(
            candidates[0].to_string(),
            "mirror 127.0.0.1:5000/library/debian:bookworm"
        );
        assert_eq!(mirrors.plain_http_registries(), ["127.0.0.1:5000"]);
        assert_eq!(mirrors.file(), Some(file().as_path()));
    }

    #[test]
    fn a_digest_is_kept_on_every_mirror() {
        let mirrors = parse(EXAMPLE);
        let candidates = mirrors.candidates(&reference(&format!("user/app:1@{D}")));
        assert_eq!(candidates.len(), 3);
        for c in &candidates {
            assert_eq!(c.reference.digest.as_deref(), Some(D), "{c}");
            assert_eq!(c.reference.tag.as_deref(), Some("1"), "{c}");
            assert_eq!(c.reference.manifest_ref(), D, "{c}");
        }
        assert_eq!(
            candidates[1].reference.repository, "dockerhub/user/app",
            "a Docker Hub user's repository under the prefix"
        );
    }

    #[test]
    fn other_registries_and_no_file_have_only_the_reference() {
        let mirrors = parse(EXAMPLE);
        let r = reference("ghcr.io/o/a:1");
        assert_eq!(names(&mirrors.candidates(&r)), ["ghcr.io/o/a:1"]);
        let none = Mirrors::default();
        assert_eq!(none.file(), None);
        assert_eq!(
            names(&none.candidates(&reference("debian"))),
            ["docker.io/library/debian"]
        );
        assert!(none.plain_http_registries().is_empty());
        assert_eq!(parse("").candidates(&r).len(), 1, "an empty file");
    }

    #[test]
    fn docker_hub_aliases_and_slashes_are_normalised() {
        let mirrors = parse(
            r#"[registry."index.docker.io"]
mirrors = ["mirror.example.com/a/b/", "localhost:5000"]
"#,
        );
        assert_eq!(
            names(&mirrors.candidates(&reference("alpine:3"))),
            [
                "mirror.example.com/a/b/library/alpine:3",
                "localhost:5000/library/alpine:3",
                "docker.io/library/alpine:3",
            ]
        );
        let twice = parse_err(
            "[registry.\"docker.io\"]\nmirrors = []\n[registry.\"registry-1.docker.io\"]\n",
        );
        assert!(
            twice.contains("again") && twice.contains("line 3"),
            "{twice}"
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let unknown = parse_err("[registry.\"docker.io\"]\nmirrors = []\ninsecure = true\n");
        assert!(
            unknown.contains("/etc/rcross/registries.toml, line 3") && unknown.contains("insecure"),
            "{unknown}"
        );
        let top = parse_err("\n\nmirror = 1\n");
        assert!(top.contains("line 3") && top.contains("mirror"), "{top}");
        let syntax = parse_err("[registry.\"docker.io\"\nmirrors = []\n");
        assert!(syntax.contains("line 1"), "{syntax}");
        let wrong_type = parse_err("[registry.\"docker.io\"]\n\nhttp = \"yes\"\n");
        assert!(wrong_type.contains("line 3"), "{wrong_type}");
        for (mirror, says) in [
            ("https://mirror.example.com", "URL scheme"),
            ("mirror.example.com:99999", "port"),
            ("bad_host.com", "host"),
            ("mirror.example.com/UPPER", "lowercase"),
            ("", "host"),
        ] {
            let text = format!("[registry.\"docker.io\"]\nmirrors = [\n  \"{mirror}\",\n]\n");
            let e = parse_err(&text);
            assert!(e.contains("line 3") && e.contains(says), "{mirror}: {e}");
        }
        let key = parse_err("[registry.\"not a host\"]\nhttp = true\n");
        assert!(
            key.contains("line 1") && key.contains("not a host"),
            "{key}"
        );
    }

    #[test]
    fn the_first_file_that_exists_is_used() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = |_: &Path| true;
        let none = |_: &Path| false;
        let only_system = |p: &Path| p == Path::new(SYSTEM_REGISTRIES_CONFIG);
        let pick = |vars, exists: &dyn Fn(&Path) -> bool| config_file(&env(vars), exists);

        let explicit: &[(&str, &str)] = &[
            (REGISTRIES_CONFIG_ENV, "/tmp/r.toml"),
            ("XDG_CONFIG_HOME", "/x"),
        ];
        assert_eq!(pick(explicit, &none), Some(PathBuf::from("/tmp/r.toml")));
        let xdg: &[(&str, &str)] = &[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(
            pick(xdg, &all),
            Some(PathBuf::from("/x/rcross/registries.toml"))
        );
        assert_eq!(
            pick(xdg, &only_system),
            Some(PathBuf::from(SYSTEM_REGISTRIES_CONFIG))
        );
        assert_eq!(pick(xdg, &none), None);
        let home: &[(&str, &str)] = &[
            (REGISTRIES_CONFIG_ENV, ""),
            ("XDG_CONFIG_HOME", "relative"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            pick(home, &all),
            Some(PathBuf::from("/h/.config/rcross/registries.toml"))
        );
        assert_eq!(
            pick(&[], &all),
            Some(PathBuf::from(SYSTEM_REGISTRIES_CONFIG))
        );
    }

    #[test]
    fn a_missing_named_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("absent.toml");
        let e = Mirrors::from_file(&path)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains("absent.toml") && e.contains(REGISTRIES_CONFIG_ENV)),
            "{e:?}"
        );
    }

    #[test]
    fn mirrors_get_short_limits_but_never_longer_ones() {
        let options = mirror_options(&ClientOptions::default());
        assert_eq!(options.connect_timeout, MIRROR_TIMEOUT);
        assert_eq!(options.response_timeout, MIRROR_TIMEOUT);
        assert_eq!(options.retry_timeout, MIRROR_RETRY_TIMEOUT);
        let short = ClientOptions {
            connect_timeout: Duration::from_millis(5),
            response_timeout: Duration::from_millis(6),
            retry_timeout: Duration::from_millis(7),
            ..ClientOptions::default()
        };
        let options = mirror_options(&short);
        assert_eq!(options.connect_timeout, Duration::from_millis(5));
        assert_eq!(options.response_timeout, Duration::from_millis(6));
        assert_eq!(options.retry_timeout, Duration::from_millis(7));
    }

    #[test]
    fn no_candidate_lists_every_failure_and_takes_the_origins_exit_code() {
        let mirrors = parse(EXAMPLE);
        let r = reference("debian:bookworm");
        let failures: Vec<CandidateFailure> = mirrors
            .candidates(&r)
            .into_iter()
            .map(|candidate| CandidateFailure {
                error: RegistryError::Status {
                    method: "GET",
                    url: format!("https://{}/v2/", candidate.reference.registry),
                    status: 404,
                    excerpt: String::new(),
                    hint: String::new(),
                },
                candidate,
            })
            .collect();
        let e = MirrorError::NoCandidateServed {
            reference: r.to_string(),
            failures,
        };
        let text = e.to_string();
        assert_eq!(text.matches("\n  - ").count(), 3, "{text}");
        assert!(
            text.contains("mirror 127.0.0.1:5000/library/debian:bookworm: GET"),
            "{text}"
        );
        assert_eq!(e.exit_code(), exit::USAGE, "404 at the origin");
    }
}
