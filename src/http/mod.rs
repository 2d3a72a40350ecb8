//! The HTTP control plane: `POST /v1/certificates` (OIDC token + public key + proof →
//! short-lived SSH user certificate), `/healthz` and `/metrics`.
//!
//! The integrator builds one [`HttpState`] from the configuration and runs [`serve`] beside the
//! SSH server on `server.http_listen`. TLS (rustls) is used when `[http] tls_cert`/`tls_key` are
//! set; plain HTTP is refused on a non-loopback address unless `insecure_http = true`. This
//! module knows nothing of SSH sessions; it only signs certificates that the gateway later
//! verifies like any other.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::audit::AuditLog;
use crate::config::issuance::HttpSettings;
use crate::config::Config;
use crate::identity::ca::UserCa;
use crate::identity::oidc::{OidcVerifier, ReplayGuard};
use crate::store::Store;

mod issue;
pub mod limits;

pub use issue::{CertificateRequest, CertificateResponse, ErrorBody};
use limits::{Metrics, RateLimiter};

/// Most connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;

/// Time a client has to finish the TLS handshake and send its request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors building the HTTP state.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("cannot build the HTTP client for OIDC discovery: {0}")]
    Client(String),
    #[error("cannot open the replay store: {0}")]
    Store(String),
}

/// Everything a request needs; shared by all connections.
pub struct HttpState {
    /// Signs the certificates.
    ca: UserCa,
    /// Where every issuance and refusal is recorded (before the caller hears of it).
    audit: Arc<AuditLog>,
    /// Token verification against the configured issuers.
    oidc: OidcVerifier,
    /// Spent tokens (one certificate per token).
    replay: ReplayGuard,
    /// Requests per source address.
    per_address: RateLimiter<std::net::IpAddr>,
    /// Certificates per identity.
    per_identity: RateLimiter<String>,
    /// Counters for `/metrics`.
    metrics: Metrics,
    /// Body limit, TLS, insecure flag.
    settings: HttpSettings,
    /// Present when TLS is configured.
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("ca", &self.ca)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// The peer address of a connection (for per-address limits and audit).
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

impl HttpState {
    /// Builds the state from the configuration: loads TLS files, opens the `oidc_jti` tree.
    /// No network access happens here; issuer keys are fetched when [`serve`] starts.
    pub fn new(
        config: &Config,
        ca: UserCa,
        audit: Arc<AuditLog>,
        store: &Store,
    ) -> Result<HttpState, HttpError> {
        let settings = config.issuance.http.clone();
        let tls = match &settings.tls {
            Some(files) => Some(load_tls(&files.cert, &files.key)?),
            None => None,
        };
        let client =
            crate::identity::oidc::http_client().map_err(|e| HttpError::Client(e.to_string()))?;
        Ok(HttpState {
            ca,
            audit,
            oidc: OidcVerifier::new(&config.issuance.issuers, client),
            replay: ReplayGuard::open(store).map_err(|e| HttpError::Store(e.to_string()))?,
            per_address: RateLimiter::new(settings.requests_per_minute_per_address),
            per_identity: RateLimiter::new(settings.certificates_per_minute_per_identity),
            metrics: Metrics::default(),
            tls,
            settings,
        })
    }

    /// The token verifier (tests and benches install keys through it).
    pub fn oidc(&self) -> &OidcVerifier {
        &self.oidc
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether `ca` would be the CA's public key (tests).
    pub fn ca_public_key(&self) -> russh::keys::PublicKey {
        self.ca.public_key()
    }
}

/// Loads a PEM certificate chain and private key into a TLS acceptor (ring provider).
fn load_tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, HttpError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |path: &Path, reason: String| HttpError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(cert, "no CERTIFICATE block".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| err(key, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The routes, with the state attached.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/v1/certificates", post(issue::issue))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(issue::metrics))
        .with_state(state)
}

/// Serves the endpoint on `listener` until `shutdown` resolves, then drains requests in flight
/// (up to 10 s). Refuses to start plain HTTP on a non-loopback address unless the
/// configuration says `insecure_http = true`. Fetches every issuer's keys in the background
/// at start.
pub async fn serve(
    state: Arc<HttpState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    if state.tls.is_none() && !local.ip().is_loopback() && !state.settings.insecure_http {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "refusing plain HTTP on {local}: bearer tokens would cross the network in clear; \
                 configure [http] tls_cert/tls_key or set insecure_http = true"
            ),
        ));
    }
    {
        let state = state.clone();
        tokio::spawn(async move { state.oidc.warm_up().await });
    }
    let app = router(state.clone());
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tracing::info!(%local, tls = state.tls.is_some(), "certificate issuance listening");
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(Peer(peer))));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT)
            .keep_alive(true);
        match &state.tls {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    if let Err(err) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
                    }
                });
            }
            None => {
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(err) = conn.await {
                        tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}
