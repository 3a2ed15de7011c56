//! Image references (`[registry/]repository[:tag][@digest]`) parsed with docker's rules, so a name
//! means here what it means to `docker pull`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Docker Hub's name in references. Its API lives at [`DOCKER_HUB_API_HOST`] and its credentials
/// under [`DOCKER_HUB_AUTH_KEY`] in config.json.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The `auths` key docker login writes for Docker Hub.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// docker's limit on the repository part ("name") of a reference.
const MAX_NAME_LEN: usize = 255;
/// docker's limit on a tag.
const MAX_TAG_LEN: usize = 128;

/// A parsed image reference. `registry` is normalised (`docker.io` for Docker Hub, whichever
/// alias was written) and Docker Hub's single-component names get the `library/` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Reference {
    /// What to put after `/manifests/`: the digest when there is one (it pins the content),
    /// else the tag, else `latest`.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// The host (and port) that serves the registry API for this reference.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The same repository at another tag or digest (e.g. a platform manifest of an index).
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("it contains whitespace or control characters"));
        }
        if input.contains("://") {
            return Err(fail(
                "write it without a URL scheme, e.g. registry.example.com/app:1.0",
            ));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|reason| fail(&reason))?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };

        // A ':' after the last '/' separates the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|reason| fail(&reason))?;
        }
        if name.is_empty() {
            return Err(fail("the repository name is missing"));
        }

        let (registry, repository) = split_registry(name);
        let registry = match registry {
            Some(registry) => {
                validate_registry(registry).map_err(|reason| fail(&reason))?;
                normalise_registry(registry)
            }
            None => DOCKER_HUB.to_string(),
        };
        if repository.is_empty() {
            return Err(fail("the repository name is missing"));
        }
        validate_repository(repository).map_err(|reason| fail(&reason))?;
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if repository.len() > MAX_NAME_LEN {
            return Err(fail(&format!(
                "the repository name is longer than {MAX_NAME_LEN} characters"
            )));
        }

        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

/// docker's rule: the first component names a registry when it has a '.' or ':', is `localhost`,
/// or has uppercase letters (repositories are lowercase, so it cannot be one).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

pub(super) fn normalise_registry(registry: &str) -> String {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

/// `host[:port]` where host is DNS labels, an IPv4 address or a bracketed IPv6 address.
pub(super) fn validate_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(after_bracket) = registry.strip_prefix('[') {
        let (v6, rest) = after_bracket
            .split_once(']')
            .ok_or_else(|| format!("registry {registry:?} has an unclosed '['"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry {registry:?} is not a valid IPv6 address"));
        }
        let port = match rest {
            "" => None,
            _ => Some(
                rest.strip_prefix(':')
                    .ok_or_else(|| format!("registry {registry:?} has junk after ']'"))?,
            ),
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if host.is_empty() || !host.split('.').all(valid_label) {
            return Err(format!("registry host {host:?} is not a valid host name"));
        }
    }
    if let Some(port) = port {
        if port.is_empty()
            || !port.chars().all(|c| c.is_ascii_digit())
            || port.parse::<u16>().is_err()
        {
            return Err(format!("registry port {port:?} is not a port number"));
        }
    }
    Ok(())
}

/// Path components: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
pub(super) fn validate_repository(repository: &str) -> Result<(), String> {
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "repository {repository:?} must be lowercase (docker rejects uppercase names)"
        ));
    }
    for component in repository.split('/') {
        if !valid_path_component(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if alnum(first) && alnum(last) => {}
        _ => return false,
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or '-'+, always followed by an alphanumeric.
        let start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !bytes.get(i).is_some_and(|&b| alnum(b)) {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok
        || tag.len() > MAX_TAG_LEN
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "tag {tag:?} must be 1 to {MAX_TAG_LEN} letters, digits, '_', '.' or '-', \
             not starting with '.' or '-'"
        ));
    }
    Ok(())
}

/// `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase: the algorithms this client can verify.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} must look like sha256:<64 hex digits>"))?;
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(format!(
            "digest {digest:?} uses algorithm {algorithm:?}; only sha256 and sha512 are supported"
        ))
        }
    };
    if hex.len() != want
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(format!(
            "digest {digest:?} must be {algorithm}: followed by {want} lowercase hex digits"
        ));
    }
    Ok(())
}

/// Whether a command-line argument names an image in a registry rather than a file or directory.
///
/// An existing path always wins. Otherwise the argument must parse as a reference and show a
/// sign of being one — a '/', ':' or '@' — and must not look like a path (`./x`, `/x`, `~/x`), a
/// transport-prefixed location (`oci:dir`, `docker://…`) or an archive file name (`out/img.tar`).
pub fn looks_like_image_reference(s: &str) -> bool {
    if s.is_empty() || Path::new(s).exists() {
        return false;
    }
    if s.starts_with(['/', '.', '~']) || s.contains("://") {
        return false;
    }
    const TRANSPORTS: [&str; 6] = [
        "oci:",
        "oci-archive:",
        "docker-archive:",
        "dir:",
        "file:",
        "containers-storage:",
    ];
    if TRANSPORTS.iter().any(|prefix| s.starts_with(prefix)) {
        return false;
    }
    if !s.contains(['/', ':', '@']) {
        return false;
    }
    let Ok(reference) = s.parse::<Reference>() else {
        return false;
    };
    const FILE_SUFFIXES: [&str; 7] = [
        ".tar", ".tar.gz", ".tgz", ".tar.zst", ".json", ".gz", ".zip",
    ];
    let looks_like_file = reference.tag.is_none()
        && reference.digest.is_none()
        && FILE_SUFFIXES
            .iter()
            .any(|suffix| reference.repository.ends_with(suffix));
    !looks_like_file
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(s: &str) -> Reference {
        match s.parse::<Reference>() {
            Ok(r) => r,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = parse(s);
        (r.registry, r.repository, r.tag, r.digest)
    }

    fn own(
        a: &str,
        b: &str,
        t: Option<&str>,
        d: Option<&str>,
    ) -> (String, String, Option<String>, Option<String>) {
        (a.into(), b.into(), t.map(Into::into), d.map(Into::into))
    }

    /// (registry, repository, tag, digest)
    type Parts<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

    /// Each input and the parts it parses to.
    fn check_parts(table: &[(&str, Parts)]) {
        for (input, (registry, repository, tag, digest)) in table {
            assert_eq!(
                parts(input),
                own(registry, repository, *tag, *digest),
                "{input}"
            );
        }
    }

    #[test]
    fn docker_hub_defaults() {
        check_parts(&[
            ("alpine", ("docker.io", "library/alpine", None, None)),
            (
                "alpine:3.19",
                ("docker.io", "library/alpine", Some("3.19"), None),
            ),
            ("user/app", ("docker.io", "user/app", None, None)),
            (
                "docker.io/alpine",
                ("docker.io", "library/alpine", None, None),
            ),
            (
                "index.docker.io/library/alpine:edge",
                ("docker.io", "library/alpine", Some("edge"), None),
            ),
        ]);
        assert_eq!(parse("alpine").api_host(), "registry-1.docker.io");
        assert_eq!(parse("alpine").manifest_ref(), "latest");
    }

    #[test]
    fn registry_detection() {
        check_parts(&[
            ("localhost/app", ("localhost", "app", None, None)),
            (
                "localhost:5000/app:1",
                ("localhost:5000", "app", Some("1"), None),
            ),
            (
                "ghcr.io/owner/app:v1.2.3",
                ("ghcr.io", "owner/app", Some("v1.2.3"), None),
            ),
            (
                "127.0.0.1:5000/a/b/c",
                ("127.0.0.1:5000", "a/b/c", None, None),
            ),
            ("[::1]:5000/app:x", ("[::1]:5000", "app", Some("x"), None)),
            // Uppercase in the first component can only be a host.
            ("MyHost/app", ("MyHost", "app", None, None)),
            // No '.', ':' or localhost: a Docker Hub user, not a registry.
            ("myhost/app", ("docker.io", "myhost/app", None, None)),
        ]);
        assert_eq!(parse("ghcr.io/a").api_host(), "ghcr.io");
    }

    #[test]
    fn tag_versus_port_and_digest() {
        assert_eq!(parts("host:5000/app"), own("host:5000", "app", None, None));
        assert_eq!(
            parts(&format!("host:5000/app@{D}")),
            own("host:5000", "app", None, Some(D))
        );
        assert_eq!(
            parts(&format!("app:1.0@{D}")),
            own("docker.io", "library/app", Some("1.0"), Some(D))
        );
        let r = parse(&format!("app:1.0@{D}"));
        assert_eq!(r.manifest_ref(), D, "the digest pins the content");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "docker.io/library/alpine",
            "docker.io/library/alpine:3",
            "ghcr.io/o/a:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "127.0.0.1:5000/x/y:z",
            "[::1]:5000/app",
        ] {
            assert_eq!(parse(s).to_string(), s);
            assert_eq!(parse(&parse(s).to_string()), parse(s));
        }
        assert_eq!(parse("alpine").to_string(), "docker.io/library/alpine");
        assert_eq!(
            parse("ghcr.io/o/a:1").with_digest(D).to_string(),
            format!("ghcr.io/o/a@{D}")
        );
    }

    #[test]
    fn separators_in_path_components() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1.b2-c3__d4", "0"] {
            assert!(parse(ok).repository.ends_with(ok), "{ok}");
        }
        for bad in [
            "a..b", "a___b", "a.-b", "-a", "a-", "_a", "a_", ".a", "a.", "a._b",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn rejects_odd_and_hostile_input() {
        let long_name = "a".repeat(300);
        let long_tag = format!("app:{}", "t".repeat(129));
        let bad = [
            "",
            " ",
            "app ",
            "app\n",
            "a\0b",
            "UPPER",
            "docker.io/Library/alpine",
            "app:",
            "app:-tag",
            "app:.tag",
            "app:ta/g",
            "app@",
            "app@sha256:abc",
            "app@md5:0123456789abcdef0123456789abcdef",
            "app@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "/app",
            "app/",
            "a//b",
            "ghcr.io/",
            ":tag",
            "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "host:port/app",
            "host:99999/app",
            "host:/app",
            "-host.com/app",
            "ho_st.com/app",
            "[::1/app",
            "[zz]:5000/app",
            "https://ghcr.io/a/b",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef@x",
            "app:tag:tag",
            "é/app",
            "ghcr.io/ápp",
            long_name.as_str(),
            long_tag.as_str(),
        ];
        for s in bad {
            let result = s.parse::<Reference>();
            assert!(result.is_err(), "{s:?} should be rejected, got {result:?}");
        }
        let err = match "UPPER".parse::<Reference>() {
            Err(e) => e.to_string(),
            Ok(r) => panic!("{r}"),
        };
        assert!(
            err.contains("\"UPPER\"") && err.contains("lowercase"),
            "{err}"
        );
    }

    #[test]
    fn tag_length_limit_is_inclusive() {
        let tag = "t".repeat(128);
        assert_eq!(
            parse(&format!("app:{tag}")).tag.as_deref(),
            Some(tag.as_str())
        );
    }

    #[test]
    fn digests() {
        assert!(validate_digest(D).is_ok());
        assert!(validate_digest(&format!("sha512:{}", "a".repeat(128))).is_ok());
        assert!(validate_digest("sha256:").is_err());
        assert!(validate_digest("sha256").is_err());
        assert!(validate_digest(&format!("sha256:{}", "g".repeat(64))).is_err());
        assert!(validate_digest(&format!("sha256:{}", "a".repeat(65))).is_err());
    }

    #[test]
    fn image_or_path() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let existing = dir.path().join("some:thing");
        std::fs::write(&existing, b"").unwrap_or_else(|e| panic!("{e}"));
        let existing = existing.to_string_lossy().to_string();

        for yes in [
            "alpine:3.19",
            "ghcr.io/owner/app",
            "localhost:5000/app",
            "user/app",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(looks_like_image_reference(yes), "{yes} is an image");
        }
        for no in [
            "",
            "alpine",
            "app.tar",
            "out/image.tar",
            "out/image.tar.gz",
            "./app:1",
            "../x/y",
            "/abs/path",
            "~/img",
            "oci:out",
            "oci:out/",
            "oci-archive:img.tar",
            "docker://alpine",
            "Has Space/x",
            "UPPER/lower:Tag/x",
            existing.as_str(),
        ] {
            assert!(!looks_like_image_reference(no), "{no:?} is not an image");
        }
    }
}
