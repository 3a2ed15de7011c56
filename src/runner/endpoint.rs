//! Where a Docker engine listens: `unix:///path`, `tcp://HOST:PORT` or `ssh://[USER@]HOST[:PORT]`,
//! and which TLS files a `tcp://` endpoint uses. Pure: the environment and the file system are
//! passed in.

use std::fmt;
use std::path::{Path, PathBuf};

/// The socket a local Docker engine listens on when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The port of `tcp://HOST` without one (Docker's unencrypted port).
pub const DEFAULT_TCP_PORT: u16 = 2375;

const FORMS: &str = "unix:///PATH (e.g. unix:///var/run/docker.sock), tcp://HOST:PORT \
                     (e.g. tcp://10.0.0.5:2376) or ssh://[USER@]HOST[:PORT]";

/// A Docker engine address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A Unix socket on this machine.
    Unix(PathBuf),
    /// A TCP listener; TLS when certificates exist for it (see [`Endpoint::tls_files`]).
    /// `host` is a name, an IPv4 address or a bracketed IPv6 address (`[::1]`).
    Tcp { host: String, port: u16 },
    /// An engine reached through `ssh` (the `ssh` client must be installed and log in without
    /// a prompt; the remote user runs `docker system dial-stdio`). Without a port or user,
    /// `~/.ssh/config` decides.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
}

/// Why an endpoint was not understood or its TLS files are incomplete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{input:?} is not a Docker endpoint: {reason}; use {FORMS}")]
    Invalid { input: String, reason: String },
    #[error(
        "docker endpoint {endpoint}: {why}, but {}; put ca.pem, cert.pem and key.pem there \
         (or unset DOCKER_TLS_VERIFY for a plain TCP engine)",
        are_missing(missing)
    )]
    TlsFilesMissing {
        endpoint: String,
        why: String,
        missing: Vec<PathBuf>,
    },
}

/// "A is missing" or "A, B are missing".
fn are_missing(paths: &[PathBuf]) -> String {
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let verb = if list.len() == 1 { "is" } else { "are" };
    format!("{} {verb} missing", list.join(", "))
}

/// The client certificate, its key and the CA that signed the engine's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    fn missing(&self, exists: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .filter(|p| !exists(p))
            .cloned()
            .collect()
    }
}

/// The environment [`Endpoint::tls_files`] reads.
#[derive(Debug, Clone, Default)]
pub struct TlsEnv {
    /// `DOCKER_TLS_VERIFY`
    pub tls_verify: Option<String>,
    /// `DOCKER_CERT_PATH`
    pub cert_path: Option<String>,
    /// `HOME`
    pub home: Option<PathBuf>,
}

impl TlsEnv {
    /// This process's `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` and `HOME`.
    pub fn from_process() -> TlsEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        TlsEnv {
            tls_verify: var("DOCKER_TLS_VERIFY"),
            cert_path: var("DOCKER_CERT_PATH"),
            home: var("HOME").map(PathBuf::from),
        }
    }
}

impl Endpoint {
    /// The endpoint `DOCKER_HOST` names, else the local socket: what the `docker` CLI uses
    /// without a context. `docker_host` is the variable's value (empty counts as unset).
    pub fn default_from(docker_host: Option<&str>) -> Result<Endpoint, EndpointError> {
        match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
            Some(h) => h.parse(),
            None => Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET))),
        }
    }

    /// [`Endpoint::default_from`] this process's `DOCKER_HOST`.
    pub fn from_env() -> Result<Endpoint, EndpointError> {
        Endpoint::default_from(std::env::var("DOCKER_HOST").ok().as_deref())
    }

    /// The TLS files a `tcp://` endpoint uses, or `None` for plain TCP (and for `unix://` and
    /// `ssh://`, which need none). Decided as the `docker` CLI does, except that the engine's
    /// certificate is always verified:
    ///
    /// 1. `DOCKER_TLS_VERIFY` set (non-empty): TLS with `ca.pem`, `cert.pem` and `key.pem` from
    ///    `DOCKER_CERT_PATH`, else from `~/.docker`; a missing file is an error.
    /// 2. Otherwise `~/.docker/certs.d/HOST:PORT/` (the directory the CLI's per-host TLS uses):
    ///    TLS when it exists; a missing file in it is an error.
    /// 3. Otherwise plain TCP. `DOCKER_CERT_PATH` alone does not turn TLS on, as with the CLI.
    ///
    /// `DOCKER_TLS` (TLS without verifying the engine) is not supported.
    pub fn tls_files(
        &self,
        env: &TlsEnv,
        exists: &dyn Fn(&Path) -> bool,
    ) -> Result<Option<TlsFiles>, EndpointError> {
        let Endpoint::Tcp { host, port } = self else {
            return Ok(None);
        };
        let docker_dir = env.home.as_ref().map(|h| h.join(".docker"));
        let incomplete = |files: &TlsFiles, why: String| {
            let missing = files.missing(exists);
            if missing.is_empty() {
                Ok(Some(files.clone()))
            } else {
                Err(EndpointError::TlsFilesMissing {
                    endpoint: self.to_string(),
                    why,
                    missing,
                })
            }
        };
        if env.tls_verify.is_some() {
            let (dir, from) = match (&env.cert_path, &docker_dir) {
                (Some(p), _) => (PathBuf::from(p), "DOCKER_CERT_PATH"),
                (None, Some(d)) => (d.clone(), "~/.docker"),
                (None, None) => {
                    return Err(EndpointError::TlsFilesMissing {
                        endpoint: self.to_string(),
                        why: "DOCKER_TLS_VERIFY is set without DOCKER_CERT_PATH or HOME".into(),
                        missing: vec![PathBuf::from("$DOCKER_CERT_PATH/ca.pem")],
                    })
                }
            };
            let files = TlsFiles::in_dir(&dir);
            return incomplete(
                &files,
                format!("DOCKER_TLS_VERIFY is set, so TLS files are read from {from}"),
            );
        }
        if let Some(d) = docker_dir {
            let dir = d.join("certs.d").join(format!("{host}:{port}"));
            if exists(&dir) {
                let files = TlsFiles::in_dir(&dir);
                return incomplete(&files, format!("{} exists", dir.display()));
            }
        }
        Ok(None)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Endpoint::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                f.write_str(host)?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Endpoint, EndpointError> {
        let invalid = |reason: &str| EndpointError::Invalid {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let s = input.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid("no socket path"));
            }
            if !path.starts_with('/') {
                return Err(invalid(
                    "the socket path must be absolute (three slashes: unix:///PATH)",
                ));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = host_port(rest).map_err(|r| invalid(&r))?;
            return Ok(Endpoint::Tcp {
                host,
                port: port.unwrap_or(DEFAULT_TCP_PORT),
            });
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            let (user, rest) = match rest.rsplit_once('@') {
                Some((u, r)) => {
                    if u.is_empty() || u.contains(['/', ':', ' ']) {
                        return Err(invalid("the user name is empty or holds '/', ':' or ' '"));
                    }
                    (Some(u.to_string()), r)
                }
                None => (None, rest),
            };
            let (host, port) = host_port(rest).map_err(|r| invalid(&r))?;
            return Ok(Endpoint::Ssh { user, host, port });
        }
        let reason = match s.split_once("://") {
            Some((scheme, _)) => format!("scheme {scheme:?} is not supported"),
            None if s.starts_with('/') => {
                format!("a bare path is not an endpoint (did you mean unix://{s}?)")
            }
            None => "no scheme".to_string(),
        };
        Err(invalid(&reason))
    }
}

/// `HOST[:PORT][/]` with HOST a name, IPv4 address or `[IPv6]`.
fn host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.contains('/') {
        return Err("an endpoint has no path after HOST:PORT".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address needs its closing ']'".to_string())?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("[{addr}] is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after [{addr}]"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("no host: the endpoint has no address after the scheme".into());
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("port {p:?} is not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_shows_the_three_forms() {
        assert_eq!(
            parse("unix:///var/run/docker.sock"),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            parse("tcp://10.0.0.5:2376"),
            Endpoint::Tcp {
                host: "10.0.0.5".into(),
                port: 2376
            }
        );
        assert_eq!(
            parse("tcp://builder.local/"),
            Endpoint::Tcp {
                host: "builder.local".into(),
                port: 2375
            }
        );
        assert_eq!(
            parse("tcp://[::1]:2375"),
            Endpoint::Tcp {
                host: "[::1]".into(),
                port: 2375
            }
        );
        assert_eq!(
            parse("ssh://pi@raspberry:2222"),
            Endpoint::Ssh {
                user: Some("pi".into()),
                host: "raspberry".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            parse("ssh://arm-box"),
            Endpoint::Ssh {
                user: None,
                host: "arm-box".into(),
                port: None
            }
        );
        for s in [
            "unix:///var/run/docker.sock",
            "tcp://10.0.0.5:2376",
            "tcp://[::1]:2375",
            "ssh://pi@raspberry:2222",
            "ssh://arm-box",
        ] {
            assert_eq!(parse(s).to_string(), s);
            assert_eq!(parse(&parse(s).to_string()), parse(s));
        }
    }

    #[test]
    fn bad_endpoints_say_which_forms_work() {
        for (s, want) in [
            ("http://x:2375", "scheme \"http\""),
            ("npipe:////./pipe/docker_engine", "scheme \"npipe\""),
            (
                "/var/run/docker.sock",
                "did you mean unix:///var/run/docker.sock",
            ),
            ("docker.local", "no scheme"),
            ("unix://", "no socket path"),
            ("unix://run/docker.sock", "absolute"),
            ("tcp://", "no host"),
            ("tcp://h:0", "port \"0\""),
            ("tcp://h:99999", "port \"99999\""),
            ("tcp://h:x", "port \"x\""),
            ("tcp://h:2375/v1.41", "no path"),
            ("tcp://[::1", "closing"),
            ("tcp://a b:1", "not a host"),
            ("ssh://@h", "user name"),
            ("", "no scheme"),
        ] {
            let e = s.parse::<Endpoint>().unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
            assert!(e.contains("unix:///PATH") && e.contains("ssh://"), "{e}");
        }
    }

    #[test]
    fn docker_host_or_the_local_socket() {
        assert_eq!(
            Endpoint::default_from(None).unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::default_from(Some("")).unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::default_from(Some("tcp://h:1")).unwrap(),
            parse("tcp://h:1")
        );
        assert!(Endpoint::default_from(Some("h:1")).is_err());
    }

    #[test]
    fn tls_files_follow_the_docker_cli() {
        let tcp = parse("tcp://h:2376");
        let home = TlsEnv {
            home: Some("/home/u".into()),
            ..TlsEnv::default()
        };
        let none = |_: &Path| false;
        let all = |_: &Path| true;
        // Nothing configured: plain TCP; unix and ssh never use TLS.
        assert_eq!(tcp.tls_files(&home, &none).unwrap(), None);
        assert_eq!(parse("unix:///s").tls_files(&home, &all).unwrap(), None);
        assert_eq!(parse("ssh://h").tls_files(&home, &all).unwrap(), None);
        // DOCKER_CERT_PATH alone does not turn TLS on.
        let cert_only = TlsEnv {
            cert_path: Some("/certs".into()),
            ..TlsEnv::default()
        };
        assert_eq!(tcp.tls_files(&cert_only, &all).unwrap(), None);
        // DOCKER_TLS_VERIFY: DOCKER_CERT_PATH, else ~/.docker.
        let verify = TlsEnv {
            tls_verify: Some("1".into()),
            ..cert_only.clone()
        };
        assert_eq!(
            tcp.tls_files(&verify, &all).unwrap().unwrap().cert,
            PathBuf::from("/certs/cert.pem")
        );
        let verify_home = TlsEnv {
            tls_verify: Some("1".into()),
            ..home.clone()
        };
        assert_eq!(
            tcp.tls_files(&verify_home, &all).unwrap().unwrap().ca,
            PathBuf::from("/home/u/.docker/ca.pem")
        );
        let e = tcp
            .tls_files(&verify, &|p: &Path| !p.ends_with("key.pem"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/certs/key.pem") && e.contains("DOCKER_TLS_VERIFY"),
            "{e}"
        );
        // Per-host directory.
        let per_host = |p: &Path| p.starts_with("/home/u/.docker/certs.d/h:2376");
        assert_eq!(
            tcp.tls_files(&home, &per_host).unwrap().unwrap().key,
            PathBuf::from("/home/u/.docker/certs.d/h:2376/key.pem")
        );
        let partial =
            |p: &Path| p == Path::new("/home/u/.docker/certs.d/h:2376") || p.ends_with("ca.pem");
        let e = tcp.tls_files(&home, &partial).unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("key.pem"), "{e}");
    }
}
