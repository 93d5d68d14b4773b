//! Caches behind the in-memory one: the persistent cache (a file or the platform's secret
//! store, shared by the processes of one machine) and the distributed cache (shared by a
//! fleet). On a miss in memory, the entry is looked up there before asking Entra ID, and what
//! Entra ID answers is written back for the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::cache::distributed::{DistributedCache, SharedToken};
use crate::cache::memory::{FetchFuture, Fetched, Refresh, refresh_status};
use crate::cache::persistent::msal_file::{CachedAccessToken, EntryScope, MsalCacheFile};
use crate::environment::Clock;
use crate::error::{BoxError, Chain, ClientAuthenticationError, CredentialError, FailureKind};
use crate::secret::{AccessTokenSecret, RefreshToken};
use crate::token::AccessTokenInfo;

/// A token request waiting to be made: given the tenant and a refresh token, it makes it.
pub(crate) type Fetcher = Box<dyn FnOnce(&str, Option<RefreshToken>) -> FetchFuture + Send>;

/// What a second-level cache's operation returns.
type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// One request's entry in a second-level cache.
pub(crate) trait SecondLevelEntry: Send + Sync + 'static {
    /// What the logs call the cache.
    const NAME: &'static str;

    /// The entry's access token (if any) and refresh token (if any), for `tenant`.
    fn find(self: Arc<Self>, tenant: &str, now: i64) -> StoreFuture<Found>;

    /// Writes what Entra ID answered.
    fn keep(self: Arc<Self>, tenant: &str, fetched: &Fetched, now: i64) -> StoreFuture<()>;

    /// Whether a cache that cannot be reached fails the request, rather than being skipped.
    fn fails_when_unavailable(&self) -> bool {
        false
    }

    /// The request's error when `error` means the cache may not be skipped (for the
    /// persistent cache: encryption is unavailable and files are not allowed); otherwise
    /// `error` back.
    fn refuses(&self, error: BoxError) -> Result<CredentialError, BoxError> {
        Err(error)
    }
}

/// What a second-level cache holds for a request.
#[derive(Default)]
pub(crate) struct Found {
    access_token: Option<AccessTokenInfo>,
    refresh_token: Option<RefreshToken>,
}

/// Wraps `fetch` so that it looks in `entry`'s cache first and writes back what it fetched.
/// A challenged request (with claims) never takes the cached access token, but may use the
/// refresh token.
pub(crate) fn through<E: SecondLevelEntry>(
    entry: E,
    challenged: bool,
    clock: Arc<dyn Clock>,
    fetch: impl FnOnce(&str, Option<RefreshToken>) -> FetchFuture + Send + 'static,
) -> Fetcher {
    let entry = Arc::new(entry);
    Box::new(
        move |tenant: &str, refresh_token: Option<RefreshToken>| -> FetchFuture {
            let tenant = tenant.to_owned();
            Box::pin(async move {
                let now = clock.now();
                let found = match entry
                    .clone()
                    .find(&tenant, now)
                    .await
                    .map_err(|error| entry.refuses(error))
                {
                    Ok(found) => found,
                    Err(Ok(refused)) => return Err(refused),
                    Err(Err(error)) if entry.fails_when_unavailable() => {
                        return Err(unavailable(E::NAME, error));
                    }
                    Err(Err(error)) => {
                        tracing::warn!(
                            "{} cannot be read, going on without it: {}",
                            E::NAME,
                            Chain(&*error)
                        );
                        Found::default()
                    }
                };
                if let Some(info) = found.access_token
                    && !challenged
                    && refresh_status(Some(&info), now, i64::MIN) == Refresh::NotNeeded
                {
                    tracing::debug!("token found in {}", E::NAME);
                    return Ok(Fetched {
                        info,
                        refresh_token: found.refresh_token,
                    });
                }
                let fetched = fetch(&tenant, refresh_token.or(found.refresh_token)).await?;
                match entry.clone().keep(&tenant, &fetched, now).await {
                    Ok(()) => {}
                    Err(error) if entry.fails_when_unavailable() => {
                        return Err(unavailable(E::NAME, error));
                    }
                    Err(error) => tracing::warn!("cannot write {}: {}", E::NAME, Chain(&*error)),
                }
                Ok(fetched)
            })
        },
    )
}

/// The store's error is the source.
fn unavailable(name: &str, error: BoxError) -> CredentialError {
    CredentialError::ClientAuthentication(
        ClientAuthenticationError::new(FailureKind::Transport, format!("{name} is unavailable"))
            .transient(true)
            .with_source(error),
    )
}

/// An entry of the distributed cache, under its hashed storage key.
pub(crate) struct DistributedEntry {
    pub(crate) cache: DistributedCache,
    pub(crate) key: String,
}

impl SecondLevelEntry for DistributedEntry {
    const NAME: &'static str = "the distributed token cache";

    fn find(self: Arc<Self>, _tenant: &str, now: i64) -> StoreFuture<Found> {
        Box::pin(async move {
            let Some(shared) = self.cache.get(&self.key, now).await? else {
                return Ok(Found::default());
            };
            Ok(Found {
                access_token: Some(AccessTokenInfo {
                    token: AccessTokenSecret::new(shared.token),
                    expires_on: shared.expires_on,
                    token_type: std::borrow::Cow::Owned(shared.token_type),
                    refresh_on: shared.refresh_on,
                }),
                refresh_token: shared.refresh_token.map(RefreshToken::new),
            })
        })
    }

    fn keep(self: Arc<Self>, _tenant: &str, fetched: &Fetched, now: i64) -> StoreFuture<()> {
        let shared = SharedToken {
            token: fetched.info.token.expose_secret().to_owned(),
            expires_on: fetched.info.expires_on,
            refresh_on: fetched.info.refresh_on,
            token_type: fetched.info.token_type.to_string(),
            refresh_token: fetched
                .refresh_token
                .as_ref()
                .map(|rt| rt.expose_secret().to_owned()),
        };
        Box::pin(async move { self.cache.set(&self.key, &shared, now).await })
    }

    fn fails_when_unavailable(&self) -> bool {
        self.cache.fails_when_unavailable()
    }
}

/// An entry of the persistent cache: azure-identity's keys in MSAL's unified cache, read and
/// written on the blocking pool since files, locks and the secret store block.
pub(crate) struct PersistentEntry {
    pub(crate) cache: Arc<MsalCacheFile>,
    /// MSAL's `client_id` field: the client ID, or for on-behalf-of azure-identity's key per
    /// user assertion, so no user ever reads another's tokens.
    pub(crate) client_key: String,
    /// The authority's host.
    pub(crate) environment: String,
    pub(crate) scopes: Vec<String>,
    /// On-behalf-of entries keep refresh tokens too.
    pub(crate) with_refresh_token: bool,
}

impl PersistentEntry {
    fn scope<'a>(&'a self, realm: &'a str) -> EntryScope<'a> {
        EntryScope {
            client_key: &self.client_key,
            environment: &self.environment,
            realm,
        }
    }
}

impl SecondLevelEntry for PersistentEntry {
    const NAME: &'static str = "the persistent token cache";

    #[cfg(all(target_os = "linux", feature = "secret-service"))]
    fn refuses(&self, error: BoxError) -> Result<CredentialError, BoxError> {
        use crate::cache::persistent::msal_file::EncryptionUnavailable;
        let error = match error.downcast::<std::io::Error>() {
            Ok(error)
                if error
                    .get_ref()
                    .is_some_and(|inner| inner.is::<EncryptionUnavailable>()) =>
            {
                *error
            }
            Ok(error) => return Err(error),
            Err(error) => return Err(error),
        };
        let unavailable = error
            .into_inner()
            .and_then(|inner| inner.downcast::<EncryptionUnavailable>().ok())
            .ok_or("the persistent token cache is unavailable")?;
        // The Secret Service's error is the source.
        Ok(CredentialError::unavailable_because(
            format!("persistent token cache unavailable: {unavailable}"),
            unavailable.0,
        ))
    }

    fn find(self: Arc<Self>, tenant: &str, now: i64) -> StoreFuture<Found> {
        let realm = tenant.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> Result<Found, BoxError> {
                let entry = self.scope(&realm);
                let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
                // One read of the cache for both.
                let found = self
                    .cache
                    .find(&entry, &scopes, now, self.with_refresh_token)?;
                Ok(Found {
                    access_token: found.access_token.map(|stored| AccessTokenInfo {
                        token: AccessTokenSecret::new(stored.secret),
                        expires_on: stored.expires_on,
                        token_type: std::borrow::Cow::Owned(stored.token_type),
                        refresh_on: stored.refresh_on,
                    }),
                    refresh_token: found.refresh_token.map(RefreshToken::new),
                })
            })
            .await?
        })
    }

    fn keep(self: Arc<Self>, tenant: &str, fetched: &Fetched, now: i64) -> StoreFuture<()> {
        let realm = tenant.to_owned();
        let stored = CachedAccessToken {
            secret: fetched.info.token.expose_secret().to_owned(),
            expires_on: fetched.info.expires_on,
            refresh_on: fetched.info.refresh_on,
            token_type: fetched.info.token_type.to_string(),
        };
        let refresh_token = fetched
            .refresh_token
            .as_ref()
            .map(|rt| zeroize::Zeroizing::new(rt.expose_secret().to_owned()));
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> Result<(), BoxError> {
                let entry = self.scope(&realm);
                let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
                self.cache.store(
                    &entry,
                    &scopes,
                    &stored,
                    refresh_token.as_deref().map(String::as_str),
                    now,
                )?;
                Ok(())
            })
            .await?
        })
    }
}
