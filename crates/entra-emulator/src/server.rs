//! The HTTPS listener: TLS, HTTP/1.1 with keep-alive, fault injection and the request log.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::Error;
use crate::aad_error::AadError;
use crate::admin::ADMIN_PREFIX;
use crate::observe::{Counter, Fault, RequestRecord};
use crate::state::{Shared, TokenAudit, now, now_precise};

/// How long each stage of a connection may take, and how many connections are served at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// The TLS handshake, then each request's headers (and keep-alive idleness).
    pub(crate) header_read_timeout: Duration,
    /// A request's body (and the handler), once its headers are in.
    pub(crate) body_read_timeout: Duration,
    /// Connections served at once.
    pub(crate) max_connections: usize,
}

pub(crate) fn tls_acceptor(chain: Vec<Vec<u8>>, key: Vec<u8>) -> Result<TlsAcceptor, Error> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `shutdown` turns true, at most `limits.max_connections` at once:
/// beyond that, new connections wait in the listen queue until one closes.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shared: Arc<Shared>,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = shutdown.changed() => break,
        };
        let Ok(slot) = slot else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let Ok((tcp, _peer)) = accepted else {
            // A reset before accept, or (with another process's load) no descriptor left:
            // keep serving the others.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let open = shared.counters.connection_opened();
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shared = shared.clone();
        let mut connection_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _held = (slot, open);
            let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
            let Ok(Ok(tls)) = handshake.await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                handle(
                    shared.clone(),
                    router.clone(),
                    limits.body_read_timeout,
                    request,
                )
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = connection => {}
                _ = connection_shutdown.changed() => {}
            }
        });
    }
}

/// The error that makes hyper close a connection without answering (the `drop` fault).
#[derive(Debug)]
struct DroppedConnection;

impl std::fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedConnection {}

async fn handle(
    shared: Arc<Shared>,
    router: Router,
    body_read_timeout: Duration,
    request: Request<Incoming>,
) -> Result<Response<Body>, DroppedConnection> {
    shared.counters.bump(Counter::Requests);
    let time = now_precise();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let headers = RequestRecord::redact_headers(request.headers());
    let fault = if path.starts_with(ADMIN_PREFIX) {
        None
    } else {
        shared.faults.take(&path)
    };
    if fault.is_some() {
        shared.counters.bump(Counter::FaultsInjected);
    }

    let response = match &fault {
        Some(Fault::Drop) => None,
        Some(Fault::Delay { millis }) => {
            tokio::time::sleep(Duration::from_millis(*millis)).await;
            Some(route(&shared, router, body_read_timeout, request).await)
        }
        Some(Fault::Status {
            status,
            retry_after,
        }) => Some(injected_error(
            &shared.base_url,
            *status,
            retry_after.map(HeaderValue::from),
        )),
        Some(Fault::StatusRetryAfter {
            status,
            retry_after,
        }) => Some(injected_error(
            &shared.base_url,
            *status,
            HeaderValue::from_str(retry_after).ok(),
        )),
        Some(Fault::Body { status, body }) => {
            let status = status
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::OK);
            Some(json_response(status, body.clone()))
        }
        Some(Fault::Truncate) => {
            let mut response = Response::new(Body::new(TruncatedBody {
                head: Some(Bytes::from_static(
                    b"{\"token_type\":\"Bearer\",\"expires_in\":35",
                )),
            }));
            let headers = response.headers_mut();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("content-length", HeaderValue::from_static("4096"));
            Some(response)
        }
        Some(Fault::Garbage) => Some(json_response(
            StatusCode::OK,
            "\u{1}\u{7f}garbage{\"access_tok".to_owned(),
        )),
        Some(Fault::Html { status }) => {
            let status = status.and_then(|code| StatusCode::from_u16(code).ok());
            let mut response = Response::new(Body::from(
                "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\
                 <body><h1>Bad Gateway</h1></body></html>",
            ));
            *response.status_mut() = status.unwrap_or(StatusCode::BAD_GATEWAY);
            response.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            Some(response)
        }
        None => Some(route(&shared, router, body_read_timeout, request).await),
    };

    let audit = response
        .as_ref()
        .and_then(|response| response.extensions().get::<TokenAudit>().cloned())
        .unwrap_or_default();
    if !path.starts_with(ADMIN_PREFIX) {
        shared.log.push(RequestRecord {
            time,
            method,
            path,
            query,
            headers,
            form: audit.form,
            client_auth: audit.client_auth,
            status: response
                .as_ref()
                .map_or(0, |response| response.status().as_u16()),
            error_code: audit.error_code,
            fault: fault.as_ref().map(Fault::label),
        });
    }
    response.ok_or(DroppedConnection)
}

/// Runs the router, which reads the body, within `body_read_timeout`: a client that stalls
/// its body gets HTTP 408 and loses the connection.
async fn route(
    shared: &Shared,
    router: Router,
    body_read_timeout: Duration,
    request: Request<Incoming>,
) -> Response<Body> {
    let routed = tokio::time::timeout(body_read_timeout, router.oneshot(request.map(Body::new)));
    match routed.await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_elapsed) => {
            let mut error = AadError::malformed("The request body was not received in time.");
            error.status = StatusCode::REQUEST_TIMEOUT;
            let body = error.body(&shared.base_url, &crate::directory::new_guid(), now());
            let mut response = json_response(error.status, body.to_string());
            response
                .headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
            response
        }
    }
}

/// The error answer of an injected `status` fault, with a `Retry-After` header when given.
fn injected_error(base_url: &str, status: u16, retry_after: Option<HeaderValue>) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = AadError::injected(status).body(base_url, "fault", now());
    let mut response = json_response(status, body.to_string());
    if let Some(value) = retry_after {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// A body that sends its head and then fails, so the connection ends mid-response.
struct TruncatedBody {
    head: Option<Bytes>,
}

impl http_body::Body for TruncatedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.head.take() {
            Some(head) => Poll::Ready(Some(Ok(Frame::data(head)))),
            None => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "truncated by fault injection",
            )))),
        }
    }
}
