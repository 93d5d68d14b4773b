//! HTTP: one connection pool per set of options, timeouts, and retries with backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng as _;
use zeroize::Zeroizing;

use crate::environment::Environment;
use crate::error::{BuildError, ClientAuthenticationError, FailureKind, is_transient_status};

/// The environment variable naming a PEM file of extra trusted CA certificates.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// The largest response body read; token responses are a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How credentials talk to Entra ID.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpOptions {
    extra_root_certificates: Vec<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            extra_root_certificates: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

impl HttpOptions {
    /// Trusts the CA certificates of a PEM text as well as the system's: for the emulator and
    /// private clouds.
    #[must_use]
    pub fn trust_pem(mut self, pem: impl Into<String>) -> Self {
        self.extra_root_certificates.push(pem.into());
        self
    }

    /// How long establishing a connection may take (10 s by default).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one attempt may take, from sending to the last byte (30 s by default).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// When to try again.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// Retries of failed requests: 408, 429, 5xx and connection failures, with exponential
/// backoff and jitter, honouring `Retry-After`, bounded in count and in total time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    max_retries: u32,
    initial_delay: Duration,
    max_delay: Duration,
    max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// At most this many retries after the first attempt (3 by default).
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The delay before the first retry, doubled for each later one (800 ms by default).
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest delay between attempts, including one asked for by `Retry-After` (60 s).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// No retry starts after this much time since the first attempt (120 s by default).
    #[must_use]
    pub fn max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = elapsed;
        self
    }

    /// The delay before retry number `retry` (0-based), with ±20 % jitter.
    fn backoff(&self, retry: u32) -> Duration {
        let exponential = self.initial_delay.saturating_mul(1u32 << retry.min(16));
        let jitter = rand::rng().random_range(0.8..1.2);
        exponential.mul_f64(jitter).min(self.max_delay)
    }
}

/// A response as far as the token protocol needs it.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

/// A shared client with its options.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Arc<reqwest::Client>,
    options: Arc<HttpOptions>,
}

impl HttpClient {
    /// The client for these options, shared with every credential built with the same ones.
    pub(crate) fn shared(
        options: &HttpOptions,
        environment: &dyn Environment,
    ) -> Result<Self, BuildError> {
        let mut options = options.clone();
        if let Some(path) = environment
            .var(SSL_CERT_FILE)
            .filter(|path| !path.is_empty())
        {
            let pem = std::fs::read_to_string(&path).map_err(|error| {
                BuildError::InvalidCertificateAuthority {
                    origin: format!("{SSL_CERT_FILE}={path}"),
                    reason: error.to_string(),
                }
            })?;
            options.extra_root_certificates.push(pem);
        }
        static POOLS: OnceLock<Mutex<HashMap<HttpOptions, Arc<reqwest::Client>>>> = OnceLock::new();
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let client = match pools.get(&options) {
            Some(client) => client.clone(),
            None => {
                let client = Arc::new(build_client(&options)?);
                pools.insert(options.clone(), client.clone());
                client
            }
        };
        Ok(Self {
            client,
            options: Arc::new(options),
        })
    }

    /// Whether two clients share one connection pool.
    #[cfg(test)]
    pub(crate) fn shares_pool_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.client, &other.client)
    }

    /// Posts a form, retrying transient failures.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        body: &Zeroizing<String>,
        client_request_id: &str,
    ) -> Result<RawResponse, ClientAuthenticationError> {
        self.execute(|client| {
            client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("client-request-id", client_request_id)
                .header("return-client-request-id", "true")
                .header("x-client-sku", "entra-identity-rust")
                .header("x-client-ver", env!("CARGO_PKG_VERSION"))
                .body(body.as_bytes().to_vec())
        })
        .await
    }

    /// Gets a JSON document, retrying transient failures.
    pub(crate) async fn get(&self, url: &str) -> Result<RawResponse, ClientAuthenticationError> {
        self.execute(|client| client.get(url)).await
    }

    async fn execute(
        &self,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<RawResponse, ClientAuthenticationError> {
        let policy = self.options.retry;
        let started = Instant::now();
        let mut retry = 0;
        loop {
            let attempt = request(&self.client)
                .timeout(self.options.request_timeout)
                .header("accept", "application/json")
                .send()
                .await;
            let may_retry = |delay: Duration| {
                retry < policy.max_retries && started.elapsed() + delay <= policy.max_elapsed
            };
            let failure = match attempt {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if is_transient_status(status) {
                        let delay = retry_after(&response)
                            .map(|delay| delay.min(policy.max_delay))
                            .unwrap_or_else(|| policy.backoff(retry));
                        if may_retry(delay) {
                            tracing::debug!(status, retry, ?delay, "request will be retried");
                            drop(response);
                            tokio::time::sleep(delay).await;
                            retry += 1;
                            continue;
                        }
                    }
                    match read_response(response).await {
                        Ok(response) => return Ok(response),
                        // A body cut short is a connection failure like any other.
                        Err(failure) => failure,
                    }
                }
                Err(error) => transport_failure(&error),
            };
            let delay = policy.backoff(retry);
            if failure.is_transient() && may_retry(delay) {
                tracing::debug!(retry, ?delay, "request failed, will retry: {failure}");
                tokio::time::sleep(delay).await;
                retry += 1;
                continue;
            }
            return Err(failure);
        }
    }
}

fn build_client(options: &HttpOptions) -> Result<reqwest::Client, BuildError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(options.connect_timeout)
        .user_agent(concat!(
            "entra-identity/",
            env!("CARGO_PKG_VERSION"),
            " (rust)"
        ))
        .pool_idle_timeout(Duration::from_secs(90));
    for pem in &options.extra_root_certificates {
        let certificates =
            reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|error| {
                BuildError::InvalidCertificateAuthority {
                    origin: "extra trusted CA".to_owned(),
                    reason: error.to_string(),
                }
            })?;
        if certificates.is_empty() {
            return Err(BuildError::InvalidCertificateAuthority {
                origin: "extra trusted CA".to_owned(),
                reason: "the PEM text holds no certificate".to_owned(),
            });
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|error| BuildError::HttpClient(error.to_string()))
}

/// `Retry-After` in seconds (the form Entra ID uses).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

async fn read_response(
    mut response: reqwest::Response,
) -> Result<RawResponse, ClientAuthenticationError> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut body = Zeroizing::new(Vec::new());
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(ClientAuthenticationError::new(
                        FailureKind::InvalidResponse,
                        format!("The response from Microsoft Entra ID is larger than {MAX_RESPONSE_BYTES} bytes"),
                    )
                    .with_status(status));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => {
                return Err(transport_failure(&error)
                    .with_status(status)
                    .transient(true));
            }
        }
    }
    Ok(RawResponse {
        status,
        content_type,
        body,
    })
}

fn transport_failure(error: &reqwest::Error) -> ClientAuthenticationError {
    let (kind, message) = if error.is_timeout() {
        (
            FailureKind::Timeout,
            "The request to Microsoft Entra ID timed out",
        )
    } else if error.is_body() || error.is_decode() {
        (
            FailureKind::Transport,
            "The response from Microsoft Entra ID was cut short",
        )
    } else {
        (
            FailureKind::Transport,
            "The request to Microsoft Entra ID failed",
        )
    };
    // reqwest errors name the URL, which holds no secret; keep the chain for diagnosis.
    ClientAuthenticationError::new(kind, format!("{message}: {}", error_chain(error)))
        .transient(true)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::MapEnvironment;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(500));
        let first = policy.backoff(0);
        assert!(
            first >= Duration::from_millis(80) && first <= Duration::from_millis(120),
            "{first:?}"
        );
        let third = policy.backoff(2);
        assert!(
            third >= Duration::from_millis(320) && third <= Duration::from_millis(480),
            "{third:?}"
        );
        assert_eq!(policy.backoff(10), Duration::from_millis(500));
    }

    #[test]
    fn same_options_share_a_pool_and_bad_pem_is_refused() {
        let env = MapEnvironment::new();
        let a = HttpClient::shared(&HttpOptions::default(), &env).expect("client");
        let b = HttpClient::shared(&HttpOptions::default(), &env).expect("client");
        assert!(a.shares_pool_with(&b));
        let other = HttpOptions::default().request_timeout(Duration::from_secs(3));
        let c = HttpClient::shared(&other, &env).expect("client");
        assert!(!a.shares_pool_with(&c));
        let bad = HttpOptions::default().trust_pem("not a certificate");
        assert!(matches!(
            HttpClient::shared(&bad, &env),
            Err(BuildError::InvalidCertificateAuthority { .. })
        ));
        let missing = MapEnvironment::new().with(SSL_CERT_FILE, "/nonexistent/ca.pem");
        assert!(HttpClient::shared(&HttpOptions::default(), &missing).is_err());
    }
}
