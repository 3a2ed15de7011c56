//! `--secret id=ID,src=FILE | id=ID,env=VAR`, as buildx reads it: read once, handed to
//! `RUN --mount=type=secret` steps as a read-only file or a variable, never part of a layer,
//! the history or a step cache key.

use crate::exit::{self, Failure};
use std::collections::BTreeMap;

/// Largest secret rcross reads (BuildKit's limit is 500 KiB).
const MAX_SECRET: u64 = 500 * 1024;

/// The build's secrets, by id.
#[derive(Default)]
pub struct Secrets(BTreeMap<String, Vec<u8>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids only: values never reach a log.
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    pub fn get(&self, id: &str) -> Option<&[u8]> {
        self.0.get(id).map(|v| v.as_slice())
    }

    /// Parse every `--secret` flag and read what it names.
    pub fn read(flags: &[String], env: &dyn Fn(&str) -> Option<String>) -> exit::Result<Secrets> {
        let mut out = BTreeMap::new();
        for flag in flags {
            let (id, value) = read_one(flag, env).map_err(|m| {
                Failure::usage(anyhow::anyhow!(
                    "--secret {flag}: {m}; write it as id=ID,src=FILE or id=ID,env=VAR"
                ))
            })?;
            out.insert(id, value);
        }
        Ok(Secrets(out))
    }
}

fn read_one(flag: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, Vec<u8>), String> {
    let (mut id, mut src, mut var, mut kind) = (None, None, None, None);
    for field in flag.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("{field:?} is not KEY=VALUE"))?;
        match k.trim() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => var = Some(v.to_string()),
            "type" => kind = Some(v.to_string()),
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .or_else(|| src.clone())
        .or_else(|| var.clone())
        .ok_or("no id")?;
    let from_env = |name: &str| {
        env(name)
            .map(String::into_bytes)
            .ok_or_else(|| format!("the variable {name} is not set"))
    };
    let value = match (kind.as_deref(), src, var) {
        (Some("env"), src, var) => from_env(&var.or(src).unwrap_or_else(|| id.clone()))?,
        (Some("file") | None, Some(path), None) => read_file(&path)?,
        (None, None, Some(var)) => from_env(&var)?,
        (Some("file"), None, _) => read_file(&id)?,
        (None, None, None) => match env(&id) {
            Some(v) => v.into_bytes(),
            None => read_file(&id)?,
        },
        (Some(other), _, _) if other != "file" => return Err(format!("unknown type {other:?}")),
        _ => return Err("give src= or env=, not both".into()),
    };
    Ok((id, value))
}

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut value = Vec::new();
    file.take(MAX_SECRET + 1)
        .read_to_end(&mut value)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    if value.len() as u64 > MAX_SECRET {
        return Err(format!("{path} is larger than {MAX_SECRET} bytes"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_variables() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("token");
        std::fs::write(&f, b"s3cret").unwrap();
        let env = |k: &str| (k == "TOKEN").then(|| "from-env".to_string());
        let s = Secrets::read(
            &[
                format!("id=file,src={}", f.display()),
                "id=var,env=TOKEN".into(),
                "id=TOKEN".into(),
            ],
            &env,
        )
        .unwrap();
        assert_eq!(s.get("file"), Some(&b"s3cret"[..]));
        assert_eq!(s.get("var"), Some(&b"from-env"[..]));
        assert_eq!(s.get("TOKEN"), Some(&b"from-env"[..]));
        assert!(!format!("{s:?}").contains("s3cret"), "values never print");
        let err = Secrets::read(&["id=x,env=NOPE".into()], &env).unwrap_err();
        assert!(
            err.error.to_string().contains("NOPE is not set"),
            "{}",
            err.error
        );
        assert!(Secrets::read(&["id=x,color=red".into()], &env).is_err());
    }
}
