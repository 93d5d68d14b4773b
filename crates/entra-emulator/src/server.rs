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
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::Error;
use crate::aad_error::AadError;
use crate::admin::ADMIN_PREFIX;
use crate::observe::{Counter, Fault, RequestRecord};
use crate::state::{Shared, TokenAudit, now, now_precise};

/// How long a client may take to finish the TLS handshake or send its headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let Ok((tcp, _peer)) = accepted else {
            // Out of file descriptors or a reset before accept: keep serving the others.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shared = shared.clone();
        let mut connection_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                handle(shared.clone(), router.clone(), request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
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
            Some(route(router, request).await)
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
        None => Some(route(router, request).await),
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

async fn route(router: Router, request: Request<Incoming>) -> Response<Body> {
    match router.oneshot(request.map(Body::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
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
