//! `ssh://[USER@]HOST[:PORT]` engines, reached as the docker CLI reaches them: every HTTP
//! connection to the engine is one `ssh … HOST docker system dial-stdio` process, requests
//! going into its stdin and answers coming out of its stdout.
//!
//! Not the engine client's own ssh transport (bollard's `ssh` feature, through the openssh
//! crate): per connection it starts a detached `ControlPersist=yes` control master that
//! outlives rcross when the build is interrupted, and outlives it for good when the host
//! accepts the TCP connection but never answers (it sets no connect timeout); it overrides the
//! user's `StrictHostKeyChecking` with `accept-new`; it cannot take a port; and the reason a
//! login failed (ssh's stderr) is lost in a generic error.
//!
//! Here `ssh` runs with `BatchMode=yes` (a prompt would hang behind the progress display) and
//! a `ConnectTimeout`, in rcross's process group (Ctrl-C reaches it), with the user's own
//! `~/.ssh/config`, keys and known hosts; it is killed when its connection is dropped, and a
//! connection whose `ssh` failed reports ssh's own words.

use bollard::errors::Error as BollardError;
use bollard::Docker;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::oneshot;

/// How much of ssh's stderr is kept for an error message.
const STDERR_LIMIT: u64 = 16 * 1024;
/// How long a connection whose output ended waits for `ssh` to exit and say why.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Where `ssh` logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Target {
    /// `[USER@]HOST` as `ssh` takes it (an IPv6 address without its brackets).
    fn destination(&self) -> String {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        match &self.user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_string(),
        }
    }

    /// The `ssh` command line a user can try by hand.
    fn command(&self) -> String {
        let port = self.port.map(|p| format!(" -p {p}")).unwrap_or_default();
        format!("ssh{port} {} docker version", self.destination())
    }

    /// The arguments of `ssh` for one connection.
    pub(super) fn args(&self, connect_timeout: Duration) -> Vec<String> {
        let mut args = vec![
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            format!("ConnectTimeout={}", connect_timeout.as_secs().max(1)),
            "-T".to_string(),
        ];
        if let Some(u) = &self.user {
            args.extend(["-l".to_string(), u.clone()]);
        }
        if let Some(p) = self.port {
            args.extend(["-p".to_string(), p.to_string()]);
        }
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        // `--`: the host is never read as an option.
        args.extend(["--", host, "docker", "system", "dial-stdio"].map(str::to_string));
        args
    }

    /// What to do about a failed connection, judged from its error text.
    pub(super) fn fix(&self, message: &str) -> String {
        let m = message.to_ascii_lowercase();
        let host = &self.host;
        let dest = self.destination();
        let check = self.command();
        let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if has(&["permission denied (", "too many authentication failures"]) {
            format!(
                "ssh could not log in to {host} without a prompt (rcross runs it with \
                 BatchMode=yes): add your public key to the remote user's \
                 ~/.ssh/authorized_keys (ssh-copy-id {dest}) or name the key with IdentityFile \
                 (and the user with User) under \"Host {host}\" in ~/.ssh/config; a key with a \
                 passphrase must be in ssh-agent; check with `{check}`"
            )
        } else if has(&[
            "host key verification failed",
            "remote host identification has changed",
        ]) {
            format!(
                "the host key of {host} is not in ~/.ssh/known_hosts or has changed: connect \
                 once with `ssh {dest}` to check and accept it"
            )
        } else if has(&["command not found", "docker: not found", "status 127"]) {
            format!(
                "ssh logs in, but `docker` is not on the PATH of non-interactive sessions on \
                 {host}: install the docker CLI there (docker.io or docker-ce-cli); check with \
                 `{check}`"
            )
        } else if has(&["docker daemon", "docker.sock"]) {
            format!(
                "ssh logs in, but `docker system dial-stdio` on {host} cannot reach its engine: \
                 start dockerd there and let the remote user use it (the docker group); check \
                 with `{check}`"
            )
        } else if has(&[
            "could not resolve",
            "connection refused",
            "timed out",
            "no route to host",
            "network is unreachable",
        ]) {
            format!(
                "ssh cannot reach {host}: check HostName and Port under \"Host {host}\" in \
                 ~/.ssh/config (or the endpoint's host and port) and that sshd runs there"
            )
        } else if has(&["cannot run `ssh`"]) {
            "install the OpenSSH client (apt-get install openssh-client)".to_string()
        } else {
            format!(
                "check that `{check}` works without a prompt (your keys and ~/.ssh/config \
                 apply) and prints the engine's version"
            )
        }
    }
}

/// An engine client whose connections are `ssh` processes to `target`.
pub(super) fn docker(
    target: &Target,
    connect_timeout: Duration,
    request_timeout_secs: u64,
    api: &bollard::ClientVersion,
) -> Result<Docker, BollardError> {
    let connector = Connector {
        args: Arc::new(target.args(connect_timeout)),
    };
    let client = Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector),
    );
    Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = Arc::clone(&client);
            async move { client.request(req).await.map_err(ssh_error) }
        },
        // Only the HTTP Host header sees this name: the connector knows where to go.
        Some("http://docker"),
        request_timeout_secs,
        api,
    )
}

/// The client error, or ssh's own when the connection's `ssh` failed.
fn ssh_error(e: hyper_util::client::legacy::Error) -> BollardError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        // An io::Error's source() skips its own payload, so look inside it too.
        let found = s.downcast_ref::<SshFailed>().or_else(|| {
            s.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<SshFailed>())
        });
        if let Some(f) = found {
            return BollardError::IOError {
                err: io::Error::new(io::ErrorKind::ConnectionAborted, f.clone()),
            };
        }
        source = s.source();
    }
    BollardError::from(e)
}

/// `ssh` ended without an answer; its exit and the last lines it wrote.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(super) struct SshFailed(String);

#[derive(Clone)]
struct Connector {
    args: Arc<Vec<String>>,
}

impl tower_service::Service<hyper::Uri> for Connector {
    type Response = TokioIo<SshIo>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let args = Arc::clone(&self.args);
        Box::pin(async move { SshIo::spawn(&args).map(TokioIo::new) })
    }
}

/// One connection: the stdin and stdout of an `ssh … docker system dial-stdio` process.
pub(super) struct SshIo {
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Why `ssh` ended (`None`: it exited 0), sent by the task that waits for it.
    ended: oneshot::Receiver<Option<SshFailed>>,
    /// Set once output ended: how long to wait for `ended`.
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Dropped with the connection, which tells the waiting task to kill `ssh`.
    _alive: oneshot::Sender<()>,
}

impl SshIo {
    fn spawn(args: &[String]) -> io::Result<SshIo> {
        let mut child = tokio::process::Command::new("ssh")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    SshFailed(format!("cannot run `ssh`: {e}")),
                )
            })?;
        let missing = || io::Error::other("ssh started without its pipes");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let (alive, dropped) = oneshot::channel::<()>();
        let (report, ended) = oneshot::channel();
        tokio::spawn(async move {
            let wait = async {
                let mut text = Vec::new();
                let mut stderr = stderr.take(STDERR_LIMIT);
                let (status, _) = tokio::join!(child.wait(), stderr.read_to_end(&mut text));
                (status, text)
            };
            tokio::select! {
                (status, text) = wait => {
                    let _ = report.send(failure(status, &text));
                }
                _ = dropped => {}
            }
            // Dropping `child` kills ssh if it still runs (kill_on_drop).
        });
        Ok(SshIo {
            stdin,
            stdout,
            ended,
            grace: None,
            _alive: alive,
        })
    }

    /// Why `ssh` ended, once it has (or the grace period is over: `None`).
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> Poll<Option<SshFailed>> {
        if let Poll::Ready(r) = Pin::new(&mut self.ended).poll(cx) {
            return Poll::Ready(r.ok().flatten());
        }
        let grace = self
            .grace
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(EXIT_GRACE)));
        ready!(grace.as_mut().poll(cx));
        Poll::Ready(None)
    }
}

/// The failure an exit status and stderr describe, `None` for a clean exit.
fn failure(status: io::Result<std::process::ExitStatus>, stderr: &[u8]) -> Option<SshFailed> {
    use std::os::unix::process::ExitStatusExt;
    let how = match status {
        Ok(s) if s.success() => return None,
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "failed".to_string(),
        },
        Err(e) => format!("could not be waited for ({e})"),
    };
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    Some(SshFailed(if tail.is_empty() {
        format!("ssh {how}")
    } else {
        format!("ssh {how}: {tail}")
    }))
}

impl AsyncRead for SshIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut me.stdout).poll_read(cx, buf))?;
        if buf.filled().len() > before || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // The end of ssh's output: a failed ssh says why instead.
        match ready!(me.poll_ended(cx)) {
            Some(f) => Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, f))),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl SshIo {
    /// A write error, or ssh's reason when it ended.
    fn poll_write_error(&mut self, cx: &mut Context<'_>, e: io::Error) -> Poll<io::Error> {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Poll::Ready(e);
        }
        match ready!(self.poll_ended(cx)) {
            Some(f) => Poll::Ready(io::Error::new(io::ErrorKind::ConnectionAborted, f)),
            None => Poll::Ready(e),
        }
    }
}

impl AsyncWrite for SshIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match ready!(Pin::new(&mut me.stdin).poll_write(cx, buf)) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(ready!(me.poll_write_error(cx, e)))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match ready!(Pin::new(&mut me.stdin).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(ready!(me.poll_write_error(cx, e)))),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_shutdown(cx)
    }
}

impl hyper_util::client::legacy::connect::Connection for SshIo {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: Option<&str>, host: &str, port: Option<u16>) -> Target {
        Target {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn ssh_runs_dial_stdio_without_prompts() {
        let t = target(Some("ci"), "arm-box", Some(2222));
        assert_eq!(
            t.args(Duration::from_secs(5)).join(" "),
            "-o BatchMode=yes -o ConnectTimeout=5 -T -l ci -p 2222 -- arm-box docker system \
             dial-stdio"
        );
        let t = target(None, "[::1]", None);
        assert_eq!(
            t.args(Duration::from_millis(10)).join(" "),
            "-o BatchMode=yes -o ConnectTimeout=1 -T -- ::1 docker system dial-stdio"
        );
        assert_eq!(t.command(), "ssh ::1 docker version");
        assert_eq!(
            target(Some("pi"), "rpi", Some(22)).command(),
            "ssh -p 22 pi@rpi docker version"
        );
    }

    #[test]
    fn failures_point_at_the_fix() {
        let t = target(Some("pi"), "rpi", None);
        for (message, want) in [
            (
                "ssh exited with status 255: pi@rpi: Permission denied (publickey).",
                "ssh-copy-id pi@rpi",
            ),
            (
                "ssh exited with status 255: Host key verification failed.",
                "known_hosts",
            ),
            (
                "ssh exited with status 127: bash: line 1: docker: command not found",
                "not on the PATH",
            ),
            (
                "ssh exited with status 1: Cannot connect to the Docker daemon at \
                 unix:///var/run/docker.sock",
                "start dockerd",
            ),
            (
                "ssh exited with status 255: ssh: connect to host rpi port 22: Connection \
                 refused",
                "HostName and Port under \"Host rpi\"",
            ),
            (
                "ssh exited with status 255: ssh: Could not resolve hostname rpi",
                "HostName and Port",
            ),
            ("cannot run `ssh`: No such file", "openssh-client"),
            ("no answer within 15 s", "`ssh pi@rpi docker version` works"),
        ] {
            let fix = t.fix(message);
            assert!(fix.contains(want), "{message}: {fix}");
        }
    }

    #[test]
    fn a_failed_ssh_says_how_and_its_last_lines() {
        use std::os::unix::process::ExitStatusExt;
        let status = |raw: i32| Ok(std::process::ExitStatus::from_raw(raw));
        assert!(failure(status(0), b"Warning: something\n").is_none());
        let f = failure(
            status(255 << 8),
            b"\nWarning: a\nb\n\nc\nroot@h: Permission denied\n",
        );
        assert_eq!(
            f.unwrap().to_string(),
            "ssh exited with status 255: b / c / root@h: Permission denied"
        );
        assert_eq!(
            failure(status(9), b"").unwrap().to_string(),
            "ssh was killed by signal 9"
        );
    }
}
