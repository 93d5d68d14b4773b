//! The token cache both credentials share.
//!
//! Tokens are grouped in *partitions*: one per application (authority and client ID), tenant,
//! user (the SHA-256 of an on-behalf-of user assertion, never the assertion) and CAE flag.
//! Inside a partition each set of scopes has a *slot* holding its token, and the partition
//! keeps the user's refresh token. A token for scopes `{a, b}` also serves a request for `{a}`.
//!
//! # How it stays correct
//!
//! - **One lock guards membership and the counters.** Partitions live in a map split in
//!   [`SHARDS`] shards, each behind a read-write lock so readers on different users do not
//!   touch one cache line. Every change to what the cache holds (storing a token, adding a
//!   slot, replacing or dropping a refresh token, evicting) happens under the `books` mutex,
//!   which also holds the entry and byte counts: a slot is charged the bytes of the token it
//!   holds, and removing it subtracts exactly that. A token is stored by its key, never
//!   through a partition found earlier, so a partition evicted while its request was in flight
//!   is simply made again, and counted. `len()` and `bytes()` always equal the sums over the
//!   live entries and, after every store, are within the limits (slack: none; a single token
//!   larger than the byte limit is handed to its callers and not kept).
//! - **Single-flight lives apart from the entries.** The requests in flight are kept in their
//!   own map, keyed by partition key and scopes, so eviction cannot break it: every caller of
//!   a key joins the one request, which shares its answer or its error. Each request owns a
//!   guard that removes its own entry (compared by id) when the request completes or when the
//!   last caller waiting for it is dropped, so nothing is left behind.
//! - **LRU by use order.** A global use counter stamps a slot when it is used; a hit on the
//!   most recent slot writes nothing, so threads hitting one token do not fight over a cache
//!   line. Past either limit, the partitions whose tokens have all expired go first, then the
//!   least recently used, down to 90 % of both limits.
//! - **Refresh never blocks.** A lookup that finds a valid token due for refresh hands it to
//!   its caller at once; one caller per [`REFRESH_RETRY_DELAY_SECS`] is told to start the
//!   refresh, which the credential runs as a background task (the same single-flight request,
//!   so a caller that needs a token meanwhile joins it). A failed refresh leaves the valid
//!   token in place. An expired token is never returned.
//!
//! # The hit path
//!
//! A token gets its *handles* on its first hit: at most [`STRIPES`] shared references to it,
//! one per group of threads, each in a cache line of its own, made lazily. A caller gets the
//! cache's copy of the secret through its thread's handle: cloning one shared reference from
//! many threads would make its count bounce between cores. No secret is copied.
//!
//! A credential remembers the handles of its last hit for its own tenant (its *hint*), so its
//! next hits skip the map and its lock: one atomic load, a scope comparison, the clock. A
//! token is *retired* when it leaves its slot (replaced or evicted), and a hint holding a
//! retired token lets go of it; it never serves one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;

use arc_swap::ArcSwapOption;
use futures_util::FutureExt as _;
use futures_util::future::WeakShared;
use hashbrown::HashTable;
use zeroize::Zeroizing;

// Locks and atomics through `sync`, so that the interleaving explorer can replace them.
use super::sync::{
    Arc, AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Mutex, MutexGuard, OnceLock, Ordering,
    PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use crate::error::CredentialError;
use crate::secret::{AccessTokenSecret, RefreshToken, SharedSecret};
use crate::token::{AccessToken, AccessTokenInfo};

/// A token is refreshed proactively when it expires within this many seconds.
pub(crate) const REFRESH_WINDOW_SECS: i64 = 300;
/// After a refresh attempt, a proactive refresh of the same token waits this long.
pub(crate) const REFRESH_RETRY_DELAY_SECS: i64 = 30;
/// A background refresh is abandoned after this long (the token it would replace is still
/// valid, and the next attempt comes after [`REFRESH_RETRY_DELAY_SECS`]).
pub(crate) const REFRESH_DEADLINE_SECS: u64 = 30;
/// Slots a cache holds by default.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;
/// What a slot costs beyond its token and refresh token: the cache's own structures (scope
/// sets and tenants are shared). The `on_behalf_of` benchmark measures the real figure for a
/// user's partition with one slot.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 256;
/// Bytes a cache holds by default.
pub(crate) const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Shards of the partition map: enough that readers on different users rarely share a lock.
pub(crate) const SHARDS: usize = 16;
/// Handles per token for threads hitting it at once (see the module docs).
pub(crate) const STRIPES: usize = 8;
/// Past this many distinct realms or scope sets, new ones are no longer interned.
const MAX_INTERNED: usize = 1024;

/// A bounded, concurrent token cache. Clones share the same cache, so credentials built with
/// one [`TokenCache`] share their tokens.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    shards: [RwLock<HashTable<Arc<Partition>>>; SHARDS],
    hasher: foldhash::fast::RandomState,
    /// Held for every change to what the cache holds; see the module docs.
    books: Mutex<Books>,
    /// Copies of the counts in `books`, written under it, for readers that take no lock.
    len: AtomicUsize,
    bytes: AtomicUsize,
    capacity: usize,
    max_bytes: usize,
    /// The use counter that orders slots for eviction.
    uses: AtomicU64,
    /// The requests in flight, by partition key and scopes.
    inflight: Mutex<HashMap<FlightKey, Flight>>,
    next_flight: AtomicU64,
    /// Realms and scope sets, stored once however many partitions use them.
    interned: Mutex<Interned>,
    /// The connection pools of the credentials built with this cache.
    http_pools: crate::endpoint::http::PoolRegistry,
}

/// What the cache holds, counted under one lock.
#[derive(Default)]
struct Books {
    /// Slots (each holds a token).
    len: usize,
    /// The charges of the slots' tokens plus the lengths of the refresh tokens.
    bytes: usize,
}

/// Strings many entries share.
#[derive(Default)]
struct Interned {
    realms: Vec<Arc<Realm>>,
    scope_sets: Vec<Arc<[Box<str>]>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .field("bytes", &self.bytes())
            .field("max_bytes", &self.inner.max_bytes)
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

/// What a fetch produced: the token, and for on-behalf-of the partition's refresh token.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) info: AccessTokenInfo,
    pub(crate) refresh_token: Option<RefreshToken>,
}

/// A token request, started only when the cache cannot answer.
pub(crate) type FetchFuture =
    Pin<Box<dyn Future<Output = Result<Fetched, CredentialError>> + Send>>;

/// A request whose answer every waiting caller shares.
type SharedRequest = Pin<Box<dyn Future<Output = Result<AccessTokenInfo, CredentialError>> + Send>>;

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Cached {
    /// A valid token that needs no refresh, or whose refresh another caller started.
    Fresh(AccessTokenInfo),
    /// A valid token due for refresh: this caller should start the refresh in the background
    /// (with [`FetchMode::Refresh`]) and use the token meanwhile.
    RefreshDue(AccessTokenInfo),
}

impl Cached {
    /// The token, whatever is to be done about its refresh.
    #[cfg(test)]
    pub(crate) fn into_info(self) -> AccessTokenInfo {
        match self {
            Self::Fresh(info) | Self::RefreshDue(info) => info,
        }
    }
}

/// How [`TokenCache::get_or_fetch`] treats the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchMode {
    /// A valid cached token answers; else one request per key, every caller joining it.
    Normal,
    /// A proactive refresh: join the request in flight for the key, or start one.
    Refresh,
    /// A claims challenge: the cache is not consulted, but the result is stored.
    Bypass,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (10,000 by default) and 64 MiB.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_MAX_BYTES)
    }

    /// A cache holding at most `max_entries` tokens and about `max_bytes` bytes (tokens,
    /// scopes and refresh tokens, plus an estimate of the cache's own structures per token).
    /// Past either limit, partitions whose tokens have all expired go first, then the least
    /// recently used, until the cache is under 90 % of both.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(CacheInner {
                shards: std::array::from_fn(|_| RwLock::new(HashTable::new())),
                hasher: foldhash::fast::RandomState::default(),
                books: Mutex::new(Books::default()),
                len: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                capacity: max_entries.max(1),
                max_bytes: max_bytes.max(1),
                uses: AtomicU64::new(0),
                inflight: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
                interned: Mutex::new(Interned::default()),
                http_pools: crate::endpoint::http::PoolRegistry::default(),
            }),
        }
    }

    /// The connection pools the credentials built with this cache share, by HTTP options.
    pub(crate) fn http_pools(&self) -> &crate::endpoint::http::PoolRegistry {
        &self.inner.http_pools
    }

    /// The estimated bytes the cache holds.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// The most bytes the cache holds.
    pub fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    /// How many tokens (slots) the cache holds.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most tokens the cache holds.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The cached token for `scopes`, through the map; no allocation. A token due for refresh
    /// is returned as [`Cached::RefreshDue`] to one caller per retry delay.
    pub(crate) fn lookup(
        &self,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
        now: i64,
    ) -> Option<Cached> {
        let (hash, shard) = self.inner.shard(key);
        let shard = read(shard);
        let partition = shard.find(hash, |partition| key.matches(&partition.key))?;
        self.inner.serve_partition(partition, scopes, now)
    }

    /// As [`TokenCache::lookup`] for a credential's own partition (its configured tenant):
    /// the slot the credential's `hints` remember answers without the map.
    pub(crate) fn lookup_hinted(
        &self,
        hints: &Hints,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
        now: i64,
    ) -> Option<Cached> {
        let hint = &hints[usize::from(key.cae)];
        match self.inner.serve_hint(hint, scopes.as_slice(), now, true) {
            HintAnswer::Served(cached) => return cached,
            HintAnswer::NoHint => {}
        }
        let (hash, shard) = self.inner.shard(key);
        let shard = read(shard);
        let partition = shard.find(hash, |partition| key.matches(&partition.key))?;
        let exact = partition.exact(scopes, |slot| self.inner.serve(slot, now, true, Some(hint)));
        match exact {
            Some(cached) => cached,
            None => self.inner.serve_partition(partition, scopes, now),
        }
    }

    /// The token the credential's hint remembers for `scopes`, only when it needs no refresh:
    /// the quickest answer there is, for plain requests to the credential's own tenant.
    /// `scopes` are sorted, without duplicates (as [`SortedScopes::as_slice`] has them).
    #[inline]
    pub(crate) fn hinted_fresh(
        &self,
        hints: &Hints,
        cae: bool,
        scopes: &[&str],
        now: i64,
    ) -> Option<AccessToken> {
        // The same checks as `serve_hint` and `serve_token` without a claim, written out
        // straight: this is the path of nearly every call in a busy service.
        let handles = hints[usize::from(cae)].handles.load();
        let handles = handles.as_ref()?;
        let token = &handles.token;
        // A retired token's hint is let go by the next lookup that goes past this one.
        if !same_scopes(scopes, &handles.scopes) || token.retired.load(Ordering::Acquire) {
            return None;
        }
        let last_attempt = token.last_attempt.load(Ordering::Relaxed);
        if refresh_status(Some(&**token), now, last_attempt) != Refresh::NotNeeded {
            return None;
        }
        self.inner.touch(token);
        Some(AccessToken::new(
            AccessTokenSecret::shared(handles.handle()),
            token.expires_on,
        ))
    }

    /// The token for `scopes`: cached when valid (see [`FetchMode`]), else fetched once
    /// however many callers ask; an error is shared by the callers of that request.
    pub(crate) async fn get_or_fetch(
        &self,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
        now: i64,
        mode: FetchMode,
        fetch: impl FnOnce(Option<RefreshToken>) -> FetchFuture,
    ) -> Result<AccessTokenInfo, CredentialError> {
        let flight_key = FlightKey {
            partition: key.into_owned(&self.inner),
            scopes: self.inner.intern_scopes(scopes),
        };
        if mode == FetchMode::Bypass {
            let fetched = fetch(self.inner.refresh_token(&flight_key.partition)).await?;
            return Ok(self
                .inner
                .store(&flight_key.partition, &flight_key.scopes, fetched, now));
        }
        let request = {
            let mut inflight = self.inner.lock_inflight();
            let running = inflight
                .get(&flight_key)
                .and_then(|flight| flight.request.upgrade());
            match running {
                Some(running) => running,
                None => {
                    // The request that filled the cache may have finished between the
                    // caller's lookup and now: its token is visible before its entry goes.
                    if mode == FetchMode::Normal
                        && let Some(token) = self.inner.valid(&flight_key, now)
                    {
                        return Ok(token);
                    }
                    let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
                    let request = fetch(self.inner.refresh_token(&flight_key.partition));
                    // Moved into the request from the start, so that dropping the request
                    // unpolled still removes its entry.
                    let guard = FlightGuard {
                        cache: self.inner.clone(),
                        key: flight_key.clone(),
                        id,
                    };
                    let future: SharedRequest = Box::pin(async move {
                        let guard = guard;
                        let fetched = request.await?;
                        // Stored before the guard removes the entry (see above).
                        Ok(guard
                            .cache
                            .store(&guard.key.partition, &guard.key.scopes, fetched, now))
                    });
                    let shared = future.shared();
                    if let Some(request) = shared.downgrade() {
                        inflight.insert(flight_key, Flight { id, request });
                    }
                    shared
                }
            }
        };
        request.await
    }

    /// Drops the partition's refresh token if it is still `stale` (Entra ID refused it).
    pub(crate) fn evict_refresh_token(&self, key: &PartitionKeyRef<'_>, stale: &RefreshToken) {
        let mut books = self.inner.lock_books();
        let (hash, shard) = self.inner.shard(key);
        let shard = read(shard);
        let Some(partition) = shard.find(hash, |partition| key.matches(&partition.key)) else {
            return;
        };
        let mut current = partition.lock_refresh_token();
        if current
            .as_ref()
            .is_some_and(|current| &***current == stale.expose_secret())
        {
            *current = None;
            books.bytes -= stale.expose_secret().len();
            self.inner.publish(&books);
        }
    }

    /// The requests in flight (for tests: none may be left behind).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.inner.lock_inflight().len()
    }

    /// Recounts the entries and bytes from the live entries and checks them against the
    /// counters and the limits.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let books = self.inner.lock_books();
        let (mut len, mut bytes) = (0, 0);
        for shard in &self.inner.shards {
            for partition in read(shard).iter() {
                for slot in partition.all_slots() {
                    let token = slot.token.load();
                    let token = token.as_ref().ok_or("a live slot without a token")?;
                    if token.retired.load(Ordering::Relaxed) {
                        return Err("a retired token in the map".to_owned());
                    }
                    len += 1;
                    bytes += charge(token);
                }
                bytes += partition
                    .lock_refresh_token()
                    .as_ref()
                    .map_or(0, |rt| rt.len());
            }
        }
        if (len, bytes) != (books.len, books.bytes) {
            return Err(format!(
                "counted {} entries and {} bytes, live {len} and {bytes}",
                books.len, books.bytes
            ));
        }
        if (self.len(), self.bytes()) != (len, bytes) {
            return Err("published counters differ".to_owned());
        }
        if len > self.inner.capacity || bytes > self.inner.max_bytes {
            return Err(format!("beyond the limits: {len} entries, {bytes} bytes"));
        }
        Ok(())
    }

    /// The token of the slot for exactly `scopes`, read without touching anything (for tests).
    #[cfg(test)]
    pub(crate) fn peek(
        &self,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
    ) -> Option<String> {
        let (hash, shard) = self.inner.shard(key);
        let shard = read(shard);
        let partition = shard.find(hash, |partition| key.matches(&partition.key))?;
        partition
            .exact(scopes, |slot| {
                slot.token
                    .load()
                    .as_ref()
                    .map(|token| String::from(&**token.secret))
            })
            .flatten()
    }

    /// The use stamp of a partition (for tests of the eviction order).
    #[cfg(test)]
    pub(crate) fn partition_stamp(&self, key: &PartitionKeyRef<'_>) -> Option<u64> {
        let (hash, shard) = self.inner.shard(key);
        let shard = read(shard);
        let partition = shard.find(hash, |partition| key.matches(&partition.key))?;
        Some(partition.last_used())
    }
}

/// What a hint answered.
enum HintAnswer {
    /// The hint's slot is the one for these scopes: its answer is final.
    Served(Option<Cached>),
    /// No usable hint: look in the map.
    NoHint,
}

impl CacheInner {
    fn shard<K: Hash + ?Sized>(&self, key: &K) -> (u64, &RwLock<HashTable<Arc<Partition>>>) {
        let hash = self.hasher.hash_one(key);
        // Bits the table's own index and control bytes do not use (low and top bits).
        let index = (hash >> 32) as usize % SHARDS;
        (hash, &self.shards[index])
    }

    fn lock_books(&self) -> MutexGuard<'_, Books> {
        // The counters are consistent whenever the lock is released, even by a panic: every
        // update is a plain assignment after the entries changed.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_inflight(&self) -> MutexGuard<'_, HashMap<FlightKey, Flight>> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, books: &Books) {
        self.len.store(books.len, Ordering::Relaxed);
        self.bytes.store(books.bytes, Ordering::Relaxed);
    }

    #[inline]
    fn serve_hint(
        &self,
        hint: &PartitionHint,
        scopes: &[&str],
        now: i64,
        claim: bool,
    ) -> HintAnswer {
        let remembered = hint.handles.load();
        let Some(handles) = remembered.as_ref() else {
            return HintAnswer::NoHint;
        };
        if !same_scopes(scopes, &handles.scopes) {
            return HintAnswer::NoHint;
        }
        if handles.token.retired.load(Ordering::Acquire) {
            drop(remembered);
            hint.handles.store(None);
            return HintAnswer::NoHint;
        }
        HintAnswer::Served(self.serve_token(&handles.token, now, claim).map(|due| {
            let info = token_info(&handles.token, handles.handle());
            due.wrap(info)
        }))
    }

    /// The token for `scopes` in a partition: its own slot's, else a valid token for more
    /// scopes that needs no refresh of its own.
    fn serve_partition(
        &self,
        partition: &Partition,
        scopes: &SortedScopes<'_>,
        now: i64,
    ) -> Option<Cached> {
        if let Some(cached) = partition.exact(scopes, |slot| self.serve(slot, now, true, None)) {
            return cached;
        }
        let more = partition.more.load();
        std::iter::once(&partition.first)
            .chain(more.as_deref().into_iter().flatten())
            .filter(|slot| scopes.is_subset_of(&slot.scopes))
            .find_map(|slot| match self.serve(slot, now, false, None)? {
                Cached::Fresh(info) => Some(Cached::Fresh(info)),
                Cached::RefreshDue(_) => None,
            })
    }

    /// A slot's token when valid. Due for refresh, it is [`Cached::RefreshDue`] for the one
    /// caller (with `claim`) that wins the attempt; without `claim` such a token is `None`, so
    /// that the caller comes back through a path that can start the refresh.
    /// `hint`, when given, learns the slot's handles.
    fn serve(
        &self,
        slot: &Slot,
        now: i64,
        claim: bool,
        hint: Option<&PartitionHint>,
    ) -> Option<Cached> {
        let token = slot.token.load();
        let token = token.as_ref()?;
        let due = self.serve_token(token, now, claim)?;
        let handles = slot.handles(token);
        let info = token_info(token, handles.handle());
        if let Some(hint) = hint {
            hint.handles.store(Some(handles));
        }
        Some(due.wrap(info))
    }

    /// Whether a token can be served (`Some`), and whether this caller must refresh it; a
    /// served token is stamped as used.
    #[inline]
    fn serve_token(&self, token: &CachedToken, now: i64, claim: bool) -> Option<Due> {
        let last_attempt = token.last_attempt.load(Ordering::Relaxed);
        let due = match refresh_status(Some(token), now, last_attempt) {
            Refresh::Required => return None,
            Refresh::NotNeeded => Due::No,
            Refresh::Recommended if !claim => return None,
            Refresh::Recommended => {
                let won = token
                    .last_attempt
                    .compare_exchange(last_attempt, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok();
                if won { Due::Refresh } else { Due::No }
            }
        };
        self.touch(token);
        Some(due)
    }

    /// Stamps a token as the most recently used, writing only when it is not already: a
    /// repeated hit on one token writes nothing shared.
    #[inline]
    fn touch(&self, token: &CachedToken) {
        let newest = self.uses.load(Ordering::Relaxed);
        if token.last_used.load(Ordering::Relaxed) != newest {
            self.stamp(token);
        }
    }

    /// Stamps a token as the most recently used.
    fn stamp(&self, token: &CachedToken) {
        let stamp = self.uses.fetch_add(1, Ordering::Relaxed) + 1;
        token.last_used.store(stamp, Ordering::Relaxed);
    }

    /// The slot's token for exactly these scopes when not expired, due for refresh or not.
    fn valid(&self, key: &FlightKey, now: i64) -> Option<AccessTokenInfo> {
        let (hash, shard) = self.shard(&key.partition);
        let shard = read(shard);
        let partition = shard.find(hash, |partition| partition.key == key.partition)?;
        partition
            .slot(&key.scopes, |slot| {
                let token = slot.token.load();
                let token = token.as_ref().filter(|token| token.expires_on > now)?;
                self.touch(token);
                Some(token_info(token, slot.handles(token).handle()))
            })
            .flatten()
    }

    /// A copy of the partition's refresh token, for a request.
    fn refresh_token(&self, key: &PartitionKey) -> Option<RefreshToken> {
        let (hash, shard) = self.shard(key);
        let shard = read(shard);
        let partition = shard.find(hash, |partition| partition.key == *key)?;
        partition
            .lock_refresh_token()
            .as_ref()
            .map(|token| RefreshToken::new(&***token))
    }

    /// Stores a fetched token (and refresh token) under its key, making the partition and
    /// slot when missing (also when evicted while the request was in flight), counts it, and
    /// evicts when over a limit. Returns the token for the request's callers.
    fn store(
        &self,
        key: &PartitionKey,
        scopes: &Arc<[Box<str>]>,
        fetched: Fetched,
        now: i64,
    ) -> AccessTokenInfo {
        let token = Arc::new(CachedToken::new(&fetched.info));
        let mut books = self.lock_books();
        let (hash, shard) = self.shard(key);
        let mut shard = write(shard);
        let existing = shard.find(hash, |partition| partition.key == *key).cloned();
        let partition = match existing {
            Some(partition) => {
                let replaced = partition.slot(scopes, |slot| {
                    books.bytes += charge(&token);
                    self.stamp(&token);
                    if let Some(old) = slot.token.swap(Some(token.clone())) {
                        books.bytes -= charge(&old);
                        old.retired.store(true, Ordering::Release);
                    }
                    // The handles of the old token go with it.
                    slot.handles.store(None);
                });
                match replaced {
                    Some(()) => {}
                    None => {
                        books.len += 1;
                        books.bytes += charge(&token);
                        self.stamp(&token);
                        let slot = Arc::new(Slot::new(scopes.clone(), token));
                        let more = partition.more.load_full();
                        let mut grown =
                            Vec::with_capacity(more.as_ref().map_or(0, |more| more.len()) + 1);
                        grown.extend(more.iter().flat_map(|more| more.iter().cloned()));
                        grown.push(slot);
                        partition.more.store(Some(Arc::new(grown)));
                    }
                }
                partition
            }
            None => {
                books.len += 1;
                books.bytes += charge(&token);
                self.stamp(&token);
                let slot = Arc::new(Slot::new(scopes.clone(), token));
                let partition = Arc::new(Partition::new(key.clone(), slot));
                shard.insert_unique(hash, partition.clone(), |partition| {
                    self.hasher.hash_one(&partition.key)
                });
                partition
            }
        };
        if let Some(refresh_token) = fetched.refresh_token {
            let mut current = partition.lock_refresh_token();
            if let Some(old) = current.as_ref() {
                books.bytes -= old.len();
            }
            books.bytes += refresh_token.expose_secret().len();
            *current = Some(Zeroizing::new(Box::from(refresh_token.expose_secret())));
        }
        drop(shard);
        self.evict_if_over(&mut books, now);
        self.publish(&books);
        fetched.info
    }

    /// Past either limit, brings the cache under 90 % of both: partitions with no valid token
    /// first, then the least recently used. Batched, so its cost spreads over many stores.
    fn evict_if_over(&self, books: &mut Books, now: i64) {
        if books.len <= self.capacity && books.bytes <= self.max_bytes {
            return;
        }
        let entry_target = self.capacity - self.capacity / 10;
        let byte_target = self.max_bytes - self.max_bytes / 10;
        let mut candidates: Vec<(bool, u64, Arc<Partition>)> = self
            .shards
            .iter()
            .flat_map(|shard| {
                read(shard)
                    .iter()
                    .map(|partition| {
                        (
                            partition.is_live(now),
                            partition.last_used(),
                            partition.clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        // Dead partitions (false) sort first, then the least recently used.
        candidates.sort_unstable_by_key(|(live, last_used, _)| (*live, *last_used));
        for (_, _, partition) in candidates {
            if books.len <= entry_target && books.bytes <= byte_target {
                break;
            }
            self.remove(books, &partition);
        }
    }

    /// Takes a partition out of the map and its charges out of the books.
    fn remove(&self, books: &mut Books, partition: &Arc<Partition>) {
        let (hash, shard) = self.shard(&partition.key);
        let removed = write(shard)
            .find_entry(hash, |other| Arc::ptr_eq(other, partition))
            .map(|entry| drop(entry.remove()))
            .is_ok();
        if !removed {
            return;
        }
        for slot in partition.all_slots() {
            if let Some(token) = slot.token.swap(None) {
                books.bytes -= charge(&token);
                token.retired.store(true, Ordering::Release);
            }
            slot.handles.store(None);
            books.len -= 1;
        }
        if let Some(refresh_token) = partition.lock_refresh_token().take() {
            books.bytes -= refresh_token.len();
        }
    }

    fn intern_realm(&self, app: &Arc<str>, tenant: &str, cae: bool) -> Arc<Realm> {
        let mut interned = self.interned.lock().unwrap_or_else(PoisonError::into_inner);
        let known = interned.realms.iter().find(|realm| {
            realm.cae == cae
                && *realm.tenant == *tenant
                && (Arc::ptr_eq(&realm.app, app) || realm.app == *app)
        });
        if let Some(found) = known {
            return found.clone();
        }
        let realm = Arc::new(Realm {
            app: app.clone(),
            tenant: Box::from(tenant),
            cae,
        });
        if interned.realms.len() < MAX_INTERNED {
            interned.realms.push(realm.clone());
        }
        realm
    }

    fn intern_scopes(&self, scopes: &SortedScopes<'_>) -> Arc<[Box<str>]> {
        let mut interned = self.interned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = interned
            .scope_sets
            .iter()
            .find(|known| scopes.equals(known))
        {
            return found.clone();
        }
        let set: Arc<[Box<str>]> = scopes
            .as_slice()
            .iter()
            .map(|scope| Box::from(*scope))
            .collect();
        if interned.scope_sets.len() < MAX_INTERNED {
            interned.scope_sets.push(set.clone());
        }
        set
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Every change under the write lock leaves the table consistent; a panic cannot leave
    // it half-changed.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// What a token is counted as.
fn charge(token: &CachedToken) -> usize {
    token.secret.len() + ENTRY_OVERHEAD_BYTES
}

/// The key of a request in flight.
#[derive(Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    partition: PartitionKey,
    scopes: Arc<[Box<str>]>,
}

/// A request in flight: weak, so that it ends when no caller waits for it any more.
struct Flight {
    id: u64,
    request: WeakShared<SharedRequest>,
}

/// Removes its request's entry from the in-flight map when the request completes or is
/// dropped, unless a newer request has taken the key.
struct FlightGuard {
    cache: Arc<CacheInner>,
    key: FlightKey,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut inflight = self.cache.lock_inflight();
        if inflight
            .get(&self.key)
            .is_some_and(|flight| flight.id == self.id)
        {
            inflight.remove(&self.key);
        }
    }
}

/// A credential's hints: the token of its last hit, for plain and for CAE tokens.
pub(crate) type Hints = [PartitionHint; 2];

/// Remembers the handles of a credential's last cache hit, so its next hits skip the map.
#[derive(Default)]
pub(crate) struct PartitionHint {
    handles: ArcSwapOption<Handles>,
}

impl std::fmt::Debug for PartitionHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartitionHint")
    }
}

/// A token as a slot keeps it: the secret and its times.
pub(crate) struct CachedToken {
    secret: Zeroizing<Box<str>>,
    expires_on: i64,
    /// `i64::MIN` when there is none.
    refresh_on: i64,
    /// When a proactive refresh of this token was last started (`i64::MIN`: never).
    last_attempt: AtomicI64,
    /// The use stamp of the token's last hit or store, which orders eviction.
    last_used: AtomicU64,
    /// Set once the token has left its slot (replaced or evicted): hints holding it let go.
    retired: AtomicBool,
    /// `None` for `Bearer`, the type Entra ID sends; boxed twice to keep the common case small.
    token_type: Option<Box<Box<str>>>,
}

impl CachedToken {
    fn new(info: &AccessTokenInfo) -> Self {
        Self {
            secret: Zeroizing::new(Box::from(info.token.expose_secret())),
            expires_on: info.expires_on,
            refresh_on: info.refresh_on.unwrap_or(i64::MIN),
            last_attempt: AtomicI64::new(i64::MIN),
            last_used: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            token_type: (info.token_type != "Bearer")
                .then(|| Box::new(Box::from(&*info.token_type))),
        }
    }

    /// The token type: borrowed for `Bearer`, a copy for the rare others.
    fn token_type(&self) -> Cow<'static, str> {
        match &self.token_type {
            None => Cow::Borrowed("Bearer"),
            Some(other) => Cow::Owned(String::from(&***other)),
        }
    }
}

/// Whether the caller served a token due for refresh must start the refresh.
enum Due {
    No,
    Refresh,
}

impl Due {
    fn wrap(self, info: AccessTokenInfo) -> Cached {
        match self {
            Self::No => Cached::Fresh(info),
            Self::Refresh => Cached::RefreshDue(info),
        }
    }
}

/// The token as callers get it, sharing the cache's copy of the secret through `handle`.
#[inline]
fn token_info(token: &CachedToken, handle: Arc<dyn SharedSecret>) -> AccessTokenInfo {
    AccessTokenInfo {
        token: AccessTokenSecret::shared(handle),
        expires_on: token.expires_on,
        token_type: token.token_type(),
        refresh_on: (token.refresh_on != i64::MIN).then_some(token.refresh_on),
    }
}

/// The handles of one token, made on its first hit, one per group of threads; a slot keeps
/// them for its current token, and credentials' hints share them.
struct Handles {
    token: Arc<CachedToken>,
    /// The slot's scopes, which a hint compares with the request's.
    scopes: Arc<[Box<str>]>,
    stripes: [OnceLock<Arc<Stripe>>; STRIPES],
}

impl Handles {
    /// The calling thread's handle on the token, made on its first hit from this thread's
    /// stripe.
    #[inline]
    fn handle(&self) -> Arc<dyn SharedSecret> {
        // A thread being torn down has no thread-local left: it shares the first stripe.
        let index = THREAD_STRIPE.try_with(|index| *index).unwrap_or(0);
        self.stripes[index]
            .get_or_init(|| {
                Arc::new(Stripe {
                    token: self.token.clone(),
                    _padding: [0; 14],
                })
            })
            .clone()
    }
}

/// A handle on a token's secret; its reference count sits in a cache line of its own, so
/// threads of different stripes cloning their handles do not disturb each other.
struct Stripe {
    token: Arc<CachedToken>,
    /// Keeps the next allocation's counters out of this cache line (with the counters and
    /// the allocator's header, the allocation spans more than 128 bytes).
    _padding: [u64; 14],
}

impl SharedSecret for Stripe {
    fn secret(&self) -> &str {
        &self.token.secret
    }
}

std::thread_local! {
    static THREAD_STRIPE: usize = next_thread_stripe();
}

fn next_thread_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
}

/// When a token expires and should be refreshed.
pub(crate) trait Expiry {
    fn expires_on(&self) -> i64;
    fn refresh_on(&self) -> Option<i64>;
}

impl Expiry for AccessTokenInfo {
    fn expires_on(&self) -> i64 {
        self.expires_on
    }

    fn refresh_on(&self) -> Option<i64> {
        self.refresh_on
    }
}

impl Expiry for CachedToken {
    fn expires_on(&self) -> i64 {
        self.expires_on
    }

    fn refresh_on(&self) -> Option<i64> {
        (self.refresh_on != i64::MIN).then_some(self.refresh_on)
    }
}

/// Whether a cached token should be refreshed, by azure-identity's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Serve the cached token.
    NotNeeded,
    /// Serve the cached token, but one caller should try to refresh it.
    Recommended,
    /// There is no usable token: fetch one, and fail if that fails.
    Required,
}

/// 1. no token, or expired: required (the retry delay does not apply);
/// 2. an attempt less than 30 s ago: not needed;
/// 3. past `refresh_on`, or within 300 s of expiry: recommended;
/// 4. otherwise not needed.
pub(crate) fn refresh_status(token: Option<&impl Expiry>, now: i64, last_attempt: i64) -> Refresh {
    let Some(token) = token else {
        return Refresh::Required;
    };
    if now >= token.expires_on() {
        return Refresh::Required;
    }
    if now.saturating_sub(last_attempt) < REFRESH_RETRY_DELAY_SECS {
        return Refresh::NotNeeded;
    }
    if token
        .refresh_on()
        .is_some_and(|refresh_on| now >= refresh_on)
        || token.expires_on() - now <= REFRESH_WINDOW_SECS
    {
        return Refresh::Recommended;
    }
    Refresh::NotNeeded
}

/// A partition: its key, its slots and the user's refresh token. Its slots and refresh token
/// change only under the cache's `books` lock.
pub(crate) struct Partition {
    key: PartitionKey,
    /// The slot the partition was made for: most partitions (one user, one API) have no other.
    first: Arc<Slot>,
    /// Slots for other scope sets.
    more: ArcSwapOption<Vec<Arc<Slot>>>,
    /// The user's refresh token (on-behalf-of), read only when a token must be fetched.
    refresh_token: Mutex<Option<Zeroizing<Box<str>>>>,
}

impl Partition {
    fn new(key: PartitionKey, first: Arc<Slot>) -> Self {
        Self {
            key,
            first,
            more: ArcSwapOption::empty(),
            refresh_token: Mutex::new(None),
        }
    }

    /// Calls `found` with the slot for exactly these scopes.
    fn exact<R>(
        &self,
        scopes: &SortedScopes<'_>,
        found: impl FnOnce(&Arc<Slot>) -> R,
    ) -> Option<R> {
        self.find(|slot| scopes.equals(&slot.scopes), found)
    }

    /// Calls `found` with the slot for exactly these (owned) scopes.
    fn slot<R>(&self, scopes: &Arc<[Box<str>]>, found: impl FnOnce(&Arc<Slot>) -> R) -> Option<R> {
        self.find(|slot| slot.scopes == *scopes, found)
    }

    fn find<R>(
        &self,
        matches: impl Fn(&Slot) -> bool,
        found: impl FnOnce(&Arc<Slot>) -> R,
    ) -> Option<R> {
        if matches(&self.first) {
            return Some(found(&self.first));
        }
        let more = self.more.load();
        more.as_deref()?
            .iter()
            .find(|slot| matches(slot))
            .map(found)
    }

    /// Every slot.
    fn all_slots(&self) -> Vec<Arc<Slot>> {
        let more = self.more.load_full();
        std::iter::once(self.first.clone())
            .chain(more.iter().flat_map(|more| more.iter().cloned()))
            .collect()
    }

    /// Whether any token is still valid.
    fn is_live(&self, now: i64) -> bool {
        self.all_slots().iter().any(|slot| {
            slot.token
                .load()
                .as_deref()
                .is_some_and(|token| token.expires_on > now)
        })
    }

    /// When any of the partition's slots was last used (a use stamp).
    fn last_used(&self) -> u64 {
        self.all_slots()
            .iter()
            .filter_map(|slot| {
                let token = slot.token.load();
                token
                    .as_ref()
                    .map(|token| token.last_used.load(Ordering::Relaxed))
            })
            .max()
            .unwrap_or(0)
    }

    fn lock_refresh_token(&self) -> MutexGuard<'_, Option<Zeroizing<Box<str>>>> {
        self.refresh_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The token for one scope set of a partition.
pub(crate) struct Slot {
    scopes: Arc<[Box<str>]>,
    /// Always a token while the slot is in the map; taken out when it is evicted.
    token: ArcSwapOption<CachedToken>,
    /// The handles of the current token, once it has been hit.
    handles: ArcSwapOption<Handles>,
}

impl Slot {
    fn new(scopes: Arc<[Box<str>]>, token: Arc<CachedToken>) -> Self {
        Self {
            scopes,
            token: ArcSwapOption::new(Some(token)),
            handles: ArcSwapOption::empty(),
        }
    }

    /// The handles of `token`, the slot's token a moment ago: made on its first hit.
    fn handles(&self, token: &Arc<CachedToken>) -> Arc<Handles> {
        let current = self.handles.load_full();
        if let Some(handles) = current.filter(|handles| Arc::ptr_eq(&handles.token, token)) {
            return handles;
        }
        let handles = Arc::new(Handles {
            token: token.clone(),
            scopes: self.scopes.clone(),
            stripes: Default::default(),
        });
        self.handles.store(Some(handles.clone()));
        // A new token or eviction may have cleared the handles meanwhile: do not keep these.
        if token.retired.load(Ordering::Acquire) {
            self.handles.store(None);
        }
        handles
    }
}

/// Which partition a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartitionKey {
    /// The application, tenant and CAE flag, shared by every partition of them.
    realm: Arc<Realm>,
    /// The SHA-256 of the user assertion, or zeros for application tokens.
    user: [u8; 32],
}

/// An application (authority and client ID) in a tenant.
#[derive(Debug, PartialEq, Eq)]
struct Realm {
    app: Arc<str>,
    tenant: Box<str>,
    cae: bool,
}

/// The `user` of application partitions.
const NO_USER: [u8; 32] = [0; 32];

/// A borrowed [`PartitionKey`], for lookups that allocate nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartitionKeyRef<'a> {
    pub(crate) app: &'a Arc<str>,
    pub(crate) tenant: &'a str,
    pub(crate) user: Option<&'a [u8; 32]>,
    pub(crate) cae: bool,
}

impl PartitionKeyRef<'_> {
    fn into_owned(self, cache: &CacheInner) -> PartitionKey {
        PartitionKey {
            realm: cache.intern_realm(self.app, self.tenant, self.cae),
            user: self.user.copied().unwrap_or(NO_USER),
        }
    }
}

fn hash_key<H: Hasher>(app: &str, tenant: &str, user: Option<&[u8; 32]>, cae: bool, state: &mut H) {
    app.hash(state);
    tenant.hash(state);
    user.hash(state);
    cae.hash(state);
}

impl Hash for PartitionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let user = (self.user != NO_USER).then_some(&self.user);
        hash_key(
            &self.realm.app,
            &self.realm.tenant,
            user,
            self.realm.cae,
            state,
        );
    }
}

impl Hash for PartitionKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(self.app, self.tenant, self.user, self.cae, state);
    }
}

impl PartitionKeyRef<'_> {
    /// Whether `key` is this key, owned.
    fn matches(&self, key: &PartitionKey) -> bool {
        self.cae == key.realm.cae
            && self.user.unwrap_or(&NO_USER) == &key.user
            && self.tenant == &*key.realm.tenant
            && (Arc::ptr_eq(self.app, &key.realm.app) || **self.app == *key.realm.app)
    }
}

/// Requested scopes, sorted and without duplicates: the caller's own slice when it already
/// is (one scope always is), else a copy, on the stack for up to eight.
#[derive(Debug)]
pub(crate) enum SortedScopes<'a> {
    Borrowed(&'a [&'a str]),
    Inline([&'a str; INLINE_SCOPES], usize),
    Heap(Vec<&'a str>),
}

const INLINE_SCOPES: usize = 8;

impl<'a> SortedScopes<'a> {
    pub(crate) fn new(scopes: &'a [&'a str]) -> Self {
        if strictly_sorted(scopes) {
            return Self::Borrowed(scopes);
        }
        if scopes.len() <= INLINE_SCOPES {
            let mut inline = [""; INLINE_SCOPES];
            inline[..scopes.len()].copy_from_slice(scopes);
            let sorted = &mut inline[..scopes.len()];
            sorted.sort_unstable();
            let len = dedup_sorted(sorted);
            Self::Inline(inline, len)
        } else {
            let mut heap = scopes.to_vec();
            heap.sort_unstable();
            heap.dedup();
            Self::Heap(heap)
        }
    }

    pub(crate) fn as_slice(&self) -> &[&'a str] {
        match self {
            Self::Borrowed(scopes) => scopes,
            Self::Inline(scopes, len) => &scopes[..*len],
            Self::Heap(scopes) => scopes,
        }
    }

    fn equals(&self, other: &[Box<str>]) -> bool {
        same_scopes(self.as_slice(), other)
    }

    fn is_subset_of(&self, other: &[Box<str>]) -> bool {
        self.as_slice()
            .iter()
            .all(|scope| other.binary_search_by(|o| (**o).cmp(scope)).is_ok())
    }
}

/// Whether two sorted scope sets are equal.
#[inline]
fn same_scopes(mine: &[&str], other: &[Box<str>]) -> bool {
    mine.len() == other.len() && mine.iter().zip(other).all(|(a, b)| *a == &**b)
}

/// Whether scopes are sorted and without duplicates, as the cache keeps them.
#[inline]
pub(crate) fn strictly_sorted(scopes: &[&str]) -> bool {
    scopes.windows(2).all(|pair| pair[0] < pair[1])
}

/// Removes adjacent duplicates in place; returns the new length.
fn dedup_sorted(scopes: &mut [&str]) -> usize {
    if scopes.is_empty() {
        return 0;
    }
    let mut write = 1;
    for read in 1..scopes.len() {
        if scopes[read] != scopes[write - 1] {
            scopes[write] = scopes[read];
            write += 1;
        }
    }
    write
}

#[cfg(test)]
#[path = "memory_model.rs"]
mod model;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// The cache's answer without refresh duty: what a caller gets.
    fn fresh(
        cache: &TokenCache,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
        now: i64,
    ) -> Option<AccessTokenInfo> {
        cache.lookup(key, scopes, now).map(Cached::into_info)
    }

    fn get<F>(
        cache: &TokenCache,
        tenant: &'static str,
        now: i64,
        fetch: F,
    ) -> impl Future<Output = Result<AccessTokenInfo, CredentialError>> + Send + use<F>
    where
        F: FnOnce(Option<RefreshToken>) -> FetchFuture + Send + 'static,
    {
        let cache = cache.clone();
        async move {
            cache
                .get_or_fetch(
                    &key(tenant),
                    &SortedScopes::new(&["s"]),
                    now,
                    FetchMode::Normal,
                    fetch,
                )
                .await
        }
    }

    fn info(token: &str, expires_on: i64, refresh_on: Option<i64>) -> AccessTokenInfo {
        AccessTokenInfo {
            token: AccessTokenSecret::new(token),
            expires_on,
            token_type: Cow::Borrowed("Bearer"),
            refresh_on,
        }
    }

    fn app() -> &'static Arc<str> {
        static APP: OnceLock<Arc<str>> = OnceLock::new();
        APP.get_or_init(|| Arc::from("https://login|client"))
    }

    fn key(tenant: &str) -> PartitionKeyRef<'_> {
        PartitionKeyRef {
            app: app(),
            tenant,
            user: None,
            cae: false,
        }
    }

    /// A cache holding token "A" (an hour left) for tenant "t" and scope "s", the fetch
    /// counter (at 1), the scopes and the time.
    async fn primed() -> (TokenCache, Arc<AtomicUsize>, SortedScopes<'static>, i64) {
        let cache = TokenCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let scopes = SortedScopes::new(&["s"]);
        let now = 1_000_000;
        cache
            .get_or_fetch(
                &key("t"),
                &scopes,
                now,
                FetchMode::Normal,
                fetch_returning(&calls, "A", now + 3600),
            )
            .await
            .expect("first token");
        (cache, calls, scopes, now)
    }

    fn fetch_returning(
        calls: &Arc<AtomicUsize>,
        token: &'static str,
        expires_on: i64,
    ) -> impl FnOnce(Option<RefreshToken>) -> FetchFuture + use<> {
        let calls = calls.clone();
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                Ok(Fetched {
                    info: info(token, expires_on, None),
                    refresh_token: None,
                })
            })
        }
    }

    fn failing(
        calls: &Arc<AtomicUsize>,
    ) -> impl FnOnce(Option<RefreshToken>) -> FetchFuture + use<> {
        let calls = calls.clone();
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(CredentialError::InvalidRequest("auth failed".into())) })
        }
    }

    #[test]
    fn refresh_rules_follow_azure_identity() {
        let now = 10_000;
        let never = i64::MIN;
        // Cases 4-13 of the GetTokenMixin suite.
        assert_eq!(
            refresh_status(None::<&AccessTokenInfo>, now, never),
            Refresh::Required
        );
        assert_eq!(
            refresh_status(Some(&info("t", now - 1, None)), now, never),
            Refresh::Required
        );
        assert_eq!(
            refresh_status(Some(&info("t", now + 310, None)), now, never),
            Refresh::NotNeeded
        );
        assert_eq!(
            refresh_status(Some(&info("t", now + 299, None)), now, never),
            Refresh::Recommended
        );
        assert_eq!(
            refresh_status(Some(&info("t", now + 299, None)), now, now - 10),
            Refresh::NotNeeded
        );
        assert_eq!(
            refresh_status(Some(&info("t", now + 3600, Some(now - 1))), now, never),
            Refresh::Recommended
        );
        assert_eq!(
            refresh_status(Some(&info("t", now + 3600, Some(now + 600))), now, never),
            Refresh::NotNeeded
        );
        assert_eq!(
            refresh_status(Some(&info("t", now - 1, None)), now, now),
            Refresh::Required
        );
        assert_eq!(
            refresh_status(Some(&info("t", now + 3600, Some(now - 1))), now, now),
            Refresh::NotNeeded
        );
    }

    #[tokio::test]
    async fn token_types_other_than_bearer_survive_the_cache() {
        let cache = TokenCache::default();
        let now = 1_000;
        let fetch = move |_| -> FetchFuture {
            Box::pin(async move {
                Ok(Fetched {
                    info: AccessTokenInfo {
                        token: AccessTokenSecret::new("t"),
                        expires_on: now + 3600,
                        token_type: Cow::Borrowed("PoP"),
                        refresh_on: Some(now + 1800),
                    },
                    refresh_token: None,
                })
            })
        };
        get(&cache, "t", now, fetch).await.expect("token");
        let info = fresh(&cache, &key("t"), &SortedScopes::new(&["s"]), now).expect("cached");
        assert_eq!(
            (
                info.token_type.as_ref(),
                info.refresh_on,
                info.token.expose_secret()
            ),
            ("PoP", Some(now + 1800), "t")
        );
    }

    #[test]
    fn sorted_scopes_dedup_and_compare() {
        let scopes = SortedScopes::new(&["b", "a", "b"]);
        assert_eq!(scopes.as_slice(), ["a", "b"]);
        let owned: Box<[Box<str>]> = vec![Box::from("a"), Box::from("b"), Box::from("c")].into();
        assert!(scopes.is_subset_of(&owned));
        assert!(!scopes.equals(&owned));
        assert!(SortedScopes::new(&["c", "b", "a"]).equals(&owned));
        let many: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).rev().collect();
        assert_eq!(SortedScopes::new(&many).as_slice().first(), Some(&"s00"));
    }

    #[tokio::test]
    async fn cached_tokens_are_served_until_the_refresh_window() {
        let (cache, calls, scopes, now) = primed().await;
        let again = fresh(&cache, &key("t"), &scopes, now + 100).expect("cached");
        assert_eq!(again.token.expose_secret(), "A");
        // Another tenant is another partition.
        let other = get(&cache, "u", now, fetch_returning(&calls, "C", now + 3600)).await;
        assert_eq!(other.expect("token").token.expose_secret(), "C");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Inside the refresh window: the valid token, and one caller told to refresh.
        let later = now + 3600 - 299;
        let due = cache.lookup(&key("t"), &scopes, later).expect("valid");
        assert!(matches!(&due, Cached::RefreshDue(token) if token.token.expose_secret() == "A"));
        let others = cache.lookup(&key("t"), &scopes, later).expect("valid");
        assert!(matches!(&others, Cached::Fresh(token) if token.token.expose_secret() == "A"));
        let refreshed = cache
            .get_or_fetch(
                &key("t"),
                &scopes,
                later,
                FetchMode::Refresh,
                fetch_returning(&calls, "D", later + 3600),
            )
            .await;
        assert_eq!(refreshed.expect("token").token.expose_secret(), "D");
        let served = fresh(&cache, &key("t"), &scopes, later).expect("cached");
        assert_eq!(served.token.expose_secret(), "D");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        cache.check_invariants().expect("invariants");
    }

    #[tokio::test]
    async fn failed_proactive_refresh_keeps_the_token_and_waits_30_seconds() {
        let (cache, calls, scopes, now) = primed().await;
        let window = now + 3600 - 299;
        let refresh = |at: i64| {
            let cache = cache.clone();
            let calls = calls.clone();
            async move {
                match cache.lookup(&key("t"), &SortedScopes::new(&["s"]), at) {
                    Some(Cached::RefreshDue(token)) => {
                        let outcome = cache
                            .get_or_fetch(
                                &key("t"),
                                &SortedScopes::new(&["s"]),
                                at,
                                FetchMode::Refresh,
                                failing(&calls),
                            )
                            .await;
                        assert!(outcome.is_err());
                        token
                    }
                    Some(Cached::Fresh(token)) => token,
                    None => panic!("the valid token was not served"),
                }
            }
        };
        for offset in 0..30 {
            let token = refresh(window + offset).await;
            assert_eq!(token.token.expose_secret(), "A");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one failed refresh, then the retry delay"
        );
        let token = refresh(window + 30).await;
        assert_eq!(token.token.expose_secret(), "A");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "tried again after 30 s");
        // Once expired, the token is never served and a failure propagates.
        assert!(cache.lookup(&key("t"), &scopes, now + 3600).is_none());
        let expired = get(&cache, "t", now + 3600, failing(&calls)).await;
        assert!(expired.is_err());
        assert_eq!(cache.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_token_for_more_scopes_serves_fewer() {
        let cache = TokenCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let now = 1_000_000;
        cache
            .get_or_fetch(
                &key("t"),
                &SortedScopes::new(&["a", "b"]),
                now,
                FetchMode::Normal,
                fetch_returning(&calls, "AB", now + 3600),
            )
            .await
            .expect("token");
        for scopes in [&["a"][..], &["b"], &["b", "a"]] {
            let token = fresh(&cache, &key("t"), &SortedScopes::new(scopes), now).expect("served");
            assert_eq!(token.token.expose_secret(), "AB");
        }
        assert!(fresh(&cache, &key("t"), &SortedScopes::new(&["a", "c"]), now).is_none());
    }

    #[tokio::test]
    async fn claims_bypass_the_lookup_but_store_the_result() {
        let (cache, calls, scopes, now) = primed().await;
        let challenged = cache
            .get_or_fetch(
                &key("t"),
                &scopes,
                now,
                FetchMode::Bypass,
                fetch_returning(&calls, "B", now + 3600),
            )
            .await;
        assert_eq!(challenged.expect("B").token.expose_secret(), "B");
        assert_eq!(
            fresh(&cache, &key("t"), &scopes, now)
                .expect("stored")
                .token
                .expose_secret(),
            "B"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.len(), 1);
        cache.check_invariants().expect("invariants");
    }

    /// A fetch that waits for the gate, counting calls; `Err` when `fail`.
    fn gated(
        calls: &Arc<AtomicUsize>,
        gate: &tokio::sync::watch::Receiver<bool>,
        token: &'static str,
        expires_on: i64,
        fail: bool,
    ) -> impl FnOnce(Option<RefreshToken>) -> FetchFuture + use<> {
        let calls = calls.clone();
        let mut gate = gate.clone();
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
                if fail {
                    return Err(CredentialError::InvalidRequest("auth failed".into()));
                }
                Ok(Fetched {
                    info: info(token, expires_on, None),
                    refresh_token: Some(RefreshToken::new("refresh")),
                })
            })
        }
    }

    async fn storm(
        fail: bool,
    ) -> (
        usize,
        Vec<Result<AccessTokenInfo, CredentialError>>,
        TokenCache,
    ) {
        let cache = TokenCache::with_capacity(3);
        let calls = Arc::new(AtomicUsize::new(0));
        let now = 1_000_000;
        let (release, gate) = tokio::sync::watch::channel(false);
        let joined = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for _ in 0..1000 {
            let fetch = gated(&calls, &gate, "T", now + 3600, fail);
            let request = get(&cache, "t", now, fetch);
            let joined = joined.clone();
            callers.push(tokio::spawn(async move {
                let mut request = Box::pin(request);
                // The first poll starts or joins the request.
                let first = futures_util::poll!(request.as_mut());
                joined.fetch_add(1, Ordering::SeqCst);
                match first {
                    std::task::Poll::Ready(outcome) => outcome,
                    std::task::Poll::Pending => request.await,
                }
            }));
        }
        // Meanwhile other users push everything out of the cache, more than once.
        for (i, tenant) in ["u", "v", "w", "x", "y", "z", "q"].into_iter().enumerate() {
            let fetch = fetch_returning(&calls, "U", now + 3600);
            get(&cache, tenant, now + i as i64, fetch).await.expect("U");
            tokio::task::yield_now().await;
        }
        while joined.load(Ordering::SeqCst) < 1000 {
            tokio::task::yield_now().await;
        }
        let _ = release.send(true);
        let mut outcomes = Vec::new();
        for caller in callers {
            outcomes.push(caller.await.expect("task"));
        }
        (calls.load(Ordering::SeqCst) - 7, outcomes, cache)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_callers_share_one_fetch_whatever_is_evicted() {
        let (fetches, outcomes, cache) = storm(false).await;
        assert_eq!(fetches, 1);
        for outcome in outcomes {
            assert_eq!(outcome.expect("token").token.expose_secret(), "T");
        }
        assert_eq!(cache.in_flight(), 0);
        cache.check_invariants().expect("invariants");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_is_shared_by_the_callers_of_its_request() {
        let (fetches, outcomes, cache) = storm(true).await;
        assert_eq!(fetches, 1, "the waiters did not retry one by one");
        assert!(outcomes.iter().all(Result::is_err));
        assert_eq!(cache.in_flight(), 0);
        cache.check_invariants().expect("invariants");
    }

    #[tokio::test]
    async fn a_cancelled_request_leaves_nothing_behind() {
        let cache = TokenCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (_release, gate) = tokio::sync::watch::channel(false);
        let now = 1_000;
        // Polled once, then dropped.
        let mut started = Box::pin(get(
            &cache,
            "t",
            now,
            gated(&calls, &gate, "T", now + 3600, false),
        ));
        assert!(futures_util::poll!(started.as_mut()).is_pending());
        assert_eq!(cache.in_flight(), 1);
        drop(started);
        assert_eq!(cache.in_flight(), 0);
        // Two waiters, both dropped.
        let mut first = Box::pin(get(
            &cache,
            "t",
            now,
            gated(&calls, &gate, "T", now + 3600, false),
        ));
        let mut second = Box::pin(get(
            &cache,
            "t",
            now,
            gated(&calls, &gate, "T", now + 3600, false),
        ));
        assert!(futures_util::poll!(first.as_mut()).is_pending());
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the second joined the first"
        );
        drop(first);
        assert_eq!(cache.in_flight(), 1, "the second still waits");
        drop(second);
        assert_eq!(cache.in_flight(), 0);
        // A later caller starts afresh and is served.
        let token = get(&cache, "t", now, fetch_returning(&calls, "B", now + 3600)).await;
        assert_eq!(token.expect("B").token.expose_secret(), "B");
        assert_eq!(cache.in_flight(), 0);
        assert!(!cache.is_empty());
        cache.check_invariants().expect("invariants");
    }

    #[tokio::test]
    async fn a_token_stored_after_its_partition_was_evicted_is_counted_once() {
        let (cache, calls, scopes, now) = primed().await;
        let cache_small = TokenCache::with_capacity(2);
        drop(cache);
        let cache = cache_small;
        get(&cache, "t", now, fetch_returning(&calls, "A", now + 3600))
            .await
            .expect("A");
        // A refresh of "t" is in flight while other tenants evict its partition.
        let (release, gate) = tokio::sync::watch::channel(false);
        let refresh = tokio::spawn({
            let cache = cache.clone();
            let fetch = gated(&calls, &gate, "R", now + 7200, false);
            async move {
                cache
                    .get_or_fetch(
                        &key("t"),
                        &SortedScopes::new(&["s"]),
                        now,
                        FetchMode::Refresh,
                        fetch,
                    )
                    .await
            }
        });
        tokio::task::yield_now().await;
        for (i, tenant) in ["u", "v", "w"].into_iter().enumerate() {
            let at = now + 1 + i as i64;
            get(&cache, tenant, at, fetch_returning(&calls, "U", at + 3600))
                .await
                .expect("U");
        }
        assert!(
            fresh(&cache, &key("t"), &scopes, now + 5).is_none(),
            "t was evicted"
        );
        cache.check_invariants().expect("invariants");
        let _ = release.send(true);
        let refreshed = refresh.await.expect("task").expect("R");
        assert_eq!(refreshed.token.expose_secret(), "R");
        cache
            .check_invariants()
            .expect("invariants after the late store");
        assert_eq!(
            fresh(&cache, &key("t"), &scopes, now + 5)
                .expect("stored again")
                .token
                .expose_secret(),
            "R"
        );
        assert!(cache.len() <= 2);
    }

    #[tokio::test]
    async fn hints_follow_their_slot_and_let_go_after_eviction() {
        let cache = TokenCache::with_capacity(3);
        let calls = Arc::new(AtomicUsize::new(0));
        let hint: Arc<Hints> = Arc::default();
        let scopes = SortedScopes::new(&["s"]);
        let now = 1_000_000;
        get(&cache, "t", now, fetch_returning(&calls, "A", now + 3600))
            .await
            .expect("A");
        assert!(
            cache
                .hinted_fresh(&hint, false, scopes.as_slice(), now)
                .is_none(),
            "nothing learnt yet"
        );
        // The first hinted lookup learns the slot, the next ones use it.
        for _ in 0..2 {
            let token = cache
                .lookup_hinted(&hint, &key("t"), &scopes, now)
                .expect("hit")
                .into_info();
            assert_eq!(token.token.expose_secret(), "A");
        }
        let hinted = cache
            .hinted_fresh(&hint, false, scopes.as_slice(), now)
            .expect("hinted");
        assert_eq!(hinted.token.expose_secret(), "A");
        assert!(
            cache
                .lookup_hinted(&hint, &key("t"), &SortedScopes::new(&["other"]), now)
                .is_none()
        );
        // Push "t" out, then fill it again: the hint must not serve the evicted slot.
        for (i, tenant) in ["u", "v", "w", "x"].into_iter().enumerate() {
            let at = now + 10 + i as i64;
            get(&cache, tenant, at, fetch_returning(&calls, "U", at + 3600))
                .await
                .expect("U");
        }
        assert!(
            fresh(&cache, &key("t"), &scopes, now + 20).is_none(),
            "t was evicted"
        );
        assert!(
            cache
                .hinted_fresh(&hint, false, scopes.as_slice(), now + 20)
                .is_none()
        );
        assert!(
            cache
                .lookup_hinted(&hint, &key("t"), &scopes, now + 20)
                .is_none()
        );
        get(
            &cache,
            "t",
            now + 21,
            fetch_returning(&calls, "B", now + 3600),
        )
        .await
        .expect("B");
        let token = cache
            .lookup_hinted(&hint, &key("t"), &scopes, now + 21)
            .expect("hit")
            .into_info();
        assert_eq!(token.token.expose_secret(), "B");
    }

    #[tokio::test]
    async fn eviction_follows_use_order_within_one_second() {
        let cache = TokenCache::with_capacity(10);
        let calls = Arc::new(AtomicUsize::new(0));
        let scopes = SortedScopes::new(&["s"]);
        let now = 1_000_000;
        let tenants: Vec<&'static str> = (0..11)
            .map(|i| &*Box::leak(format!("t{i}").into_boxed_str()))
            .collect();
        for tenant in &tenants[..10] {
            get(
                &cache,
                tenant,
                now,
                fetch_returning(&calls, "T", now + 3600),
            )
            .await
            .expect("t");
        }
        // Same second: t0 used last, so t1 and t2 are the least recently used.
        assert!(fresh(&cache, &key("t0"), &scopes, now).is_some());
        get(
            &cache,
            tenants[10],
            now,
            fetch_returning(&calls, "T", now + 3600),
        )
        .await
        .expect("t10");
        assert_eq!(cache.len(), 9);
        for (tenant, kept) in [
            ("t0", true),
            ("t1", false),
            ("t2", false),
            ("t3", true),
            ("t10", true),
        ] {
            assert_eq!(
                fresh(&cache, &key(tenant), &scopes, now).is_some(),
                kept,
                "{tenant}"
            );
        }
        cache.check_invariants().expect("invariants");
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_byte_limit() {
        let per_token = 1000 + ENTRY_OVERHEAD_BYTES;
        let cache = TokenCache::with_limits(1_000, per_token * 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let scopes = SortedScopes::new(&["s"]);
        let now = 1_000_000;
        let big: &'static str = Box::leak("t".repeat(1000).into_boxed_str());
        let tenants: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
        for (i, tenant) in tenants.iter().enumerate() {
            let at = now + i as i64;
            let fetch = fetch_returning(&calls, big, at + 3600);
            cache
                .get_or_fetch(&key(tenant), &scopes, at, FetchMode::Normal, fetch)
                .await
                .expect("token");
        }
        assert!(
            cache.bytes() <= cache.max_bytes(),
            "{} > {}",
            cache.bytes(),
            cache.max_bytes()
        );
        assert!(cache.len() <= 10);
        assert!(
            fresh(&cache, &key("t29"), &scopes, now + 30).is_some(),
            "the newest stays"
        );
        assert!(
            fresh(&cache, &key("t0"), &scopes, now + 30).is_none(),
            "the oldest went"
        );
    }

    #[tokio::test]
    async fn the_cache_stays_within_capacity_dropping_dead_and_old_partitions_first() {
        let cache = TokenCache::with_capacity(10);
        let calls = Arc::new(AtomicUsize::new(0));
        let scopes = SortedScopes::new(&["s"]);
        let now = 1_000_000;
        // Tenant "dead" holds an expired token; "t0".."t9" are live, t0 the oldest.
        cache
            .get_or_fetch(
                &key("dead"),
                &scopes,
                now,
                FetchMode::Normal,
                fetch_returning(&calls, "X", now + 1),
            )
            .await
            .expect("x");
        let tenants: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
        for (i, tenant) in tenants.iter().enumerate() {
            let at = now + 10 + i as i64;
            cache
                .get_or_fetch(
                    &key(tenant),
                    &scopes,
                    at,
                    FetchMode::Normal,
                    fetch_returning(&calls, "T", at + 3600),
                )
                .await
                .expect("t");
        }
        assert!(cache.len() <= 10, "{}", cache.len());
        assert!(fresh(&cache, &key("dead"), &scopes, now).is_none());
        assert!(
            fresh(&cache, &key("t0"), &scopes, now + 30).is_none(),
            "least recently used went"
        );
        assert!(
            fresh(&cache, &key("t11"), &scopes, now + 30).is_some(),
            "the newest stays"
        );
    }
}
