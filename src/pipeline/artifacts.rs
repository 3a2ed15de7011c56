//! Resolve `[[artifact]]` entries against a platform's output directory.

use super::config::Artifact;
use std::path::{Path, PathBuf};

/// One file to put in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub source: PathBuf,
    /// Absolute path in the image.
    pub target: String,
    pub mode: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact {from:?} was not produced by the build for {platform}: {path} does not exist (the build command must write it into $RCROSS_OUT)")]
    Missing {
        from: String,
        platform: String,
        path: PathBuf,
    },
    #[error("artifact {from:?} matched nothing in {dir} for {platform}")]
    NoMatch {
        from: String,
        platform: String,
        dir: PathBuf,
    },
    #[error("artifact {path} is not a regular file; name files (globs allowed), not directories")]
    NotAFile { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `*` (any run of characters) and `?` (one character) within one path component.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        match p.get(pi) {
            Some('?') => {
                pi += 1;
                ni += 1;
            }
            Some('*') => {
                star = Some(pi);
                mark = ni;
                pi += 1;
            }
            Some(c) if *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ni = mark;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The files `artifacts` name inside `out`, sorted by image path.
pub fn resolve(
    artifacts: &[Artifact],
    out: &Path,
    platform: &str,
) -> Result<Vec<Placed>, ArtifactError> {
    let mut placed = Vec::new();
    for a in artifacts {
        let from = Path::new(&a.from);
        let name = from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            let path = out.join(from);
            let meta = std::fs::metadata(&path).map_err(|_| ArtifactError::Missing {
                from: a.from.clone(),
                platform: platform.to_string(),
                path: path.clone(),
            })?;
            if !meta.is_file() {
                return Err(ArtifactError::NotAFile { path });
            }
            placed.push(Placed {
                source: path,
                target: a.to.clone(),
                mode: a.mode,
            });
            continue;
        }
        let dir = out.join(from.parent().unwrap_or(Path::new("")));
        let entries = std::fs::read_dir(&dir).map_err(|source| ArtifactError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut matched = Vec::new();
        for e in entries {
            let e = e.map_err(|source| ArtifactError::Io {
                path: dir.clone(),
                source,
            })?;
            let file_name = e.file_name().to_string_lossy().into_owned();
            if glob_match(&name, &file_name) && e.path().is_file() {
                matched.push((file_name, e.path()));
            }
        }
        if matched.is_empty() {
            return Err(ArtifactError::NoMatch {
                from: a.from.clone(),
                platform: platform.to_string(),
                dir,
            });
        }
        for (file_name, path) in matched {
            placed.push(Placed {
                source: path,
                target: format!("{}{file_name}", a.to),
                mode: a.mode,
            });
        }
    }
    placed.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("lib*.so.*", "libfoo.so.1"));
    }

    #[test]
    fn resolves_files_and_globs_and_reports_missing_ones() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("app"), b"x").unwrap();
        std::fs::create_dir(d.path().join("share")).unwrap();
        std::fs::write(d.path().join("share/b.txt"), b"b").unwrap();
        std::fs::write(d.path().join("share/a.txt"), b"a").unwrap();
        std::fs::write(d.path().join("share/c.bin"), b"c").unwrap();
        let arts = vec![
            Artifact {
                from: "share/*.txt".into(),
                to: "/usr/share/x/".into(),
                mode: 0o644,
            },
            Artifact {
                from: "app".into(),
                to: "/usr/bin/app".into(),
                mode: 0o755,
            },
        ];
        let p = resolve(&arts, d.path(), "linux/arm64").unwrap();
        let targets: Vec<&str> = p.iter().map(|p| p.target.as_str()).collect();
        assert_eq!(
            targets,
            ["/usr/bin/app", "/usr/share/x/a.txt", "/usr/share/x/b.txt"]
        );
        let missing = vec![Artifact {
            from: "nope".into(),
            to: "/nope".into(),
            mode: 0o755,
        }];
        let e = resolve(&missing, d.path(), "linux/arm64")
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux/arm64") && e.contains("RCROSS_OUT"), "{e}");
        let none = vec![Artifact {
            from: "*.so".into(),
            to: "/lib/".into(),
            mode: 0o755,
        }];
        assert!(resolve(&none, d.path(), "p").is_err());
        let dir = vec![Artifact {
            from: "share".into(),
            to: "/s".into(),
            mode: 0o755,
        }];
        assert!(resolve(&dir, d.path(), "p")
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
    }
}
