//! The operations HTTP listener (off unless configured): Prometheus text
//! at `/metrics`, and the health endpoints an orchestrator or a load
//! balancer probes, as etcd has them: `/livez` (the process serves),
//! `/readyz` (a leader is known and this node has applied what was
//! committed when it started, so its reads are not far behind) and
//! `/health` (a linearizable read goes through within a second).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use slog::{debug, info, warn};
use tokio::net::TcpListener;

use crate::metrics::Readings;
use crate::ServerContext;

/// HTTP connections served at once; more wait for the OS backlog.
const MAX_HTTP_CONNECTIONS: usize = 64;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long /health waits for a linearizable read.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether this node is ready: latched once it has applied the commit
/// index it learned from its first leader after starting.
#[derive(Default)]
pub struct Readiness {
    /// The commit index to reach (0: not learned yet).
    target: AtomicU64,
    reached: AtomicBool,
}

impl Readiness {
    /// (ready, reason if not).
    pub fn check(&self, context: &ServerContext) -> (bool, String) {
        let status = context.node.status();
        if status.removed {
            return (false, "removed from the cluster".into());
        }
        if status.leader_id == 0 {
            return (false, "no leader".into());
        }
        if !self.reached.load(Ordering::Acquire) {
            let mut target = self.target.load(Ordering::Acquire);
            if target == 0 {
                target = status.commit_index.max(1);
                self.target.store(target, Ordering::Release);
            }
            if status.applied_index < target {
                return (
                    false,
                    format!("catching up: applied {} of {target}", status.applied_index),
                );
            }
            self.reached.store(true, Ordering::Release);
        }
        (true, String::new())
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_health(healthy: bool, reason: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "{{\"health\":\"{healthy}\",\"reason\":\"{}\"}}",
        reason.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, body, "application/json")
}

async fn handle(
    request: Request<Incoming>,
    context: Arc<ServerContext>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET\n".into(),
            "text/plain",
        ));
    }
    let response = match request.uri().path() {
        "/metrics" => {
            let store = context
                .store_stats
                .as_ref()
                .map(|stats| stats())
                .unwrap_or_default();
            let readings = Readings::of(&context.node, context.clients.connected(), store);
            text(
                StatusCode::OK,
                context.metrics.render(&readings),
                "text/plain; version=0.0.4",
            )
        }
        "/livez" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" => {
            let (ready, reason) = context.readiness.check(&context);
            if ready {
                text(StatusCode::OK, "ok\n".into(), "text/plain")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                    "text/plain",
                )
            }
        }
        "/health" => {
            let read = tokio::time::timeout(HEALTH_READ_TIMEOUT, context.node.read_barrier()).await;
            match read {
                _ if context.node.is_removed() => json_health(false, "removed from the cluster"),
                Ok(Ok(())) => json_health(true, ""),
                Ok(Err(err)) => json_health(false, &err.to_string()),
                Err(_) => json_health(false, "no linearizable read within 1s"),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /livez, /readyz or /health\n".into(),
            "text/plain",
        ),
    };
    Ok(response)
}

/// Serves the operations endpoints on `listener` until `shutdown`.
pub async fn serve_http(
    listener: TcpListener,
    context: Arc<ServerContext>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    info!(context.log, "operations HTTP listener"; "addr" => ?listener.local_addr().ok());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
            _ = shutdown.changed() => return,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(context.log, "HTTP accept failed"; "error" => %err);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let context = context.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service_context = context.clone();
            let service = service_fn(move |request| handle(request, service_context.clone()));
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                debug!(context.log, "HTTP connection ended"; "remote" => %remote, "error" => %err);
            }
        });
    }
}
