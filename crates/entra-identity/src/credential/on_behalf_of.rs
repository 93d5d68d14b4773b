//! `OnBehalfOfCredential`: a middle-tier API exchanges the token a user sent it for a token to
//! a downstream API, proving its own identity with a secret, a certificate or an assertion.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::cache::memory::{FetchFuture, Fetched, Hints, PartitionKeyRef};
use crate::client_auth::assertion::ClientAssertionSource;
use crate::client_auth::certificate::{CertificateSigner, ClientCertificate};
use crate::credential::common_builder_methods;
use crate::credential::core::{CommonOptions, Core, Lookup, OwnedRequest, serve_and_refresh};
use crate::endpoint::discovery::InstanceDiscovery;
use crate::endpoint::protocol::{FormBody, JWT_BEARER_ASSERTION_TYPE, TokenResponse, merge_claims};
use crate::error::{
    BoxError, BuildError, Chain, ClientAuthenticationError, CredentialError, FailureKind,
};
use crate::secret::{ClientSecret, RefreshToken, UserAssertion};
use crate::token::{
    AccessToken, AccessTokenInfo, CloseFuture, TokenCredential, TokenFuture, TokenRequestOptions,
};

/// The OpenID Connect scopes every exchange adds, so that Entra ID returns a refresh token.
const OIDC_SCOPES: [&str; 3] = ["offline_access", "openid", "profile"];

/// Authenticates on behalf of a user: exchanges the access token the user sent to this API
/// (the *user assertion*) for a token to a downstream API.
///
/// The application proves its identity with exactly one of a client secret, a certificate
/// (PEM or PKCS#12) or a client assertion function. Tokens are cached per user: the cache key
/// holds the SHA-256 of the user assertion, never the assertion, and a user's refresh token is
/// only ever used for that user.
///
/// A web API serving many users builds one [`OnBehalfOfApplication`] and asks it for a
/// credential per request: that is cheap, and every user's tokens share one bounded cache,
/// one connection pool and one parsed certificate.
///
/// ```no_run
/// # async fn example(incoming_token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use entra_identity::{OnBehalfOfCredential, TokenRequestOptions};
///
/// let credential = OnBehalfOfCredential::builder("contoso.onmicrosoft.com", "client-id", incoming_token)
///     .client_secret(std::env::var("AZURE_CLIENT_SECRET")?)
///     .build()?;
/// let scopes = ["https://graph.microsoft.com/User.Read"];
/// let token = credential.get_token(&scopes, TokenRequestOptions::default()).await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Clone)]
pub struct OnBehalfOfCredential {
    application: OnBehalfOfApplication,
    user_assertion: UserAssertion,
    user_key: [u8; 32],
    /// Closing one user's credential leaves the application and the other users alone.
    closed: Arc<AtomicBool>,
    /// This user's partitions (plain and CAE), for cache hits without hashing.
    hints: Arc<Hints>,
}

/// One middle-tier application serving many users: hands out an [`OnBehalfOfCredential`] per
/// user assertion, all sharing the application's cache, connection pool and certificate.
///
/// ```no_run
/// # async fn example(incoming_token: &str, pem: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
/// use entra_identity::{OnBehalfOfApplication, TokenCache, TokenRequestOptions};
///
/// // Once, at start-up.
/// let application = OnBehalfOfApplication::builder("contoso.onmicrosoft.com", "client-id")
///     .client_certificate(pem)
///     .token_cache(TokenCache::with_capacity(100_000))
///     .build()?;
/// // For each request.
/// let credential = application.credential_for(incoming_token)?;
/// let scopes = ["api://downstream/Data.Read"];
/// let token = credential.get_token(&scopes, TokenRequestOptions::default()).await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Clone)]
pub struct OnBehalfOfApplication {
    inner: Arc<ApplicationInner>,
}

struct ApplicationInner {
    core: Core,
    client: ClientCredential,
    discovery: Option<InstanceDiscovery>,
}

enum ClientCredential {
    Secret(ClientSecret),
    Certificate(CertificateSigner),
    Assertion(Box<dyn ClientAssertionSource>),
}

impl fmt::Debug for OnBehalfOfCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnBehalfOfCredential")
            .field("application", &self.application)
            .field("user_assertion", &self.user_assertion)
            .finish()
    }
}

impl fmt::Debug for OnBehalfOfApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = match &self.inner.client {
            ClientCredential::Secret(_) => "client secret",
            ClientCredential::Certificate(_) => "client certificate",
            ClientCredential::Assertion(_) => "client assertion function",
        };
        f.debug_struct("OnBehalfOfApplication")
            .field("authority", &self.inner.core.authority)
            .field("tenant_id", self.inner.core.tenants.default_tenant())
            .field("client_id", &self.inner.core.client_id)
            .field("client_credential", &client)
            .finish_non_exhaustive()
    }
}

impl OnBehalfOfCredential {
    /// Starts building a credential for one user assertion. Give exactly one client
    /// credential: [`OnBehalfOfCredentialBuilder::client_secret`],
    /// [`OnBehalfOfCredentialBuilder::client_certificate`] or
    /// [`OnBehalfOfCredentialBuilder::client_assertion_func`].
    pub fn builder(
        tenant_id: &str,
        client_id: &str,
        user_assertion: impl Into<UserAssertion>,
    ) -> OnBehalfOfCredentialBuilder {
        OnBehalfOfCredentialBuilder {
            application: ApplicationOptions::new(tenant_id, client_id),
            user_assertion: user_assertion.into(),
        }
    }

    /// The application this credential belongs to.
    pub fn application(&self) -> &OnBehalfOfApplication {
        &self.application
    }

    /// The request a cache miss sends: a refresh token redemption when the user's partition
    /// has a refresh token, else the exchange of the user assertion.
    fn fetcher(
        &self,
        request: &OwnedRequest,
    ) -> impl FnOnce(&str, Option<RefreshToken>) -> FetchFuture + use<> {
        let inner = self.application.inner.clone();
        let user_assertion = self.user_assertion.clone();
        let user_key = self.user_key;
        let scopes: Vec<&str> = request.scopes.iter().map(String::as_str).collect();
        let scope = obo_scope(&scopes);
        let claims = request.claims.clone();
        let enable_cae = request.enable_cae;
        move |tenant, refresh_token| {
            let tenant = tenant.to_owned();
            Box::pin(async move {
                if let Some(discovery) = &inner.discovery {
                    let now = inner.core.clock.now();
                    discovery
                        .validate(&inner.core.http, &inner.core.authority, &tenant, now)
                        .await?;
                }
                let claims = merge_claims(claims.as_deref(), enable_cae)?;
                if let Some(refresh_token) = refresh_token {
                    match inner
                        .redeem(&tenant, &refresh_token, &scope, claims.as_deref())
                        .await
                    {
                        Ok(response) => return Ok(Fetched::from(response)),
                        Err(error) => {
                            if error
                                .entra()
                                .is_some_and(|entra| entra.error == "invalid_grant")
                            {
                                let key = PartitionKeyRef {
                                    app: &inner.core.app_key,
                                    tenant: &tenant,
                                    user: Some(&user_key),
                                    cae: enable_cae,
                                };
                                inner.core.cache.evict_refresh_token(&key, &refresh_token);
                            }
                            tracing::debug!(
                                "refresh token redemption failed, exchanging the user assertion: {}",
                                Chain(&error)
                            );
                        }
                    }
                }
                inner
                    .exchange(&tenant, &user_assertion, &scope, claims.as_deref())
                    .await
                    .map(Fetched::from)
            })
        }
    }
}

impl OnBehalfOfCredential {
    /// A token request: answered at once from the cache when it can be.
    fn token_future(
        &self,
        scopes: &[&str],
        options: TokenRequestOptions<'_>,
    ) -> TokenFuture<'static, AccessTokenInfo> {
        if self.closed.load(Ordering::Relaxed) {
            return TokenFuture::ready(Err(CredentialError::unavailable(
                "OnBehalfOfCredential has been closed and can no longer request tokens",
            )));
        }
        let core = &self.application.inner.core;
        match core.lookup(scopes, options, Some(&self.user_key), &self.hints) {
            Ok(Lookup::Hit(token)) => TokenFuture::ready(Ok(token)),
            Err(error) => TokenFuture::ready(Err(error)),
            Ok(Lookup::Refresh(token, request)) => {
                let fetch = self.fetcher(&request);
                let inner = self.application.inner.clone();
                let user_key = self.user_key;
                let refresh =
                    async move { inner.core.refresh(&request, Some(&user_key), fetch).await };
                serve_and_refresh(core.name, token, refresh)
            }
            Ok(Lookup::Miss(request)) => {
                let fetch = self.fetcher(&request);
                let inner = self.application.inner.clone();
                let user_key = self.user_key;
                TokenFuture::new(
                    async move { inner.core.fetch(&request, Some(&user_key), fetch).await },
                )
            }
        }
    }
}

impl OnBehalfOfCredential {
    /// Requests an access token for `scopes` on behalf of the user (see
    /// [`TokenCredential::get_token`]). A cached token answers at once, without allocating.
    ///
    /// # Errors
    ///
    /// As [`TokenCredential::get_token`].
    pub fn get_token<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessToken> {
        let hot = self
            .application
            .inner
            .core
            .hot(scopes, &options, &self.hints);
        if let Some(token) = hot.filter(|_| !self.closed.load(Ordering::Relaxed)) {
            return TokenFuture::ready(Ok(token));
        }
        self.token_future(scopes, options).map(AccessToken::from)
    }

    /// Requests an access token for `scopes` on behalf of the user, with its type and
    /// refresh time (see [`TokenCredential::get_token_info`]).
    ///
    /// # Errors
    ///
    /// As [`TokenCredential::get_token`].
    pub fn get_token_info<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo> {
        self.token_future(scopes, options)
    }

    /// Closes this user's credential at once: its later requests fail with
    /// [`CredentialError::CredentialUnavailable`]; the application and its other users are
    /// left alone.
    pub fn close(&self) -> CloseFuture<'_> {
        self.closed.store(true, Ordering::Relaxed);
        CloseFuture::done()
    }
}

impl TokenCredential for OnBehalfOfCredential {
    fn get_token<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessToken> {
        Self::get_token(self, scopes, options)
    }

    fn get_token_info<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo> {
        Self::get_token_info(self, scopes, options)
    }

    fn close(&self) -> CloseFuture<'_> {
        Self::close(self)
    }
}

impl OnBehalfOfApplication {
    /// Starts building an application. Give exactly one client credential:
    /// [`OnBehalfOfApplicationBuilder::client_secret`],
    /// [`OnBehalfOfApplicationBuilder::client_certificate`] or
    /// [`OnBehalfOfApplicationBuilder::client_assertion_func`].
    pub fn builder(tenant_id: &str, client_id: &str) -> OnBehalfOfApplicationBuilder {
        OnBehalfOfApplicationBuilder {
            application: ApplicationOptions::new(tenant_id, client_id),
        }
    }

    /// A credential acting for the user who sent `user_assertion`. Cheap: one SHA-256 and a
    /// reference count.
    ///
    /// # Errors
    ///
    /// [`BuildError::EmptyUserAssertion`].
    pub fn credential_for(
        &self,
        user_assertion: impl Into<UserAssertion>,
    ) -> Result<OnBehalfOfCredential, BuildError> {
        let user_assertion = user_assertion.into();
        if user_assertion.expose_secret().trim().is_empty() {
            return Err(BuildError::EmptyUserAssertion);
        }
        let user_key = sha2::Sha256::digest(user_assertion.expose_secret().as_bytes()).into();
        Ok(OnBehalfOfCredential {
            application: self.clone(),
            user_assertion,
            user_key,
            closed: Arc::new(AtomicBool::new(false)),
            hints: Arc::default(),
        })
    }

    /// The configured tenant.
    pub fn tenant_id(&self) -> &str {
        self.inner.core.tenants.default_tenant().as_str()
    }

    /// The application's client ID.
    pub fn client_id(&self) -> &str {
        &self.inner.core.client_id
    }

    /// Closes the application: every credential it handed out stops requesting tokens.
    pub fn close(&self) {
        self.inner.core.close();
    }
}

impl ApplicationInner {
    /// The on-behalf-of exchange of a user assertion.
    async fn exchange(
        &self,
        tenant: &str,
        user_assertion: &UserAssertion,
        scope: &str,
        claims: Option<&str>,
    ) -> Result<TokenResponse, CredentialError> {
        let form = FormBody::new()
            .field("client_id", &self.core.client_id)
            .field("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
        let form = self.authenticate(form, tenant).await?;
        let body = form
            .field("requested_token_use", "on_behalf_of")
            .optional("claims", claims)
            .field("scope", scope)
            .field("assertion", user_assertion.expose_secret())
            .finish();
        self.core.post(tenant, body).await
    }

    /// Redeems the user's refresh token.
    async fn redeem(
        &self,
        tenant: &str,
        refresh_token: &RefreshToken,
        scope: &str,
        claims: Option<&str>,
    ) -> Result<TokenResponse, CredentialError> {
        let form = FormBody::new()
            .field("client_id", &self.core.client_id)
            .field("grant_type", "refresh_token");
        let form = self.authenticate(form, tenant).await?;
        let body = form
            .optional("claims", claims)
            .field("scope", scope)
            .field("refresh_token", refresh_token.expose_secret())
            .finish();
        self.core.post(tenant, body).await
    }

    /// Adds `client_info` and the client credential to a form.
    async fn authenticate(
        &self,
        form: FormBody,
        tenant: &str,
    ) -> Result<FormBody, CredentialError> {
        let assertion_failed = |message: &str, error: BoxError| {
            CredentialError::ClientAuthentication(
                ClientAuthenticationError::new(FailureKind::ClientAssertion, message)
                    .with_source(error),
            )
        };
        let form = form.field("client_info", "1");
        let assertion = match &self.client {
            ClientCredential::Secret(secret) => {
                return Ok(form.field("client_secret", secret.expose_secret()));
            }
            ClientCredential::Certificate(signer) => {
                let audience = format!(
                    "{}/{tenant}/oauth2/v2.0/token",
                    self.core.authority.as_str()
                );
                let adfs = tenant.eq_ignore_ascii_case("adfs");
                let now = self.core.clock.now();
                signer
                    .assertion(&self.core.client_id, &audience, now, adfs)
                    .map_err(|error| {
                        assertion_failed("signing the client assertion failed", error.into())
                    })?
            }
            ClientCredential::Assertion(source) => source
                .client_assertion()
                .await
                .map_err(|error| assertion_failed("the client assertion function failed", error))?,
        };
        Ok(form
            .field("client_assertion_type", JWT_BEARER_ASSERTION_TYPE)
            .field("client_assertion", assertion.expose_secret()))
    }
}

/// The scopes of an exchange: the caller's and the OpenID Connect ones, sorted, deduplicated.
fn obo_scope(scopes: &[&str]) -> String {
    let mut all: Vec<&str> = scopes.iter().copied().chain(OIDC_SCOPES).collect();
    all.sort_unstable();
    all.dedup();
    all.join(" ")
}

/// Builds an [`OnBehalfOfCredential`] for one user assertion. Give exactly one client
/// credential.
#[must_use = "a builder does nothing until `build` is called"]
pub struct OnBehalfOfCredentialBuilder {
    application: ApplicationOptions,
    user_assertion: UserAssertion,
}

/// Builds an [`OnBehalfOfApplication`], which hands out a credential per user assertion.
/// Give exactly one client credential.
#[must_use = "a builder does nothing until `build` is called"]
pub struct OnBehalfOfApplicationBuilder {
    application: ApplicationOptions,
}

/// What both builders collect: the application and how it proves its identity.
struct ApplicationOptions {
    tenant_id: String,
    client_id: String,
    client_secret: Option<ClientSecret>,
    client_certificate: Option<Zeroizing<Vec<u8>>>,
    password: Option<Zeroizing<Vec<u8>>>,
    client_assertion: Option<Box<dyn ClientAssertionSource>>,
    send_certificate_chain: bool,
    disable_instance_discovery: bool,
    instance_discovery_host: Option<String>,
    common: CommonOptions,
}

impl fmt::Debug for OnBehalfOfCredentialBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnBehalfOfCredentialBuilder")
            .field("tenant_id", &self.application.tenant_id)
            .field("client_id", &self.application.client_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OnBehalfOfApplicationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnBehalfOfApplicationBuilder")
            .field("tenant_id", &self.application.tenant_id)
            .field("client_id", &self.application.client_id)
            .finish_non_exhaustive()
    }
}

/// The setters of both on-behalf-of builders, over an `application: ApplicationOptions` field.
macro_rules! application_builder_methods {
    () => {
        common_builder_methods!(application.common);

        /// Authenticate the application with a client secret.
        pub fn client_secret(mut self, secret: impl Into<ClientSecret>) -> Self {
            self.application.client_secret = Some(secret.into());
            self
        }

        /// Authenticate the application with a certificate: the bytes of a PEM file (key and
        /// certificate; the key may be encrypted PKCS#8) or a PKCS#12 file, including its
        /// private key.
        pub fn client_certificate(mut self, certificate: impl Into<Vec<u8>>) -> Self {
            self.application.client_certificate = Some(Zeroizing::new(certificate.into()));
            self
        }

        /// The certificate's password, as text (UTF-8) or bytes.
        pub fn password(mut self, password: impl AsRef<[u8]>) -> Self {
            self.application.password = Some(Zeroizing::new(password.as_ref().to_vec()));
            self
        }

        /// Authenticate the application with client assertions from a function, called for
        /// each token request (for example a managed identity acting as a federated
        /// credential).
        pub fn client_assertion_func(
            mut self,
            source: impl ClientAssertionSource + 'static,
        ) -> Self {
            self.application.client_assertion = Some(Box::new(source));
            self
        }

        /// Send the certificate chain (`x5c`) in client assertions: needed for subject name
        /// and issuer authentication.
        pub fn send_certificate_chain(mut self, send: bool) -> Self {
            self.application.send_certificate_chain = send;
            self
        }

        /// Skip instance discovery (and so the validation of the authority): for private
        /// clouds and Azure Stack whose metadata endpoint cannot be reached. Make sure the
        /// authority is trustworthy.
        pub fn disable_instance_discovery(mut self, disable: bool) -> Self {
            self.application.disable_instance_discovery = disable;
            self
        }

        /// Where instance discovery asks (`login.microsoftonline.com` by default, as in MSAL
        /// Python; a base URL such as an emulator's is accepted too).
        pub fn instance_discovery_host(mut self, host: impl Into<String>) -> Self {
            self.application.instance_discovery_host = Some(host.into());
            self
        }
    };
}

impl OnBehalfOfCredentialBuilder {
    application_builder_methods!();

    /// Builds the credential.
    ///
    /// # Errors
    ///
    /// An empty user assertion; no client credential or more than one; an unreadable
    /// certificate or a wrong, missing or unneeded password; an invalid tenant, client ID or
    /// authority.
    pub fn build(self) -> Result<OnBehalfOfCredential, BuildError> {
        if self.user_assertion.expose_secret().trim().is_empty() {
            return Err(BuildError::EmptyUserAssertion);
        }
        self.application
            .build()?
            .credential_for(self.user_assertion)
    }
}

impl OnBehalfOfApplicationBuilder {
    application_builder_methods!();

    /// Builds the application.
    ///
    /// # Errors
    ///
    /// No client credential or more than one; an unreadable certificate or a wrong, missing
    /// or unneeded password; an invalid tenant, client ID or authority.
    pub fn build(self) -> Result<OnBehalfOfApplication, BuildError> {
        self.application.build()
    }
}

impl ApplicationOptions {
    fn new(tenant_id: &str, client_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: None,
            client_certificate: None,
            password: None,
            client_assertion: None,
            send_certificate_chain: false,
            disable_instance_discovery: false,
            instance_discovery_host: None,
            common: CommonOptions::default(),
        }
    }

    fn build(self) -> Result<OnBehalfOfApplication, BuildError> {
        let secret = self.client_secret.filter(|secret| !secret.is_empty());
        let certificate = self.client_certificate.filter(|bytes| !bytes.is_empty());
        match (&secret, &certificate, &self.client_assertion) {
            (_, _, Some(_)) if secret.is_some() || certificate.is_some() => {
                return Err(BuildError::ConflictingClientCredentials);
            }
            (Some(_), Some(_), _) => return Err(BuildError::ConflictingClientCredentials),
            _ => {}
        }
        let client = match (secret, certificate, self.client_assertion) {
            (Some(secret), None, None) => ClientCredential::Secret(secret),
            (None, Some(bytes), None) => {
                let certificate = ClientCertificate::from_bytes(
                    &bytes,
                    self.password.as_deref().map(Vec::as_slice),
                )?;
                ClientCredential::Certificate(CertificateSigner::new(
                    certificate,
                    self.send_certificate_chain,
                ))
            }
            (None, None, Some(source)) => ClientCredential::Assertion(source),
            _ => return Err(BuildError::NoClientCredential),
        };
        if self.password.is_some() && !matches!(client, ClientCredential::Certificate(_)) {
            return Err(BuildError::PasswordWithoutCertificate);
        }
        let core = Core::build(
            "OnBehalfOfCredential",
            &self.tenant_id,
            &self.client_id,
            self.common,
        )?;
        let discovery = InstanceDiscovery::for_authority(
            &core.authority,
            self.disable_instance_discovery
                || core
                    .tenants
                    .default_tenant()
                    .as_str()
                    .eq_ignore_ascii_case("adfs"),
            self.instance_discovery_host.as_deref(),
        );
        Ok(OnBehalfOfApplication {
            inner: Arc::new(ApplicationInner {
                core,
                client,
                discovery,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_scopes_add_openid_profile_offline_access_once() {
        assert_eq!(
            obo_scope(&["https://graph.microsoft.com/User.Read"]),
            "https://graph.microsoft.com/User.Read offline_access openid profile"
        );
        assert_eq!(
            obo_scope(&["openid", "b", "a"]),
            "a b offline_access openid profile"
        );
    }

    #[test]
    fn client_credentials_are_exactly_one() {
        let builder = || OnBehalfOfCredential::builder("tenant", "client", "user-token");
        let source = || async { Ok::<_, std::io::Error>("assertion") };
        assert_eq!(
            builder().build().err(),
            Some(BuildError::NoClientCredential)
        );
        assert_eq!(
            builder()
                .client_secret("s")
                .client_assertion_func(source)
                .build()
                .err(),
            Some(BuildError::ConflictingClientCredentials)
        );
        assert_eq!(
            builder()
                .client_secret("s")
                .client_certificate(b"x".to_vec())
                .build()
                .err(),
            Some(BuildError::ConflictingClientCredentials)
        );
        assert_eq!(
            builder()
                .client_certificate(b"not a cert".to_vec())
                .build()
                .err(),
            Some(BuildError::InvalidCertificate(
                crate::CertificateError::Unreadable
            ))
        );
        // Empty values count as absent, as in azure-identity.
        assert_eq!(
            builder().client_secret("").build().err(),
            Some(BuildError::NoClientCredential)
        );
        assert_eq!(
            builder().client_secret("s").password("p").build().err(),
            Some(BuildError::PasswordWithoutCertificate)
        );
        let empty = OnBehalfOfCredential::builder("tenant", "client", "").client_secret("s");
        assert_eq!(empty.build().err(), Some(BuildError::EmptyUserAssertion));
        assert!(builder().client_secret("s").build().is_ok());
    }

    #[test]
    fn debug_shows_no_secret() {
        let credential = OnBehalfOfCredential::builder("tenant", "client", "user-token-value")
            .client_secret("secret-value")
            .build()
            .expect("credential");
        let shown = format!("{credential:?}");
        assert!(
            !shown.contains("user-token-value") && !shown.contains("secret-value"),
            "{shown}"
        );
        assert!(shown.contains("client secret"));
    }
}
