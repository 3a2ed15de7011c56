//! User definition directories (/etc/rcross/binfmt.d, /etc/rcross/toolchains.d): the one way
//! both catalogs find the files that add to or override their built-in entries, and merge them
//! over those entries.

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

/// A catalog's built-in definition files.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinFiles<'a> {
    /// (file name, text), in catalog order.
    pub files: &'a [(&'a str, &'a str)],
    /// What a built-in definition records as its source.
    pub source: &'a str,
}

/// A catalog's definitions: those of the built-in files in order, then, when `user_dir` is
/// given, those of its files ([`toml_files`], `what` naming them in messages), each replacing
/// the built-in definition with the same key or added after them. Two files of one place that
/// define one key are an error, made by `duplicate(second definition, first file, second
/// file)`. `parse(text, origin, source)` reads one file: `origin` names it in messages, `source`
/// is what the definition records (the built-in source, or the file's path).
pub fn merge_definitions<T, K: PartialEq, E: From<UserDirError>>(
    builtin: BuiltinFiles,
    user_dir: Option<(&Path, &'static str)>,
    parse: impl Fn(&str, &str, &str) -> Result<T, E>,
    key: impl Fn(&T) -> K,
    duplicate: impl Fn(T, String, String) -> E,
) -> Result<Vec<T>, E> {
    let mut definitions: Vec<T> = Vec::new();
    let mut origins: Vec<String> = Vec::new();
    for (file, text) in builtin.files {
        let origin = format!("{file} (built into rcross)");
        let d = parse(text, &origin, builtin.source)?;
        if let Some(i) = definitions.iter().position(|x| key(x) == key(&d)) {
            return Err(duplicate(d, origins[i].clone(), origin));
        }
        definitions.push(d);
        origins.push(origin);
    }
    let Some((dir, what)) = user_dir else {
        return Ok(definitions);
    };
    let files = toml_files(dir, what)?;
    let builtin_count = definitions.len();
    let mut user_keys: Vec<(K, String)> = Vec::new();
    for file in files {
        let origin = file.path.display().to_string();
        let d = parse(&file.text, &origin, &origin)?;
        if let Some((_, first)) = user_keys.iter().find(|(k, _)| *k == key(&d)) {
            return Err(duplicate(d, first.clone(), origin));
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
