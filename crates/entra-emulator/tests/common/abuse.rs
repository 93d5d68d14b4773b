//! An abusive client: connections that stall their request body, and maximum-size forms of
//! thousands of distinct fields. Shared by the hardening test and the `abuse` bench.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The emulator's default cap on request bodies.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A TLS client that trusts the emulator's CA.
pub fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = pem::parse(ca_pem).expect("ca pem");
    roots
        .add(CertificateDer::from(ca.into_contents()))
        .expect("ca");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// `127.0.0.1:port` of a base URL such as `https://127.0.0.1:49152`.
pub fn address(base_url: &str) -> String {
    base_url.trim_start_matches("https://").to_owned()
}

/// Opens a TLS connection and sends a token request's headers and the start of a large body,
/// then stops sending.
pub async fn stall_body(
    connector: &TlsConnector,
    base_url: &str,
    path: &str,
) -> TlsStream<TcpStream> {
    let address = address(base_url);
    let tcp = TcpStream::connect(&address).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {MAX_BODY_BYTES}\r\n\r\ngrant_type=client_credentials&"
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.flush().await.expect("flush");
    tls
}

/// Reads what the server sends until it closes the connection.
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return received,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

/// A form of the largest accepted size made of distinct field names (`f0=&f1=&...`): what
/// made form parsing quadratic.
pub fn max_size_form() -> String {
    let mut form = String::with_capacity(MAX_BODY_BYTES);
    for index in 0.. {
        let field = format!("f{index}=&");
        if form.len() + field.len() > MAX_BODY_BYTES {
            break;
        }
        form.push_str(&field);
    }
    form
}

/// Posts maximum-size forms to `token_url` from `senders` tasks until `stop` turns true.
pub fn flood_forms(
    client: &reqwest::Client,
    token_url: &str,
    senders: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let form = max_size_form();
    (0..senders)
        .map(|_| {
            let (client, url, form, stop) = (
                client.clone(),
                token_url.to_owned(),
                form.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut sent = 0;
                while !*stop.borrow() {
                    let _ = client
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form.clone())
                        .send()
                        .await;
                    sent += 1;
                }
                sent
            })
        })
        .collect()
}
