//! `tcp://` engines over TLS, as the docker CLI reaches them with `--tlsverify`: the engine's
//! certificate must be issued by the CA in `ca.pem` and be for the endpoint's host; the
//! client shows `cert.pem` with `key.pem`.
//!
//! Not the engine client's own TLS transport (bollard's `connect_with_ssl`): it needs a
//! process-wide rustls crypto provider (and panics mid-handshake without one); it reads the
//! client key at every handshake and, when it cannot, silently sends no certificate, so the
//! engine only says "bad certificate"; it trusts the system's CAs besides `ca.pem`; and when
//! the engine refuses the client's certificate the reason is lost: with TLS 1.3 the client's
//! certificate goes last, the engine's alert arrives after the handshake, and the request fails
//! with "connection was not ready".
//!
//! Here the files are read and checked once, when connecting (a missing certificate or key
//! says which file and what it must hold); the configuration carries its own provider (ring);
//! only `ca.pem` is trusted; and a TLS failure at any point of a connection, the engine's alert
//! included, is reported in words with what to fix ([`TlsFailed`]).

use super::TlsFiles;
use bollard::errors::Error as BollardError;
use bollard::Docker;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TLS failure with the engine, in words, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct TlsFailed(pub String);

/// What the messages name: the endpoint's host and the files.
#[derive(Debug, Clone)]
struct Names {
    host: String,
    port: u16,
    files: TlsFiles,
}

/// The TLS settings of one engine: the checked files as a client configuration.
#[derive(Clone)]
struct Target {
    names: Arc<Names>,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

/// An engine client whose connections are TLS to `host:port` with `files`. Fails (with the
/// file and what it must hold) when a file cannot be read or holds no usable certificate or
/// key; nothing is connected yet.
pub(super) fn docker(
    host: &str,
    port: u16,
    files: &TlsFiles,
    request_timeout_secs: u64,
    api: &bollard::ClientVersion,
) -> Result<Docker, String> {
    let names = Names {
        host: host.to_string(),
        port,
        files: files.clone(),
    };
    let config = client_config(files)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(bare.to_string())
        .map_err(|e| format!("{host} cannot be checked against a certificate: {e}"))?;
    let target = Target {
        names: Arc::new(names),
        config: Arc::new(config),
        server_name,
    };
    Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let target = target.clone();
            async move {
                // A client per request (as the engine client's own TLS transport keeps no idle
                // connections either), so a failure recorded on its connection is this
                // request's.
                let failed = Arc::new(Mutex::new(None));
                let client = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(0)
                    .build(Connector {
                        target,
                        failed: Arc::clone(&failed),
                    });
                client
                    .request(req)
                    .await
                    .map_err(|e| request_error(e, &failed))
            }
        },
        // Only the HTTP Host header sees this name: the connector knows where to go.
        Some("http://docker"),
        request_timeout_secs,
        api,
    )
    .map_err(|e| format!("cannot set up the TLS client: {e}"))
}

/// The TLS failure behind a client error, if there was one.
pub(super) fn failure(e: &BollardError) -> Option<TlsFailed> {
    // The client error shows an io::Error transparently: its source() is its payload's.
    if let BollardError::IOError { err } = e {
        if let Some(f) = err.get_ref().and_then(|i| i.downcast_ref::<TlsFailed>()) {
            return Some(f.clone());
        }
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(f) = as_failed(s) {
            return Some(f.clone());
        }
        source = s.source();
    }
    None
}

/// `e` as a [`TlsFailed`], looking inside an io::Error too (its source() skips its payload).
fn as_failed<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a TlsFailed> {
    e.downcast_ref::<TlsFailed>().or_else(|| {
        e.downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<TlsFailed>())
    })
}

/// The client error, or the TLS failure of its connection when there was one (the HTTP
/// client reports a connection that failed before its request was sent only as canceled).
fn request_error(
    e: hyper_util::client::legacy::Error,
    failed: &Mutex<Option<TlsFailed>>,
) -> BollardError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut found = None;
    while let Some(s) = source {
        if let Some(f) = as_failed(s) {
            found = Some(f.clone());
            break;
        }
        source = s.source();
    }
    let found = found.or_else(|| failed.lock().ok().and_then(|f| f.clone()));
    match found {
        Some(f) => BollardError::IOError {
            err: io::Error::new(io::ErrorKind::ConnectionAborted, f),
        },
        None => BollardError::from(e),
    }
}

/// The client configuration for `files`: `ca.pem` the only trusted CA, `cert.pem` and
/// `key.pem` the client's identity, ring the crypto provider.
fn client_config(files: &TlsFiles) -> Result<ClientConfig, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let certs = |p: &Path, what: &str| -> Result<Vec<CertificateDer<'static>>, String> {
        let bytes = read(p)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{} is not a valid PEM file ({e}); {what}", p.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{} holds no certificate (no \"BEGIN CERTIFICATE\" block); {what}",
                p.display()
            ));
        }
        Ok(certs)
    };
    let ca_what = "it must hold the CA certificate that issued the engine's certificate";
    let mut roots = RootCertStore::empty();
    for ca in certs(&files.ca, ca_what)? {
        roots.add(ca).map_err(|e| {
            format!(
                "{}: not a usable CA certificate ({e}); {ca_what}",
                files.ca.display()
            )
        })?;
    }
    let chain = certs(
        &files.cert,
        "it must hold the client certificate issued by the CA the engine trusts",
    )?;
    let key_bytes = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (no \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \
                 \"BEGIN EC PRIVATE KEY\" block)"
                    .to_string()
            }
            e => format!("is not a valid PEM file ({e})"),
        };
        format!(
            "{} {why}; it must hold the unencrypted key of {} (decrypt an encrypted one with \
             `openssl pkey -in KEY -out {}`)",
            files.key.display(),
            files.cert.display(),
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            format!(
                "{} and {} are not a usable certificate and key ({e}); the key must be the one \
                 the certificate was issued for",
                files.cert.display(),
                files.key.display()
            )
        })
}

/// A TLS error in words, with what to fix.
fn describe(names: &Names, e: &rustls::Error) -> TlsFailed {
    use rustls::Error as E;
    use CertificateError as C;
    let Names { host, port, files } = names;
    let ca = files.ca.display();
    let text = match e {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "the engine's certificate was not issued by the CA in {ca} (TLS: {e}); put the CA \
             certificate that issued the engine's certificate (the one its --tlscert was signed \
             with) there"
        ),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the engine's certificate is not for {host} (TLS: {e}); connect by a name or \
             address its subjectAltName lists, or give the engine a certificate for {host}"
        ),
        E::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => format!(
            "the engine's certificate is not valid now (TLS: {e}); renew it, or check this \
             machine's clock"
        ),
        E::InvalidCertificate(C::InvalidPurpose | C::InvalidPurposeContext { .. }) => format!(
            "the engine's certificate is not for a server (TLS: {e}); issue it with \
             extendedKeyUsage serverAuth"
        ),
        E::InvalidCertificate(_) => format!(
            "the engine's certificate was rejected (TLS: {e}); check it against the CA in {ca}"
        ),
        E::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied,
        ) => format!(
            "the engine refused the client certificate {} (TLS: {e}); it must be issued by the \
             CA the engine trusts (dockerd --tlscacert), for client authentication \
             (extendedKeyUsage clientAuth), valid now, and {} its key",
            files.cert.display(),
            files.key.display()
        ),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => format!(
            "the engine did not answer in TLS (TLS: {e}); port {port} seems to be a plain-HTTP \
             engine: use the engine's TLS port, or connect without TLS (unset \
             DOCKER_TLS_VERIFY, and keep no certificates in ~/.docker/certs.d/{host}:{port}/)"
        ),
        e => format!(
            "TLS with the engine failed ({e}); check ca.pem, cert.pem and key.pem in {}",
            files
                .ca
                .parent()
                .map_or_else(|| ".".to_string(), |d| d.display().to_string())
        ),
    };
    TlsFailed(text)
}

/// A TLS error from the stream, in words and recorded for its request; other errors as they
/// are.
fn recorded(e: io::Error, names: &Names, failed: &Mutex<Option<TlsFailed>>) -> io::Error {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e;
    };
    let f = describe(names, tls);
    if let Ok(mut slot) = failed.lock() {
        slot.get_or_insert_with(|| f.clone());
    }
    io::Error::new(e.kind(), f)
}

#[derive(Clone)]
struct Connector {
    target: Target,
    failed: Arc<Mutex<Option<TlsFailed>>>,
}

impl tower_service::Service<hyper::Uri> for Connector {
    type Response = TokioIo<TlsIo>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let Connector { target, failed } = self.clone();
        Box::pin(async move {
            let names = &target.names;
            let bare = names.host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((bare, names.port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(&target.config))
                .connect(target.server_name.clone(), tcp)
                .await
                .map_err(|e| recorded(e, names, &failed))?;
            Ok(TokioIo::new(TlsIo {
                stream,
                names: Arc::clone(&target.names),
                failed,
            }))
        })
    }
}

/// One TLS connection; its TLS errors are put in words and recorded for its request.
pub(super) struct TlsIo {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    names: Arc<Names>,
    failed: Arc<Mutex<Option<TlsFailed>>>,
}

impl TlsIo {
    fn map<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        r.map_err(|e| recorded(e, &self.names, &self.failed))
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.stream).poll_read(cx, buf);
        me.map(r)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.stream).poll_write(cx, buf);
        me.map(r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.stream).poll_flush(cx);
        me.map(r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.stream).poll_shutdown(cx);
        me.map(r)
    }
}

impl hyper_util::client::legacy::connect::Connection for TlsIo {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn names() -> Names {
        Names {
            host: "10.0.0.5".into(),
            port: 2376,
            files: TlsFiles {
                ca: PathBuf::from("/certs/ca.pem"),
                cert: PathBuf::from("/certs/cert.pem"),
                key: PathBuf::from("/certs/key.pem"),
            },
        }
    }

    #[test]
    fn tls_errors_say_which_side_and_what_to_fix() {
        let n = names();
        for (e, want) in [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                vec!["not issued by the CA in /certs/ca.pem", "UnknownIssuer"],
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                vec!["not for 10.0.0.5", "subjectAltName"],
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                vec!["not valid now", "clock"],
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::BadCertificate),
                vec![
                    "refused the client certificate /certs/cert.pem",
                    "--tlscacert",
                    "clientAuth",
                    "/certs/key.pem",
                ],
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                vec!["refused the client certificate"],
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                vec!["plain-HTTP", "DOCKER_TLS_VERIFY", "certs.d/10.0.0.5:2376/"],
            ),
            (
                rustls::Error::DecryptError,
                vec!["TLS with the engine failed", "in /certs"],
            ),
        ] {
            let text = describe(&n, &e).0;
            for w in want {
                assert!(text.contains(w), "{e:?}: {w:?} not in {text}");
            }
        }
    }

    #[test]
    fn files_without_a_certificate_or_key_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let err = |files: &TlsFiles| match client_config(files) {
            Ok(_) => panic!("a configuration from unusable files"),
            Err(e) => e,
        };
        let e = err(&files);
        assert!(e.contains("cannot read") && e.contains("ca.pem"), "{e}");
        std::fs::write(&files.ca, "not a certificate\n").unwrap();
        let e = err(&files);
        assert!(
            e.contains("ca.pem holds no certificate") && e.contains("issued the engine's"),
            "{e}"
        );
        // A block that is not DER: refused as a CA certificate.
        std::fs::write(
            &files.ca,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = err(&files);
        assert!(e.contains("not a usable CA certificate"), "{e}");
    }

    #[test]
    fn failures_are_found_behind_the_client_error() {
        let f = TlsFailed("the engine refused".into());
        let e = BollardError::IOError {
            err: io::Error::new(io::ErrorKind::ConnectionAborted, f.clone()),
        };
        assert_eq!(failure(&e), Some(f));
        let plain = BollardError::IOError {
            err: io::Error::other("boom"),
        };
        assert_eq!(failure(&plain), None);
    }
}
