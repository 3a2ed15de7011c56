//! `rcross.toml`: what `rcross build` makes. Parsing is strict (unknown fields are errors) and
//! every error names the file, the line and the field.

use crate::platform::Platform;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The file name `rcross build DIR` looks for.
pub const FILE_NAME: &str = "rcross.toml";

/// A problem with a project file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}; is this an rcross project (it needs an {FILE_NAME})?")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax errors and wrong types, from the TOML parser (its message carries line and column).
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}:{line}: {field}: {problem}")]
    Field {
        path: PathBuf,
        line: usize,
        field: String,
        problem: String,
    },
}

/// The parsed and checked project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The file it came from.
    pub path: PathBuf,
    /// Repository name used when no `-t` is given (e.g. "hello").
    pub name: String,
    pub platforms: Vec<Platform>,
    /// "scratch", "oci:DIR[:REF]" or a registry reference.
    pub base: String,
    pub build: BuildStep,
    pub artifacts: Vec<Artifact>,
    pub image: ImageSection,
    /// `[builders]`: platforms built natively on another Docker engine, by endpoint as written
    /// (`unix://…`, `tcp://HOST:PORT`, `ssh://USER@HOST`).
    pub builders: BTreeMap<Platform, String>,
    /// `[tags]`: the tag policy (see `crate::tags`).
    pub tags: crate::tags::TagConfig,
    /// `[image] dockerfile`: the image is built from this Dockerfile (relative to the project
    /// directory), with the file's platforms, tags and builders; `[build]` is then not used.
    pub dockerfile: Option<PathBuf>,
    /// `[verify] ignore`: paths of the image (`.dockerignore` patterns: `*`, `**`, `!`) whose
    /// ELF files are not judged against the platform (firmware, test data for other CPUs).
    pub verify_ignore: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStep {
    /// Run with `sh -c` once per platform, in `workdir`, with the platform's `rcross env`
    /// plus RCROSS_OUT (an empty per-platform output directory).
    pub command: String,
    /// Relative to the project directory.
    pub workdir: PathBuf,
    /// c, go, rust or auto: what the planner looks for.
    pub lang: String,
    /// The image containerised builds run in (`[build] image`): a registry reference or
    /// `oci:DIR[:REF]` (relative to the project), resolved per platform.
    pub image: Option<String>,
    /// When the command runs in a container of `image` instead of on the host.
    pub container: ContainerPolicy,
    /// Whether host builds may be answered from the build cache (`super::cache`).
    pub cache: bool,
}

/// `[build] container`: when a platform's build runs in a target-platform container of
/// `[build] image` (on the local Docker engine, or in a chroot without one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerPolicy {
    /// Only platforms the host cannot build (no native or cross toolchain): emulated there.
    #[default]
    Auto,
    /// Every platform: natively for the host's platforms, emulated for the others.
    Always,
    /// Never: a platform without a native or cross toolchain cannot be built.
    Never,
}

impl std::str::FromStr for ContainerPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ContainerPolicy::Auto),
            "always" => Ok(ContainerPolicy::Always),
            "never" => Ok(ContainerPolicy::Never),
            other => Err(format!("{other:?} is not one of auto, always, never")),
        }
    }
}

/// Check a builder endpoint with the engine's own parser, so the file is refused for exactly
/// what connecting would refuse.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    endpoint
        .parse::<crate::runner::Endpoint>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Relative to RCROSS_OUT; `*` and `?` globs allowed in the last component.
    pub from: String,
    /// Absolute path in the image; a directory (ending in `/`) when `from` is a glob.
    pub to: String,
    pub mode: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSection {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// KEY=VALUE, sorted by name (reproducible configs).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// "8080/tcp" form.
    pub ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    image: RawImage,
    #[serde(default)]
    build: Option<RawBuild>,
    #[serde(default, rename = "artifact")]
    artifacts: Vec<toml::Spanned<RawArtifact>>,
    #[serde(default)]
    config: RawConfig,
    #[serde(default)]
    builders: Option<toml::Spanned<BTreeMap<String, toml::Spanned<String>>>>,
    #[serde(default)]
    tags: crate::tags::TagConfig,
    #[serde(default)]
    verify: RawVerify,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    #[serde(default)]
    ignore: Vec<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: toml::Spanned<String>,
    platforms: toml::Spanned<Vec<toml::Spanned<String>>>,
    #[serde(default)]
    base: Option<toml::Spanned<String>>,
    #[serde(default)]
    dockerfile: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: toml::Spanned<String>,
    #[serde(default)]
    workdir: Option<toml::Spanned<String>>,
    #[serde(default)]
    lang: Option<toml::Spanned<String>>,
    #[serde(default)]
    image: Option<toml::Spanned<String>>,
    #[serde(default)]
    container: Option<toml::Spanned<String>>,
    /// `[build] cache = false` turns the input-addressed build cache off.
    #[serde(default)]
    cache: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    from: toml::Spanned<String>,
    to: toml::Spanned<String>,
    #[serde(default)]
    mode: Option<toml::Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    entrypoint: Vec<String>,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    env: Option<toml::Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    workdir: Option<toml::Spanned<String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    ports: Vec<toml::Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

const LANGS: &[&str] = &["auto", "c", "go", "rust"];

/// Read and check `DIR/rcross.toml` (or the file itself when `path` is one).
pub fn load(path: &Path) -> Result<Project, ConfigError> {
    let file = if path.is_dir() {
        path.join(FILE_NAME)
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
        path: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

/// Parse and check a project file's text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Project, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let file = ProjectText { path, text };
    let name = image_name(&file, &raw.image.name)?;
    let platforms = platforms(&file, &raw.image.platforms)?;
    let base = raw
        .image
        .base
        .map(|b| b.into_inner())
        .unwrap_or_else(|| "scratch".into());
    let dockerfile = dockerfile(&file, raw.image.dockerfile.as_ref())?;
    let build = match (&raw.build, &dockerfile) {
        (Some(b), None) => build_step(&file, b)?,
        (None, Some(_)) => BuildStep::for_dockerfile(),
        (Some(_), Some(_)) => {
            return Err(file.err(
                raw.image.dockerfile.as_ref().map_or(0..0, |d| d.span()),
                "image.dockerfile",
                "a project is built either by [build] command or from a Dockerfile, not both; \
                 remove one"
                    .into(),
            ))
        }
        (None, None) => {
            return Err(ConfigError::Field {
                path: path.to_path_buf(),
                line: 1,
                field: "build".into(),
                problem: "missing: give [build] command = \"…\", or [image] dockerfile = \
                          \"Dockerfile\" to build from a Dockerfile"
                    .into(),
            })
        }
    };
    let builders = builders(&file, raw.builders.as_ref())?;
    let artifacts =
        match &dockerfile {
            // The Dockerfile says what goes into the image.
            Some(_) if raw.artifacts.is_empty() => Vec::new(),
            Some(_) => return Err(file.err(
                raw.artifacts[0].span(),
                "artifact",
                "a project built from a Dockerfile takes its files from the Dockerfile; remove \
                 the [[artifact]] tables"
                    .into(),
            )),
            None => artifacts(&file, &raw.artifacts)?,
        };
    let image = image_config(&file, raw.config)?;
    Ok(Project {
        path: path.to_path_buf(),
        name,
        platforms,
        base,
        build,
        artifacts,
        image,
        builders,
        tags: raw.tags,
        dockerfile,
        verify_ignore: verify_ignore(&file, &raw.verify)?,
    })
}

/// A project file's text, for errors that name the file, the line and the field.
struct ProjectText<'a> {
    path: &'a Path,
    text: &'a str,
}

impl ProjectText<'_> {
    fn line_of(&self, span: std::ops::Range<usize>) -> usize {
        self.text
            .get(..span.start)
            .map(|s| s.matches('\n').count() + 1)
            .unwrap_or(1)
    }

    fn err(&self, span: std::ops::Range<usize>, field: &str, problem: String) -> ConfigError {
        ConfigError::Field {
            path: self.path.to_path_buf(),
            line: self.line_of(span),
            field: field.to_string(),
            problem,
        }
    }
}

/// `[image] name`: a repository name.
fn image_name(file: &ProjectText, raw: &toml::Spanned<String>) -> Result<String, ConfigError> {
    let name = raw.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
    {
        return Err(file.err(
            raw.span(),
            "image.name",
            format!(
                "{name:?} is not a valid repository name (lowercase letters, digits, '.', '_', '-', '/')"
            ),
        ));
    }
    Ok(name)
}

/// `[image] platforms`: at least one, none twice.
fn platforms(
    file: &ProjectText,
    raw: &toml::Spanned<Vec<toml::Spanned<String>>>,
) -> Result<Vec<Platform>, ConfigError> {
    let mut platforms = Vec::new();
    for p in raw.get_ref() {
        let parsed: Platform = p
            .get_ref()
            .parse()
            .map_err(|e| file.err(p.span(), "image.platforms", format!("{e}")))?;
        if platforms.contains(&parsed) {
            return Err(file.err(
                p.span(),
                "image.platforms",
                format!("{parsed} is listed twice"),
            ));
        }
        platforms.push(parsed);
    }
    if platforms.is_empty() {
        return Err(file.err(
            raw.span(),
            "image.platforms",
            "no platforms: list at least one, e.g. [\"linux/amd64\", \"linux/arm64\"]".into(),
        ));
    }
    Ok(platforms)
}

/// `[verify] ignore`: each pattern must read as a `.dockerignore` line.
fn verify_ignore(file: &ProjectText, raw: &RawVerify) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for p in &raw.ignore {
        let pattern = p.get_ref().trim();
        if pattern.is_empty() || pattern.contains('\n') {
            return Err(file.err(
                p.span(),
                "verify.ignore",
                format!(
                    "{:?}: give one path pattern, e.g. \"usr/lib/firmware/**\"",
                    p.get_ref()
                ),
            ));
        }
        super::dockerfile::ignore::DockerIgnore::parse(pattern)
            .map_err(|e| file.err(p.span(), "verify.ignore", e.to_string()))?;
        out.push(pattern.to_string());
    }
    Ok(out)
}

/// `[image] dockerfile`: a relative path inside the project.
fn dockerfile(
    file: &ProjectText,
    raw: Option<&toml::Spanned<String>>,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let p = PathBuf::from(raw.get_ref().trim());
    if raw.get_ref().trim().is_empty() || !is_relative_inside(&p) {
        return Err(file.err(
            raw.span(),
            "image.dockerfile",
            format!(
                "{:?} must be a relative path inside the project, e.g. \"Dockerfile\"",
                raw.get_ref()
            ),
        ));
    }
    Ok(Some(p))
}

impl BuildStep {
    /// The `[build]` of a project built from a Dockerfile: no command of its own.
    pub fn for_dockerfile() -> BuildStep {
        BuildStep {
            command: String::new(),
            workdir: PathBuf::from("."),
            lang: "c".into(),
            image: None,
            container: ContainerPolicy::Never,
            cache: true,
        }
    }
}

/// `[build]`.
fn build_step(file: &ProjectText, raw: &RawBuild) -> Result<BuildStep, ConfigError> {
    let command = raw.command.get_ref().trim().to_string();
    if command.is_empty() {
        return Err(file.err(
            raw.command.span(),
            "build.command",
            "empty: say how to build, e.g. \"make CC=$CC OUT=$RCROSS_OUT/app\"".into(),
        ));
    }
    let workdir = match &raw.workdir {
        Some(w) => {
            let p = PathBuf::from(w.get_ref());
            if !is_relative_inside(&p) {
                return Err(file.err(
                    w.span(),
                    "build.workdir",
                    format!(
                        "{:?} must be a relative path inside the project",
                        w.get_ref()
                    ),
                ));
            }
            p
        }
        None => PathBuf::from("."),
    };
    let lang = match &raw.lang {
        Some(l) if !LANGS.contains(&l.get_ref().as_str()) => {
            return Err(file.err(
                l.span(),
                "build.lang",
                format!("{:?} is not one of {}", l.get_ref(), LANGS.join(", ")),
            ))
        }
        Some(l) => l.get_ref().clone(),
        None => "auto".into(),
    };
    let image = match &raw.image {
        Some(i) if i.get_ref().trim().is_empty() => {
            return Err(file.err(
                i.span(),
                "build.image",
                "empty: name a build image for every platform, e.g. \"debian:12\" or \"oci:build-image\"".into(),
            ))
        }
        Some(i) => Some(i.get_ref().trim().to_string()),
        None => None,
    };
    let container = match &raw.container {
        Some(c) => c
            .get_ref()
            .parse::<ContainerPolicy>()
            .map_err(|e| file.err(c.span(), "build.container", e))?,
        None => ContainerPolicy::Auto,
    };
    Ok(BuildStep {
        command,
        workdir,
        lang,
        image,
        container,
        cache: raw.cache.unwrap_or(true),
    })
}

/// `[builders]`: one engine endpoint per platform.
fn builders(
    file: &ProjectText,
    raw: Option<&toml::Spanned<BTreeMap<String, toml::Spanned<String>>>>,
) -> Result<BTreeMap<Platform, String>, ConfigError> {
    let mut builders = BTreeMap::new();
    let Some(b) = raw else {
        return Ok(builders);
    };
    for (platform, endpoint) in b.get_ref() {
        let parsed: Platform = platform
            .parse()
            .map_err(|e| file.err(endpoint.span(), "builders", format!("{e}")))?;
        check_endpoint(endpoint.get_ref())
            .map_err(|e| file.err(endpoint.span(), &format!("builders.\"{platform}\""), e))?;
        if builders
            .insert(parsed, endpoint.get_ref().clone())
            .is_some()
        {
            return Err(file.err(
                endpoint.span(),
                "builders",
                format!("{parsed} has two builders"),
            ));
        }
    }
    Ok(builders)
}

/// `[[artifact]]`: at least one.
fn artifacts(
    file: &ProjectText,
    raw: &[toml::Spanned<RawArtifact>],
) -> Result<Vec<Artifact>, ConfigError> {
    let artifacts = raw
        .iter()
        .map(|a| artifact(file, a.get_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    if artifacts.is_empty() {
        return Err(ConfigError::Field {
            path: file.path.to_path_buf(),
            line: file.line_of(0..file.text.len()),
            field: "artifact".into(),
            problem: "no [[artifact]]: name at least one file to put in the image, e.g.\n[[artifact]]\nfrom = \"app\"\nto = \"/usr/bin/app\"".into(),
        });
    }
    Ok(artifacts)
}

fn artifact(file: &ProjectText, a: &RawArtifact) -> Result<Artifact, ConfigError> {
    let from = a.from.get_ref().clone();
    if !is_relative_inside(Path::new(&from)) {
        return Err(file.err(
            a.from.span(),
            "artifact.from",
            format!("{from:?} must be a relative path inside RCROSS_OUT"),
        ));
    }
    let to = a.to.get_ref().clone();
    if !to.starts_with('/') || to.split('/').any(|c| c == "..") {
        return Err(file.err(
            a.to.span(),
            "artifact.to",
            format!("{to:?} must be an absolute path in the image without '..'"),
        ));
    }
    let is_glob = from.contains(['*', '?']);
    if is_glob && !to.ends_with('/') {
        return Err(file.err(
            a.to.span(),
            "artifact.to",
            format!("{from:?} is a glob: {to:?} must be a directory, ending in '/'"),
        ));
    }
    let mode = match &a.mode {
        Some(m) => u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                file.err(
                    m.span(),
                    "artifact.mode",
                    format!(
                        "{:?} is not an octal file mode such as \"0755\"",
                        m.get_ref()
                    ),
                )
            })?,
        None => 0o755,
    };
    Ok(Artifact { from, to, mode })
}

/// `[config]`: the image's runtime configuration.
fn image_config(file: &ProjectText, c: RawConfig) -> Result<ImageSection, ConfigError> {
    let mut env = Vec::new();
    if let Some(e) = &c.env {
        for (k, v) in e.get_ref() {
            if k.is_empty() || k.contains('=') {
                return Err(file.err(
                    e.span(),
                    "config.env",
                    format!("{k:?} is not a variable name"),
                ));
            }
            env.push(format!("{k}={v}"));
        }
    }
    let mut ports = Vec::new();
    for p in &c.ports {
        let s = p.get_ref();
        let (num, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let ok = num.parse::<u16>().is_ok_and(|n| n > 0) && ["tcp", "udp", "sctp"].contains(&proto);
        if !ok {
            return Err(file.err(
                p.span(),
                "config.ports",
                format!("{s:?} is not a port such as \"8080\" or \"53/udp\""),
            ));
        }
        ports.push(format!("{num}/{proto}"));
    }
    if let Some(w) = &c.workdir {
        if !w.get_ref().starts_with('/') {
            return Err(file.err(
                w.span(),
                "config.workdir",
                format!("{:?} must be absolute", w.get_ref()),
            ));
        }
    }
    Ok(ImageSection {
        entrypoint: c.entrypoint,
        cmd: c.cmd,
        env,
        workdir: c.workdir.map(|w| w.into_inner()),
        user: c.user,
        ports,
        labels: c.labels,
        annotations: c.annotations,
    })
}

fn is_relative_inside(p: &Path) -> bool {
    !p.as_os_str().is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_builds_from_a_build_command_or_a_dockerfile_not_both() {
        let head = "[image]\nname = \"app\"\nplatforms = [\"linux/arm64\"]\n";
        let path = Path::new("rcross.toml");
        let p = parse(path, &format!("{head}dockerfile = \"docker/Dockerfile\"\n")).unwrap();
        assert_eq!(p.dockerfile, Some(PathBuf::from("docker/Dockerfile")));
        assert!(p.artifacts.is_empty());
        let both = format!("{head}dockerfile = \"Dockerfile\"\n[build]\ncommand = \"make\"\n");
        let e = parse(path, &both).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
        let artifacts =
            format!("{head}dockerfile = \"Dockerfile\"\n[[artifact]]\nfrom = \"a\"\nto = \"/a\"\n");
        let e = parse(path, &artifacts).unwrap_err().to_string();
        assert!(e.contains("takes its files from the Dockerfile"), "{e}");
        let e = parse(path, head).unwrap_err().to_string();
        assert!(e.contains("[image] dockerfile"), "{e}");
        let policy =
            format!("{head}dockerfile = \"D\"\n[verify]\nignore = [\"usr/lib/firmware/**\"]\n");
        assert_eq!(
            parse(path, &policy).unwrap().verify_ignore,
            ["usr/lib/firmware/**"]
        );
        let empty = format!("{head}dockerfile = \"D\"\n[verify]\nignore = [\" \"]\n");
        let e = parse(path, &empty).unwrap_err().to_string();
        assert!(e.contains("verify.ignore"), "{e}");
        let outside = format!("{head}dockerfile = \"../Dockerfile\"\n");
        let e = parse(path, &outside).unwrap_err().to_string();
        assert!(e.contains("inside the project"), "{e}");
    }

    const GOOD: &str = r#"
[image]
name = "hello"
platforms = ["linux/amd64", "aarch64", "linux/arm/v7"]

[build]
command = "make CC=\"$CC\" OUT=\"$RCROSS_OUT/hello\""
lang = "c"

[[artifact]]
from = "hello"
to = "/usr/bin/hello"

[[artifact]]
from = "share/*.txt"
to = "/usr/share/hello/"
mode = "0644"

[config]
entrypoint = ["/usr/bin/hello"]
env = { GREETING = "hi" }
ports = ["8080", "53/udp"]
labels = { "org.opencontainers.image.source" = "https://example.invalid/hello" }
"#;

    fn parse_str(s: &str) -> Result<Project, ConfigError> {
        parse(Path::new("proj/rcross.toml"), s)
    }

    #[test]
    fn a_good_file() {
        let p = parse_str(GOOD).unwrap();
        assert_eq!(p.name, "hello");
        let names: Vec<String> = p.platforms.iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
        assert_eq!(p.base, "scratch");
        assert_eq!(p.build.lang, "c");
        assert_eq!(p.build.workdir, PathBuf::from("."));
        assert_eq!(p.artifacts[0].mode, 0o755);
        assert_eq!(p.artifacts[1].mode, 0o644);
        assert_eq!(p.image.env, ["GREETING=hi"]);
        assert_eq!(p.image.ports, ["8080/tcp", "53/udp"]);
    }

    /// Every bad file names the file, the line and the field.
    #[test]
    fn bad_files_name_file_line_and_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("platforms = [\"linux/amd64\"", "platforms = [\"linux/arm46\"", "proj/rcross.toml:4: image.platforms: unknown platform \"linux/arm46\" (did you mean linux/arm64?)"),
            ("name = \"hello\"", "name = \"Hello World\"", "proj/rcross.toml:3: image.name:"),
            ("lang = \"c\"", "lang = \"cobol\"", "proj/rcross.toml:8: build.lang: \"cobol\" is not one of"),
            ("to = \"/usr/bin/hello\"", "to = \"usr/bin/hello\"", "proj/rcross.toml:12: artifact.to:"),
            ("from = \"hello\"", "from = \"../../etc/passwd\"", "proj/rcross.toml:11: artifact.from:"),
            ("mode = \"0644\"", "mode = \"rw-r--r--\"", "proj/rcross.toml:17: artifact.mode:"),
            ("to = \"/usr/share/hello/\"", "to = \"/usr/share/hello\"", "artifact.to: \"share/*.txt\" is a glob"),
            ("ports = [\"8080\", \"53/udp\"]", "ports = [\"http\"]", "proj/rcross.toml:22: config.ports:"),
            ("[config]", "[config]\nshell = \"bash\"", "unknown field `shell`"),
            ("lang = \"c\"", "lang = 3", "invalid type"),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let e = parse_str(&text).unwrap_err().to_string();
            assert!(e.contains(want), "for {to:?}:\n  got  {e}\n  want {want}");
            assert!(e.contains("proj/rcross.toml"), "{e}");
        }
        // The TOML parser's own errors carry the line too.
        let e = parse_str("[image\nname=1").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse_str(&GOOD.replace("[[artifact]]", "[[nothing]]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing"), "{e}");
    }

    #[test]
    fn build_image_container_policy_and_builders() {
        let text = GOOD.replace(
            "lang = \"c\"",
            "lang = \"c\"\nimage = \"oci:build-image\"\ncontainer = \"always\"",
        ) + "\n[builders]\n\"linux/arm64\" = \"tcp://10.0.0.5:2375\"\n\"linux/arm64/v8\" = \"ssh://me@pi\"\n";
        // arm64 and arm64/v8 are the same platform.
        let e = parse_str(&text).unwrap_err().to_string();
        assert!(e.contains("linux/arm64 has two builders"), "{e}");
        let text = text.replace(
            "\"linux/arm64/v8\" = \"ssh://me@pi\"",
            "\"riscv64\" = \"ssh://me@pi\"",
        );
        let p = parse_str(&text).unwrap();
        assert_eq!(p.build.image.as_deref(), Some("oci:build-image"));
        assert_eq!(p.build.container, ContainerPolicy::Always);
        let got: Vec<(String, String)> = p
            .builders
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("linux/arm64".to_string(), "tcp://10.0.0.5:2375".to_string()),
                ("linux/riscv64".to_string(), "ssh://me@pi".to_string())
            ]
        );
        // Defaults.
        let p = parse_str(GOOD).unwrap();
        assert_eq!(p.build.image, None);
        assert_eq!(p.build.container, ContainerPolicy::Auto);
        assert!(p.builders.is_empty());
    }

    #[test]
    fn bad_build_images_and_builders_name_the_field() {
        let with = |build: &str, tail: &str| {
            GOOD.replace("lang = \"c\"", &format!("lang = \"c\"\n{build}")) + tail
        };
        let cases = [
            (
                with("container = \"sometimes\"", ""),
                "build.container: \"sometimes\" is not one of auto, always, never",
            ),
            (with("image = \" \"", ""), "build.image: empty"),
            (
                with(
                    "image = \"x\"",
                    "\n[builders]\n\"linux/arm64\" = \"http://h:2375\"\n",
                ),
                "builders.\"linux/arm64\": \"http://h:2375\" is not a Docker endpoint",
            ),
            (
                with(
                    "image = \"x\"",
                    "\n[builders]\n\"linux/arm46\" = \"tcp://h:2375\"\n",
                ),
                "builders: unknown platform",
            ),
            (
                with(
                    "image = \"x\"",
                    "\n[builders]\n\"linux/arm64\" = \"tcp://\"\n",
                ),
                "has no address",
            ),
        ];
        for (text, want) in cases {
            let e = parse_str(&text).unwrap_err().to_string();
            assert!(e.contains(want), "got  {e}\nwant {want}");
            assert!(e.starts_with("proj/rcross.toml:"), "{e}");
        }
    }

    #[test]
    fn bundled_example_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
        let p = load(&dir).unwrap();
        assert_eq!(p.name, "hello");
        assert_eq!(p.platforms.len(), 3);
        assert_eq!(p.artifacts[0].to, "/usr/bin/hello");
    }

    #[test]
    fn missing_file_says_what_is_expected() {
        let e = load(Path::new("/nonexistent-dir/rcross.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent-dir/rcross.toml"), "{e}");
        assert!(e.contains("rcross project"), "{e}");
    }
}
