//! The admin API under `/_emulator`: registration, minting test tokens, the request log,
//! counters, fault injection and settings. The [`crate::Emulator`] handle offers the same
//! operations in-process.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /_emulator` | | this list, as JSON |
//! | `GET /_emulator/info` | | [`EmulatorInfo`] |
//! | `POST /_emulator/tenants` | [`TenantConfig`] | [`crate::TenantInfo`] |
//! | `POST /_emulator/tenants/{tenant}/applications` | [`ApplicationConfig`] | [`crate::ApplicationInfo`] |
//! | `POST /_emulator/tenants/{tenant}/users` | [`UserConfig`] | [`crate::UserInfo`] |
//! | `POST /_emulator/tokens/user` | [`UserTokenRequest`] | `{"access_token", "expires_on"}` |
//! | `POST /_emulator/tokens/federated` | [`FederatedTokenRequest`] | `{"token", "issuer", "expires_on"}` |
//! | `GET`, `DELETE /_emulator/requests` | | [`RequestRecord`]s; clears them |
//! | `GET`, `DELETE /_emulator/counters` | | [`Counters`]; resets them |
//! | `POST`, `DELETE /_emulator/faults` | [`FaultRule`] | arms a fault; disarms all |
//! | `GET`, `PATCH /_emulator/settings` | [`SettingsUpdate`] | [`Settings`] |
//! | `POST /_emulator/resource/revocations` | [`crate::SessionRevocation`] | `{"revoked_at"}` |

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Error;
use crate::config::{
    ApplicationConfig, TenantConfig, TokenSettings, TokenSettingsUpdate, UserConfig,
};
use crate::directory::{DEFAULT_FEDERATED_AUDIENCE, Registrar};
use crate::info::EmulatorInfo;
use crate::observe::{Counters, FaultRule, RequestRecord};
use crate::state::{Shared, now};

/// Where the admin endpoints live.
pub(crate) const ADMIN_PREFIX: &str = "/_emulator";

/// A user access token to mint: the incoming assertion of an on-behalf-of exchange.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserTokenRequest {
    /// The user, by object ID or UPN.
    pub user: String,
    /// The application the token is for (the middle-tier API): its client ID or application
    /// ID URI. It becomes the token's `aud`.
    pub audience: String,
    /// The tenant that issues the token; the user's home tenant when absent.
    pub tenant: Option<String>,
    /// Delegated permissions (`scp`); `access_as_user` when empty.
    pub scopes: Vec<String>,
    /// Seconds until the token expires; negative for a token that has already expired.
    /// One hour when absent.
    pub expires_in_secs: Option<i64>,
    /// The token version: `2.0` when absent, or `1.0` (issuer `{authority}/{tenant}/`, `appid`
    /// instead of `azp`), as an API whose manifest accepts v1.0 tokens receives.
    pub version: Option<String>,
}

/// A federated token to mint from the emulator's own issuer.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederatedTokenRequest {
    /// The `sub` claim.
    pub subject: String,
    /// The `aud` claim; `api://AzureADTokenExchange` when absent.
    pub audience: Option<String>,
    /// Seconds until the token expires; one hour when absent.
    pub expires_in_secs: Option<i64>,
}

/// The settings that can change while the emulator runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Settings {
    /// Token lifetimes and hints.
    pub tokens: TokenSettings,
    /// Whether a client assertion's `jti` may be presented only once.
    pub reject_replayed_assertions: bool,
}

/// A partial change of [`Settings`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettingsUpdate {
    /// Changes to token settings.
    pub tokens: Option<TokenSettingsUpdate>,
    /// New value of `reject_replayed_assertions`.
    pub reject_replayed_assertions: Option<bool>,
}

impl Shared {
    fn registrar<'a>(&'a self, federation_issuer: &'a str) -> Registrar<'a> {
        Registrar {
            ca: &self.ca,
            state_dir: &self.state_dir,
            federation_issuer,
        }
    }

    pub(crate) fn info(&self) -> EmulatorInfo {
        let tenants = self
            .directory
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .info();
        EmulatorInfo {
            url: self.base_url.clone(),
            authority_host: self.base_url.clone(),
            ca_pem: self.ca.pem(),
            ca_pem_path: Some(self.ca_pem_path.clone()),
            federation_issuer: self.federation_issuer(),
            admin_url: format!("{}{ADMIN_PREFIX}", self.base_url),
            tenants,
        }
    }

    pub(crate) fn register_tenant(
        &self,
        config: &TenantConfig,
    ) -> Result<crate::TenantInfo, Error> {
        let issuer = self.federation_issuer();
        let registrar = self.registrar(&issuer);
        self.directory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add_tenant(config, &registrar)
    }

    pub(crate) fn register_application(
        &self,
        tenant: &str,
        config: &ApplicationConfig,
    ) -> Result<crate::ApplicationInfo, Error> {
        let issuer = self.federation_issuer();
        let registrar = self.registrar(&issuer);
        self.directory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add_application(tenant, config, &registrar)
    }

    pub(crate) fn register_user(
        &self,
        tenant: &str,
        config: &UserConfig,
    ) -> Result<crate::UserInfo, Error> {
        self.directory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add_user(tenant, config)
    }

    pub(crate) fn mint_user_token(
        &self,
        request: &UserTokenRequest,
    ) -> Result<(String, i64), Error> {
        let directory = self
            .directory
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let user = directory
            .user(&request.user)
            .ok_or_else(|| Error::Config(format!("no user '{}'", request.user)))?;
        let tenant_name = request.tenant.as_deref().unwrap_or(&user.tenant_id);
        let tenant = directory
            .tenant(tenant_name)
            .ok_or_else(|| Error::Config(format!("no tenant '{tenant_name}'")))?;
        if request.audience.is_empty() {
            return Err(Error::Config("a user token needs an audience".to_owned()));
        }
        let scopes = if request.scopes.is_empty() {
            "access_as_user".to_owned()
        } else {
            request.scopes.join(" ")
        };
        let now = now();
        let expires_on = now.saturating_add(request.expires_in_secs.unwrap_or(3600));
        let claims = json!({
            "aud": request.audience,
            "iss": self.issuer(&tenant.id),
            "iat": now,
            "nbf": now.min(expires_on),
            "exp": expires_on,
            "azp": USER_CLIENT_APP_ID,
            "idtyp": "user",
            "name": user.name,
            "oid": user.object_id,
            "preferred_username": user.upn,
            "scp": scopes,
            "sub": user.object_id,
            "tid": tenant.id,
            "upn": user.upn,
            "ver": "2.0",
        });
        let claims = crate::resource::with_version(self, claims, request.version.as_deref())?;
        Ok((self.signing.sign(&claims)?, expires_on))
    }

    pub(crate) fn settings_view(&self) -> Settings {
        Settings {
            tokens: self
                .settings
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            reject_replayed_assertions: self.reject_replayed_assertions.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn update_settings(&self, update: &SettingsUpdate) -> Settings {
        if let Some(tokens) = &update.tokens {
            self.settings
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .apply(tokens);
        }
        if let Some(reject) = update.reject_replayed_assertions {
            self.reject_replayed_assertions
                .store(reject, Ordering::Relaxed);
        }
        self.settings_view()
    }
}

/// The `azp` of minted user tokens: the (imaginary) client the user signed in with.
pub const USER_CLIENT_APP_ID: &str = "04f0c124-f2bc-4f59-8241-bf6df9866bbd";

/// The admin endpoints, as `GET /_emulator` lists them: method, path, body, answer.
const ENDPOINTS: &[(&str, &str, &str, &str)] = &[
    ("GET", "/_emulator", "", "this list"),
    (
        "GET",
        "/_emulator/info",
        "",
        "everything registered, with credentials (EmulatorInfo)",
    ),
    (
        "POST",
        "/_emulator/tenants",
        "TenantConfig",
        "the new tenant (TenantInfo)",
    ),
    (
        "POST",
        "/_emulator/tenants/{tenant}/applications",
        "ApplicationConfig",
        "the new application (ApplicationInfo)",
    ),
    (
        "POST",
        "/_emulator/tenants/{tenant}/users",
        "UserConfig",
        "the new user (UserInfo)",
    ),
    (
        "POST",
        "/_emulator/tokens/user",
        "UserTokenRequest {user, audience, tenant?, scopes?, expires_in_secs?, version?}",
        "a user's access token for an application: {access_token, expires_on}",
    ),
    (
        "POST",
        "/_emulator/tokens/federated",
        "FederatedTokenRequest {subject, audience?, expires_in_secs?}",
        "a federated token from the emulator's issuer: {token, issuer, expires_on}",
    ),
    (
        "GET",
        "/_emulator/requests",
        "",
        "the request log, secrets redacted",
    ),
    (
        "DELETE",
        "/_emulator/requests",
        "",
        "clears the request log",
    ),
    ("GET", "/_emulator/counters", "", "the counters"),
    ("DELETE", "/_emulator/counters", "", "resets the counters"),
    (
        "POST",
        "/_emulator/faults",
        "FaultRule {path, count?, fault}",
        "arms a fault",
    ),
    ("DELETE", "/_emulator/faults", "", "disarms every fault"),
    ("GET", "/_emulator/settings", "", "the settings in force"),
    (
        "PATCH",
        "/_emulator/settings",
        "SettingsUpdate",
        "changes settings; the new settings",
    ),
    (
        "POST",
        "/_emulator/resource/revocations",
        "SessionRevocation {user, sign_in_required?}",
        "revokes a user's session (CAE): the protected resource /resource/data challenges the \
         user's older CAE tokens: {revoked_at}",
    ),
];

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(index))
        .route("/info", get(info))
        .route("/tenants", post(add_tenant))
        .route("/tenants/{tenant}/applications", post(add_application))
        .route("/tenants/{tenant}/users", post(add_user))
        .route("/tokens/user", post(user_token))
        .route("/tokens/federated", post(federated_token))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/counters", get(counters).delete(reset_counters))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/settings", get(settings).patch(patch_settings))
}

fn outcome<T: Serialize>(result: Result<T, Error>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": error.to_string() })),
        )
            .into_response(),
    }
}

async fn index(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let endpoints: Vec<_> = ENDPOINTS
        .iter()
        .map(|(method, path, body, answer)| {
            json!({
                "method": method,
                "path": path,
                "url": format!("{}{path}", shared.base_url),
                "body": (!body.is_empty()).then_some(body),
                "answer": answer,
            })
        })
        .collect();
    Json(json!({
        "emulator": "entra-emulator",
        "url": shared.base_url,
        "endpoints": endpoints,
    }))
}

async fn info(State(shared): State<Arc<Shared>>) -> Json<EmulatorInfo> {
    Json(shared.info())
}

async fn add_tenant(
    State(shared): State<Arc<Shared>>,
    Json(config): Json<TenantConfig>,
) -> Response {
    outcome(shared.register_tenant(&config))
}

async fn add_application(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Json(config): Json<ApplicationConfig>,
) -> Response {
    outcome(shared.register_application(&tenant, &config))
}

async fn add_user(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Json(config): Json<UserConfig>,
) -> Response {
    outcome(shared.register_user(&tenant, &config))
}

async fn user_token(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<UserTokenRequest>,
) -> Response {
    outcome(
        shared
            .mint_user_token(&request)
            .map(|(token, expires_on)| json!({ "access_token": token, "expires_on": expires_on })),
    )
}

async fn federated_token(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<FederatedTokenRequest>,
) -> Response {
    let audience = request
        .audience
        .as_deref()
        .unwrap_or(DEFAULT_FEDERATED_AUDIENCE);
    let lifetime = request.expires_in_secs.unwrap_or(3600);
    outcome(
        shared
            .mint_federated(&request.subject, audience, lifetime)
            .map(|token| {
                json!({
                    "token": token,
                    "issuer": shared.federation_issuer(),
                    "expires_on": now().saturating_add(lifetime),
                })
            }),
    )
}

async fn requests(State(shared): State<Arc<Shared>>) -> Json<Vec<RequestRecord>> {
    Json(shared.log.snapshot())
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.log.clear();
    StatusCode::NO_CONTENT
}

async fn counters(State(shared): State<Arc<Shared>>) -> Json<Counters> {
    Json(shared.counters.snapshot())
}

async fn reset_counters(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.counters.reset();
    StatusCode::NO_CONTENT
}

async fn add_fault(State(shared): State<Arc<Shared>>, Json(rule): Json<FaultRule>) -> StatusCode {
    shared.faults.add(rule);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.faults.clear();
    StatusCode::NO_CONTENT
}

async fn settings(State(shared): State<Arc<Shared>>) -> Json<Settings> {
    Json(shared.settings_view())
}

async fn patch_settings(
    State(shared): State<Arc<Shared>>,
    Json(update): Json<SettingsUpdate>,
) -> Json<Settings> {
    Json(shared.update_settings(&update))
}
