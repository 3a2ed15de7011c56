//! A private sshd on a loopback port, in front of the machine's Docker engine, as an
//! `ssh://` builder; and a client side that never reads or writes the real `~/.ssh`.
//!
//! The server: `sshd -D -e -f CONFIG` on 127.0.0.1:PORT with its own host key, pid file and
//! authorized_keys (a freshly generated client key), public-key login only, killed when
//! dropped. Its sessions' `docker` talks to the machine's engine (`DOCKER_HOST` is set for
//! them when the tests' engine is not the default socket).
//!
//! The client: OpenSSH reads `~/.ssh/config` from the user's passwd entry, not from `$HOME`,
//! so a temporary `HOME` alone does not keep the real configuration out. The client
//! environment ([`Sshd::client_env`]) therefore puts first on `PATH` an `ssh` wrapper that runs
//! the real client with `-F $HOME/.ssh/config`, and points `HOME` (where the engine client keeps
//! its ssh control sockets, under `~/.local/state`) at a temporary directory. The config has
//! the aliases `rcross-builder` (logs in), `rcross-builder-closed` (a port nothing listens on),
//! `rcross-builder-badkey` (a key the server does not accept) and `rcross-builder-nodocker`
//! (a key whose sessions find no `docker`), and a `Host 127.0.0.1` entry with the key only, so
//! `ssh://root@127.0.0.1:PORT` logs in with the user and port from the endpoint.
//!
//! A missing prerequisite (sshd, ssh, ssh-keygen, docker, root) fails the test in strict mode
//! (tests/prereq: under tests/run.sh and CI) and skips it with a notice otherwise.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common_docker::{free_port, missing};

/// The alias that logs in to the private sshd.
pub const ALIAS: &str = "rcross-builder";
/// An alias for a loopback port nothing listens on.
pub const CLOSED_ALIAS: &str = "rcross-builder-closed";
/// An alias for the private sshd with a key it does not accept.
pub const BAD_KEY_ALIAS: &str = "rcross-builder-badkey";
/// An alias for the private sshd with a key whose sessions have no `docker` on PATH.
pub const NO_DOCKER_ALIAS: &str = "rcross-builder-nodocker";

pub struct Sshd {
    pub port: u16,
    /// The client's `HOME` (with `.ssh/config`).
    pub home: PathBuf,
    /// Holds the `ssh` wrapper.
    bin: PathBuf,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
}

fn find(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    which::which(name)
        .ok()
        .or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
}

/// A `Host` entry of the client config; without a port, the name is the address and the user
/// and port come from the command line.
fn client_entry(name: &str, port: Option<u16>, key: &Path) -> String {
    let mut entry = format!("Host {name}\n");
    if let Some(port) = port {
        entry.push_str(&format!(
            "  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        ));
    }
    entry.push_str(&format!(
        "  IdentityFile {}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
         StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
        key.display()
    ));
    entry
}

fn keygen(keygen: &Path, path: &Path) -> bool {
    Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rcross-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Sshd {
    /// Starts the server and writes the client side. `docker_host` is the endpoint the
    /// sessions' `docker` should use (the machine's engine).
    pub fn start(docker_host: &str) -> Option<Sshd> {
        if !nix::unistd::geteuid().is_root() {
            return missing(
                "root, to run a private sshd that logs in as root",
                "run the tests as root",
            );
        }
        let Some(sshd) = find("sshd", &["/usr/sbin/sshd"]) else {
            return missing("sshd", "apt-get install -y openssh-server");
        };
        let (Some(ssh), Some(ssh_keygen)) = (find("ssh", &[]), find("ssh-keygen", &[])) else {
            return missing("ssh and ssh-keygen", "apt-get install -y openssh-client");
        };
        if find("docker", &["/usr/bin/docker", "/usr/local/bin/docker"]).is_none() {
            return missing("the docker CLI", "apt-get install -y docker.io");
        }
        // sshd refuses to start without its privilege separation directory, which the
        // package's service unit creates at boot; no service runs here.
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() {
            if let Err(e) = std::fs::create_dir_all(privsep) {
                return missing(&format!("{} ({e})", privsep.display()), "run as root");
            }
        }

        // Short: the engine client's control sockets live under HOME.
        let dir = tempfile::Builder::new()
            .prefix("rssh")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let d = dir.path().to_path_buf();
        let home = d.join("home");
        let bin = d.join("bin");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        for key in ["host_key", "client_key", "other_key", "nodocker_key"] {
            if !keygen(&ssh_keygen, &d.join(key)) {
                return missing(&format!("ssh-keygen of {key}"), "openssh-client");
            }
        }
        let public = |key: &str| std::fs::read_to_string(d.join(format!("{key}.pub"))).unwrap();
        std::fs::write(
            d.join("authorized_keys"),
            format!(
                "{}command=\"PATH=/nonexistent docker system dial-stdio\" {}",
                public("client_key"),
                public("nodocker_key")
            ),
        )
        .unwrap();

        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {d}/host_key\n\
                 PidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 LogLevel VERBOSE\n\
                 SetEnv DOCKER_HOST={docker_host}\n",
                d = d.display()
            ),
        )
        .unwrap();

        std::fs::write(
            home.join(".ssh/config"),
            [
                client_entry(ALIAS, Some(port), &d.join("client_key")),
                client_entry(CLOSED_ALIAS, Some(free_port()), &d.join("client_key")),
                client_entry(BAD_KEY_ALIAS, Some(port), &d.join("other_key")),
                client_entry(NO_DOCKER_ALIAS, Some(port), &d.join("nodocker_key")),
                client_entry("127.0.0.1", None, &d.join("client_key")),
            ]
            .join("\n"),
        )
        .unwrap();
        let wrapper = bin.join("ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n# OpenSSH reads ~/.ssh/config from passwd, not $HOME.\n\
                 exec {} -F \"$HOME/.ssh/config\" \"$@\"\n",
                ssh.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn();
        let mut me = Sshd {
            port,
            home,
            bin,
            child: None,
            dir: Some(dir),
        };
        match child {
            Ok(c) => me.child = Some(c),
            Err(e) => return missing(&format!("sshd cannot start: {e}"), "openssh-server"),
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(me);
            }
            let exited = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return missing(
                    &format!("a private sshd did not come up ({exited:?}):\n{}", me.log()),
                    "sshd -D -e -f CONFIG must run as root",
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The environment that makes `ssh` (and everything that runs it) use the test's client
    /// config and keys only.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            ("HOME".into(), self.home.display().to_string()),
            ("PATH".into(), format!("{}:{path}", self.bin.display())),
            (
                "XDG_STATE_HOME".into(),
                self.home.join(".local/state").display().to_string(),
            ),
        ]
    }

    /// Adds an alias for 127.0.0.1:`port` with the accepted key.
    pub fn add_alias(&self, name: &str, port: u16) {
        let Some(dir) = self.dir.as_ref() else {
            return;
        };
        let config = self.home.join(".ssh/config");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push('\n');
        text.push_str(&client_entry(
            name,
            Some(port),
            &dir.path().join("client_key"),
        ));
        std::fs::write(&config, text).unwrap();
    }

    /// The server's log.
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("sshd.log")).ok())
            .unwrap_or_default()
    }

    /// Processes still running that were started with this server's or client's files in
    /// their command line (ssh control masters, sessions), as (pid, command line).
    pub fn leftover_processes(&self) -> Vec<(i32, String)> {
        let Some(dir) = self.dir.as_ref() else {
            return Vec::new();
        };
        let needle = dir.path().display().to_string();
        let own = self.child.as_ref().map(|c| c.id() as i32);
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if Some(pid) == own {
                continue;
            }
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push((pid, cmdline.trim().to_string()));
            }
        }
        found
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything a failed test left behind that runs with this test's files.
        for (pid, _) in self.leftover_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}
