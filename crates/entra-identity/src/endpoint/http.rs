//! HTTP: connection pools per tokio runtime, trust roots, timeouts, and retries with backoff.
//!
//! # Pools and runtimes
//!
//! A `reqwest::Client` keeps its connections in a pool, and a background task on the tokio
//! runtime that opened a connection drives it. A request from another runtime that picks that
//! connection waits for the first runtime to run the task: if that runtime is idle (a
//! `current_thread` runtime whose `block_on` has returned, kept in a variable), it waits for
//! the whole request timeout and fails. So one `reqwest::Client` for every runtime will not
//! do, and neither will a process-wide client per set of options. An [`HttpClient`] keeps one
//! `reqwest::Client` per runtime it is used on instead, keyed by
//! [`tokio::runtime::Handle::id`] (stable since tokio 1.49) and built on first use there from
//! configuration prepared once: timeouts, the parsed extra trust roots and (see [`tls`]) the
//! TLS configuration. A runtime's ID is unique among the running runtimes. Should tokio hand a
//! finished runtime's ID to a new runtime, the new one gets the old one's client, which does no
//! harm: the runtime's shutdown dropped the tasks driving its connections, so the pool sees
//! them closed and opens new ones on the runtime asking. At most [`MAX_RUNTIME_CLIENTS`]
//! clients are kept, and the least recently used goes first, so a credential used from many
//! short-lived runtimes (a test suite, `block_on` per call) keeps a handful of pools, not one
//! per runtime it ever saw.
//!
//! Other designs were rejected. A client per request pays a TLS handshake per token request.
//! Keying by thread would give every worker of a multi-thread runtime a pool of its own.
//! Holding a `Handle` to notice a runtime's end would keep the finished runtime's driver
//! alive.
//!
//! # Sharing
//!
//! Credentials built with one [`TokenCache`](crate::TokenCache) and equal [`HttpOptions`]
//! (and the same `SSL_CERT_FILE`) share an [`HttpClient`] through the cache's
//! [`PoolRegistry`], which keeps at most [`MAX_SHARED_POOLS`], dropping the least recently
//! used. The credentials of one `OnBehalfOfApplication` share the application's. A credential
//! with a cache of its own, with [`HttpOptions::dedicated_pool`], or with a `reqwest::Client`
//! handed in by the user has its own. Nothing is process-wide.
//!
//! # Time budget and final errors
//!
//! Every request (a token request with its retries, or an instance discovery) has one
//! deadline, [`HttpOptions::total_timeout`], that covers every attempt, every backoff and every
//! `Retry-After` wait; each attempt is cut at the deadline. A `Retry-After` (seconds or an
//! HTTP date) that would end past the deadline, or past [`RetryPolicy::max_delay`], is not
//! waited for: the request fails at once with [`FailureKind::Throttled`], which carries the
//! server's wish. Failures that trying again cannot mend are not retried: a server
//! certificate that does not verify, a host name that does not resolve (a temporary resolver
//! failure is retried), and any 4xx but 408 and 429.

use std::io::Read as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use zeroize::Zeroizing;

use crate::environment::Environment;
use crate::error::{
    BoxError, BuildError, Chain, ClientAuthenticationError, ErrorSource, FailureKind,
    is_transient_status,
};

/// The environment variable naming a PEM file of extra trusted CA certificates, read (4 MiB
/// at most) and parsed when a credential's connection pool is made.
///
/// On Linux and the BSDs, as for OpenSSL, this variable and `SSL_CERT_DIR` set in the process
/// environment also take the place of the system's CA bundle: the CAs they name, with those of
/// [`HttpOptions::trust_pem`], are then all the credential trusts.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// The largest response body read; token responses are a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The largest CA certificate file read, such as `SSL_CERT_FILE`; a system's whole bundle is a
/// few hundred kilobytes.
pub(crate) const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The `x-ms-lib-capability` header MSAL sends on token requests: the client honours 429 and
/// `Retry-After`.
const LIB_CAPABILITY: &str = "retry-after, h429";

/// How many `reqwest::Client`s, one per runtime, an [`HttpClient`] keeps.
const MAX_RUNTIME_CLIENTS: usize = 4;

/// How many pools, one per set of options, a [`PoolRegistry`] keeps.
const MAX_SHARED_POOLS: usize = 8;

/// How credentials talk to Entra ID: extra trusted CAs, timeouts, retries, and whether the
/// connection pool is shared.
///
/// Credentials built with one [`TokenCache`](crate::TokenCache) and equal options share a
/// connection pool, and the credentials of one
/// [`OnBehalfOfApplication`](crate::OnBehalfOfApplication) share the application's. A
/// credential with a cache of its own (the default) has a pool of its own, as does one built
/// with [`HttpOptions::dedicated_pool`]. A pool holds a connection pool per tokio runtime it
/// is used on, so a credential works on any runtime, whichever used it first.
///
/// To send the requests through a `reqwest::Client` of your own, give it to the credential
/// builder's `http_client`.
///
/// # Time
///
/// By default a token request, with all its retries and waits, takes at most 30 s
/// ([`HttpOptions::total_timeout`]); each attempt at most 10 s
/// ([`HttpOptions::request_timeout`]), of which connecting at most 10 s; up to 3 retries
/// with backoff from 800 ms ([`RetryPolicy`]). A hung endpoint thus costs a caller 30 s,
/// not more, and a web API whose own requests are bounded at a minute or so can wait for a
/// token. For comparison: azure-identity for Python retries through azure-core's policy
/// (10 retries in all, 3 each for status, connect and read errors, backoff 0.8 s up to
/// 120 s) with azure-core's transport timeouts of 300 s to connect and 300 s per read, and
/// no overall budget to speak of; MSAL Python has no timeout unless the application sets one
/// (`timeout=None` waits indefinitely) and retries connection failures once; MSAL.NET
/// retries a 5xx or a timeout once, not when the server sent `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpOptions {
    extra_root_certificates: Vec<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    total_timeout: Duration,
    retry: RetryPolicy,
    dedicated_pool: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            extra_root_certificates: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            dedicated_pool: false,
        }
    }
}

impl HttpOptions {
    /// Trusts the CA certificates of a PEM text as well as the system's: for the emulator and
    /// private clouds. The text is parsed when the credential is built.
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

    /// How long one attempt may take, from sending to the last byte (10 s by default); an
    /// attempt is also cut at the end of the [`HttpOptions::total_timeout`].
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The time budget of one request to Entra ID, covering every attempt, every backoff
    /// and every `Retry-After` wait (30 s by default; see [the type's docs](Self) for how
    /// that compares). A server asking to be retried after the budget ends is not waited
    /// for: the request fails at once with
    /// [`FailureKind::Throttled`](crate::FailureKind::Throttled).
    #[must_use]
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = timeout;
        self
    }

    /// When to try again.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A connection pool of the credential's own, shared with no other credential built with
    /// the same [`TokenCache`](crate::TokenCache). The credentials of one
    /// [`OnBehalfOfApplication`](crate::OnBehalfOfApplication) still share the application's.
    #[must_use]
    pub fn dedicated_pool(mut self) -> Self {
        self.dedicated_pool = true;
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

    /// The longest delay between attempts (60 s by default). A `Retry-After` asking for more
    /// is not waited for: the request fails at once with
    /// [`FailureKind::Throttled`](crate::FailureKind::Throttled).
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

/// Where a credential's requests go, with its timeout and retry policy. Clones share
/// everything.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    inner: Arc<HttpInner>,
}

#[derive(Debug)]
struct HttpInner {
    request_timeout: Duration,
    total_timeout: Duration,
    retry: RetryPolicy,
    transport: Transport,
}

#[derive(Debug)]
enum Transport {
    /// A client the user handed in, used as it is on every runtime.
    User(reqwest::Client),
    /// Clients of our own, one per runtime (shared with the blocking task that builds one).
    PerRuntime(Arc<RuntimeClients>),
}

impl HttpClient {
    /// The client a credential uses: the user's `user_client`, else a pool of its own if the
    /// options ask for one, else the pool shared through `registry` by the credentials of one
    /// token cache.
    pub(crate) fn for_credential(
        options: &HttpOptions,
        user_client: Option<reqwest::Client>,
        registry: &PoolRegistry,
        environment: &dyn Environment,
    ) -> Result<Self, BuildError> {
        if let Some(client) = user_client {
            return Ok(Self::with_client(client, options));
        }
        let ssl_cert_file = environment
            .var(SSL_CERT_FILE)
            .filter(|path| !path.is_empty());
        if options.dedicated_pool {
            return Self::new(options, ssl_cert_file.as_deref());
        }
        registry.pool(options, ssl_cert_file)
    }

    /// A new pool: reads `ssl_cert_file` and parses it and the options' PEM texts, once.
    fn new(options: &HttpOptions, ssl_cert_file: Option<&str>) -> Result<Self, BuildError> {
        let mut tls = tls::Tls::new(ssl_cert_file.map(Path::new));
        for pem in &options.extra_root_certificates {
            add_pem(&mut tls, pem.as_bytes(), "extra trusted CA")?;
        }
        if let Some(path) = ssl_cert_file {
            let origin = format!("{SSL_CERT_FILE}={path}");
            let pem = read_ca_file(Path::new(path), &origin)?;
            add_pem(&mut tls, &pem, &origin)?;
        }
        Ok(Self {
            inner: Arc::new(HttpInner {
                request_timeout: options.request_timeout,
                total_timeout: options.total_timeout,
                retry: options.retry,
                transport: Transport::PerRuntime(Arc::new(RuntimeClients {
                    connect_timeout: options.connect_timeout,
                    tls,
                    clients: Mutex::new(Vec::new()),
                    #[cfg(test)]
                    built_on: Mutex::new(Vec::new()),
                })),
            }),
        })
    }

    /// The user's client, with the options' request timeout and retry policy.
    fn with_client(client: reqwest::Client, options: &HttpOptions) -> Self {
        Self {
            inner: Arc::new(HttpInner {
                request_timeout: options.request_timeout,
                total_timeout: options.total_timeout,
                retry: options.retry,
                transport: Transport::User(client),
            }),
        }
    }

    /// Whether two clients share their connection pools.
    #[cfg(test)]
    pub(crate) fn shares_pool_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Posts a form, retrying transient failures.
    ///
    /// Each attempt sends a copy of the body that is wiped when the HTTP stack lets go of
    /// it; what hyper and rustls copy into their own buffers on the way out is not wiped.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        body: &Zeroizing<String>,
        client_request_id: &str,
    ) -> Result<RawResponse, ClientAuthenticationError> {
        self.execute(|client| {
            let copy = Zeroizing::new(body.as_bytes().to_vec());
            client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("client-request-id", client_request_id)
                .header("return-client-request-id", "true")
                .header("x-client-sku", "entra-identity-rust")
                .header("x-client-ver", env!("CARGO_PKG_VERSION"))
                .header("x-ms-lib-capability", LIB_CAPABILITY)
                .body(bytes::Bytes::from_owner(WipedBytes(copy)))
        })
        .await
    }

    /// Gets a JSON document, retrying transient failures.
    pub(crate) async fn get(&self, url: &str) -> Result<RawResponse, ClientAuthenticationError> {
        self.execute(|client| client.get(url)).await
    }

    /// The `reqwest::Client` for the runtime this runs on.
    async fn client(&self) -> Result<reqwest::Client, ClientAuthenticationError> {
        match &self.inner.transport {
            Transport::User(client) => Ok(client.clone()),
            Transport::PerRuntime(clients) => clients.for_current_runtime().await,
        }
    }

    async fn execute(
        &self,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<RawResponse, ClientAuthenticationError> {
        let client = self.client().await?;
        let policy = self.inner.retry;
        let budget = self.inner.total_timeout;
        let started = Instant::now();
        let deadline = started + budget;
        let mut retry = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(out_of_time(budget));
            }
            let attempt = request(&client)
                .timeout(self.inner.request_timeout.min(remaining))
                .header("accept", "application/json")
                .send()
                .await;
            // Whether a retry after `delay` starts within the policy and the budget.
            let may_retry = |delay: Duration| {
                retry < policy.max_retries
                    && started.elapsed() + delay <= policy.max_elapsed
                    && Instant::now() + delay < deadline
            };
            let failure = match attempt {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if is_transient_status(status) {
                        let asked = retry_after(&response, SystemTime::now());
                        if let Some(asked) = asked {
                            let ends_too_late = Instant::now()
                                .checked_add(asked)
                                .is_none_or(|end| end >= deadline);
                            if asked > policy.max_delay || ends_too_late {
                                return Err(throttled(status, asked, budget));
                            }
                        }
                        let delay = asked.unwrap_or_else(|| policy.backoff(retry));
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
                Err(error) => transport_failure(error),
            };
            let delay = policy.backoff(retry);
            if failure.is_transient() && may_retry(delay) {
                tracing::debug!(
                    retry,
                    ?delay,
                    "request failed, will retry: {}",
                    Chain(&failure)
                );
                tokio::time::sleep(delay).await;
                retry += 1;
                continue;
            }
            if failure.kind() == FailureKind::Timeout && Instant::now() >= deadline {
                return Err(out_of_time(budget).with_source(failure));
            }
            return Err(failure);
        }
    }
}

/// The request's time budget ran out.
fn out_of_time(budget: Duration) -> ClientAuthenticationError {
    ClientAuthenticationError::new(
        FailureKind::Timeout,
        format!(
            "The request to Microsoft Entra ID did not succeed within its time budget of {} s \
             (HttpOptions::total_timeout)",
            budget.as_secs_f64()
        ),
    )
    .transient(true)
}

/// Entra ID asked for a wait the budget or the policy does not allow.
fn throttled(status: u16, retry_after: Duration, budget: Duration) -> ClientAuthenticationError {
    ClientAuthenticationError::new(
        FailureKind::Throttled,
        format!(
            "Microsoft Entra ID is throttling requests (HTTP {status}) and asks to retry after \
             {} s, beyond the request's time budget of {} s",
            retry_after.as_secs(),
            budget.as_secs_f64()
        ),
    )
    .with_status(status)
    .transient(true)
    .with_retry_after(retry_after)
}

/// Bytes that are wiped when the last `Bytes` pointing at them is dropped.
struct WipedBytes(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for WipedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Our `reqwest::Client`s, one per tokio runtime (see the module docs), built from one
/// configuration.
#[derive(Debug)]
struct RuntimeClients {
    connect_timeout: Duration,
    tls: tls::Tls,
    /// The least recently used first; at most [`MAX_RUNTIME_CLIENTS`].
    clients: Mutex<Vec<(tokio::runtime::Id, reqwest::Client)>>,
    /// The threads clients were built on (for the test that no runtime worker builds one).
    #[cfg(test)]
    built_on: Mutex<Vec<std::thread::ThreadId>>,
}

impl RuntimeClients {
    /// The client for the current runtime, built if this runtime has none yet.
    async fn for_current_runtime(
        self: &Arc<Self>,
    ) -> Result<reqwest::Client, ClientAuthenticationError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ClientAuthenticationError::new(
                FailureKind::Transport,
                "Requests to Microsoft Entra ID need a tokio runtime",
            )
        })?;
        if let Some(client) = self.known(runtime.id()) {
            return Ok(client);
        }
        // Built on the runtime's blocking pool, not on a worker: the first client of a pool
        // reads the system's CA certificates from disk (milliseconds, more on a slow disk).
        // Two first requests racing here both build; the first stored is kept, and the TLS
        // configuration, the costly part, is made once (see `tls::Tls`).
        let clients = Arc::clone(self);
        let built = runtime
            .spawn_blocking(move || clients.build())
            .await
            .map_err(BoxError::from)
            .and_then(|built| built)
            .map_err(|source| {
                ClientAuthenticationError::new(
                    FailureKind::Transport,
                    "Cannot create the HTTP client",
                )
                .with_source(source)
            })?;
        let mut clients = lock(&self.clients);
        if let Some(index) = clients.iter().position(|(id, _)| *id == runtime.id()) {
            return Ok(clients[index].1.clone());
        }
        if clients.len() >= MAX_RUNTIME_CLIENTS {
            // Requests in flight on it keep their clone.
            clients.remove(0);
        }
        clients.push((runtime.id(), built.clone()));
        Ok(built)
    }

    /// The client of `runtime`, if it has one, marked as the most recently used.
    fn known(&self, runtime: tokio::runtime::Id) -> Option<reqwest::Client> {
        let mut clients = lock(&self.clients);
        let index = clients.iter().position(|(id, _)| *id == runtime)?;
        clients[index..].rotate_left(1);
        clients.last().map(|(_, client)| client.clone())
    }

    fn build(&self) -> Result<reqwest::Client, BoxError> {
        #[cfg(test)]
        lock(&self.built_on).push(std::thread::current().id());
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!(
                "entra-identity/",
                env!("CARGO_PKG_VERSION"),
                " (rust)"
            ))
            .pool_idle_timeout(Duration::from_secs(90));
        Ok(self.tls.configure(builder)?.build()?)
    }

    /// The runtimes that have a client, the least recently used first.
    #[cfg(test)]
    fn runtimes(&self) -> Vec<tokio::runtime::Id> {
        lock(&self.clients).iter().map(|(id, _)| *id).collect()
    }
}

/// The pools the credentials built with one [`TokenCache`](crate::TokenCache) share: one per
/// set of options and `SSL_CERT_FILE`, at most [`MAX_SHARED_POOLS`], the least recently used
/// dropped first (credentials using a dropped pool keep it; new ones get a new pool).
#[derive(Debug, Default)]
pub(crate) struct PoolRegistry {
    /// The least recently used first.
    pools: Mutex<Vec<(PoolKey, HttpClient)>>,
}

#[derive(Debug, PartialEq, Eq)]
struct PoolKey {
    options: HttpOptions,
    ssl_cert_file: Option<String>,
}

impl PoolRegistry {
    /// The pool for these options, made (reading `ssl_cert_file`) if there is none.
    fn pool(
        &self,
        options: &HttpOptions,
        ssl_cert_file: Option<String>,
    ) -> Result<HttpClient, BuildError> {
        let key = PoolKey {
            options: options.clone(),
            ssl_cert_file,
        };
        let mut pools = lock(&self.pools);
        if let Some(index) = pools.iter().position(|(known, _)| *known == key) {
            pools[index..].rotate_left(1);
            let (_, client) = &pools[pools.len() - 1];
            return Ok(client.clone());
        }
        // Made under the lock, so credentials built at once with equal options share it.
        let client = HttpClient::new(options, key.ssl_cert_file.as_deref())?;
        if pools.len() >= MAX_SHARED_POOLS {
            pools.remove(0);
        }
        pools.push((key, client.clone()));
        Ok(client)
    }

    /// How many pools the registry keeps.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.pools).len()
    }
}

/// Adds the certificates of a PEM text to the extra trusted roots, refusing a text that holds
/// none or a bad one.
fn add_pem(tls: &mut tls::Tls, pem: &[u8], origin: &str) -> Result<(), BuildError> {
    let invalid =
        |reason: &str, source: Option<ErrorSource>| BuildError::InvalidCertificateAuthority {
            origin: origin.to_owned(),
            reason: reason.to_owned(),
            source,
        };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid("the PEM text cannot be read", Some(ErrorSource::new(error))))?;
    if certificates.is_empty() {
        return Err(invalid("the PEM text holds no certificate", None));
    }
    for certificate in certificates {
        tls.add_root(certificate).map_err(|error| {
            invalid(
                "a certificate is not a valid trust anchor",
                Some(ErrorSource::new(error)),
            )
        })?;
    }
    Ok(())
}

/// Reads a CA certificate file of at most [`MAX_CA_FILE_BYTES`].
fn read_ca_file(path: &Path, origin: &str) -> Result<Vec<u8>, BuildError> {
    let invalid =
        |reason: String, source: Option<ErrorSource>| BuildError::InvalidCertificateAuthority {
            origin: origin.to_owned(),
            reason,
            source,
        };
    let unreadable = |error: std::io::Error| {
        invalid(
            "the file cannot be read".to_owned(),
            Some(ErrorSource::new(error)),
        )
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    match read_at_most(file, MAX_CA_FILE_BYTES).map_err(unreadable)? {
        Some(bytes) => Ok(bytes),
        None => Err(invalid(
            format!("the file is larger than {MAX_CA_FILE_BYTES} bytes"),
            None,
        )),
    }
}

/// Reads to the end, but no more than `limit` bytes (and one more, to tell that there is
/// more): `None` if there is more.
fn read_at_most(reader: impl std::io::Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(u64::try_from(bytes.len())
        .is_ok_and(|length| length <= limit)
        .then_some(bytes))
}

/// Locks a mutex, carrying on if a panicking thread poisoned it: the lists guarded here stay
/// consistent between statements.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The TLS setup where rustls-platform-verifier trusts root certificates read from files
/// (Linux and the BSDs).
///
/// There, reqwest's platform verifier would load the system's roots through
/// rustls-native-certs whenever a `reqwest::Client` is built, and that reads `SSL_CERT_FILE`
/// and `SSL_CERT_DIR` from the process environment: like OpenSSL, when either is set it
/// trusts what they name *instead of* the system's bundle. We read `SSL_CERT_FILE` ourselves
/// already, so the verifier would read the same file a second time. Instead, one rustls
/// configuration is made when a pool builds its first client: the same trust (our extra roots,
/// then the system's as rustls-native-certs finds them, except that the file we read is not
/// read again, even as an entry of `SSL_CERT_DIR`), checked by the same WebPKI verifier the
/// platform verifier uses on these systems. Every runtime's client shares it, so the system
/// roots are loaded once per pool rather than once per client.
#[cfg(all(unix, not(target_os = "android"), not(target_vendor = "apple")))]
mod tls {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt as _;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    use super::{SSL_CERT_FILE, lock, read_ca_file};
    use crate::error::BoxError;

    /// rustls-native-certs' name for the directories of CA certificates.
    const SSL_CERT_DIR: &str = "SSL_CERT_DIR";

    #[derive(Debug)]
    pub(super) struct Tls {
        extra: rustls::RootCertStore,
        /// The `SSL_CERT_FILE` read for the extra roots.
        already_read: Option<PathBuf>,
        /// Made with the pool's first client, for every client.
        config: Mutex<Option<rustls::ClientConfig>>,
    }

    impl Tls {
        /// No extra roots yet; `already_read` is the `SSL_CERT_FILE` the caller reads.
        pub(super) fn new(already_read: Option<&Path>) -> Self {
            Self {
                extra: rustls::RootCertStore::empty(),
                already_read: already_read.map(Path::to_owned),
                config: Mutex::new(None),
            }
        }

        /// Trusts an extra root certificate, checked as a trust anchor now.
        pub(super) fn add_root(
            &mut self,
            certificate: CertificateDer<'static>,
        ) -> Result<(), rustls::Error> {
            self.extra.add(certificate)
        }

        /// Gives the builder the shared TLS configuration, made on first use.
        pub(super) fn configure(
            &self,
            builder: reqwest::ClientBuilder,
        ) -> Result<reqwest::ClientBuilder, BoxError> {
            let mut config = lock(&self.config);
            let config = match &*config {
                Some(config) => config.clone(),
                None => config.insert(self.make()?).clone(),
            };
            Ok(builder.tls_backend_preconfigured(config))
        }

        /// What reqwest makes with the platform verifier, loading the system's roots once.
        fn make(&self) -> Result<rustls::ClientConfig, BoxError> {
            let mut roots = self.extra.clone();
            let (added, ignored) =
                roots.add_parsable_certificates(system_roots(self.already_read.as_deref()));
            if ignored > 0 {
                tracing::warn!("{ignored} system CA certificates were ignored as invalid");
            }
            tracing::debug!(added, "loaded the system's CA certificates");
            if roots.is_empty() {
                return Err("no CA certificates were loaded from the system".into());
            }
            // As reqwest: a provider the application installed, else aws-lc-rs.
            let provider = rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            // Token requests are rare and small: HTTP/1.1, as reqwest offers without `http2`.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(config)
        }
    }

    /// The system's roots as rustls-native-certs finds them, without `already_read`.
    fn system_roots(already_read: Option<&Path>) -> Vec<CertificateDer<'static>> {
        let file = std::env::var_os(SSL_CERT_FILE)
            .filter(|file| !file.is_empty())
            .map(PathBuf::from);
        let dirs: Vec<PathBuf> = std::env::var_os(SSL_CERT_DIR)
            .map(|dirs| {
                std::env::split_paths(&dirs)
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if file.is_none() && dirs.is_empty() {
            // The platform's bundle and directories, which we never read ourselves.
            let loaded = rustls_native_certs::load_native_certs();
            for error in &loaded.errors {
                tracing::warn!("cannot load a system CA certificate: {error}");
            }
            return loaded.certs;
        }
        certificates_from_paths(file.as_deref(), &dirs, already_read)
    }

    /// The certificates of a file and of the files in directories (OpenSSL's CAfile and
    /// CApath), reading each file once however many names it has, and `already_read` never.
    pub(super) fn certificates_from_paths(
        file: Option<&Path>,
        dirs: &[PathBuf],
        already_read: Option<&Path>,
    ) -> Vec<CertificateDer<'static>> {
        let mut seen = HashSet::new();
        let mut first_visit = |path: &Path| match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_file() => seen.insert((metadata.dev(), metadata.ino())),
            Ok(_) => false,
            Err(error) => {
                tracing::warn!(path = %path.display(), "cannot read CA certificates: {error}");
                false
            }
        };
        if let Some(path) = already_read {
            first_visit(path);
        }
        let mut certificates = Vec::new();
        let mut load = |path: &Path| match read_ca_file(path, "a system CA file") {
            Ok(pem) => {
                for certificate in CertificateDer::pem_slice_iter(&pem) {
                    match certificate {
                        Ok(certificate) => certificates.push(certificate),
                        Err(error) => tracing::warn!(
                            path = %path.display(),
                            "cannot read a CA certificate: {error}"
                        ),
                    }
                }
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), "cannot read CA certificates: {}", crate::error::Chain(&error));
            }
        };
        if let Some(file) = file.filter(|file| first_visit(file)) {
            load(file);
        }
        for dir in dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), "cannot list CA certificates: {error}");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if first_visit(&path) {
                    load(&path);
                }
            }
        }
        certificates
    }
}

/// The TLS setup elsewhere: reqwest's platform verifier asks the operating system, and reads
/// no file, so reqwest builds it for every client with our extra roots merged in.
#[cfg(not(all(unix, not(target_os = "android"), not(target_vendor = "apple"))))]
mod tls {
    use std::path::Path;

    use rustls::pki_types::CertificateDer;

    #[derive(Debug)]
    pub(super) struct Tls {
        extra: Vec<reqwest::Certificate>,
    }

    impl Tls {
        /// No extra roots yet.
        pub(super) fn new(_already_read: Option<&Path>) -> Self {
            Self { extra: Vec::new() }
        }

        /// Trusts an extra root certificate, checked as a trust anchor now (reqwest checks it
        /// again for every client it builds).
        pub(super) fn add_root(
            &mut self,
            certificate: CertificateDer<'static>,
        ) -> Result<(), BoxError> {
            rustls::RootCertStore::empty().add(certificate.clone())?;
            let certificate = reqwest::Certificate::from_der(&certificate)?;
            self.extra.push(certificate);
            Ok(())
        }

        /// Gives the builder our extra roots, merged with the system's.
        pub(super) fn configure(
            &self,
            builder: reqwest::ClientBuilder,
        ) -> Result<reqwest::ClientBuilder, crate::error::BoxError> {
            Ok(builder.tls_certs_merge(self.extra.iter().cloned()))
        }
    }
}

/// The response's `Retry-After`, as a wait from `now`.
fn retry_after(response: &reqwest::Response, now: SystemTime) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// `Retry-After` in either form of RFC 9110: delta-seconds (what Entra ID sends; a number
/// too large for a `u64` is a very long wait) or an HTTP date (a date already past is no
/// wait). Anything else is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
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
    // Sized from Content-Length, and grown by hand, so no copy is left unwiped.
    let expected = response
        .content_length()
        .map_or(0, |length| usize::try_from(length).unwrap_or(usize::MAX))
        .min(MAX_RESPONSE_BYTES);
    let mut body = Zeroizing::new(Vec::with_capacity(expected));
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
                append_wiping(&mut body, &chunk);
            }
            Ok(None) => break,
            Err(error) => {
                return Err(transport_failure(error).with_status(status).transient(true));
            }
        }
    }
    Ok(RawResponse {
        status,
        content_type,
        body,
    })
}

/// Appends to a buffer that holds secrets: when it must grow, the bytes move to a new buffer
/// and the old one is wiped (`Vec`'s own growth would leave the old copy in freed memory).
fn append_wiping(buffer: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    let needed = buffer.len() + bytes.len();
    if needed > buffer.capacity() {
        let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(buffer.capacity() * 2)));
        grown.extend_from_slice(buffer);
        *buffer = grown;
    }
    buffer.extend_from_slice(bytes);
}

/// A request that failed on the way: reqwest's error, which names the URL (no secret) and
/// holds the I/O, TLS or timeout error behind it, is the source.
fn transport_failure(error: reqwest::Error) -> ClientAuthenticationError {
    if let Some(tls) = find_cause::<rustls::Error>(&error)
        && matches!(tls, rustls::Error::InvalidCertificate(_))
    {
        return ClientAuthenticationError::new(
            FailureKind::Transport,
            "The server's TLS certificate was not accepted. To trust a private CA (the \
             emulator's, a proxy's), give its certificate to HttpOptions::trust_pem or name a \
             PEM file of CA certificates in the SSL_CERT_FILE environment variable",
        )
        .with_source(error);
    }
    if let Some(temporary) = dns_failure(&error) {
        let message = if temporary {
            "The host name of Microsoft Entra ID could not be resolved for now"
        } else {
            "The host name of Microsoft Entra ID does not resolve: check the authority"
        };
        return ClientAuthenticationError::new(FailureKind::Transport, message)
            .transient(temporary)
            .with_source(error);
    }
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
    ClientAuthenticationError::new(kind, message)
        .transient(true)
        .with_source(error)
}

/// The first cause of type `T` in the chain, looking inside the `std::io::Error`s that wrap
/// others (their `source` skips the error they wrap).
fn find_cause<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            return find_cause(inner);
        }
        cause = error.source();
    }
    None
}

/// Whether the connection failed on resolving the host name, and if so whether the
/// resolver's failure was temporary (`EAI_AGAIN`: worth retrying) rather than an answer
/// that the name does not exist. hyper's connector says `dns error`, with the resolver's
/// error behind it.
fn dns_failure(error: &(dyn std::error::Error + 'static)) -> Option<bool> {
    let mut cause = Some(error);
    let mut in_dns = false;
    let mut temporary = false;
    while let Some(error) = cause {
        let text = error.to_string();
        in_dns |= text.starts_with("dns error");
        let text = text.to_ascii_lowercase();
        temporary |= text.contains("temporary failure") || text.contains("try again");
        cause = error.source();
    }
    in_dns.then_some(temporary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::MapEnvironment;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        // 2015-10-21T07:28:00Z is `now`: 120 s later, in the three forms RFC 9110 accepts.
        for date in [
            "Wed, 21 Oct 2015 07:30:00 GMT",
            "Wednesday, 21-Oct-15 07:30:00 GMT",
            "Wed Oct 21 07:30:00 2015",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(120)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date past is no wait"
        );
        for junk in ["", "-1", "1.5", "soon", "Wed, 32 Oct 2015 07:30:00 GMT"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk}");
        }
    }

    #[test]
    fn the_default_budget_is_documented() {
        let options = HttpOptions::default();
        assert_eq!(options.total_timeout, Duration::from_secs(30));
        assert_eq!(options.request_timeout, Duration::from_secs(10));
        assert_eq!(options.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn growing_a_secret_buffer_keeps_its_bytes() {
        let mut buffer = Zeroizing::new(Vec::with_capacity(2));
        for chunk in [&b"ab"[..], b"cde", b"", b"fghijklmnop"] {
            append_wiping(&mut buffer, chunk);
        }
        assert_eq!(buffer.as_slice(), b"abcdefghijklmnop");
    }

    #[test]
    fn causes_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert!(matches!(
            find_cause::<rustls::Error>(&wrapped),
            Some(rustls::Error::InvalidCertificate(_))
        ));
        assert!(find_cause::<rustls::Error>(&std::io::Error::other("plain")).is_none());
    }

    fn self_signed_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()])
            .expect("certificate")
            .cert
            .pem()
    }

    fn pool(registry: &PoolRegistry, options: &HttpOptions) -> HttpClient {
        HttpClient::for_credential(options, None, registry, &MapEnvironment::new()).expect("client")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn runtime_clients(client: &HttpClient) -> &RuntimeClients {
        match &client.inner.transport {
            Transport::PerRuntime(clients) => clients,
            Transport::User(_) => panic!("a user's client"),
        }
    }

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
    fn equal_options_share_a_pool_of_one_registry_only() {
        let registry = PoolRegistry::default();
        let a = pool(&registry, &HttpOptions::default());
        let b = pool(&registry, &HttpOptions::default());
        assert!(a.shares_pool_with(&b));
        let other = HttpOptions::default().request_timeout(Duration::from_secs(3));
        assert!(!a.shares_pool_with(&pool(&registry, &other)));
        let dedicated = HttpOptions::default().dedicated_pool();
        let c = pool(&registry, &dedicated);
        let d = pool(&registry, &dedicated);
        assert!(!c.shares_pool_with(&d), "a dedicated pool is never shared");
        assert_eq!(registry.len(), 2, "dedicated pools are not registered");
        let elsewhere = pool(&PoolRegistry::default(), &HttpOptions::default());
        assert!(!a.shares_pool_with(&elsewhere));
    }

    #[test]
    fn another_ssl_cert_file_is_another_pool() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("ca.pem");
        std::fs::write(&path, self_signed_pem()).expect("write");
        let path = path.to_string_lossy().into_owned();
        let registry = PoolRegistry::default();
        let plain = pool(&registry, &HttpOptions::default());
        let with_file = MapEnvironment::new().with(SSL_CERT_FILE, path);
        let a = HttpClient::for_credential(&HttpOptions::default(), None, &registry, &with_file)
            .expect("client");
        let b = HttpClient::for_credential(&HttpOptions::default(), None, &registry, &with_file)
            .expect("client");
        assert!(a.shares_pool_with(&b));
        assert!(!a.shares_pool_with(&plain));
    }

    #[test]
    fn the_registry_keeps_a_bounded_number_of_pools_dropping_the_least_recently_used() {
        let registry = PoolRegistry::default();
        let options = |n: u64| HttpOptions::default().connect_timeout(Duration::from_secs(n + 1));
        let first = pool(&registry, &options(0));
        let second = pool(&registry, &options(1));
        for n in 2..MAX_SHARED_POOLS as u64 {
            pool(&registry, &options(n));
        }
        assert_eq!(registry.len(), MAX_SHARED_POOLS);
        // Using the first makes the second the least recently used.
        assert!(pool(&registry, &options(0)).shares_pool_with(&first));
        pool(&registry, &options(100));
        assert_eq!(registry.len(), MAX_SHARED_POOLS);
        assert!(pool(&registry, &options(0)).shares_pool_with(&first));
        assert!(
            !pool(&registry, &options(1)).shares_pool_with(&second),
            "the least recently used pool was dropped"
        );
        assert_eq!(registry.len(), MAX_SHARED_POOLS);
    }

    #[test]
    fn a_users_client_is_never_registered() {
        let registry = PoolRegistry::default();
        let env = MapEnvironment::new();
        let user = reqwest::Client::new();
        let a = HttpClient::for_credential(
            &HttpOptions::default(),
            Some(user.clone()),
            &registry,
            &env,
        )
        .expect("client");
        let b = HttpClient::for_credential(&HttpOptions::default(), Some(user), &registry, &env)
            .expect("client");
        assert!(matches!(a.inner.transport, Transport::User(_)));
        assert!(!a.shares_pool_with(&b));
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn one_client_per_runtime_at_most_a_few_the_least_recently_used_dropped() {
        let http = pool(&PoolRegistry::default(), &HttpOptions::default());
        let clients = runtime_clients(&http);
        let runtimes: Vec<_> = (0..MAX_RUNTIME_CLIENTS + 2).map(|_| runtime()).collect();
        let id = |runtime: &tokio::runtime::Runtime| runtime.handle().id();
        let on = |runtime: &tokio::runtime::Runtime| {
            runtime.block_on(http.client()).expect("client");
        };
        on(&runtimes[0]);
        on(&runtimes[0]);
        assert_eq!(clients.runtimes(), [id(&runtimes[0])]);
        for runtime in &runtimes[1..MAX_RUNTIME_CLIENTS] {
            on(runtime);
        }
        // The first runtime is used again, so the second is the least recently used.
        on(&runtimes[0]);
        on(&runtimes[MAX_RUNTIME_CLIENTS]);
        let kept = clients.runtimes();
        assert_eq!(kept.len(), MAX_RUNTIME_CLIENTS);
        assert!(!kept.contains(&id(&runtimes[1])), "{kept:?}");
        assert!(kept.contains(&id(&runtimes[0])), "{kept:?}");
        assert_eq!(kept.last(), Some(&id(&runtimes[MAX_RUNTIME_CLIENTS])));
    }

    #[test]
    fn outside_a_tokio_runtime_a_request_fails_rather_than_panics() {
        let http = pool(&PoolRegistry::default(), &HttpOptions::default());
        let request = std::pin::pin!(http.client());
        let outcome = request.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        let std::task::Poll::Ready(Err(error)) = outcome else {
            panic!("a request outside a runtime must fail at once");
        };
        assert_eq!(error.kind(), FailureKind::Transport);
        assert!(!error.is_transient());
    }

    #[test]
    fn bad_extra_roots_are_refused_when_the_credential_is_built() {
        let registry = PoolRegistry::default();
        let env = MapEnvironment::new();
        for pem in [
            "not a certificate",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let bad = HttpOptions::default().trust_pem(pem);
            assert!(
                matches!(
                    HttpClient::for_credential(&bad, None, &registry, &env),
                    Err(BuildError::InvalidCertificateAuthority { .. })
                ),
                "{pem}"
            );
        }
        let missing = MapEnvironment::new().with(SSL_CERT_FILE, "/nonexistent/ca.pem");
        match HttpClient::for_credential(&HttpOptions::default(), None, &registry, &missing) {
            Err(BuildError::InvalidCertificateAuthority { origin, .. }) => {
                assert_eq!(origin, "SSL_CERT_FILE=/nonexistent/ca.pem");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extra_roots_make_a_working_client() {
        let http = pool(
            &PoolRegistry::default(),
            &HttpOptions::default().trust_pem(self_signed_pem()),
        );
        runtime()
            .block_on(http.client())
            .expect("a client with the extra root and the system's");
    }

    #[test]
    fn clients_are_built_off_the_runtime_workers() {
        let http = pool(&PoolRegistry::default(), &HttpOptions::default());
        // A current-thread runtime's only worker is the thread that blocks on it.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(http.client()).expect("client");
        let built_on = lock(&runtime_clients(&http).built_on).clone();
        assert_eq!(built_on.len(), 1);
        assert_ne!(built_on[0], std::thread::current().id());
    }

    /// A reader of endless bytes that counts what it hands out.
    struct Endless {
        handed_out: u64,
    }

    impl std::io::Read for Endless {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            buffer.fill(b'A');
            self.handed_out += buffer.len() as u64;
            Ok(buffer.len())
        }
    }

    #[test]
    fn a_file_over_the_cap_is_refused_after_reading_one_byte_past_it() {
        let mut endless = Endless { handed_out: 0 };
        let read = read_at_most(&mut endless, 1000).expect("no I/O error");
        assert!(read.is_none(), "too large");
        assert_eq!(endless.handed_out, 1001);
        let exact = read_at_most(&[b'A'; 1000][..], 1000)
            .expect("no I/O error")
            .expect("at the cap");
        assert_eq!(exact.len(), 1000);
    }

    #[cfg(all(unix, not(target_os = "android"), not(target_vendor = "apple")))]
    #[test]
    fn a_file_already_read_is_not_read_again_even_through_a_directory() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let read = directory.path().join("bundle.pem");
        std::fs::write(&read, self_signed_pem()).expect("write");
        let other = directory.path().join("other.pem");
        std::fs::write(&other, self_signed_pem()).expect("write");
        std::os::unix::fs::symlink(&other, directory.path().join("0badc0de.0")).expect("link");
        std::os::unix::fs::symlink(&read, directory.path().join("deadbeef.0")).expect("link");
        let dirs = [directory.path().to_owned()];

        let found = tls::certificates_from_paths(Some(&read), &dirs, Some(&read));
        assert_eq!(found.len(), 1, "only other.pem, once through two names");
        let found = tls::certificates_from_paths(Some(&read), &dirs, None);
        assert_eq!(found.len(), 2, "each file once");
    }
}
