//! TLS for clients (rustls): a listener of its own (`--tls-listen`), the
//! certificate and key from PEM files, client certificates verified
//! against a CA when asked (`--tls-auth-clients yes|optional|no`), and
//! the files re-read when they change, without a restart. A handshake has
//! a bounded time; a client that speaks plaintext to the TLS port fails
//! its handshake and is closed.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use lockstep_raft::tls;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use slog::{info, warn};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::connection;
use crate::ServerContext;

/// A client must finish its TLS handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// Whether clients must present a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
    None,
}

/// Where the TLS material is.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that signs client certificates.
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    /// Reads the files into a rustls configuration.
    pub fn load(&self) -> Result<ServerConfig, String> {
        let certs = tls::load_certs(&self.cert)?;
        let key = tls::load_key(&self.key)?;
        let builder = ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?;
        let builder = match (&self.ca, self.client_auth) {
            (Some(ca), auth) if auth != ClientAuth::None => {
                let roots = Arc::new(tls::load_roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, tls::provider());
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|err| err.to_string())?)
            }
            (None, ClientAuth::Required) => {
                return Err("verifying client certificates needs --tls-ca-cert-file".into())
            }
            _ => builder.with_no_client_auth(),
        };
        builder
            .with_single_cert(certs, key)
            .map_err(|err| format!("certificate and key: {err}"))
    }

    fn modified(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// A TLS acceptor built from [`TlsFiles`] and rebuilt when they change
/// (checked every few seconds until `shutdown`; a bad new file keeps the
/// old acceptor, with a warning). Shared by every TLS listener.
#[derive(Clone)]
pub struct ReloadingAcceptor {
    current: Arc<RwLock<TlsAcceptor>>,
}

impl ReloadingAcceptor {
    pub fn start(
        files: TlsFiles,
        log: slog::Logger,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<ReloadingAcceptor, String> {
        let current = Arc::new(RwLock::new(TlsAcceptor::from(Arc::new(files.load()?))));
        let acceptor = ReloadingAcceptor {
            current: current.clone(),
        };
        tokio::spawn(async move {
            let mut seen = files.modified();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RELOAD_CHECK) => {}
                    _ = shutdown.changed() => return,
                }
                let now = files.modified();
                if now == seen {
                    continue;
                }
                seen = now;
                match files.load() {
                    Ok(config) => {
                        *current.write().expect("tls acceptor") =
                            TlsAcceptor::from(Arc::new(config));
                        info!(log, "reloaded the TLS certificate");
                    }
                    Err(err) => warn!(log, "kept the old TLS certificate"; "error" => %err),
                }
            }
        });
        Ok(acceptor)
    }

    /// Runs the server side of a handshake on `stream`, within a bounded
    /// time; None (logged at debug) when it fails or times out.
    pub async fn handshake<S>(
        &self,
        stream: S,
        remote: std::net::SocketAddr,
        log: &slog::Logger,
    ) -> Option<tokio_rustls::server::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let tls = self.current.read().expect("tls acceptor").clone();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
            Ok(Ok(tls_stream)) => Some(tls_stream),
            Ok(Err(err)) => {
                slog::debug!(log, "TLS handshake failed"; "remote" => %remote, "error" => %err);
                None
            }
            Err(_) => {
                slog::debug!(log, "TLS handshake timed out"; "remote" => %remote);
                None
            }
        }
    }
}

/// Serves TLS clients on `listener` until `shutdown`, with the
/// certificate reloaded when its files change.
pub async fn serve_tls(
    listener: TcpListener,
    files: TlsFiles,
    context: Arc<ServerContext>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let acceptor = ReloadingAcceptor::start(files, context.log.clone(), shutdown.clone())?;
    info!(context.log, "accepting TLS clients"; "addr" => ?listener.local_addr().ok());
    let slots = Arc::new(Semaphore::new(context.limits.max_connections));
    while let Some((stream, remote, permit)) =
        crate::server::accept(&listener, &slots, &context, &mut shutdown).await
    {
        let acceptor = acceptor.clone();
        let context = context.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(remote);
            // A second handle on the socket, to notice a client leaving
            // while its command waits (TLS records cannot be peeked).
            let Ok(std_stream) = stream.into_std() else {
                return;
            };
            let raw = std_stream
                .try_clone()
                .ok()
                .and_then(|dup| tokio::net::TcpStream::from_std(dup).ok());
            let (Some(raw), Ok(stream)) = (raw, tokio::net::TcpStream::from_std(std_stream)) else {
                return;
            };
            let Some(tls_stream) = acceptor.handshake(stream, remote, &context.log).await else {
                return;
            };
            let (reader, writer) = tokio::io::split(tls_stream);
            let reader = connection::TlsReader { inner: reader, raw };
            connection::run(reader, writer, remote, local, context, permit, shutdown).await;
        });
    }
    Ok(())
}
