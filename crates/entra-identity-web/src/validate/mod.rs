//! Validating incoming access tokens, as a resource server: signature (RS256, keys from the
//! authority's OpenID metadata), issuer and tenant, audience, lifetime, scopes and roles.
//!
//! The checks, in order: size, shape, algorithm, signing key, signature, lifetime, audience,
//! issuer, scopes or roles. The signature is checked before any claim is believed.

mod claims;
mod keys;
mod rejection;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_identity::{Clock, SystemClock};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

pub use self::claims::Claims;
use self::claims::numeric_date;
use self::keys::{KeyStore, RefreshPolicy};
pub use self::rejection::Rejection;

/// The public cloud's authority.
pub const PUBLIC_CLOUD_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The clock skew allowed by default on `exp` and `nbf`: five minutes, as in
/// Microsoft.IdentityModel's `TokenValidationParameters.DefaultClockSkew`.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The largest token read by default: 16 KiB, far above an Entra access token (a few KB even
/// with group claims) and what most HTTP servers accept in one header.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The least time between two key refreshes caused by tokens naming an unknown `kid`, by
/// default: five minutes, as Microsoft.IdentityModel's `ConfigurationManager.RefreshInterval`.
pub const DEFAULT_MIN_KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// How long fetched keys are used before they are fetched again, by default: 12 hours, as
/// Microsoft.IdentityModel's `ConfigurationManager.AutomaticRefreshInterval`.
pub const DEFAULT_KEY_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The largest JOSE header read, decoded: Entra's are about 100 bytes.
const MAX_HEADER_BYTES: usize = 1024;

/// The placeholder for the token's tenant in an issuer template.
const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Which tenants' tokens are accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tenants {
    /// One tenant, by ID: its metadata gives the keys.
    Single(String),
    /// These tenants, by ID.
    List(Vec<String>),
    /// Any tenant (a multi-tenant API that authorises callers itself).
    Any,
}

/// Validates Entra ID access tokens for one API. Cheap to clone: clones share the signing
/// keys.
///
/// ```no_run
/// # async fn example(token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use entra_identity_web::Validator;
///
/// let validator = Validator::builder()
///     .tenant("aaaaaaaa-0000-0000-0000-000000000001")
///     .audience("api://my-api")
///     .audience("11111111-2222-3333-4444-555555555555")
///     .required_scopes(["Data.Read"])
///     .build()?;
/// let claims = validator.validate(token).await?;
/// println!("caller {:?} from tenant {}", claims.object_id(), claims.tenant_id());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

struct Inner {
    audiences: Vec<String>,
    tenants: Tenants,
    v2_issuer: String,
    v1_issuer: String,
    required_scopes: Vec<String>,
    required_roles: Vec<String>,
    clock_skew: i64,
    max_token_bytes: usize,
    clock: Arc<dyn Clock>,
    keys: KeyStore,
    signature: Validation,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("audiences", &self.inner.audiences)
            .field("tenants", &self.inner.tenants)
            .field("v2_issuer", &self.inner.v2_issuer)
            .field("v1_issuer", &self.inner.v1_issuer)
            .field("required_scopes", &self.inner.required_scopes)
            .field("required_roles", &self.inner.required_roles)
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

/// The header fields we read ourselves, before jsonwebtoken does, to refuse a token early and
/// precisely.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl Validator {
    /// Starts configuring a validator: give at least one audience and the accepted tenants.
    pub fn builder() -> ValidatorBuilder {
        ValidatorBuilder::default()
    }

    /// Validates `token` (the bearer token, without `Bearer `) and returns its claims.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] of the first check that failed.
    pub async fn validate(&self, token: &str) -> Result<Claims, Rejection> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return Err(Rejection::TooLarge {
                limit: inner.max_token_bytes,
            });
        }
        let header = read_header(token)?;
        if header.alg != "RS256" {
            return Err(Rejection::UnsupportedAlgorithm);
        }
        let Some(kid) = header.kid else {
            return Err(Rejection::UnknownKey);
        };
        let key = inner.keys.key(&kid).await?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &inner.signature)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Rejection::BadSignature,
                _ => Rejection::Malformed,
            })?
            .claims;
        inner.check_claims(&claims)?;
        Ok(Claims::new(claims))
    }

    /// Fetches the signing keys now (at start-up, so the first request does not wait), unless
    /// they were fetched within the refresh interval.
    ///
    /// # Errors
    ///
    /// [`Rejection::KeysUnavailable`] when no keys could be fetched.
    pub async fn prefetch_keys(&self) -> Result<(), Rejection> {
        let keys = &self.inner.keys;
        keys.refresh(keys.generation()).await;
        if keys.loaded() {
            Ok(())
        } else {
            Err(Rejection::KeysUnavailable)
        }
    }
}

impl Validator {
    /// This validator with only the RSA key `(n, e)` named `kid`, never fetching.
    pub(crate) fn with_fixed_key(self, kid: &str, n: &str, e: &str) -> Option<Self> {
        let inner = Arc::into_inner(self.inner)?;
        let key = jsonwebtoken::DecodingKey::from_rsa_components(n, e).ok()?;
        let keys = std::iter::once((kid.to_owned(), Arc::new(key))).collect();
        Some(Self {
            inner: Arc::new(Inner {
                keys: KeyStore::fixed(keys),
                ..inner
            }),
        })
    }

    /// The claim checks alone (lifetime, audience, issuer, scopes), on a JSON object.
    pub(crate) fn check_claims(&self, claims: &Map<String, Value>) -> Result<(), Rejection> {
        self.inner.check_claims(claims)
    }
}

impl Inner {
    fn check_claims(&self, claims: &Map<String, Value>) -> Result<(), Rejection> {
        let now = self.clock.now();
        let exp = numeric_date(claims.get("exp")).ok_or(Rejection::Malformed)?;
        if now > exp.saturating_add(self.clock_skew) {
            return Err(Rejection::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(Some(nbf)).ok_or(Rejection::Malformed)?;
            if now.saturating_add(self.clock_skew) < nbf {
                return Err(Rejection::NotYetValid);
            }
        }

        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => self.audiences.iter().any(|ours| ours == aud),
            Some(Value::Array(auds)) => auds
                .iter()
                .filter_map(Value::as_str)
                .any(|aud| self.audiences.iter().any(|ours| ours == aud)),
            _ => false,
        };
        if !audience_ok {
            return Err(Rejection::WrongAudience);
        }

        self.check_issuer(claims)?;

        if self.required_scopes.is_empty() && self.required_roles.is_empty() {
            return Ok(());
        }
        let has_scope = claims
            .get("scp")
            .and_then(Value::as_str)
            .is_some_and(|scp| {
                scp.split_whitespace().any(|scope| {
                    self.required_scopes
                        .iter()
                        .any(|required| required == scope)
                })
            });
        let has_role = claims
            .get("roles")
            .and_then(Value::as_array)
            .is_some_and(|roles| {
                roles
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|role| self.required_roles.iter().any(|required| required == role))
            });
        if has_scope || has_role {
            Ok(())
        } else {
            Err(Rejection::MissingScope)
        }
    }

    /// The token's tenant (`tid`) must be accepted, and its issuer must be the v1.0 or v2.0
    /// issuer of that tenant, as the token's `ver` says.
    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), Rejection> {
        let tid = claims
            .get("tid")
            .and_then(Value::as_str)
            .ok_or(Rejection::WrongIssuer)?;
        let accepted = match &self.tenants {
            Tenants::Single(tenant) => tenant.eq_ignore_ascii_case(tid),
            Tenants::List(tenants) => tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)),
            Tenants::Any => true,
        };
        // A tenant ID is a GUID; anything else cannot be substituted into an issuer safely.
        if !accepted || tid.is_empty() || !tid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(Rejection::WrongIssuer);
        }
        let template = match claims.get("ver").and_then(Value::as_str) {
            Some("1.0") => &self.v1_issuer,
            Some("2.0") => &self.v2_issuer,
            _ => return Err(Rejection::WrongIssuer),
        };
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(Rejection::WrongIssuer)?;
        if issuer_matches(template, tid, iss) {
            Ok(())
        } else {
            Err(Rejection::WrongIssuer)
        }
    }
}

/// Whether `iss` is `template` with its `{tenantid}` replaced by `tid` (case-insensitively for
/// the tenant, as GUIDs may be written either way), without allocating.
fn issuer_matches(template: &str, tid: &str, iss: &str) -> bool {
    let Some((before, after)) = template.split_once(TENANT_PLACEHOLDER) else {
        return template == iss;
    };
    iss.len() == before.len() + tid.len() + after.len()
        && iss.starts_with(before)
        && iss.ends_with(after)
        // Bytes: no `str` slicing to reason about (both ends are char boundaries anyway, since
        // `iss` starts with `before` and ends with `after`).
        && iss.as_bytes()[before.len()..before.len() + tid.len()]
            .eq_ignore_ascii_case(tid.as_bytes())
}

/// Decodes the header segment: our own cheap look at `alg` and `kid`.
/// A header longer than [`MAX_HEADER_BYTES`] once decoded is refused.
fn read_header(token: &str) -> Result<Header, Rejection> {
    let segment = token.split('.').next().ok_or(Rejection::Malformed)?;
    let mut bytes = [0u8; MAX_HEADER_BYTES];
    let length = URL_SAFE_NO_PAD
        .decode_slice(segment, &mut bytes)
        .map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&bytes[..length]).map_err(|_| Rejection::Malformed)
}

/// Configures a [`Validator`].
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Default)]
pub struct ValidatorBuilder {
    authority: Option<String>,
    audiences: Vec<String>,
    tenants: Option<Tenants>,
    v1_issuer: Option<String>,
    required_scopes: Vec<String>,
    required_roles: Vec<String>,
    clock_skew: Option<Duration>,
    max_token_bytes: Option<usize>,
    min_key_refresh_interval: Option<Duration>,
    key_lifetime: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for ValidatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatorBuilder")
            .field("authority", &self.authority)
            .field("audiences", &self.audiences)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

/// Why a [`ValidatorBuilder`] could not build.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidatorBuildError {
    /// No audience was given.
    #[error("a validator needs at least one audience (the API's client ID or App ID URI)")]
    NoAudience,
    /// No tenant was given (use `any_tenant` for a multi-tenant API).
    #[error("a validator needs the accepted tenants: tenant, tenants or any_tenant")]
    NoTenant,
    /// A tenant ID is not a GUID.
    #[error("the tenant '{0}' is not a tenant ID (a GUID)")]
    InvalidTenant(String),
    /// The authority is not an https URL.
    #[error("the authority '{0}' is not an https URL")]
    InvalidAuthority(String),
    /// The v1.0 issuer template has no `{{tenantid}}`.
    #[error("the v1.0 issuer template '{0}' has no {{tenantid}}")]
    InvalidIssuerTemplate(String),
}

impl ValidatorBuilder {
    /// The authority host, such as `https://login.microsoftonline.us`;
    /// [`PUBLIC_CLOUD_AUTHORITY`] by default.
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    /// Accepts tokens whose `aud` is `audience`: the API's client ID (v2.0 tokens) or one of
    /// its application ID URIs (v1.0 tokens, or v2.0 tokens requested by URI). Call once per
    /// accepted value.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts tokens from one tenant, by ID (a GUID): keys come from its metadata.
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenants = Some(Tenants::Single(tenant_id.into()));
        self
    }

    /// Accepts tokens from these tenants, by ID.
    pub fn tenants<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tenant_ids: I) -> Self {
        self.tenants = Some(Tenants::List(
            tenant_ids.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Accepts tokens from any tenant: the issuer must still be the one of the token's own
    /// tenant (`tid`). Authorise callers by tenant yourself.
    pub fn any_tenant(mut self) -> Self {
        self.tenants = Some(Tenants::Any);
        self
    }

    /// The issuer of v1.0 tokens, with `{tenantid}` where the tenant goes. By default
    /// `https://sts.windows.net/{tenantid}/` for the public cloud's authority and
    /// `{authority}/{tenantid}/` for any other (as the emulator issues them).
    pub fn v1_issuer(mut self, template: impl Into<String>) -> Self {
        self.v1_issuer = Some(template.into());
        self
    }

    /// Requires one of these delegated scopes in `scp` (or one of the roles of
    /// [`ValidatorBuilder::required_roles`]); any scope by default.
    pub fn required_scopes<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        scopes: I,
    ) -> Self {
        self.required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Requires one of these app roles in `roles` (or one of the scopes of
    /// [`ValidatorBuilder::required_scopes`]); any role by default.
    pub fn required_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.required_roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The clock skew allowed on `exp` and `nbf`; [`DEFAULT_CLOCK_SKEW`] by default.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = Some(skew);
        self
    }

    /// The largest token read; [`DEFAULT_MAX_TOKEN_BYTES`] by default.
    pub fn max_token_bytes(mut self, limit: usize) -> Self {
        self.max_token_bytes = Some(limit);
        self
    }

    /// The least time between two key refreshes caused by unknown `kid`s;
    /// [`DEFAULT_MIN_KEY_REFRESH_INTERVAL`] by default. A flood of forged `kid`s causes at most
    /// one fetch per interval.
    pub fn min_key_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_key_refresh_interval = Some(interval);
        self
    }

    /// How long fetched keys are used before they are fetched again;
    /// [`DEFAULT_KEY_LIFETIME`] by default. Keys that cannot be fetched again are kept.
    pub fn key_lifetime(mut self, lifetime: Duration) -> Self {
        self.key_lifetime = Some(lifetime);
        self
    }

    /// The clock that `exp` and `nbf` are checked against; the system clock by default.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The HTTP client that fetches the metadata and keys (to trust another CA, or use a
    /// proxy); a default rustls client otherwise.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the validator. Keys are fetched on first use (or by
    /// [`Validator::prefetch_keys`]).
    ///
    /// # Errors
    ///
    /// No audience or tenant, a tenant that is not a GUID, an authority that is not https.
    pub fn build(self) -> Result<Validator, ValidatorBuildError> {
        if self.audiences.is_empty() {
            return Err(ValidatorBuildError::NoAudience);
        }
        let tenants = self.tenants.ok_or(ValidatorBuildError::NoTenant)?;
        let is_guid = |tenant: &str| {
            tenant.len() == 36 && tenant.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        };
        let bad_tenant = match &tenants {
            Tenants::Single(tenant) => (!is_guid(tenant)).then(|| tenant.clone()),
            Tenants::List(list) if list.is_empty() => Some(String::new()),
            Tenants::List(list) => list.iter().find(|tenant| !is_guid(tenant)).cloned(),
            Tenants::Any => None,
        };
        if let Some(tenant) = bad_tenant {
            return Err(ValidatorBuildError::InvalidTenant(tenant));
        }
        let authority = self
            .authority
            .unwrap_or_else(|| PUBLIC_CLOUD_AUTHORITY.to_owned());
        let authority = authority.trim_end_matches('/').to_owned();
        let host_ok = authority
            .strip_prefix("https://")
            .is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#', '@']));
        if !host_ok {
            return Err(ValidatorBuildError::InvalidAuthority(authority));
        }
        let v1_issuer = match self.v1_issuer {
            Some(template) if !template.contains(TENANT_PLACEHOLDER) => {
                return Err(ValidatorBuildError::InvalidIssuerTemplate(template));
            }
            Some(template) => template,
            None if authority.eq_ignore_ascii_case(PUBLIC_CLOUD_AUTHORITY) => {
                "https://sts.windows.net/{tenantid}/".to_owned()
            }
            None => format!("{authority}/{TENANT_PLACEHOLDER}/"),
        };
        let metadata_tenant = match &tenants {
            Tenants::Single(tenant) => tenant.as_str(),
            Tenants::List(_) | Tenants::Any => "organizations",
        };
        let metadata_url =
            format!("{authority}/{metadata_tenant}/v2.0/.well-known/openid-configuration");
        let policy = RefreshPolicy {
            min_interval: self
                .min_key_refresh_interval
                .unwrap_or(DEFAULT_MIN_KEY_REFRESH_INTERVAL),
            lifetime: self.key_lifetime.unwrap_or(DEFAULT_KEY_LIFETIME),
        };
        // Only the signature is left to jsonwebtoken; every claim is checked by us, against
        // our clock, with typed rejections.
        let mut signature = Validation::new(Algorithm::RS256);
        signature.validate_exp = false;
        signature.validate_nbf = false;
        signature.validate_aud = false;
        signature.required_spec_claims.clear();
        Ok(Validator {
            inner: Arc::new(Inner {
                audiences: self.audiences,
                tenants,
                v2_issuer: format!("{authority}/{TENANT_PLACEHOLDER}/v2.0"),
                v1_issuer,
                required_scopes: self.required_scopes,
                required_roles: self.required_roles,
                clock_skew: i64::try_from(self.clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW).as_secs())
                    .unwrap_or(i64::MAX),
                max_token_bytes: self.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                keys: KeyStore::new(self.http.unwrap_or_default(), metadata_url, policy),
                signature,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_template_matches_only_the_tokens_tenant() {
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let tid = "aaaaaaaa-0000-0000-0000-000000000001";
        let iss = format!("https://login.microsoftonline.com/{tid}/v2.0");
        assert!(issuer_matches(template, tid, &iss));
        assert!(issuer_matches(template, &tid.to_uppercase(), &iss));
        assert!(!issuer_matches(
            template,
            "bbbbbbbb-0000-0000-0000-000000000001",
            &iss
        ));
        assert!(!issuer_matches(template, tid, &format!("{iss}/")));
        assert!(!issuer_matches(
            template,
            tid,
            "https://evil.example/x/v2.0"
        ));
        assert!(!issuer_matches(template, tid, ""));
        // Same length, multi-byte characters where the tenant goes: no match.
        let sneaky = format!(
            "https://login.microsoftonline.com/a{}/v2.0",
            "é".repeat(17) + "b"
        );
        assert_eq!(sneaky.len(), iss.len());
        assert!(!issuer_matches(template, tid, &sneaky));
    }

    #[test]
    fn headers_are_read_without_panicking() {
        for token in [
            "",
            ".",
            "e30",
            "!!!.x.y",
            "eyJhbGciOjF9.e30.",
            &"A".repeat(5000),
        ] {
            assert!(read_header(token).is_err(), "{token:.20}");
        }
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert_eq!(
            read_header(&format!("{none}.e30.")).map(|h| h.alg).ok(),
            Some("none".to_owned())
        );
    }

    #[test]
    fn builder_refuses_what_cannot_work() {
        let base = || Validator::builder().audience("api://x");
        assert_eq!(
            Validator::builder().tenant("x").build().err(),
            Some(ValidatorBuildError::NoAudience)
        );
        assert_eq!(base().build().err(), Some(ValidatorBuildError::NoTenant));
        assert!(matches!(
            base().tenant("contoso.com").build(),
            Err(ValidatorBuildError::InvalidTenant(_))
        ));
        assert!(matches!(
            base().tenants(Vec::<String>::new()).build(),
            Err(ValidatorBuildError::InvalidTenant(_))
        ));
        assert!(matches!(
            base().any_tenant().authority("http://x").build(),
            Err(ValidatorBuildError::InvalidAuthority(_))
        ));
        assert!(matches!(
            base().any_tenant().v1_issuer("https://sts/x/").build(),
            Err(ValidatorBuildError::InvalidIssuerTemplate(_))
        ));
        assert!(base().any_tenant().build().is_ok());
    }
}
