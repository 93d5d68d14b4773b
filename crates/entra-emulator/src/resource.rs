//! The emulator as a protected resource: v1.0 user tokens, and (below) an API that validates
//! the emulator's tokens and can revoke a user's session for Continuous Access Evaluation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::aad_error::AadError;
use crate::jwt::UnverifiedJwt;
use crate::state::{Shared, now, now_precise};

/// Where the protected resource serves: `GET` with a bearer token from this emulator.
pub(crate) const RESOURCE_PATH: &str = "/resource/data";
/// Where the admin API revokes a session: `POST` a [`SessionRevocation`].
pub(crate) const REVOCATIONS_PATH: &str = "/_emulator/resource/revocations";

/// `claims` (a v2.0 user token's) as the token `version` asks: v1.0 tokens name the client
/// in `appid` and come from the `{authority}/{tenant}/` issuer (`https://sts.windows.net/...`
/// at Entra).
pub(crate) fn with_version(
    shared: &Shared,
    mut claims: Value,
    version: Option<&str>,
) -> Result<Value, Error> {
    match version {
        None | Some("2.0") => Ok(claims),
        Some("1.0") => {
            if let Some(object) = claims.as_object_mut() {
                let tenant = object
                    .get("tid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if let Some(azp) = object.remove("azp") {
                    object.insert("appid".into(), azp);
                }
                object.insert("iss".into(), json!(shared.v1_issuer(&tenant)));
                object.insert("ver".into(), json!("1.0"));
            }
            Ok(claims)
        }
        Some(other) => Err(Error::Config(format!(
            "token version '{other}' is not 1.0 or 2.0"
        ))),
    }
}

impl Shared {
    /// The `iss` of v1.0 tokens issued in `tenant_id`.
    pub(crate) fn v1_issuer(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/", self.base_url)
    }
}

/// A user's session to revoke, as a Continuous Access Evaluation critical event (a password
/// reset, a disabled account, a revoked session) would.
///
/// From the revocation on, the protected resource answers the user's CAE tokens (`xms_cc`
/// holding `cp1`) issued before it with `401` and an `insufficient_claims` challenge
/// demanding a token issued after it (`{"access_token":{"nbf":{"essential":true,"value":"T"}}}`),
/// until such a token arrives. Tokens without CAE keep working until they expire, as at Entra.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionRevocation {
    /// The user, by object ID or UPN.
    pub user: String,
    /// Also drop the user's refresh tokens and refuse on-behalf-of exchanges of the user's
    /// tokens issued before the revocation (`invalid_grant`, AADSTS50173, with the same claims
    /// challenge): the user must sign in again. When false, only the resource challenges, and
    /// a middle tier answers the challenge with a new exchange of the same user token.
    pub sign_in_required: bool,
}

/// The users' revocations: object ID (lower case) to the time and kind of the last one.
#[derive(Debug, Default)]
pub(crate) struct Revocations(Mutex<HashMap<String, (i64, bool)>>);

impl Revocations {
    fn get(&self, object_id: &str) -> Option<(i64, bool)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&object_id.to_ascii_lowercase())
            .copied()
    }
}

/// The claims challenge demanding a token issued at or after `revoked_at`.
fn demanded_claims(revoked_at: i64) -> String {
    json!({"access_token": {"nbf": {"essential": true, "value": revoked_at.to_string()}}})
        .to_string()
}

/// Whether `jwt` was issued before its user's revocation at `revoked_at`.
fn issued_before(jwt: &UnverifiedJwt, revoked_at: i64) -> bool {
    jwt.claim_time("nbf")
        .or_else(|| jwt.claim_time("iat"))
        .is_none_or(|issued| issued < revoked_at)
}

impl Shared {
    /// Revokes a user's session; returns the revocation time. Tokens carry whole seconds, so
    /// the revocation waits for the next second to begin and takes effect then: every token
    /// issued before the call returns is older than it, every token issued after is not.
    pub(crate) async fn revoke_session(
        &self,
        revocation: &SessionRevocation,
    ) -> Result<i64, Error> {
        let object_id = self
            .directory
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .user(&revocation.user)
            .map(|user| user.object_id.to_ascii_lowercase())
            .ok_or_else(|| Error::Config(format!("no user '{}'", revocation.user)))?;
        let precise = now_precise();
        let next_second = precise.floor() + 1.0;
        tokio::time::sleep(Duration::from_secs_f64(
            (next_second - precise).clamp(0.0, 1.0),
        ))
        .await;
        let revoked_at = now().max(next_second as i64);
        self.revocations
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(object_id.clone(), (revoked_at, revocation.sign_in_required));
        if revocation.sign_in_required {
            // The user's refresh tokens die with the session.
            self.refresh_tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|_, grant| !grant.user_object_id.eq_ignore_ascii_case(&object_id));
        }
        Ok(revoked_at)
    }
}

/// The token endpoint's check of an on-behalf-of user assertion: refused after a revocation
/// that requires signing in again.
pub(crate) fn check_assertion(
    shared: &Shared,
    object_id: &str,
    jwt: &UnverifiedJwt,
) -> Result<(), AadError> {
    match shared.revocations.get(object_id) {
        Some((revoked_at, true)) if issued_before(jwt, revoked_at) => Err(AadError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            code: 50_173,
            message: "The provided grant has expired due to it being revoked, a fresh auth \
                      token is needed. The user might have changed or reset their password."
                .to_owned(),
            suberror: None,
            claims: Some(demanded_claims(revoked_at)),
        }),
        _ => Ok(()),
    }
}

/// `POST /_emulator/resource/revocations`: a [`SessionRevocation`]; answers
/// `{"revoked_at": T}`.
pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    Json(revocation): Json<SessionRevocation>,
) -> Response {
    match shared.revoke_session(&revocation).await {
        Ok(revoked_at) => Json(json!({ "revoked_at": revoked_at })).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": error.to_string() })),
        )
            .into_response(),
    }
}

/// `GET /resource/data`: a protected resource. It accepts RS256 tokens signed by this
/// emulator, from the issuer of their tenant, unexpired, for any application registered in
/// that tenant, and answers what it saw of the caller.
pub(crate) async fn protected_data(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return challenge(
            StatusCode::UNAUTHORIZED,
            "Bearer".to_owned(),
            "no bearer token",
        );
    };
    let jwt = match verify(&shared, token) {
        Ok(jwt) => jwt,
        Err(problem) => {
            return challenge(
                StatusCode::UNAUTHORIZED,
                format!("Bearer error=\"invalid_token\", error_description=\"{problem}\""),
                problem,
            );
        }
    };
    let object_id = jwt.claim_str("oid").unwrap_or_default();
    let cae = jwt
        .claims
        .get("xms_cc")
        .and_then(Value::as_array)
        .is_some_and(|caps| {
            caps.iter()
                .filter_map(Value::as_str)
                .any(|cap| cap.eq_ignore_ascii_case("cp1"))
        });
    if let Some((revoked_at, _)) = shared.revocations.get(object_id)
        && cae
        && issued_before(&jwt, revoked_at)
    {
        let claims = STANDARD.encode(demanded_claims(revoked_at));
        return challenge(
            StatusCode::UNAUTHORIZED,
            format!(
                "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", \
                 error=\"insufficient_claims\", claims=\"{claims}\"",
                shared.base_url
            ),
            "the user's session was revoked",
        );
    }
    let claim = |name: &str| jwt.claims.get(name).cloned().unwrap_or(Value::Null);
    Json(json!({
        "resource": "data",
        "oid": claim("oid"),
        "tid": claim("tid"),
        "aud": claim("aud"),
        "scp": claim("scp"),
        "roles": claim("roles"),
        "xms_cc": claim("xms_cc"),
    }))
    .into_response()
}

fn challenge(status: StatusCode, challenge: String, message: &str) -> Response {
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    if let Ok(value) = challenge.parse() {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The token's signature, issuer, lifetime and audience, as the resource checks them.
fn verify(shared: &Shared, token: &str) -> Result<UnverifiedJwt, &'static str> {
    let jwt = UnverifiedJwt::parse(token).map_err(|_| "the token is not a JWT")?;
    if jwt.header_str("alg") != Some("RS256")
        || jwt.verify_rsa(shared.signing.rsa_public_key()).is_err()
    {
        return Err("the token's signature is not valid");
    }
    let tid = jwt.claim_str("tid").unwrap_or_default();
    let iss = jwt.claim_str("iss").unwrap_or_default();
    if iss != shared.issuer(tid) && iss != shared.v1_issuer(tid) {
        return Err("the token's issuer is not accepted");
    }
    if jwt.claim_time("exp").is_none_or(|exp| exp <= now()) {
        return Err("the token has expired");
    }
    let directory = shared
        .directory
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let registered = directory.tenant(tid).is_some_and(|tenant| {
        jwt.audience_matches(|aud| tenant.applications.iter().any(|app| app.is_audience(aud)))
    });
    if !registered {
        return Err("the token is not for an API of its tenant");
    }
    Ok(jwt)
}
