//! User directories: the definition directories (/etc/rcross/binfmt.d,
//! /etc/rcross/toolchains.d), the one way both catalogs find the files that add to or override
//! their built-in entries, and merge them over those entries; and rcross's directory in the
//! user's cache, which every cache finds through [`cache_root`].

use std::path::{Path, PathBuf};

/// rcross's directory in the user's cache: `$XDG_CACHE_HOME/rcross`, else
/// `$HOME/.cache/rcross`; only absolute paths count, `None` without either.
pub fn cache_root(
    xdg_cache_home: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    let absolute = |v: Option<&std::ffi::OsStr>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let base = absolute(xdg_cache_home).or_else(|| absolute(home).map(|h| h.join(".cache")))?;
    Some(base.join("rcross"))
}

/// [`cache_root`] from this process's environment.
pub fn user_cache_root() -> Option<PathBuf> {
    cache_root(
        std::env::var_os("XDG_CACHE_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

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

/// Why a catalog's definition files could not be read, or one of them is not valid.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error(transparent)]
    UserDir(#[from] UserDirError),
    #[error("{what} file {origin} is not valid: {source}\nfix the file (see {example} in rcross for the format) or remove it")]
    Syntax {
        what: &'static str,
        example: &'static str,
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("{what} file {origin}: field `{field}` {problem}; {fix}")]
    Field {
        what: &'static str,
        origin: String,
        field: &'static str,
        problem: String,
        fix: String,
    },
}

/// What a definition records as its source when it is compiled into rcross (a user file's
/// records its path).
pub const BUILTIN_SOURCE: &str = "builtin";

/// How a catalog reads its definition files and tells two definitions apart.
pub struct DefinitionFiles<T, K, E> {
    /// What the definitions are, in messages about their files ("binfmt handler").
    pub what: &'static str,
    /// The built-in file to model a user file on, in messages ("binfmt/aarch64.toml").
    pub example: &'static str,
    /// The built-in files: (file name, text), in catalog order.
    pub builtin: &'static [(&'static str, &'static str)],
    /// Reads one file from its text; `origin` names it in messages, `source` is what the
    /// definition records ([`BUILTIN_SOURCE`] or the file's path).
    pub parse: fn(text: &str, origin: &str, source: &str) -> Result<T, E>,
    /// What two definitions of one place may not share; a user definition replaces the
    /// built-in one with the same key.
    pub key: fn(&T) -> K,
    /// The error for two files of one place that define one key.
    pub duplicate: fn(second: T, first_origin: String, second_origin: String) -> E,
}

impl<T, K: PartialEq, E: From<DefinitionError>> DefinitionFiles<T, K, E> {
    /// The definitions of the built-in files in order, then, when `user_dir` is given, those
    /// of its files ([`toml_files`]), each replacing the built-in definition with the same key
    /// or added after them.
    pub fn merge(&self, user_dir: Option<&Path>) -> Result<Vec<T>, E> {
        let key = self.key;
        let mut definitions: Vec<T> = Vec::new();
        let mut origins: Vec<String> = Vec::new();
        for (file, text) in self.builtin {
            let origin = format!("{file} (built into rcross)");
            let d = (self.parse)(text, &origin, BUILTIN_SOURCE)?;
            if let Some(i) = definitions.iter().position(|x| key(x) == key(&d)) {
                return Err((self.duplicate)(d, origins[i].clone(), origin));
            }
            definitions.push(d);
            origins.push(origin);
        }
        let Some(dir) = user_dir else {
            return Ok(definitions);
        };
        let files = toml_files(dir, self.what).map_err(DefinitionError::from)?;
        let builtin_count = definitions.len();
        let mut user_keys: Vec<(K, String)> = Vec::new();
        for file in files {
            let origin = file.path.display().to_string();
            let d = (self.parse)(&file.text, &origin, &origin)?;
            if let Some((_, first)) = user_keys.iter().find(|(k, _)| *k == key(&d)) {
                return Err((self.duplicate)(d, first.clone(), origin));
            }
            user_keys.push((key(&d), origin));
            match definitions[..builtin_count]
                .iter()
                .position(|b| key(b) == key(&d))
            {
                Some(i) => definitions[i] = d,
                None => definitions.push(d),
            }
        }
        Ok(definitions)
    }

    /// One file's TOML, in the catalog's file format.
    pub fn read_toml<F: serde::de::DeserializeOwned>(
        &self,
        text: &str,
        origin: &str,
    ) -> Result<F, DefinitionError> {
        toml::from_str(text).map_err(|e| DefinitionError::Syntax {
            what: self.what,
            example: self.example,
            origin: origin.to_string(),
            source: Box::new(e),
        })
    }

    /// The error for a field of the file `origin` whose value is wrong: the problem and the fix.
    pub fn field_error(
        &self,
        origin: &str,
        field: &'static str,
        problem: String,
        fix: &str,
    ) -> DefinitionError {
        DefinitionError::Field {
            what: self.what,
            origin: origin.to_string(),
            field,
            problem,
            fix: fix.to_string(),
        }
    }
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

    /// Definitions "KEY=VALUE" keyed by KEY; the value records where each came from.
    const TOY: DefinitionFiles<(String, String, String), String, String> = DefinitionFiles {
        what: "toy",
        example: "toy/a.toml",
        builtin: &[("a.toml", "a=1"), ("b.toml", "b=1")],
        parse: |text, _origin, source| {
            let (k, v) = text.split_once('=').ok_or("no '='")?;
            Ok((k.to_string(), v.to_string(), source.to_string()))
        },
        key: |d| d.0.clone(),
        duplicate: |d, first, second| format!("{} in {first} and {second}", d.0),
    };

    impl From<DefinitionError> for String {
        fn from(e: DefinitionError) -> String {
            e.to_string()
        }
    }

    #[test]
    fn user_files_replace_built_in_definitions_in_place_or_come_after_them() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(TOY.merge(None).unwrap().len(), 2);
        std::fs::write(d.path().join("1.toml"), "c=2").unwrap();
        std::fs::write(d.path().join("2.toml"), "a=2").unwrap();
        let merged = TOY.merge(Some(d.path())).unwrap();
        let keys: Vec<(&str, &str)> = merged
            .iter()
            .map(|(k, v, _)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(keys, [("a", "2"), ("b", "1"), ("c", "2")]);
        assert_eq!(merged[1].2, BUILTIN_SOURCE);
        assert!(merged[0].2.ends_with("2.toml"), "{}", merged[0].2);

        std::fs::write(d.path().join("3.toml"), "a=3").unwrap();
        let e = TOY.merge(Some(d.path())).unwrap_err();
        assert!(e.starts_with("a in ") && e.contains("2.toml and "), "{e}");

        let twice = DefinitionFiles {
            builtin: &[("a.toml", "a=1"), ("again.toml", "a=2")],
            ..TOY
        };
        let e = twice.merge(None).unwrap_err();
        assert_eq!(
            e,
            "a in a.toml (built into rcross) and again.toml (built into rcross)"
        );
    }
}
