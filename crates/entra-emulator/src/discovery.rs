//! Metadata endpoints: OpenID configuration, signing keys and instance discovery.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::aad_error::AadError;
use crate::observe::Counter;
use crate::state::{Shared, now};

/// Entra's well-known authority hosts, which instance discovery always accepts.
const WELL_KNOWN_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "sts.windows.net",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.de",
    "login-us.microsoftonline.com",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
];

/// Tenant names that stand for "any tenant" in metadata requests.
const MULTI_TENANT_NAMES: &[&str] = &["common", "organizations", "consumers"];

fn error_response(shared: &Shared, error: &AadError) -> Response {
    let body = error.body(&shared.base_url, &crate::directory::new_guid(), now());
    (error.status, Json(body)).into_response()
}

/// The tenant a metadata request names: its ID, or `None` for `common`, `organizations` and
/// `consumers`.
fn metadata_tenant(shared: &Shared, tenant: &str) -> Result<Option<String>, AadError> {
    if MULTI_TENANT_NAMES
        .iter()
        .any(|name| name.eq_ignore_ascii_case(tenant))
    {
        return Ok(None);
    }
    let directory = shared
        .directory
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match directory.tenant(tenant) {
        Some(found) => Ok(Some(found.id.clone())),
        None => Err(AadError::tenant_not_found(tenant)),
    }
}

/// What the v2.0 and v1.0 metadata documents are built from.
struct MetadataNames {
    /// The emulator's base URL.
    base: String,
    /// The tenant in endpoint paths: its ID, or the multi-tenant name as asked.
    path_tenant: String,
    /// The tenant in the issuer: its ID, or Entra's `{tenantid}` template.
    issuer_tenant: String,
    /// Entra names a region for a tenant and none for the multi-tenant names.
    region: Value,
}

/// Counts a metadata request and resolves the tenant it names.
fn metadata_names(shared: &Shared, tenant: &str) -> Result<MetadataNames, AadError> {
    shared.counters.bump(Counter::OpenIdConfiguration);
    let tenant_id = metadata_tenant(shared, tenant)?;
    let region = match tenant_id {
        Some(_) => Value::from(shared.tenant_region_scope.clone()),
        None => Value::Null,
    };
    Ok(MetadataNames {
        base: shared.base_url.clone(),
        path_tenant: tenant_id
            .clone()
            .unwrap_or_else(|| tenant.to_ascii_lowercase()),
        issuer_tenant: tenant_id.unwrap_or_else(|| "{tenantid}".to_owned()),
        region,
    })
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub(crate) async fn openid_configuration(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    let MetadataNames {
        base,
        path_tenant,
        issuer_tenant,
        region,
    } = match metadata_names(&shared, &tenant) {
        Ok(names) => names,
        Err(error) => return error_response(&shared, &error),
    };
    let document = json!({
        "token_endpoint": format!("{base}/{path_tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{path_tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{issuer_tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{path_tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{path_tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{path_tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
            "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{base}/{path_tenant}/kerberos"),
        "tenant_region_scope": region,
        "cloud_instance_name": "entra-emulator",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    Json(document).into_response()
}

/// `GET /{tenant}/.well-known/openid-configuration`: the v1.0 metadata, in the shape Entra
/// publishes it. Its issuer is Entra's v1.0 issuer (`https://sts.windows.net/{tid}/`), which
/// resource servers that validate v1.0 tokens compare against; the emulator issues v2.0 tokens.
pub(crate) async fn openid_configuration_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    let MetadataNames {
        base,
        path_tenant,
        issuer_tenant,
        region,
    } = match metadata_names(&shared, &tenant) {
        Ok(names) => names,
        Err(error) => return error_response(&shared, &error),
    };
    let document = json!({
        "token_endpoint": format!("{base}/{path_tenant}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{path_tenant}/discovery/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": format!("https://sts.windows.net/{issuer_tenant}/"),
        "microsoft_multi_refresh_token": true,
        "authorization_endpoint": format!("{base}/{path_tenant}/oauth2/authorize"),
        "device_authorization_endpoint": format!("{base}/{path_tenant}/oauth2/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{path_tenant}/oauth2/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "amr", "nonce", "email", "given_name", "family_name", "nickname"],
        "check_session_iframe": format!("{base}/{path_tenant}/oauth2/checksession"),
        "userinfo_endpoint": format!("{base}/{path_tenant}/openid/userinfo"),
        "kerberos_endpoint": format!("{base}/{path_tenant}/kerberos"),
        "tenant_region_scope": region,
        "cloud_instance_name": "entra-emulator",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    Json(document).into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`, the v1.0 `GET /{tenant}/discovery/keys` (also
/// `/common/discovery/keys`) and the federation issuer's keys: one key set.
pub(crate) async fn keys(State(shared): State<Arc<Shared>>) -> Response {
    match shared
        .signing
        .jwk(&format!("{}/{{tenantid}}/v2.0", shared.base_url))
    {
        Ok(jwk) => Json(json!({ "keys": [jwk] })).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /common/discovery/instance?api-version=1.0|1.1&authorization_endpoint=...`.
pub(crate) async fn instance_discovery(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.counters.bump(Counter::InstanceDiscovery);
    let Some(endpoint) = query.get("authorization_endpoint") else {
        return error_response(
            &shared,
            &AadError::missing_parameter("authorization_endpoint"),
        );
    };
    let Ok(url) = url::Url::parse(endpoint) else {
        return error_response(&shared, &AadError::invalid_instance());
    };
    let Some(host) = url.host_str() else {
        return error_response(&shared, &AadError::invalid_instance());
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
    .to_ascii_lowercase();
    let own = shared
        .base_urls()
        .iter()
        .any(|base| base.strip_prefix("https://") == Some(authority.as_str()));
    let known = own
        || WELL_KNOWN_HOSTS.contains(&authority.as_str())
        || shared
            .known_authority_hosts
            .iter()
            .any(|known| known.eq_ignore_ascii_case(&authority));
    if url.scheme() != "https" || !known {
        return error_response(&shared, &AadError::invalid_instance());
    }
    let tenant = url
        .path_segments()
        .and_then(|mut segments| segments.next())
        .unwrap_or("common");
    let tenant_discovery_endpoint =
        format!("https://{authority}/{tenant}/v2.0/.well-known/openid-configuration");
    let version = query
        .get("api-version")
        .map(String::as_str)
        .unwrap_or("1.0");
    let mut body = json!({
        "tenant_discovery_endpoint": tenant_discovery_endpoint,
        "api-version": version,
    });
    if version == "1.1" {
        let aliases: Vec<String> = if own {
            shared
                .base_urls()
                .iter()
                .filter_map(|base| base.strip_prefix("https://"))
                .map(str::to_owned)
                .collect()
        } else {
            vec![authority.clone()]
        };
        body["metadata"] = json!([{
            "preferred_network": authority,
            "preferred_cache": authority,
            "aliases": aliases,
        }]);
    }
    Json(body).into_response()
}
