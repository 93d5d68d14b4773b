//! A token cache shared by a fleet: tokens in an external store (Redis), encrypted and
//! authenticated, behind each process's in-memory cache.
//!
//! A middle-tier API runs as many instances; with a [`DistributedCache`] a user's token is
//! fetched from Entra ID once for the whole fleet. Entries are sealed with AES-256-GCM under a
//! key the application supplies (with a key ID, so keys can be rotated), bound to their storage
//! key so an entry moved to another key does not open, and stored under a SHA-256 of what
//! identifies them, so keys reveal nothing. Their time to live follows the token's expiry.
//! When the store is down, requests carry on from memory and Entra ID (and it is logged),
//! unless [`DistributedCache::fail_when_unavailable`] says otherwise.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::error::BoxError;

/// The future a [`DistributedStore`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'a>>;

/// Where a [`DistributedCache`] keeps its sealed entries.
pub trait DistributedStore: Send + Sync {
    /// The value under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl`.
    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> StoreFuture<'a, ()>;

    /// Extends `key`'s time to live (for sliding expiration).
    fn touch<'a>(&'a self, key: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        let _ = (key, ttl);
        Box::pin(async { Ok(()) })
    }
}

/// An application-supplied AES-256 key and its ID.
#[derive(Clone)]
struct SealingKey {
    id: String,
    key: Arc<LessSafeKey>,
}

/// A token cache shared through a [`DistributedStore`].
#[derive(Clone)]
pub struct DistributedCache {
    store: Arc<dyn DistributedStore>,
    current: SealingKey,
    previous: Vec<SealingKey>,
    sliding: Option<Duration>,
    fail_when_unavailable: bool,
    prefix: String,
}

impl fmt::Debug for DistributedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributedCache")
            .field("key_id", &self.current.id)
            .field(
                "previous_key_ids",
                &self.previous.iter().map(|key| &key.id).collect::<Vec<_>>(),
            )
            .field("sliding", &self.sliding)
            .field("fail_when_unavailable", &self.fail_when_unavailable)
            .finish_non_exhaustive()
    }
}

/// What a sealed entry holds.
#[derive(Deserialize, Serialize)]
pub(crate) struct SharedToken {
    pub(crate) token: String,
    pub(crate) expires_on: i64,
    pub(crate) refresh_on: Option<i64>,
    pub(crate) token_type: String,
    pub(crate) refresh_token: Option<String>,
}

impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedToken")
            .field("expires_on", &self.expires_on)
            .finish_non_exhaustive()
    }
}

/// The format of sealed entries.
const FORMAT: &[u8] = b"E1";

impl DistributedCache {
    /// A cache in `store`, sealing entries with `key` (32 bytes of key material) under `key_id`.
    pub fn new(
        store: impl DistributedStore + 'static,
        key_id: impl Into<String>,
        key: [u8; 32],
    ) -> Self {
        Self {
            store: Arc::new(store),
            current: sealing_key(key_id.into(), key),
            previous: Vec::new(),
            sliding: None,
            fail_when_unavailable: false,
            prefix: "entra-identity:".to_owned(),
        }
    }

    /// Also opens entries sealed with an older key, during a rotation.
    pub fn with_previous_key(mut self, key_id: impl Into<String>, key: [u8; 32]) -> Self {
        self.previous.push(sealing_key(key_id.into(), key));
        self
    }

    /// Entries not read for `window` expire early; each read extends them (never past the
    /// token's expiry).
    pub fn sliding_expiration(mut self, window: Duration) -> Self {
        self.sliding = Some(window);
        self
    }

    /// Fail token requests when the store cannot be reached, instead of going on without it.
    pub fn fail_when_unavailable(mut self, fail: bool) -> Self {
        self.fail_when_unavailable = fail;
        self
    }

    /// A prefix for every storage key (`entra-identity:` by default), to share one store
    /// between environments.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub(crate) fn fails_when_unavailable(&self) -> bool {
        self.fail_when_unavailable
    }

    /// The storage key of an entry: a hash of what identifies it.
    pub(crate) fn storage_key(&self, parts: &[&str]) -> String {
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("{}{hex}", self.prefix)
    }

    /// Reads and opens an entry. A missing, foreign, tampered or unreadable entry is `None`.
    pub(crate) async fn get(&self, key: &str, now: i64) -> Result<Option<SharedToken>, BoxError> {
        let Some(sealed) = self.store.get(key).await? else {
            return Ok(None);
        };
        let Some(token) = self.open(key, &sealed) else {
            tracing::warn!(
                "a distributed cache entry did not open (wrong key or tampered); ignored"
            );
            return Ok(None);
        };
        if let Some(window) = self.sliding {
            let remaining = Duration::from_secs(u64::try_from(token.expires_on - now).unwrap_or(0));
            if let Err(error) = self.store.touch(key, window.min(remaining)).await {
                tracing::debug!(
                    "cannot extend a distributed cache entry: {}",
                    crate::error::Chain(&*error)
                );
            }
        }
        Ok(Some(token))
    }

    /// Seals and writes an entry, to live until the token expires (or the sliding window).
    pub(crate) async fn set(
        &self,
        key: &str,
        token: &SharedToken,
        now: i64,
    ) -> Result<(), BoxError> {
        let remaining = u64::try_from(token.expires_on - now).unwrap_or(0);
        if remaining == 0 {
            return Ok(());
        }
        let mut ttl = Duration::from_secs(remaining);
        if let Some(window) = self.sliding {
            ttl = ttl.min(window);
        }
        let sealed = self.seal(key, token)?;
        self.store.set(key, sealed, ttl).await
    }

    fn seal(&self, key: &str, token: &SharedToken) -> Result<Vec<u8>, BoxError> {
        let mut plain = Zeroizing::new(serde_json::to_vec(token)?);
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce")?;
        let aad = associated_data(&self.current.id, key);
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *plain,
            )
            .map_err(|_| "sealing a cache entry failed")?;
        let id = self.current.id.as_bytes();
        let mut sealed = Vec::with_capacity(FORMAT.len() + 1 + id.len() + NONCE_LEN + plain.len());
        sealed.extend_from_slice(FORMAT);
        sealed.push(u8::try_from(id.len()).map_err(|_| "key IDs are at most 255 bytes")?);
        sealed.extend_from_slice(id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&plain);
        Ok(sealed)
    }

    fn open(&self, key: &str, sealed: &[u8]) -> Option<SharedToken> {
        let rest = sealed.strip_prefix(FORMAT)?;
        let (&id_len, rest) = rest.split_first()?;
        let (id, rest) = rest.split_at_checked(usize::from(id_len))?;
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN)?;
        let id = std::str::from_utf8(id).ok()?;
        let sealing = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|candidate| candidate.id == id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plain = sealing
            .key
            .open_in_place(nonce, Aad::from(associated_data(id, key)), &mut buffer)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

fn sealing_key(id: String, key: [u8; 32]) -> SealingKey {
    let key = Zeroizing::new(key);
    // A 32-byte key is always a valid AES-256 key.
    let unbound = UnboundKey::new(&AES_256_GCM, key.as_slice()).expect("a 32-byte AES-256 key");
    SealingKey {
        id,
        key: Arc::new(LessSafeKey::new(unbound)),
    }
}

/// Binds an entry to its key ID and storage key.
fn associated_data(key_id: &str, storage_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(key_id.len() + storage_key.len() + 1);
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(storage_key.as_bytes());
    aad
}

/// Redis as a [`DistributedStore`]: one node through a reconnecting connection manager, or a
/// Redis Cluster.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub struct RedisStore {
    connection: RedisConnection,
}

#[cfg(feature = "redis")]
#[derive(Clone)]
enum RedisConnection {
    Node(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

#[cfg(feature = "redis")]
impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.connection {
            RedisConnection::Node(_) => "node",
            RedisConnection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore").field("kind", &kind).finish()
    }
}

#[cfg(feature = "redis")]
impl RedisStore {
    /// Connects to one Redis node (`redis://host:port/db` or `rediss://` for TLS). Commands
    /// time out after a second, so a stalled Redis cannot stall token requests; the
    /// connection is re-established in the background after a failure.
    ///
    /// # Errors
    ///
    /// The URL is invalid or Redis cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, BoxError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let manager = redis::aio::ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            connection: RedisConnection::Node(manager),
        })
    }

    /// Connects to a Redis Cluster through any of its nodes.
    ///
    /// # Errors
    ///
    /// The URLs are invalid or the cluster cannot be reached now.
    pub async fn connect_cluster(nodes: &[&str]) -> Result<Self, BoxError> {
        let client = redis::cluster::ClusterClientBuilder::new(nodes.iter().copied())
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(1))
            .build()?;
        let connection = client.get_async_connection().await?;
        Ok(Self {
            connection: RedisConnection::Cluster(connection),
        })
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, BoxError> {
        let value = match self.connection.clone() {
            RedisConnection::Node(mut manager) => command.query_async(&mut manager).await?,
            RedisConnection::Cluster(mut cluster) => command.query_async(&mut cluster).await?,
        };
        Ok(value)
    }
}

#[cfg(feature = "redis")]
impl DistributedStore for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut command = redis::cmd("GET");
            command.arg(key);
            self.run(command).await
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut command = redis::cmd("SET");
            command
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64);
            self.run::<()>(command).await
        })
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut command = redis::cmd("PEXPIRE");
            command.arg(key).arg(ttl.as_millis().max(1) as u64);
            self.run::<i64>(command).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A store in memory, for the sealing tests.
    #[derive(Clone, Default)]
    struct MemoryStore(Arc<Mutex<HashMap<String, Vec<u8>>>>);

    impl DistributedStore for MemoryStore {
        fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
            let value = self.0.lock().expect("lock").get(key).cloned();
            Box::pin(async move { Ok(value) })
        }

        fn set<'a>(&'a self, key: &'a str, value: Vec<u8>, _ttl: Duration) -> StoreFuture<'a, ()> {
            self.0.lock().expect("lock").insert(key.to_owned(), value);
            Box::pin(async { Ok(()) })
        }
    }

    fn token() -> SharedToken {
        SharedToken {
            token: "AT-secret".into(),
            expires_on: 5000,
            refresh_on: None,
            token_type: "Bearer".into(),
            refresh_token: Some("RT-secret".into()),
        }
    }

    #[tokio::test]
    async fn entries_round_trip_sealed_and_bound_to_their_key() {
        let store = MemoryStore::default();
        let cache = DistributedCache::new(store.clone(), "k1", [7; 32]);
        let key = cache.storage_key(&["app", "tenant", "user", "scope"]);
        assert!(key.starts_with("entra-identity:") && !key.contains("tenant"));
        cache.set(&key, &token(), 1000).await.expect("set");
        let raw = store.0.lock().expect("lock")[&key].clone();
        assert!(
            !raw.windows(9).any(|window| window == b"AT-secret"),
            "sealed"
        );
        let opened = cache.get(&key, 1000).await.expect("get").expect("found");
        assert_eq!(
            (opened.token.as_str(), opened.refresh_token.as_deref()),
            ("AT-secret", Some("RT-secret"))
        );

        // Moved to another key, tampered, or sealed with an unknown key: a miss.
        let other = cache.storage_key(&["another"]);
        store
            .0
            .lock()
            .expect("lock")
            .insert(other.clone(), raw.clone());
        assert!(cache.get(&other, 1000).await.expect("get").is_none());
        let mut tampered = raw.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        store.0.lock().expect("lock").insert(key.clone(), tampered);
        assert!(cache.get(&key, 1000).await.expect("get").is_none());
        let stranger = DistributedCache::new(store.clone(), "k9", [8; 32]);
        store.0.lock().expect("lock").insert(key.clone(), raw);
        assert!(stranger.get(&key, 1000).await.expect("get").is_none());
    }

    #[tokio::test]
    async fn rotation_opens_entries_of_the_previous_key() {
        let store = MemoryStore::default();
        let old = DistributedCache::new(store.clone(), "2025", [1; 32]);
        let key = old.storage_key(&["x"]);
        old.set(&key, &token(), 1000).await.expect("set");
        let rotated = DistributedCache::new(store.clone(), "2026", [2; 32])
            .with_previous_key("2025", [1; 32]);
        assert!(rotated.get(&key, 1000).await.expect("get").is_some());
        let forgot = DistributedCache::new(store, "2026", [2; 32]);
        assert!(forgot.get(&key, 1000).await.expect("get").is_none());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let cache = DistributedCache::new(MemoryStore::default(), "k1", [42; 32]);
        let shown = format!("{cache:?}");
        assert!(shown.contains("k1") && !shown.contains("42"), "{shown}");
    }
}
