//! The `platform` of an index entry or an image config, and how it is matched: spellings are
//! normalised as containerd's `platforms.Normalize` does (`arm64/v8` is `arm64`, `arm` is
//! `arm/v7`, `amd64/v1` is `amd64`, `aarch64` is `arm64`, `x86_64` is `amd64`, `armhf` is
//! `arm/v7`, `armel` is `arm/v6`, `i386` is `386`) before they are looked up as an rcross
//! [`Platform`].

use serde::{Deserialize, Serialize};

use crate::platform::{Platform, PlatformError};

/// The `platform` of an index entry (and the os/architecture/variant of a config), as written.
/// Field order is the order rcross writes them in (digests depend on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciPlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl From<Platform> for OciPlatform {
    /// arm64 carries variant `v8` and arm its `v5`/`v6`/`v7`, as the index spec recommends and
    /// as containerd matches them.
    fn from(platform: Platform) -> Self {
        OciPlatform {
            architecture: platform.arch().to_string(),
            os: platform.os().to_string(),
            variant: platform.variant().map(str::to_string),
        }
    }
}

impl OciPlatform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> OciPlatform {
        OciPlatform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// As written (`linux/arm64/v8`), for messages.
    pub fn display(&self) -> String {
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// Buildkit's attestation manifests (provenance, SBOMs) and other artifacts say
    /// `unknown/unknown`: no filesystem to run.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }

    /// The same platform in containerd's normal form (lowercase, canonical architecture and
    /// variant names; see the module documentation).
    pub fn normalized(&self) -> OciPlatform {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.as_deref().unwrap_or("").to_ascii_lowercase();
        let (arch, variant) = match arch.as_str() {
            "i386" => ("386".to_string(), String::new()),
            "x86_64" | "x86-64" | "amd64" => {
                let v = if variant == "v1" {
                    String::new()
                } else {
                    variant
                };
                ("amd64".to_string(), v)
            }
            "aarch64" | "arm64" => {
                let v = match variant.as_str() {
                    "8" | "v8" | "v8.0" => String::new(),
                    "9" | "9.0" | "v9.0" => "v9".to_string(),
                    _ => variant,
                };
                ("arm64".to_string(), v)
            }
            "armhf" => ("arm".to_string(), "v7".to_string()),
            "armel" => ("arm".to_string(), "v6".to_string()),
            "arm" => {
                let v = match variant.as_str() {
                    "" | "7" => "v7".to_string(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    _ => variant,
                };
                ("arm".to_string(), v)
            }
            _ => (arch, variant),
        };
        OciPlatform::new(&os, &arch, Some(&variant))
    }

    /// The rcross platform this one is, after normalisation; an error names what rcross does
    /// not know.
    pub fn to_platform(&self) -> Result<Platform, PlatformError> {
        let n = self.normalized();
        Platform::from_oci(&n.os, &n.architecture, n.variant.as_deref())
    }

    /// [`OciPlatform::to_platform`], when rcross knows it.
    pub fn platform(&self) -> Option<Platform> {
        self.to_platform().ok()
    }

    /// Whether both name the same platform once normalised.
    pub fn matches(&self, other: &OciPlatform) -> bool {
        self.normalized() == other.normalized()
    }

    /// `os/arch[/variant]` as rcross names it when it knows the platform, else as written
    /// (normalised); and the form an index entry gets.
    pub fn canonical(&self) -> (String, OciPlatform) {
        match self.platform() {
            Some(p) => (p.to_string(), OciPlatform::from(p)),
            None => (self.display(), self.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> OciPlatform {
        OciPlatform::new(os, arch, variant)
    }

    #[test]
    fn normalisation_follows_containerd() {
        type ArchVariant<'a> = (&'a str, Option<&'a str>);
        let table: &[(ArchVariant, ArchVariant)] = &[
            (("amd64", None), ("amd64", None)),
            (("amd64", Some("v1")), ("amd64", None)),
            (("amd64", Some("v3")), ("amd64", Some("v3"))),
            (("x86_64", None), ("amd64", None)),
            (("x86-64", None), ("amd64", None)),
            (("i386", Some("x")), ("386", None)),
            (("arm64", None), ("arm64", None)),
            (("arm64", Some("v8")), ("arm64", None)),
            (("arm64", Some("8")), ("arm64", None)),
            (("arm64", Some("v8.0")), ("arm64", None)),
            (("aarch64", None), ("arm64", None)),
            (("aarch64", Some("9.0")), ("arm64", Some("v9"))),
            (("arm", None), ("arm", Some("v7"))),
            (("arm", Some("7")), ("arm", Some("v7"))),
            (("arm", Some("6")), ("arm", Some("v6"))),
            (("arm", Some("v5")), ("arm", Some("v5"))),
            (("armhf", None), ("arm", Some("v7"))),
            (("armel", None), ("arm", Some("v6"))),
            (("ARM64", Some("V8")), ("arm64", None)),
            (("riscv64", None), ("riscv64", None)),
        ];
        for ((arch, variant), (want_arch, want_variant)) in table {
            let n = p("Linux", arch, *variant).normalized();
            assert_eq!(
                (n.os.as_str(), n.architecture.as_str(), n.variant.as_deref()),
                ("linux", *want_arch, *want_variant),
                "{arch} {variant:?}"
            );
        }
        assert_eq!(p("macos", "arm64", None).normalized().os, "darwin");
    }

    #[test]
    fn spellings_of_one_platform_match_in_both_directions() {
        let same = [
            (p("linux", "arm64", Some("v8")), p("linux", "arm64", None)),
            (p("linux", "amd64", Some("v1")), p("linux", "x86_64", None)),
            (p("linux", "arm", None), p("linux", "arm", Some("v7"))),
            (p("linux", "aarch64", None), p("linux", "arm64", Some("8"))),
        ];
        for (a, b) in same {
            assert!(a.matches(&b) && b.matches(&a), "{a:?} {b:?}");
            assert_eq!(a.platform(), b.platform(), "{a:?} {b:?}");
            assert!(a.platform().is_some(), "{a:?}");
        }
        let differ = [
            (p("linux", "arm", Some("v6")), p("linux", "arm", None)),
            (p("linux", "arm64", Some("v9")), p("linux", "arm64", None)),
            (p("linux", "amd64", None), p("windows", "amd64", None)),
        ];
        for (a, b) in differ {
            assert!(!a.matches(&b) && !b.matches(&a), "{a:?} {b:?}");
        }
    }

    #[test]
    fn rcross_platforms_round_trip() {
        for platform in Platform::all() {
            let oci = OciPlatform::from(platform);
            assert_eq!(oci.platform(), Some(platform), "{platform}");
            assert_eq!(oci.canonical().0, platform.to_string());
        }
        assert_eq!(p("linux", "arm64", Some("v8")).canonical().0, "linux/arm64");
        let odd = p("plan9", "mips", Some("x"));
        assert_eq!(odd.canonical(), ("plan9/mips/x".to_string(), odd.clone()));
        assert!(p("linux", "arm64", Some("v9")).to_platform().is_err());
        assert!(p("unknown", "unknown", None).is_unknown());
    }
}
