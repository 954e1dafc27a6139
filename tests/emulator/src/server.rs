//! `seedship-emulator serve`: a TLS listener (tokio-rustls) feeding HTTP/1.1 connections (hyper) into the
//! handlers. Each connection's client-certificate thumbprint travels with its requests. Shutdown is an
//! argument: when the future completes the listener stops accepting and open connections are closed.

use crate::config::{load_locations, EmulatorConfig, EmulatorDir, EmulatorError};
use crate::handlers::{self, Request};
use crate::state::AppState;
use crate::store::Store;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use seedship_shared::api::identity::thumbprint;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Largest request body accepted (a Put Job body is a few kilobytes).
pub const MAX_BODY: usize = 1 << 20;

/// A client that has not finished the TLS handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
}

/// A bound, not yet serving, emulator.
pub struct BoundServer {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<AppState>,
    url: String,
}

impl std::fmt::Debug for BoundServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Loads the directory, opens the job store and binds the listener. Writes `DIR/url`, and the publish
/// settings' ServiceManagementUrl unless `init --url` fixed it.
pub async fn bind(config: &ServeConfig) -> Result<BoundServer, EmulatorError> {
    let dir = EmulatorDir::new(&config.dir);
    let emulator = EmulatorConfig::load(&dir)?;
    let locations = load_locations(&dir)?;
    let tls = crate::tls::server_config(&dir)?;
    let store = Store::open(&dir.database())?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| EmulatorError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| EmulatorError::Listen {
        addr: config.listen.to_string(),
        source,
    })?;
    let url = format!("https://{addr}");
    crate::config::write_file(&dir.url_file(), format!("{url}\n").as_bytes(), false)?;
    if emulator.public_url.is_none() {
        crate::init::write_publish_settings(&dir, &emulator, &url)?;
        crate::entra::register::update_app_url(&dir, &url)?;
    }
    let entra = match &emulator.entra {
        Some(c) => Some(crate::entra::Authority::load(&dir, c.clone())?),
        None => None,
    };
    let public_url = emulator.public_url.clone().unwrap_or_else(|| url.clone());
    let state = Arc::new(AppState {
        dir,
        config: emulator,
        locations,
        store: Mutex::new(store),
        receiving: Default::default(),
        entra,
        public_url,
    });
    Ok(BoundServer {
        listener,
        acceptor: tokio_rustls::TlsAcceptor::from(tls),
        state,
        url,
    })
}

impl BoundServer {
    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), EmulatorError> {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let acceptor = self.acceptor.clone();
                    let state = self.state.clone();
                    connections.spawn(async move {
                        if let Err(e) = connection(acceptor, state, tcp).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
        let receiving = self.state.receiving.clone();
        if receiving.running() > 0 {
            tracing::info!(
                imports = receiving.running(),
                "waiting for the imports of received drives"
            );
        }
        let _ = tokio::task::spawn_blocking(move || receiving.wait_all()).await;
        tracing::info!("emulator stopped");
        Ok(())
    }
}

/// Binds and serves until `shutdown` completes.
pub async fn serve(config: &ServeConfig, shutdown: impl Future<Output = ()>) -> Result<(), EmulatorError> {
    bind(config).await?.run(shutdown).await
}

async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<AppState>,
    tcp: tokio::net::TcpStream,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await??;
    let thumb = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| thumbprint(c));
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let state = state.clone();
        let thumb = thumb.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(state, thumb, req).await) }
    });
    http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await?;
    Ok(())
}

async fn answer(
    state: Arc<AppState>,
    thumbprint: Option<String>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => {
            let rej = crate::validation::Rejection::new(
                413,
                "RequestBodyTooLarge",
                format!("Request bodies are limited to {MAX_BODY} bytes."),
            );
            return to_hyper(crate::odata::error(&rej, None, system_now()));
        }
    };
    let request = Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
        thumbprint,
    };
    // SQLite work (fsync per change) runs off the async worker threads
    let (method, path) = (request.method.clone(), request.path.clone());
    let reply = match tokio::task::spawn_blocking(move || handlers::handle(&state, &request)).await {
        Ok(r) => r,
        Err(e) => {
            let rej =
                crate::validation::Rejection::new(500, "InternalError", format!("The request failed: {e}."));
            crate::odata::error(&rej, None, system_now())
        }
    };
    tracing::info!(%method, %path, status = reply.status, "request");
    to_hyper(reply)
}

/// Unix seconds of the system clock, for answers given before the store (and its clock offset) is reached.
fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn to_hyper(reply: crate::odata::Reply) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes());
        if let (Ok(n), Ok(v)) = (name, hyper::header::HeaderValue::from_str(&value)) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}
