//! The authority's signing keys: found through its OpenID metadata, fetched from its JWKS,
//! cached, and refreshed when a token names a key we do not know, at most once per interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::validate::Rejection;

/// The most a metadata document or key set may weigh: Entra's are a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The most keys a key set may hold: Entra publishes a handful.
const MAX_KEYS: usize = 64;
/// After a failed first load, how long before another caller may try again.
const FAILED_LOAD_RETRY: Duration = Duration::from_secs(5);
/// How long one fetch of the metadata or the keys may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How keys are refreshed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RefreshPolicy {
    /// The least time between two fetches caused by tokens (an unknown `kid`).
    pub(crate) min_interval: Duration,
    /// How long fetched keys are used before the next validation fetches them again.
    pub(crate) lifetime: Duration,
}

/// The signing keys of one authority and tenant.
pub(crate) struct KeyStore {
    http: reqwest::Client,
    metadata_url: String,
    policy: RefreshPolicy,
    keys: ArcSwap<KeySet>,
    /// Held by the one caller that fetches; the others wait, then use what it fetched.
    refresh: tokio::sync::Mutex<RefreshState>,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// When these keys were fetched; `None` before the first successful fetch.
    fetched_at: Option<Instant>,
    /// Bumped by every fetch, successful or not, so waiters know one happened.
    generation: u64,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.load();
        f.debug_struct("KeyStore")
            .field("metadata_url", &self.metadata_url)
            .field("kids", &keys.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a fetch failed (logged, never shown to callers).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("GET {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("GET {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("GET {url}: not the expected JSON: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
    #[error("the metadata's jwks_uri is not an https URL")]
    InsecureJwksUri,
    #[error("the key set has no usable RSA signing key")]
    NoKeys,
}

#[derive(Deserialize)]
struct Metadata {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// One key of a JWKS, as far as we use it; keys of other kinds are skipped.
#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

impl KeyStore {
    pub(crate) fn new(http: reqwest::Client, metadata_url: String, policy: RefreshPolicy) -> Self {
        Self {
            http,
            metadata_url,
            policy,
            keys: ArcSwap::from_pointee(KeySet::default()),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    /// A store holding only `keys`, which never fetches: for the fuzz harness.
    pub(crate) fn fixed(keys: HashMap<String, Arc<DecodingKey>>) -> Self {
        let store = Self::new(
            reqwest::Client::new(),
            String::new(),
            RefreshPolicy {
                min_interval: Duration::MAX,
                lifetime: Duration::MAX,
            },
        );
        store.keys.store(Arc::new(KeySet {
            keys,
            fetched_at: Some(Instant::now()),
            generation: 0,
        }));
        store
            .refresh
            .try_lock()
            .map(|mut state| state.last_attempt = Some(Instant::now()))
            .ok();
        store
    }

    /// The key named `kid`: from the cache, or after one refresh if the cache does not know
    /// it (or is due) and a refresh is allowed.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, Rejection> {
        let keys = self.keys.load();
        let due = keys
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.policy.lifetime);
        if let Some(key) = keys.keys.get(kid)
            && !due
        {
            return Ok(key.clone());
        }
        let seen = keys.generation;
        drop(keys);
        self.refresh(seen).await;
        let keys = self.keys.load();
        match keys.keys.get(kid) {
            Some(key) => Ok(key.clone()),
            None if keys.fetched_at.is_none() => Err(Rejection::KeysUnavailable),
            None => Err(Rejection::UnknownKey),
        }
    }

    /// Fetches the keys now unless someone else did since generation `seen`, or the last
    /// attempt was too recent.
    pub(crate) async fn refresh(&self, seen: u64) {
        let mut state = self.refresh.lock().await;
        let current = self.keys.load_full();
        if current.generation != seen {
            return;
        }
        let wait = if current.fetched_at.is_some() {
            self.policy.min_interval
        } else {
            FAILED_LOAD_RETRY.min(self.policy.min_interval)
        };
        if state.last_attempt.is_some_and(|at| at.elapsed() < wait) {
            return;
        }
        state.last_attempt = Some(Instant::now());
        let fetched = self.fetch(&mut state).await;
        let next = match fetched {
            Ok(keys) => KeySet {
                keys,
                fetched_at: Some(Instant::now()),
                generation: current.generation + 1,
            },
            Err(error) => {
                tracing::warn!(%error, "cannot refresh the authority's signing keys");
                // Keep serving the keys we have.
                KeySet {
                    keys: current.keys.clone(),
                    fetched_at: current.fetched_at,
                    generation: current.generation + 1,
                }
            }
        };
        self.keys.store(Arc::new(next));
    }

    /// Whether keys were ever fetched.
    pub(crate) fn loaded(&self) -> bool {
        self.keys.load().fetched_at.is_some()
    }

    /// The current generation, for [`KeyStore::refresh`].
    pub(crate) fn generation(&self) -> u64 {
        self.keys.load().generation
    }

    async fn fetch(
        &self,
        state: &mut RefreshState,
    ) -> Result<HashMap<String, Arc<DecodingKey>>, FetchError> {
        // The metadata is read again on every refresh: a key rotation may come with a new
        // `jwks_uri`. Its location is kept in case the metadata endpoint alone fails.
        match self.get_json::<Metadata>(&self.metadata_url).await {
            Ok(metadata) => {
                if !metadata.jwks_uri.starts_with("https://") {
                    return Err(FetchError::InsecureJwksUri);
                }
                state.jwks_uri = Some(metadata.jwks_uri);
            }
            Err(error) if state.jwks_uri.is_some() => {
                tracing::warn!(%error, "cannot read the OpenID metadata; using the last jwks_uri");
            }
            Err(error) => return Err(error),
        }
        let Some(jwks_uri) = state.jwks_uri.as_deref() else {
            return Err(FetchError::NoKeys);
        };
        let jwks: Jwks = self.get_json(jwks_uri).await?;
        let keys: HashMap<_, _> = jwks
            .keys
            .into_iter()
            .filter(|jwk| jwk.kty == "RSA" && jwk.usage.as_deref().is_none_or(|u| u == "sig"))
            .filter_map(|jwk| {
                let key = DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?);
                Some((jwk.kid?, Arc::new(key.ok()?)))
            })
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(FetchError::NoKeys);
        }
        Ok(keys)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_owned(),
            source,
        };
        let mut response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_owned(),
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|source| FetchError::Json {
            url: url.to_owned(),
            source,
        })
    }
}
