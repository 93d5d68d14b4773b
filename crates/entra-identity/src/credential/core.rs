//! What both credentials share: configuration, the token endpoint call, and the cache path.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cache::distributed::DistributedCache;
use crate::cache::memory::{
    Cached, FetchFuture, FetchMode, Fetched, Hints, PartitionKeyRef, REFRESH_DEADLINE_SECS,
    SortedScopes, TokenCache, strictly_sorted,
};
use crate::cache::persistent::{Persistence, TokenCachePersistenceOptions};
use crate::cache::second_level::{self, DistributedEntry, Fetcher, PersistentEntry};
use crate::endpoint::authority::{AZURE_AUTHORITY_HOST, Authority, TenantId};
use crate::endpoint::http::{HttpClient, HttpOptions};
use crate::endpoint::protocol::{TokenResponse, parse_token_response};
use crate::endpoint::tenant::{AZURE_IDENTITY_DISABLE_MULTITENANTAUTH, TenantPolicy};
use crate::environment::{Clock, Environment, ProcessEnvironment, SystemClock};
use crate::error::{BuildError, Chain, CredentialError};
use crate::secret::RefreshToken;
use crate::token::{AccessTokenInfo, TokenFuture, TokenRequestOptions};

/// What the fast path of a token request found.
pub(crate) enum Lookup {
    /// A cached token that needs no refresh (or whose refresh another caller started).
    Hit(AccessTokenInfo),
    /// A valid cached token due for refresh: serve it, and refresh it in the background
    /// (see [`serve_and_refresh`]).
    Refresh(AccessTokenInfo, OwnedRequest),
    /// The request must go to Entra ID (or wait for another caller's request).
    Miss(OwnedRequest),
}

/// A token request that owns its parts, so the slow path can outlive the caller's borrows.
#[derive(Debug)]
pub(crate) struct OwnedRequest {
    pub(crate) scopes: Vec<String>,
    pub(crate) claims: Option<String>,
    pub(crate) tenant: String,
    pub(crate) enable_cae: bool,
}

/// Options every credential takes.
#[derive(Clone, Debug, Default)]
pub(crate) struct CommonOptions {
    pub(crate) authority: Option<String>,
    pub(crate) additionally_allowed_tenants: Vec<String>,
    pub(crate) cache_persistence_options: Option<TokenCachePersistenceOptions>,
    pub(crate) distributed: Option<DistributedCache>,
    pub(crate) http: HttpOptions,
    /// A client of the user's, used instead of a pool.
    pub(crate) http_client: Option<reqwest::Client>,
    pub(crate) cache: Option<TokenCache>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) environment: Option<Arc<dyn Environment>>,
}

/// The built, validated configuration and the shared machinery.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) name: &'static str,
    pub(crate) authority: Authority,
    pub(crate) client_id: String,
    pub(crate) tenants: TenantPolicy,
    /// Authority and client ID: the application part of every cache key.
    pub(crate) app_key: Arc<str>,
    pub(crate) http: HttpClient,
    pub(crate) cache: TokenCache,
    pub(crate) clock: Arc<dyn Clock>,
    persistence: Option<Persistence>,
    distributed: Option<DistributedCache>,
    closed: AtomicBool,
}

impl Core {
    pub(crate) fn build(
        name: &'static str,
        tenant_id: &str,
        client_id: &str,
        options: CommonOptions,
    ) -> Result<Self, BuildError> {
        let environment: Arc<dyn Environment> = options
            .environment
            .unwrap_or_else(|| Arc::new(ProcessEnvironment));
        let tenant = TenantId::parse(tenant_id)?;
        if client_id.trim().is_empty() {
            return Err(BuildError::MissingClientId);
        }
        let authority = match options.authority {
            Some(authority) => Authority::parse(&authority)?,
            None => match environment
                .var(AZURE_AUTHORITY_HOST)
                .filter(|host| !host.is_empty())
            {
                Some(host) => Authority::parse(&host)?,
                None => Authority::public_cloud(),
            },
        };
        let multitenant_disabled = environment
            .var(AZURE_IDENTITY_DISABLE_MULTITENANTAUTH)
            .is_some_and(|value| !value.is_empty());
        // Credentials of one cache share its pool for their options (see `endpoint::http`).
        let cache = options.cache.unwrap_or_default();
        let http = HttpClient::for_credential(
            &options.http,
            options.http_client,
            cache.http_pools(),
            environment.as_ref(),
        )?;
        let persistence = match &options.cache_persistence_options {
            Some(persistence) => Some(Persistence::open(persistence, environment.as_ref())?),
            None => None,
        };
        Ok(Self {
            name,
            app_key: Arc::from(format!("{}|{}", authority.as_str(), client_id)),
            authority,
            client_id: client_id.to_owned(),
            tenants: TenantPolicy::new(
                tenant,
                options.additionally_allowed_tenants,
                multitenant_disabled,
            ),
            http,
            cache,
            clock: options.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            persistence,
            distributed: options.distributed,
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// The quickest path: the slot the credential's hints remember, for a plain request (no
    /// claims) to the configured tenant, when its token needs no refresh. `None` sends the
    /// request down [`Core::lookup`], which checks everything.
    pub(crate) fn hot(
        &self,
        scopes: &[&str],
        options: &TokenRequestOptions<'_>,
        hints: &Arc<Hints>,
    ) -> Option<crate::token::AccessToken> {
        if options.claims.is_some() || scopes.is_empty() || self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let default = self.tenants.default_tenant().as_str();
        if options
            .tenant_id
            .is_some_and(|tenant| !tenant.is_empty() && tenant != default)
        {
            return None;
        }
        // Scopes come sorted more often than not (one scope always is): no copy then.
        let sorted;
        let scopes = if strictly_sorted(scopes) {
            scopes
        } else {
            sorted = SortedScopes::new(scopes);
            sorted.as_slice()
        };
        self.cache
            .hinted_fresh(hints, options.enable_cae, scopes, self.clock.now())
    }

    /// The fast path of a token request: checks it and answers from the cache when it can,
    /// without allocating. A miss returns the request in owned form for [`Core::fetch`].
    pub(crate) fn lookup(
        &self,
        scopes: &[&str],
        options: TokenRequestOptions<'_>,
        user: Option<&[u8; 32]>,
        hints: &Arc<Hints>,
    ) -> Result<Lookup, CredentialError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(CredentialError::unavailable(format!(
                "{} has been closed and can no longer request tokens",
                self.name
            )));
        }
        if scopes.is_empty() {
            return Err(CredentialError::InvalidRequest(
                "\"get_token\" requires at least one scope".to_owned(),
            ));
        }
        let tenant = self.tenants.resolve(options.tenant_id)?;
        let claims = options.claims.filter(|claims| !claims.trim().is_empty());
        if claims.is_none() {
            let key = PartitionKeyRef {
                app: &self.app_key,
                tenant,
                user,
                cae: options.enable_cae,
            };
            let sorted = SortedScopes::new(scopes);
            let now = self.clock.now();
            let default = self.tenants.default_tenant().as_str();
            // `resolve` hands back the configured tenant itself: compare addresses first.
            let is_default = std::ptr::eq(tenant, default) || tenant == default;
            let cached = if is_default {
                self.cache.lookup_hinted(hints, &key, &sorted, now)
            } else {
                self.cache.lookup(&key, &sorted, now)
            };
            match cached {
                Some(Cached::Fresh(token)) => return Ok(Lookup::Hit(token)),
                Some(Cached::RefreshDue(token)) => {
                    let request = OwnedRequest::new(scopes, None, tenant, options.enable_cae);
                    return Ok(Lookup::Refresh(token, request));
                }
                None => {}
            }
        }
        Ok(Lookup::Miss(OwnedRequest::new(
            scopes,
            claims,
            tenant,
            options.enable_cae,
        )))
    }

    /// The slow path: one request per cache key in flight, whoever asks. `fetch` is called,
    /// with the tenant and the partition's refresh token, only if no other caller's request
    /// can answer.
    pub(crate) async fn fetch(
        &self,
        request: &OwnedRequest,
        user: Option<&[u8; 32]>,
        fetch: impl FnOnce(&str, Option<RefreshToken>) -> FetchFuture + Send + 'static,
    ) -> Result<AccessTokenInfo, CredentialError> {
        let mode = if request.claims.is_some() {
            FetchMode::Bypass
        } else {
            FetchMode::Normal
        };
        self.request(request, user, fetch, mode).await
    }

    /// A proactive refresh: joins the request in flight for the key, or starts one.
    pub(crate) async fn refresh(
        &self,
        request: &OwnedRequest,
        user: Option<&[u8; 32]>,
        fetch: impl FnOnce(&str, Option<RefreshToken>) -> FetchFuture + Send + 'static,
    ) -> Result<AccessTokenInfo, CredentialError> {
        self.request(request, user, fetch, FetchMode::Refresh).await
    }

    async fn request(
        &self,
        request: &OwnedRequest,
        user: Option<&[u8; 32]>,
        fetch: impl FnOnce(&str, Option<RefreshToken>) -> FetchFuture + Send + 'static,
        mode: FetchMode,
    ) -> Result<AccessTokenInfo, CredentialError> {
        let scopes: Vec<&str> = request.scopes.iter().map(String::as_str).collect();
        let fetch = self.through_distributed_cache(request, user, fetch);
        let fetch = self.through_persistent_cache(request, user, fetch);
        let key = PartitionKeyRef {
            app: &self.app_key,
            tenant: &request.tenant,
            user,
            cae: request.enable_cae,
        };
        let outcome = self
            .cache
            .get_or_fetch(
                &key,
                &SortedScopes::new(&scopes),
                self.clock.now(),
                mode,
                |refresh_token| fetch(&request.tenant, refresh_token),
            )
            .await;
        match &outcome {
            Ok(_) => tracing::debug!("{}.get_token succeeded", self.name),
            Err(error) => tracing::warn!("{}.get_token failed: {}", self.name, Chain(error)),
        }
        outcome
    }

    /// With a distributed cache, a miss in memory looks there before going to Entra ID, and
    /// what Entra ID answers is shared there with the fleet.
    fn through_distributed_cache(
        &self,
        request: &OwnedRequest,
        user: Option<&[u8; 32]>,
        fetch: impl FnOnce(&str, Option<RefreshToken>) -> FetchFuture + Send + 'static,
    ) -> Fetcher {
        let Some(distributed) = self.distributed.clone() else {
            return Box::new(fetch);
        };
        let mut scopes: Vec<&str> = request.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        let user = user.map(hex);
        let key = distributed.storage_key(&[
            &self.app_key,
            &request.tenant,
            user.as_deref().unwrap_or(""),
            if request.enable_cae { "cae" } else { "plain" },
            &scopes.join(" "),
        ]);
        second_level::through(
            DistributedEntry {
                cache: distributed,
                key,
            },
            request.claims.is_some(),
            self.clock.clone(),
            fetch,
        )
    }

    /// With persistent caching, a miss in memory looks in the persistent cache before going
    /// to Entra ID, and what Entra ID answers is written there for other processes.
    fn through_persistent_cache(
        &self,
        request: &OwnedRequest,
        user: Option<&[u8; 32]>,
        fetch: impl FnOnce(&str, Option<RefreshToken>) -> FetchFuture + Send + 'static,
    ) -> Fetcher {
        let Some(persistence) = &self.persistence else {
            return Box::new(fetch);
        };
        // azure-identity's keys: the client ID, or for on-behalf-of one key per user
        // assertion, authority and tenant, so no user ever reads another's tokens.
        let client_key = match user {
            Some(user) => format!(
                "{}:obo:{}:{}:{}",
                self.client_id,
                hex(user),
                self.authority.as_str(),
                request.tenant
            ),
            None => self.client_id.clone(),
        };
        second_level::through(
            PersistentEntry {
                cache: persistence.file(request.enable_cae),
                client_key,
                environment: self.authority.hostname().to_owned(),
                scopes: request.scopes.clone(),
                with_refresh_token: user.is_some(),
            },
            request.claims.is_some(),
            self.clock.clone(),
            fetch,
        )
    }

    /// Posts a form to the tenant's token endpoint and reads the answer.
    pub(crate) async fn post(
        &self,
        tenant: &str,
        body: zeroize::Zeroizing<String>,
    ) -> Result<TokenResponse, CredentialError> {
        // `tenant` was validated by the tenant policy.
        let tenant = TenantId::parse(tenant)
            .map_err(|error| CredentialError::InvalidRequest(error.to_string()))?;
        let url = self.authority.token_endpoint(&tenant);
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let request_time = self.clock.now();
        tracing::debug!(url, client_request_id, "requesting a token");
        let response = self
            .http
            .post_form(&url, &body, &client_request_id)
            .await
            .map_err(CredentialError::ClientAuthentication)?;
        parse_token_response(
            response.status,
            response.content_type.as_deref(),
            &response.body,
            request_time,
        )
    }
}

impl OwnedRequest {
    fn new(scopes: &[&str], claims: Option<&str>, tenant: &str, enable_cae: bool) -> Self {
        Self {
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
            claims: claims.map(str::to_owned),
            tenant: tenant.to_owned(),
            enable_cae,
        }
    }
}

/// Answers with `token` at once and runs `refresh` as a task of the current tokio runtime,
/// with its own deadline ([`REFRESH_DEADLINE_SECS`]): its token reaches the cache, its failure
/// the log, and the valid token stays in use meanwhile. Outside a runtime there is nothing to
/// run it on: the returned future refreshes, and answers with `token` if that fails.
pub(crate) fn serve_and_refresh<F>(
    name: &'static str,
    token: AccessTokenInfo,
    refresh: F,
) -> TokenFuture<'static, AccessTokenInfo>
where
    F: Future<Output = Result<AccessTokenInfo, CredentialError>> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return TokenFuture::new(async move { Ok(refresh.await.unwrap_or(token)) });
    };
    runtime.spawn(async move {
        let deadline = Duration::from_secs(REFRESH_DEADLINE_SECS);
        match tokio::time::timeout(deadline, refresh).await {
            Ok(Ok(_)) => tracing::debug!("{name}: token refreshed in the background"),
            Ok(Err(error)) => tracing::warn!(
                "{name}: proactive token refresh failed; the cached token stays in use: {}",
                Chain(&error)
            ),
            Err(_) => tracing::warn!(
                "{name}: proactive token refresh gave up after {REFRESH_DEADLINE_SECS} s; the cached token stays in use"
            ),
        }
    });
    TokenFuture::ready(Ok(token))
}

impl From<TokenResponse> for Fetched {
    fn from(response: TokenResponse) -> Self {
        Self {
            info: response.info,
            refresh_token: response.refresh_token,
        }
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::MapEnvironment;

    fn core(http: HttpOptions, cache: Option<&TokenCache>) -> Core {
        let options = CommonOptions {
            http,
            cache: cache.cloned(),
            environment: Some(Arc::new(MapEnvironment::new())),
            ..CommonOptions::default()
        };
        Core::build("test", "tenant", "client", options).expect("core")
    }

    #[test]
    fn credentials_share_the_pool_of_their_cache_for_equal_options() {
        let cache = TokenCache::default();
        let options = HttpOptions::default();
        let first = core(options.clone(), Some(&cache));
        assert!(
            first
                .http
                .shares_pool_with(&core(options.clone(), Some(&cache)).http)
        );
        let other = options.clone().connect_timeout(Duration::from_secs(1));
        assert!(!first.http.shares_pool_with(&core(other, Some(&cache)).http));
        let dedicated = options.clone().dedicated_pool();
        assert!(
            !first
                .http
                .shares_pool_with(&core(dedicated, Some(&cache)).http)
        );
        assert!(
            !first
                .http
                .shares_pool_with(&core(options.clone(), None).http),
            "a credential with a cache of its own has a pool of its own"
        );
        assert!(
            !core(options.clone(), None)
                .http
                .shares_pool_with(&core(options, None).http)
        );
    }
}
