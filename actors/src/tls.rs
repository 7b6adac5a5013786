//! TLS to the backend (`rediss://`): the client configuration built from the relayer's `tls*`
//! keys, the handshake with failures told in words an operator can act on, and the bridge that
//! gives the target a plain socket to write to. A server certificate that is itself in
//! tlsCaFile is trusted (`pinned`).
//!
//! The target writes with `try_write`/`try_write_vectored` on raw sockets, which a TLS stream
//! cannot offer. So a TLS connection is handed over as one end of a unix socket pair, and a task
//! copies between the other end and the TLS stream: the plain-TCP path stays as it is, and a
//! TLS connection looks to the target exactly like a unix-socket backend.

mod pinned;

use pinned::PinningVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use slog::{debug, warn, Logger};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The `tls*` keys of a relayer, as written.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// A bad `tls*` key, named as documented (`tlsCaFile`).
#[derive(Debug)]
pub struct TlsConfigError {
    pub key: &'static str,
    pub message: String,
}

/// What a `rediss://` target connects with. Two are equal when they were built from the same
/// file contents and name, so a reload after a certificate is renewed replaces the target.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    client_cert: bool,
    source: Arc<Source>,
}

#[derive(PartialEq, Eq)]
struct Source {
    ca: Option<(PathBuf, Vec<u8>)>,
    cert: Option<(PathBuf, Vec<u8>)>,
    key: Option<Vec<u8>>,
    server_name: String,
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ca = match &self.source.ca {
            Some((p, _)) => p.display().to_string(),
            None => "system".to_string(),
        };
        write!(
            f,
            "TlsClient {{ server_name: {}, ca: {ca}, client_cert: {} }}",
            self.source.server_name, self.client_cert
        )
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|e| TlsConfigError {
        key,
        message: format!("cannot read {}: {e}", path.display()),
    })
}

fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bad = |m: String| TlsConfigError {
        key,
        message: format!("{}: {m}", path.display()),
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "no certificate in it (a PEM file with BEGIN CERTIFICATE blocks)".into(),
        ));
    }
    Ok(certs)
}

impl TlsClient {
    /// Reads and checks the files; `host` (the url's) is the name verified when `tlsServerName`
    /// is not set.
    pub fn load(o: &TlsOptions, host: &str) -> Result<TlsClient, TlsConfigError> {
        let name = o.server_name.clone().unwrap_or_else(|| host.to_string());
        let server_name = ServerName::try_from(name.clone()).map_err(|_| TlsConfigError {
            key: "tlsServerName",
            message: format!("'{name}' is not a DNS name or an IP address"),
        })?;
        let mut roots = RootCertStore::empty();
        let mut pinned = Vec::new();
        let ca = match &o.ca_file {
            Some(path) => {
                let pem = read("tlsCaFile", path)?;
                for c in certificates("tlsCaFile", path, &pem)? {
                    pinned.push(c.clone());
                    roots.add(c).map_err(|e| TlsConfigError {
                        key: "tlsCaFile",
                        message: format!("{}: not a usable CA certificate: {e}", path.display()),
                    })?;
                }
                Some((path.clone(), pem))
            }
            // The system's store, as redis-cli --tls and the original daemon (Go's crypto/tls)
            // use: it follows the distribution's updates and any CA the host adds.
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default();
                    return Err(TlsConfigError {
                        key: "tlsCaFile",
                        message: format!(
                            "not set, and the system has no CA certificates{why}: set it to the PEM file of the CA that signed the server's certificate"
                        ),
                    });
                }
                None
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsConfigError {
                key: "tlsCaFile",
                message: format!("TLS: {e}"),
            })?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError {
                key: "url",
                message: format!("TLS: {e}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinningVerifier::new(webpki, pinned)));
        let (config, cert, key) = match (&o.cert_file, &o.key_file) {
            (None, None) => (builder.with_no_client_auth(), None, None),
            (Some(_), None) => {
                return Err(TlsConfigError {
                    key: "tlsCertFile",
                    message: "needs tlsKeyFile too: a client certificate goes with its private key".into(),
                })
            }
            (None, Some(_)) => {
                return Err(TlsConfigError {
                    key: "tlsKeyFile",
                    message: "needs tlsCertFile too: a private key goes with its client certificate".into(),
                })
            }
            (Some(cert_path), Some(key_path)) => {
                let cert_pem = read("tlsCertFile", cert_path)?;
                let chain = certificates("tlsCertFile", cert_path, &cert_pem)?;
                let key_pem = read("tlsKeyFile", key_path)?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsConfigError {
                    key: "tlsKeyFile",
                    message: format!(
                        "{}: no private key in it ({e}): a PEM file with an unencrypted PKCS#8, PKCS#1 or SEC1 key",
                        key_path.display()
                    ),
                })?;
                let config = builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsConfigError {
                        key: "tlsKeyFile",
                        message: format!(
                            "{} does not go with the certificate of {}: {e}",
                            key_path.display(),
                            cert_path.display()
                        ),
                    })?;
                (config, Some((cert_path.clone(), cert_pem)), Some(key_pem))
            }
        };
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            client_cert: cert.is_some(),
            source: Arc::new(Source {
                ca,
                cert,
                key,
                server_name: name,
            }),
        })
    }

    /// The TLS handshake on a connected socket. A failure says what is wrong and which key
    /// to look at.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| self.explain(e))
    }

    /// An I/O error of a TLS connection, with the rustls error in it made readable.
    pub fn explain(&self, e: io::Error) -> io::Error {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return e;
        };
        let hint = match tls {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => match &self.source.ca {
                Some((p, _)) => format!(
                    ": the server's certificate is not signed by a CA of {} (tlsCaFile)",
                    p.display()
                ),
                None => {
                    ": the server's certificate is not signed by a CA of the system's store (set tlsCaFile)"
                        .into()
                }
            },
            e if pinned::is_ca_used_as_end_entity(e) => match &self.source.ca {
                Some((p, _)) => format!(
                    ": the server's certificate is a CA certificate, and not one of {} (tlsCaFile)",
                    p.display()
                ),
                None => {
                    ": the server's certificate is a CA certificate (set tlsCaFile to it to trust it)".into()
                }
            },
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                " (the name checked is '{}': set tlsServerName to a name in the certificate)",
                self.source.server_name
            ),
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
            | rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
                if !self.client_cert =>
            {
                ": the server wants a client certificate (set tlsCertFile and tlsKeyFile)".into()
            }
            rustls::Error::AlertReceived(
                AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown,
            ) => ": the server refused the client certificate (tlsCertFile)".into(),
            _ => String::new(),
        };
        // rustls counts the seconds since expiry: a reason that changes at every attempt would
        // be logged at every attempt.
        let what = match tls {
            rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { not_after, .. }) => format!(
                "invalid peer certificate: expired (not valid after {} UNIX time)",
                not_after.as_secs()
            ),
            rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext {
                not_before, ..
            }) => {
                format!(
                    "invalid peer certificate: not valid yet (not before {} UNIX time)",
                    not_before.as_secs()
                )
            }
            e if pinned::is_ca_used_as_end_entity(e) => "invalid peer certificate: CaUsedAsEndEntity".into(),
            other => other.to_string(),
        };
        io::Error::new(e.kind(), format!("TLS: {what}{hint}"))
    }
}

/// Hands `tls` over as a unix socket: what the target writes to the returned end goes out
/// encrypted, and what the server sends comes back on it. When either side closes or fails,
/// both are closed at once, so the target sees the loss as it would on a plain socket.
///
/// Not `copy_bidirectional`: after the target closes its end, that would wait for the server
/// to close too, and a hung server would keep the task and its socket.
pub fn bridge(tls: TlsStream<TcpStream>, client: TlsClient, log: Logger) -> io::Result<UnixStream> {
    let (ours, mut theirs) = UnixStream::pair()?;
    actix_rt::spawn(async move {
        let (mut from_server, mut to_server) = tokio::io::split(tls);
        let (mut from_target, mut to_target) = theirs.split();
        // tokio's copy flushes the TLS writer whenever the target has nothing more to send.
        let ended = tokio::select! {
            r = tokio::io::copy(&mut from_target, &mut to_server) => r.map(|_| "the relayer"),
            r = tokio::io::copy(&mut from_server, &mut to_target) => r.map(|_| "the backend"),
        };
        match ended {
            Ok(by) => debug!(log, "TLS connection to the backend closed"; "by" => by),
            // The target logs the loss; what TLS said about it is worth its own line.
            Err(e) if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
                warn!(log, "TLS connection to the backend failed"; "reason" => %client.explain(e))
            }
            Err(e) => debug!(log, "TLS connection to the backend closed"; "reason" => %e),
        }
        // Both dropped here: the target reads the end of its socket, the server its TCP FIN.
    });
    Ok(ours)
}
