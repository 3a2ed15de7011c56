//! User definition directories (/etc/rcross/binfmt.d, /etc/rcross/toolchains.d): the one way
//! both catalogs find the files that add to or override their built-in entries.

use std::path::{Path, PathBuf};

/// One user definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFile {
    pub path: PathBuf,
    pub text: String,
}

/// Why a user directory could not be read; `what` names the kind of definitions
/// ("binfmt handler", "toolchain").
#[derive(Debug, thiserror::Error)]
pub enum UserDirError {
    /// Listing the directory failed (it exists but is unreadable, or is not a directory).
    #[error("cannot read {what} directory {}: {source}; make it a readable directory of *.toml files or remove it", path.display())]
    ReadDir {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Reading one file failed (unreadable, not UTF-8).
    #[error("cannot read {what} file {}: {source}; make it readable or remove it", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every regular `*.toml` file in `dir` (a symlink to one counts), sorted by name so the result
/// does not depend on directory listing order, with its text. A missing directory has none;
/// editors' backup files and subdirectories are not definitions.
pub fn toml_files(dir: &Path, what: &'static str) -> Result<Vec<UserFile>, UserDirError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(UserDirError::ReadDir {
                what,
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| UserDirError::ReadDir {
                what,
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file())
            && path.extension().is_some_and(|e| e == "toml")
        {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| match std::fs::read_to_string(&path) {
            Ok(text) => Ok(UserFile { path, text }),
            Err(source) => Err(UserDirError::ReadFile { what, path, source }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_toml_files_only_and_missing_dir_is_empty() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.toml"), "b").unwrap();
        std::fs::write(d.path().join("a.toml"), "a").unwrap();
        std::fs::write(d.path().join("a.toml~"), "backup").unwrap();
        std::fs::create_dir(d.path().join("sub.toml")).unwrap();
        let f = toml_files(d.path(), "test").unwrap();
        let texts: Vec<&str> = f.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
        assert!(toml_files(&d.path().join("missing"), "test")
            .unwrap()
            .is_empty());
        std::fs::write(d.path().join("c.toml"), [0xff, 0xfe]).unwrap();
        assert!(matches!(
            toml_files(d.path(), "test"),
            Err(UserDirError::ReadFile { .. })
        ));
    }
}
