//! The token cache both credentials share.
//!
//! Tokens are grouped in *partitions*: one per application (authority and client ID), tenant,
//! user (the SHA-256 of an on-behalf-of user assertion, never the assertion) and CAE flag.
//! Inside a partition each set of scopes has a *slot* holding its token. A token for scopes
//! `{a, b}` also serves a request for `{a}`.
//!
//! Reading a fresh token takes no lock and allocates nothing. When a token is missing or
//! expired, one request per slot is in flight and every caller awaits it; when a token is due
//! for a proactive refresh, one caller refreshes it while the others keep the cached token.
//! Slots never wait on each other. The number of slots is bounded: past the capacity, the
//! partitions whose tokens have all expired go first, then the least recently used.

use std::borrow::Cow;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use futures_util::FutureExt as _;
use futures_util::future::WeakShared;

use crate::error::CredentialError;
use crate::secret::{AccessTokenSecret, RefreshToken, SharedSecret};
use crate::token::{AccessToken, AccessTokenInfo};
use zeroize::Zeroizing;

/// A token is refreshed proactively when it expires within this many seconds.
pub(crate) const REFRESH_WINDOW_SECS: i64 = 300;
/// After a refresh attempt, a proactive refresh of the same slot waits this long.
pub(crate) const REFRESH_RETRY_DELAY_SECS: i64 = 30;
/// Slots a cache holds by default.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;

/// A bounded, concurrent token cache. Clones share the same cache, so credentials built with
/// one [`TokenCache`] share their tokens.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    partitions: papaya::HashMap<PartitionKey, Arc<Partition>, foldhash::fast::RandomState>,
    slots: AtomicUsize,
    capacity: usize,
    /// Estimated bytes held: each token, its scopes and refresh token, plus
    /// [`ENTRY_OVERHEAD_BYTES`] per slot.
    bytes: AtomicUsize,
    max_bytes: usize,
    evicting: Mutex<()>,
    /// Realms and scope sets, stored once however many partitions use them.
    interned: Mutex<Interned>,
    /// The request in flight for each slot (by address; the request holds the slot), so that
    /// slots need no lock of their own.
    inflight: Mutex<std::collections::HashMap<usize, WeakShared<SharedRequest>>>,
    /// Held while a partition gains a slot (rare: a user asking for another API).
    grow: Mutex<()>,
    /// The connection pools of the credentials built with this cache.
    http_pools: crate::endpoint::http::PoolRegistry,
}

/// Strings many entries share.
#[derive(Default)]
struct Interned {
    realms: Vec<Arc<Realm>>,
    scope_sets: Vec<Arc<[Box<str>]>>,
}

/// Past this many distinct realms or scope sets, new ones are no longer interned.
const MAX_INTERNED: usize = 1024;

/// What a slot costs beyond its token and refresh token: the cache's own structures (scope
/// sets and tenants are shared). The `on_behalf_of` benchmark measures the real figure: about
/// 250 bytes for a user's partition with one slot.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 256;
/// Bytes a cache holds by default.
pub(crate) const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("slots", &self.inner.slots.load(Ordering::Relaxed))
            .field("capacity", &self.inner.capacity)
            .field("bytes", &self.inner.bytes.load(Ordering::Relaxed))
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
                partitions: papaya::HashMap::builder()
                    .hasher(foldhash::fast::RandomState::default())
                    .build(),
                slots: AtomicUsize::new(0),
                capacity: max_entries.max(1),
                bytes: AtomicUsize::new(0),
                max_bytes: max_bytes.max(1),
                evicting: Mutex::new(()),
                interned: Mutex::new(Interned::default()),
                inflight: Mutex::new(std::collections::HashMap::new()),
                grow: Mutex::new(()),
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
        self.inner.slots.load(Ordering::Relaxed)
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most tokens the cache holds.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The cached token for `scopes` when it needs no refresh; no lock, no allocation.
    pub(crate) fn fresh(
        &self,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
        now: i64,
    ) -> Option<AccessTokenInfo> {
        let guard = self.inner.partitions.guard();
        self.inner.partitions.get(key, &guard)?.fresh(scopes, now)
    }

    /// As [`TokenCache::fresh`] for a credential's own partition (its configured tenant).
    ///
    /// First this thread's recent hits: an entry there answers with no shared write and no
    /// lock, checked against the slot's version so a replaced or evicted token is never
    /// served. Then the slot the credential's `hints` remember, skipping the map; then the map.
    pub(crate) fn fresh_hinted(
        &self,
        hints: &Arc<Hints>,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
        now: i64,
    ) -> Option<AccessTokenInfo> {
        if let Some(token) = hot_lookup(hints, key.cae, scopes, now) {
            return Some(token);
        }
        let hint = &hints[usize::from(key.cae)];
        let remembered = hint
            .slot
            .load_full()
            .filter(|slot| !slot.is_evicted() && scopes.equals(&slot.scopes));
        let slot = match remembered {
            Some(slot) => slot,
            None => {
                let guard = self.inner.partitions.guard();
                let partition = self.inner.partitions.get(key, &guard)?;
                let exact = partition.exact(scopes);
                let Some(slot) = exact else {
                    // Only a token for more scopes can answer: no slot to remember.
                    return partition.fresh(scopes, now);
                };
                partition.touch(now);
                hint.slot.store(Some(slot.clone()));
                slot
            }
        };
        // The version is read before the token, so a token stored meanwhile makes the hot
        // entry look stale, never the other way round.
        let version = slot.version.load(Ordering::Acquire);
        slot.touch(now);
        let token = slot.serve(now)?;
        hot_record(hints, key.cae, slot, version, &token);
        Some(token)
    }

    /// The token for `scopes`: cached when fresh, else fetched once however many callers ask.
    /// With `bypass` (a claims challenge) the cache is not consulted, but the result is stored.
    pub(crate) async fn get_or_fetch(
        &self,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
        now: i64,
        bypass: bool,
        fetch: impl FnOnce(Option<RefreshToken>) -> FetchFuture,
    ) -> Result<AccessTokenInfo, CredentialError> {
        if let Some(token) = (!bypass).then(|| self.fresh(key, scopes, now)).flatten() {
            return Ok(token);
        }
        let (partition, slot) = self.slot(key, scopes, now);
        if bypass {
            let fetched = fetch(partition.refresh_token()).await?;
            return Ok(self.inner.store(&partition, &slot, fetched, now));
        }
        let current = slot.token.load_full();
        let last_attempt = slot.last_attempt.load(Ordering::Relaxed);
        match refresh_status(current.as_deref(), now, last_attempt) {
            Refresh::NotNeeded => match current {
                Some(token) => Ok(token.info()),
                None => self.join_or_start(&partition, &slot, now, fetch).await,
            },
            Refresh::Required => {
                slot.last_attempt.store(now, Ordering::Relaxed);
                self.join_or_start(&partition, &slot, now, fetch).await
            }
            Refresh::Recommended => {
                let Some(current) = current else {
                    return self.join_or_start(&partition, &slot, now, fetch).await;
                };
                // One caller wins the right to refresh; the others keep the cached token.
                let won = slot
                    .last_attempt
                    .compare_exchange(last_attempt, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok();
                if !won {
                    return Ok(current.info());
                }
                match self.join_or_start(&partition, &slot, now, fetch).await {
                    Ok(token) => Ok(token),
                    Err(error) => {
                        tracing::warn!(
                            "proactive token refresh failed; the cached token stays in use: {error}"
                        );
                        Ok(current.info())
                    }
                }
            }
        }
    }

    /// Drops the partition's refresh token if it is still `stale` (Entra ID refused it).
    pub(crate) fn evict_refresh_token(&self, key: &PartitionKeyRef<'_>, stale: &RefreshToken) {
        let guard = self.inner.partitions.guard();
        if let Some(partition) = self.inner.partitions.get(key, &guard) {
            let mut current = partition.lock_refresh_token();
            if current
                .as_ref()
                .is_some_and(|current| current.as_str() == stale.expose_secret())
            {
                *current = None;
                self.inner.account(0, stale.expose_secret().len());
            }
        }
    }

    async fn join_or_start(
        &self,
        partition: &Arc<Partition>,
        slot: &Arc<Slot>,
        now: i64,
        fetch: impl FnOnce(Option<RefreshToken>) -> FetchFuture,
    ) -> Result<AccessTokenInfo, CredentialError> {
        let address = Arc::as_ptr(slot) as usize;
        let shared = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match inflight.get(&address).and_then(WeakShared::upgrade) {
                Some(running) => running,
                None => {
                    let request = fetch(partition.refresh_token());
                    let (cache, partition, slot) =
                        (self.inner.clone(), partition.clone(), slot.clone());
                    let future: SharedRequest = Box::pin(async move {
                        let outcome = request
                            .await
                            .map(|fetched| cache.store(&partition, &slot, fetched, now));
                        // Later callers start afresh: this request's answer is spent.
                        cache
                            .inflight
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&(Arc::as_ptr(&slot) as usize));
                        outcome
                    });
                    let shared = future.shared();
                    if let Some(weak) = shared.downgrade() {
                        inflight.insert(address, weak);
                    }
                    shared
                }
            }
        };
        shared.await
    }

    /// The partition and slot for a key and scopes, created when missing.
    fn slot(
        &self,
        key: &PartitionKeyRef<'_>,
        scopes: &SortedScopes<'_>,
        now: i64,
    ) -> (Arc<Partition>, Arc<Slot>) {
        let existing = {
            let guard = self.inner.partitions.guard();
            self.inner.partitions.get(key, &guard).cloned()
        };
        let partition = match existing {
            Some(partition) => partition,
            None => {
                // A new partition starts with the slot for these scopes.
                let first = Arc::new(Slot::new(self.inner.intern_scopes(scopes)));
                let guard = self.inner.partitions.guard();
                let partition = self
                    .inner
                    .partitions
                    .get_or_insert_with(
                        key.into_owned(&self.inner),
                        || Arc::new(Partition::new(now, first.clone())),
                        &guard,
                    )
                    .clone();
                if Arc::ptr_eq(&partition.first, &first) {
                    self.inner.slots.fetch_add(1, Ordering::Relaxed);
                    self.evict_if_full(now);
                    return (partition, first);
                }
                partition
            }
        };
        partition.touch(now);
        if let Some(slot) = partition.exact(scopes) {
            return (partition, slot);
        }
        let slot = {
            let _grow = self
                .inner
                .grow
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match partition.exact(scopes) {
                Some(slot) => slot,
                None => {
                    let slot = Arc::new(Slot::new(self.inner.intern_scopes(scopes)));
                    let more = partition.more.load_full();
                    let mut grown =
                        Vec::with_capacity(more.as_ref().map_or(0, |more| more.len()) + 1);
                    grown.extend(more.iter().flat_map(|more| more.iter().cloned()));
                    grown.push(slot.clone());
                    partition.more.store(Some(Arc::new(grown)));
                    self.inner.slots.fetch_add(1, Ordering::Relaxed);
                    slot
                }
            }
        };
        self.evict_if_full(now);
        (partition, slot)
    }

    fn evict_if_full(&self, now: i64) {
        if self.inner.slots.load(Ordering::Relaxed) > self.inner.capacity {
            self.inner.evict(now);
        }
    }
}

impl CacheInner {
    /// Stores a fetched token (and refresh token), keeping the byte count.
    fn store(
        &self,
        partition: &Partition,
        slot: &Slot,
        fetched: Fetched,
        now: i64,
    ) -> AccessTokenInfo {
        if let Some(refresh_token) = fetched.refresh_token {
            let size = refresh_token.expose_secret().len();
            let previous = partition
                .lock_refresh_token()
                .replace(Zeroizing::new(refresh_token.expose_secret().to_owned()));
            self.account(size, previous.map_or(0, |old| old.len()));
        }
        let cached = CachedToken::new(&fetched.info);
        let size = Self::token_bytes(&cached);
        let previous = slot.token.swap(Some(Arc::new(cached)));
        self.account(size, previous.map_or(0, |old| Self::token_bytes(&old)));
        slot.version.fetch_add(1, Ordering::Release);
        if self.bytes.load(Ordering::Relaxed) > self.max_bytes {
            self.evict(now);
        }
        fetched.info
    }

    /// Brings the cache under 90 % of both limits: partitions with no valid token first,
    /// then the least recently used.
    fn evict(&self, now: i64) {
        let Ok(_evicting) = self.evicting.try_lock() else {
            return; // another caller is already evicting
        };
        let entry_target = self.capacity - self.capacity / 10;
        let byte_target = self.max_bytes - self.max_bytes / 10;
        let over = || {
            self.slots.load(Ordering::Relaxed) > entry_target
                || self.bytes.load(Ordering::Relaxed) > byte_target
        };
        let guard = self.partitions.guard();
        let mut candidates: Vec<(bool, i64, PartitionKey)> = self
            .partitions
            .iter(&guard)
            .map(|(key, partition)| {
                // A slot still waiting for its first token is not dead: it is being filled.
                let live = partition.all_slots().iter().any(|slot| {
                    slot.token
                        .load()
                        .as_deref()
                        .is_none_or(|token| token.expires_on > now)
                });
                (live, partition.last_used(), key.clone())
            })
            .collect();
        // Dead partitions (false) sort first, then the oldest.
        candidates.sort_unstable_by_key(|(live, last_used, _)| (*live, *last_used));
        for (_, _, key) in candidates {
            if !over() {
                break;
            }
            if let Some(partition) = self.partitions.remove(&key, &guard) {
                let slots = partition.all_slots();
                for slot in slots.iter() {
                    slot.version.fetch_or(EVICTED, Ordering::Release);
                }
                self.slots.fetch_sub(slots.len(), Ordering::Relaxed);
                let bytes = slots
                    .iter()
                    .filter_map(|slot| slot.token.load().as_deref().map(Self::token_bytes))
                    .sum::<usize>()
                    + partition
                        .lock_refresh_token()
                        .as_ref()
                        .map_or(0, |rt| rt.len());
                self.account(0, bytes);
            }
        }
    }

    fn intern_realm(&self, app: &Arc<str>, tenant: &str, cae: bool) -> Arc<Realm> {
        let mut interned = self
            .interned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let mut interned = self
            .interned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// What a slot's token is counted as.
    fn token_bytes(token: &CachedToken) -> usize {
        token.secret.len() + ENTRY_OVERHEAD_BYTES
    }

    fn account(&self, added: usize, removed: usize) {
        if added >= removed {
            self.bytes.fetch_add(added - removed, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(removed - added, Ordering::Relaxed);
        }
    }
}

/// How many recent hits each thread remembers.
const HOT_ENTRIES: usize = 16;

/// A recent hit of this thread.
struct HotEntry {
    /// The credential's hints; a weak reference keeps the address from being reused by
    /// another credential while the entry exists.
    owner: std::sync::Weak<Hints>,
    cae: bool,
    slot: Arc<Slot>,
    version: u64,
    token: AccessTokenInfo,
    /// Hits served from this entry; a token hit often gets a copy of its own.
    hits: u32,
}

/// After this many hits a thread copies the token for itself: every clone of one shared
/// secret touches one reference count, and hits from two cores on the same token would make
/// that cache line bounce between them. A token this thread reads only now and then keeps
/// sharing the cache's copy, so cycling through many users allocates nothing.
const COPY_AFTER_HITS: u32 = 4;

std::thread_local! {
    static HOT: std::cell::RefCell<Vec<HotEntry>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's recent hit, as an [`AccessToken`]: the quickest answer there is.
pub(crate) fn hot_token(
    hints: &Arc<Hints>,
    cae: bool,
    scopes: &SortedScopes<'_>,
    now: i64,
) -> Option<AccessToken> {
    with_hot_entry(hints, cae, scopes, now, |token| AccessToken {
        token: token.token.clone(),
        expires_on: token.expires_on,
    })
}

fn hot_lookup(
    hints: &Arc<Hints>,
    cae: bool,
    scopes: &SortedScopes<'_>,
    now: i64,
) -> Option<AccessTokenInfo> {
    with_hot_entry(hints, cae, scopes, now, AccessTokenInfo::clone)
}

/// Answers from this thread's entry for the credential (`hints`), flag and scopes, if it is
/// still current: same token version, not evicted, and needing no refresh.
fn with_hot_entry<T>(
    hints: &Arc<Hints>,
    cae: bool,
    scopes: &SortedScopes<'_>,
    now: i64,
    answer: impl FnOnce(&AccessTokenInfo) -> T,
) -> Option<T> {
    let owner = Arc::as_ptr(hints);
    HOT.with(|hot| {
        let mut hot = hot.borrow_mut();
        let entry = hot.iter_mut().find(|entry| {
            entry.cae == cae
                && std::ptr::eq(entry.owner.as_ptr(), owner)
                && scopes.equals(&entry.slot.scopes)
        })?;
        let slot = &entry.slot;
        if slot.version.load(Ordering::Acquire) != entry.version {
            return None;
        }
        let last_attempt = slot.last_attempt.load(Ordering::Relaxed);
        if refresh_status(Some(&entry.token), now, last_attempt) != Refresh::NotNeeded {
            return None;
        }
        slot.touch(now);
        entry.hits = entry.hits.saturating_add(1);
        if entry.hits == COPY_AFTER_HITS {
            entry.token.token = AccessTokenSecret::new(entry.token.token.expose_secret());
        }
        Some(answer(&entry.token))
    })
}

fn hot_record(
    hints: &Arc<Hints>,
    cae: bool,
    slot: Arc<Slot>,
    version: u64,
    token: &AccessTokenInfo,
) {
    let owner = Arc::as_ptr(hints);
    HOT.with(|hot| {
        let mut hot = hot.borrow_mut();
        hot.retain(|entry| {
            !(entry.cae == cae
                && std::ptr::eq(entry.owner.as_ptr(), owner)
                && Arc::ptr_eq(&entry.slot, &slot))
                && entry.owner.strong_count() > 0
        });
        if hot.len() >= HOT_ENTRIES {
            hot.remove(0);
        }
        hot.push(HotEntry {
            owner: Arc::downgrade(hints),
            cae,
            slot,
            version,
            token: token.clone(),
            hits: 0,
        });
    });
}

/// A credential's hints: the slot of its last hit, for plain and for CAE tokens.
pub(crate) type Hints = [PartitionHint; 2];

/// Remembers the slot of a credential's last cache hit, so its next hits skip the map.
#[derive(Default)]
pub(crate) struct PartitionHint {
    slot: ArcSwapOption<Slot>,
}

impl std::fmt::Debug for PartitionHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartitionHint")
    }
}

/// A token as a slot keeps it: one allocation holding the secret and its times.
pub(crate) struct CachedToken {
    secret: Zeroizing<String>,
    expires_on: i64,
    /// `i64::MIN` when there is none.
    refresh_on: i64,
    /// An index into [`TOKEN_TYPES`]; 0 is `Bearer`.
    token_type: u32,
}

/// Token types other than `Bearer`, which Entra ID hardly ever sends: stored once each.
static TOKEN_TYPES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// The index of a token type (0 for `Bearer`).
fn token_type_index(token_type: &str) -> u32 {
    if token_type == "Bearer" {
        return 0;
    }
    let mut types = TOKEN_TYPES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let index = match types.iter().position(|known| *known == token_type) {
        Some(index) => index,
        None if types.len() < 64 => {
            // A handful of strings, leaked once, for the life of the process.
            types.push(Box::leak(Box::from(token_type)));
            types.len() - 1
        }
        None => return u32::MAX,
    };
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

fn token_type_name(index: u32) -> Cow<'static, str> {
    if index == 0 {
        return Cow::Borrowed("Bearer");
    }
    let types = TOKEN_TYPES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let name = usize::try_from(index - 1)
        .ok()
        .and_then(|index| types.get(index).copied());
    name.map_or(Cow::Borrowed("Bearer"), Cow::Borrowed)
}

impl CachedToken {
    fn new(info: &AccessTokenInfo) -> Self {
        Self {
            secret: Zeroizing::new(info.token.expose_secret().to_owned()),
            expires_on: info.expires_on,
            refresh_on: info.refresh_on.unwrap_or(i64::MIN),
            token_type: token_type_index(&info.token_type),
        }
    }

    /// The token as callers get it, sharing the cache's copy of the secret.
    fn info(self: &Arc<Self>) -> AccessTokenInfo {
        AccessTokenInfo {
            token: AccessTokenSecret::shared(self.clone()),
            expires_on: self.expires_on,
            token_type: token_type_name(self.token_type),
            refresh_on: (self.refresh_on != i64::MIN).then_some(self.refresh_on),
        }
    }
}

impl SharedSecret for CachedToken {
    fn secret(&self) -> &str {
        &self.secret
    }
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

pub(crate) struct Partition {
    /// The slot the partition was made for: most partitions (one user, one API) have no other.
    first: Arc<Slot>,
    /// Slots for other scope sets.
    more: ArcSwapOption<Vec<Arc<Slot>>>,
    /// The user's refresh token (on-behalf-of), read only when a token must be fetched.
    refresh_token: Mutex<Option<Zeroizing<String>>>,
}

impl Partition {
    /// The token for `scopes` if it needs no refresh: an exact match, or a token for more
    /// scopes.
    fn fresh(&self, scopes: &SortedScopes<'_>, now: i64) -> Option<AccessTokenInfo> {
        self.touch(now);
        if scopes.equals(&self.first.scopes) {
            return self.first.serve(now);
        }
        let more = self.more.load();
        let more = more.as_deref().map_or(&[][..], Vec::as_slice);
        if let Some(slot) = more.iter().find(|slot| scopes.equals(&slot.scopes)) {
            return slot.serve(now);
        }
        // A token for more scopes serves fewer, while it needs no refresh of its own.
        std::iter::once(&self.first)
            .chain(more)
            .filter(|slot| scopes.is_subset_of(&slot.scopes))
            .find_map(|slot| slot.serve(now))
    }

    /// The slot for exactly these scopes.
    fn exact(&self, scopes: &SortedScopes<'_>) -> Option<Arc<Slot>> {
        if scopes.equals(&self.first.scopes) {
            return Some(self.first.clone());
        }
        let more = self.more.load();
        more.as_deref()?
            .iter()
            .find(|slot| scopes.equals(&slot.scopes))
            .cloned()
    }

    /// Every slot (for eviction).
    fn all_slots(&self) -> Vec<Arc<Slot>> {
        let more = self.more.load_full();
        std::iter::once(self.first.clone())
            .chain(more.iter().flat_map(|more| more.iter().cloned()))
            .collect()
    }

    /// When any of the partition's slots was last used.
    fn last_used(&self) -> i64 {
        self.all_slots()
            .iter()
            .map(|slot| slot.last_used.load(Ordering::Relaxed))
            .max()
            .unwrap_or(i64::MIN)
    }

    fn lock_refresh_token(&self) -> std::sync::MutexGuard<'_, Option<Zeroizing<String>>> {
        self.refresh_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the refresh token, for a request.
    fn refresh_token(&self) -> Option<RefreshToken> {
        self.lock_refresh_token()
            .as_ref()
            .map(|token| RefreshToken::new(token.as_str()))
    }

    fn new(now: i64, first: Arc<Slot>) -> Self {
        first.touch(now);
        Self {
            first,
            more: ArcSwapOption::empty(),
            refresh_token: Mutex::new(None),
        }
    }

    /// Records use; writes only when the second changed, so concurrent readers do not fight
    /// over the cache line.
    fn touch(&self, now: i64) {
        self.first.touch(now);
    }
}

/// The top bit of a slot's version: its partition was evicted.
const EVICTED: u64 = 1 << 63;

pub(crate) struct Slot {
    scopes: Arc<[Box<str>]>,
    token: ArcSwapOption<CachedToken>,
    last_attempt: AtomicI64,
    last_used: AtomicI64,
    /// Bumped whenever the token changes, so thread-local entries know they are stale; its
    /// top bit ([`EVICTED`]) is set when eviction removes the slot's partition.
    version: AtomicU64,
}

impl Slot {
    /// The token if it needs no refresh.
    fn serve(&self, now: i64) -> Option<AccessTokenInfo> {
        let token = self.token.load();
        let token = token.as_ref()?;
        let last_attempt = self.last_attempt.load(Ordering::Relaxed);
        if refresh_status(Some(&**token), now, last_attempt) != Refresh::NotNeeded {
            return None;
        }
        Some(token.info())
    }

    fn is_evicted(&self) -> bool {
        self.version.load(Ordering::Relaxed) & EVICTED != 0
    }

    /// Records use; writes only when the second changed, so concurrent readers do not fight
    /// over the cache line.
    fn touch(&self, now: i64) {
        if self.last_used.load(Ordering::Relaxed) != now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }

    fn new(scopes: Arc<[Box<str>]>) -> Self {
        Self {
            last_used: AtomicI64::new(i64::MIN),
            version: AtomicU64::new(0),
            scopes,
            token: ArcSwapOption::empty(),
            last_attempt: AtomicI64::new(i64::MIN),
        }
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

impl papaya::Equivalent<PartitionKey> for PartitionKeyRef<'_> {
    fn equivalent(&self, key: &PartitionKey) -> bool {
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
        if scopes.windows(2).all(|pair| pair[0] < pair[1]) {
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
        let mine = self.as_slice();
        mine.len() == other.len() && mine.iter().zip(other).all(|(a, b)| *a == &**b)
    }

    fn is_subset_of(&self, other: &[Box<str>]) -> bool {
        self.as_slice()
            .iter()
            .all(|scope| other.binary_search_by(|o| (**o).cmp(scope)).is_ok())
    }
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
mod tests {
    use std::borrow::Cow;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::secret::AccessTokenSecret;

    fn info(token: &str, expires_on: i64, refresh_on: Option<i64>) -> AccessTokenInfo {
        AccessTokenInfo {
            token: AccessTokenSecret::new(token),
            expires_on,
            token_type: Cow::Borrowed("Bearer"),
            refresh_on,
        }
    }

    fn app() -> &'static Arc<str> {
        static APP: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
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
                false,
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

    #[test]
    fn token_types_other_than_bearer_survive_the_cache() {
        assert_eq!(token_type_index("Bearer"), 0);
        assert_eq!(token_type_name(token_type_index("pop")), "pop");
        assert_eq!(token_type_index("pop"), token_type_index("pop"));
        let cached = Arc::new(CachedToken::new(&AccessTokenInfo {
            token: AccessTokenSecret::new("t"),
            expires_on: 10,
            token_type: Cow::Borrowed("PoP"),
            refresh_on: Some(5),
        }));
        let info = cached.info();
        assert_eq!(
            (
                info.token_type.as_ref(),
                info.refresh_on,
                info.token.expose_secret()
            ),
            ("PoP", Some(5), "t")
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
        let cache = TokenCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let scopes = SortedScopes::new(&["s"]);
        let now = 1_000_000;
        let first = cache
            .get_or_fetch(
                &key("t"),
                &scopes,
                now,
                false,
                fetch_returning(&calls, "A", now + 3600),
            )
            .await;
        assert_eq!(first.expect("token").token.expose_secret(), "A");
        let again = cache
            .get_or_fetch(
                &key("t"),
                &scopes,
                now + 100,
                false,
                fetch_returning(&calls, "B", now + 7200),
            )
            .await;
        assert_eq!(again.expect("token").token.expose_secret(), "A");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another tenant is another partition.
        let other = cache
            .get_or_fetch(
                &key("u"),
                &scopes,
                now,
                false,
                fetch_returning(&calls, "C", now + 3600),
            )
            .await;
        assert_eq!(other.expect("token").token.expose_secret(), "C");
        // Inside the refresh window: a new token.
        let later = now + 3600 - 299;
        let refreshed = cache
            .get_or_fetch(
                &key("t"),
                &scopes,
                later,
                false,
                fetch_returning(&calls, "D", later + 3600),
            )
            .await;
        assert_eq!(refreshed.expect("token").token.expose_secret(), "D");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failed_proactive_refresh_keeps_the_token_and_waits_30_seconds() {
        let (cache, calls, scopes, now) = primed().await;
        let window = now + 3600 - 299;
        for offset in 0..4 {
            let token = cache
                .get_or_fetch(&key("t"), &scopes, window + offset, false, failing(&calls))
                .await;
            assert_eq!(token.expect("cached token").token.expose_secret(), "A");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one failed refresh, then the retry delay"
        );
        let token = cache
            .get_or_fetch(&key("t"), &scopes, window + 30, false, failing(&calls))
            .await;
        assert_eq!(token.expect("cached").token.expose_secret(), "A");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "tried again after 30 s");
        // Once expired, the failure propagates, retry delay or not.
        let expired = cache
            .get_or_fetch(&key("t"), &scopes, now + 3600, false, failing(&calls))
            .await;
        assert!(expired.is_err());
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
                false,
                fetch_returning(&calls, "AB", now + 3600),
            )
            .await
            .expect("token");
        for scopes in [&["a"][..], &["b"], &["b", "a"]] {
            let token = cache
                .fresh(&key("t"), &SortedScopes::new(scopes), now)
                .expect("served");
            assert_eq!(token.token.expose_secret(), "AB");
        }
        assert!(
            cache
                .fresh(&key("t"), &SortedScopes::new(&["a", "c"]), now)
                .is_none()
        );
    }

    #[tokio::test]
    async fn claims_bypass_the_lookup_but_store_the_result() {
        let (cache, calls, scopes, now) = primed().await;
        let challenged = cache
            .get_or_fetch(
                &key("t"),
                &scopes,
                now,
                true,
                fetch_returning(&calls, "B", now + 3600),
            )
            .await;
        assert_eq!(challenged.expect("B").token.expose_secret(), "B");
        assert_eq!(
            cache
                .fresh(&key("t"), &scopes, now)
                .expect("stored")
                .token
                .expose_secret(),
            "B"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = TokenCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let now = 1_000_000;
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut callers = Vec::new();
        for _ in 0..200 {
            let cache = cache.clone();
            let calls = calls.clone();
            let mut gate = gate.clone();
            callers.push(tokio::spawn(async move {
                let fetch = move |_| -> FetchFuture {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Box::pin(async move {
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(Fetched {
                            info: info("T", now + 3600, None),
                            refresh_token: None,
                        })
                    })
                };
                cache
                    .get_or_fetch(&key("t"), &SortedScopes::new(&["s"]), now, false, fetch)
                    .await
            }));
        }
        tokio::task::yield_now().await;
        let _ = release.send(true);
        for caller in callers {
            assert_eq!(
                caller
                    .await
                    .expect("task")
                    .expect("token")
                    .token
                    .expose_secret(),
                "T"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn hints_follow_their_slot_and_let_go_after_eviction() {
        let cache = TokenCache::with_capacity(3);
        let calls = Arc::new(AtomicUsize::new(0));
        let hint: Arc<Hints> = Arc::default();
        let scopes = SortedScopes::new(&["s"]);
        let now = 1_000_000;
        let fetch = fetch_returning(&calls, "A", now + 3600);
        cache
            .get_or_fetch(&key("t"), &scopes, now, false, fetch)
            .await
            .expect("A");
        // The first hinted lookup learns the slot, the second uses it.
        for _ in 0..2 {
            let token = cache
                .fresh_hinted(&hint, &key("t"), &scopes, now)
                .expect("hit");
            assert_eq!(token.token.expose_secret(), "A");
        }
        assert!(
            cache
                .fresh_hinted(&hint, &key("t"), &SortedScopes::new(&["other"]), now)
                .is_none()
        );
        // Push "t" out, then fill it again: the hint must not serve the evicted slot.
        for (i, tenant) in ["u", "v", "w", "x"].iter().enumerate() {
            let at = now + 10 + i as i64;
            let fetch = fetch_returning(&calls, "U", at + 3600);
            cache
                .get_or_fetch(&key(tenant), &scopes, at, false, fetch)
                .await
                .expect("U");
        }
        assert!(
            cache.fresh(&key("t"), &scopes, now + 20).is_none(),
            "t was evicted"
        );
        assert!(
            cache
                .fresh_hinted(&hint, &key("t"), &scopes, now + 20)
                .is_none()
        );
        let fetch = fetch_returning(&calls, "B", now + 3600);
        cache
            .get_or_fetch(&key("t"), &scopes, now + 21, false, fetch)
            .await
            .expect("B");
        let token = cache
            .fresh_hinted(&hint, &key("t"), &scopes, now + 21)
            .expect("hit");
        assert_eq!(token.token.expose_secret(), "B");
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
                .get_or_fetch(&key(tenant), &scopes, at, false, fetch)
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
            cache.fresh(&key("t29"), &scopes, now + 30).is_some(),
            "the newest stays"
        );
        assert!(
            cache.fresh(&key("t0"), &scopes, now + 30).is_none(),
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
                false,
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
                    false,
                    fetch_returning(&calls, "T", at + 3600),
                )
                .await
                .expect("t");
        }
        assert!(cache.len() <= 10, "{}", cache.len());
        assert!(cache.fresh(&key("dead"), &scopes, now).is_none());
        assert!(
            cache.fresh(&key("t0"), &scopes, now + 30).is_none(),
            "least recently used went"
        );
        assert!(
            cache.fresh(&key("t11"), &scopes, now + 30).is_some(),
            "the newest stays"
        );
    }
}
