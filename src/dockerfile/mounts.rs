//! `RUN --mount=…` values, as BuildKit's instructions/commands_runmount.go reads them: CSV
//! fields, keys case-insensitive, values expanded, `type` bind (default), cache, secret, tmpfs;
//! `ssh` and unknown types, and options a type does not take, are errors naming them.

use super::error::{DockerfileError, Place};
use super::graph::{CacheSharing, Mount, StageRef};
use super::values;

type Expand<'a> = dyn Fn(&str) -> Result<String, DockerfileError> + 'a;
type ResolveFrom<'a> = dyn Fn(&str) -> Result<StageRef, DockerfileError> + 'a;

/// The options of one mount, as given.
#[derive(Default)]
struct MountFields {
    kind: String,
    target: Option<String>,
    source: String,
    id: Option<String>,
    env: Option<String>,
    from: Option<StageRef>,
    sharing: Option<CacheSharing>,
    size: Option<u64>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    read_only: Option<bool>,
    required: bool,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// One `--mount` value → a typed mount. `expand` expands a value with the instruction's
/// variables; `resolve_from` turns `from=` into a stage or an image; a relative (or no) target
/// is taken from `workdir` (BuildKit's dispatchRunMounts).
pub fn parse(
    spec: &str,
    workdir: &str,
    p: &Place<'_>,
    expand: &Expand<'_>,
    resolve_from: &ResolveFrom<'_>,
) -> Result<Mount, DockerfileError> {
    let bad = |m: String| p.invalid(format!("--mount={spec}: {m}"));
    let mut f = MountFields {
        kind: "bind".to_string(),
        ..MountFields::default()
    };
    for field in values::csv_fields(spec).map_err(bad)? {
        match field.split_once('=') {
            None => f.flag(&field.to_ascii_lowercase(), &field).map_err(bad)?,
            Some((k, raw)) => {
                let key = k.to_ascii_lowercase();
                let v = expand(raw)?;
                if key == "from" {
                    f.from = Some(resolve_from(&v)?);
                } else if key == "type" && v.eq_ignore_ascii_case("ssh") {
                    return Err(p.refused(format!(
                        "--mount={spec}: ssh mounts are not supported by rcross yet"
                    )));
                } else if key == "type" && !is_known_type(&v) {
                    return Err(p.refused(format!(
                        "--mount={spec}: unsupported mount type {v:?} (bind, cache, secret, tmpfs)"
                    )));
                } else {
                    f.set(&key, v).map_err(bad)?;
                }
            }
        }
    }
    f.into_mount(workdir).map_err(bad)
}

fn is_known_type(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "bind" | "cache" | "secret" | "tmpfs"
    )
}

impl MountFields {
    /// A field without `=`.
    fn flag(&mut self, key: &str, field: &str) -> Result<(), String> {
        match key {
            "readonly" | "ro" => self.read_only = Some(true),
            "readwrite" | "rw" => self.read_only = Some(false),
            "required" if self.kind == "secret" => self.required = true,
            _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
        }
        Ok(())
    }

    /// A `key=value` field, value expanded (`type` already checked, `from` resolved).
    fn set(&mut self, key: &str, v: String) -> Result<(), String> {
        let invalid = |v: &str| format!("invalid value {v} for {key}");
        let boolean = |v: &str| parse_bool(v).ok_or_else(|| invalid(v));
        let number = |v: &str, radix| u32::from_str_radix(v, radix).map_err(|_| invalid(v));
        match key {
            "type" => self.kind = v.to_ascii_lowercase(),
            "source" | "src" => self.source = v,
            "target" | "dst" | "destination" => self.target = Some(v),
            "readonly" | "ro" => self.read_only = Some(boolean(&v)?),
            "readwrite" | "rw" => self.read_only = Some(!boolean(&v)?),
            "required" if self.kind == "secret" => self.required = boolean(&v)?,
            "size" if self.kind == "tmpfs" => self.size = Some(values::parse_ram_size(&v)?),
            "id" => self.id = Some(v),
            "env" => self.env = Some(v),
            "mode" => self.mode = Some(number(&v, 8)?),
            "uid" => self.uid = Some(number(&v, 10)?),
            "gid" => self.gid = Some(number(&v, 10)?),
            "sharing" => {
                self.sharing = Some(match v.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(format!(
                            "unsupported sharing value {v:?} (shared, private, locked)"
                        ))
                    }
                })
            }
            _ => {
                return Err(format!(
                    "unexpected key '{key}' for mount type '{}'",
                    self.kind
                ))
            }
        }
        Ok(())
    }

    /// The absolute target: relative to the working directory, which is also the default.
    fn target(&self, workdir: &str) -> Result<String, String> {
        let written = self.target.as_deref().unwrap_or("");
        let target = if written.starts_with('/') {
            values::clean_path(written)
        } else {
            values::join_workdir(workdir, written)
        };
        if target == "/" {
            return Err(format!("invalid mount target {target:?}"));
        }
        Ok(target)
    }

    fn into_mount(self, workdir: &str) -> Result<Mount, String> {
        let file_info = self.kind == "secret" || self.kind == "cache";
        if !file_info && (self.mode.is_some() || self.uid.is_some() || self.gid.is_some()) {
            return Err(format!(
                "mode, uid and gid are not allowed for {:?} mounts",
                self.kind
            ));
        }
        if self.sharing.is_some() && self.kind != "cache" {
            return Err(format!("invalid cache sharing set for {} mount", self.kind));
        }
        Ok(match self.kind.as_str() {
            "cache" => {
                let target = self.target(workdir)?;
                // The default id is the target as written, cleaned (before the workdir join).
                let written = self.target.as_deref().unwrap_or("");
                Mount::Cache {
                    id: self.id.unwrap_or_else(|| values::clean_path(written)),
                    target,
                    sharing: self.sharing.unwrap_or(CacheSharing::Shared),
                    from: self.from,
                    source: self.source,
                    read_only: self.read_only.unwrap_or(false),
                    mode: self.mode,
                    uid: self.uid,
                    gid: self.gid,
                }
            }
            "tmpfs" => Mount::Tmpfs {
                target: self.target(workdir)?,
                size: self.size,
            },
            "secret" => self.into_secret()?,
            _ => Mount::Bind {
                target: self.target(workdir)?,
                from: self.from,
                source: self.source,
                read_write: self.read_only == Some(false),
            },
        })
    }

    fn into_secret(self) -> Result<Mount, String> {
        if self.from.is_some() {
            return Err("secret mount should not have a from".to_string());
        }
        if !self.source.is_empty() && self.id.is_some() {
            return Err("both source and id can't be set".to_string());
        }
        let file_name = |t: &str| t.rsplit('/').next().unwrap_or(t).to_string();
        let id = self
            .id
            .or((!self.source.is_empty()).then_some(self.source))
            .or_else(|| self.target.as_deref().map(file_name))
            .ok_or_else(|| {
                "invalid secret mount: one of id, source or target is required".to_string()
            })?;
        let target = match (self.target, &self.env) {
            (Some(t), _) => Some(t),
            (None, Some(_)) => None,
            (None, None) => Some(format!("/run/secrets/{id}")),
        };
        Ok(Mount::Secret {
            id,
            target,
            env: self.env,
            required: self.required,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
        })
    }
}
