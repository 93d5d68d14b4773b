//! `POST /{tenant}/oauth2/v2.0/token`: client credentials, on-behalf-of and refresh tokens.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng as _;
use serde_json::{Map, Value, json};

use crate::aad_error::{AadError, format_time};
use crate::directory::{Application, Directory, Tenant, User};
use crate::jwt::{JwtProblem, UnverifiedJwt, decode_thumbprint};
use crate::observe::{Counter, RequestRecord, lock};
use crate::state::{RefreshGrant, Shared, TokenAudit, now};

/// The `grant_type` of the on-behalf-of exchange.
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `client_assertion_type` of a JWT client assertion.
const JWT_BEARER_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far apart the emulator's and a client's clocks may be.
const CLOCK_SKEW_SECS: i64 = 300;
/// Scopes that ask for OpenID Connect artefacts rather than access to a resource.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "offline_access", "email"];
/// Microsoft's APIs, which exist in every tenant.
const MICROSOFT_RESOURCES: &[&str] = &[
    "https://graph.microsoft.com",
    "https://graph.windows.net",
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://vault.azure.net",
    "https://storage.azure.com",
    "https://database.windows.net",
    "https://ossrdbms-aad.database.windows.net",
    "https://cognitiveservices.azure.com",
    "https://servicebus.azure.net",
    "https://eventhubs.azure.net",
    "https://monitor.azure.com",
    "https://outlook.office365.com",
];
/// The resource of a scope with no resource prefix, as Entra treats `User.Read`.
const DEFAULT_RESOURCE: &str = "https://graph.microsoft.com";

/// Handles a token request and records what the request log needs.
pub(crate) async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    shared.counters.bump(Counter::TokenRequests);
    let headers = request.headers().clone();
    let correlation_id = header(&headers, "client-request-id")
        .map(str::to_owned)
        .unwrap_or_else(crate::directory::new_guid);
    let mut audit = TokenAudit::default();
    let outcome = match read_form(&shared, request)
        .await
        .and_then(|fields| with_basic_credentials(&headers, fields))
    {
        Ok((fields, basic)) => {
            audit.form = RequestRecord::redact_form(&fields);
            let issued = issue(&shared, &tenant, &Form(fields), &mut audit);
            if basic && audit.client_auth.is_some() {
                audit.client_auth = Some("client_secret_basic".to_owned());
            }
            issued
        }
        Err(error) => Err(error),
    };
    let mut response = match outcome {
        Ok(body) => {
            shared.counters.bump(Counter::TokensIssued);
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(error) => {
            shared.counters.bump(Counter::TokenErrors);
            audit.error_code = Some(error.code);
            let body = error.body(&shared.base_url, &correlation_id, now());
            (error.status, Json(body)).into_response()
        }
    };
    let response_headers = response.headers_mut();
    response_headers.insert(
        "cache-control",
        HeaderValue::from_static("no-store, no-cache"),
    );
    response_headers.insert("pragma", HeaderValue::from_static("no-cache"));
    let echo = header(&headers, "return-client-request-id")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    if let (true, Ok(value)) = (echo, HeaderValue::from_str(&correlation_id)) {
        response_headers.insert("client-request-id", value);
    }
    response.extensions_mut().insert(audit);
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Takes the client's ID and secret from an `Authorization: Basic` header
/// (`client_secret_basic`: each URL-encoded, then joined by `:` and base64-encoded) into the
/// form, as Entra accepts them; `true` when the header was used. A `client_id` in the body
/// must match the header's, and the header is the only client credential then.
fn with_basic_credentials(
    headers: &HeaderMap,
    mut fields: Vec<(String, String)>,
) -> Result<(Vec<(String, String)>, bool), AadError> {
    let Some(value) = header(headers, "authorization") else {
        return Ok((fields, false));
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Err(AadError::malformed(
            "The Authorization header is not valid.",
        ));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AadError::malformed(
            "Only the Basic scheme is accepted in the Authorization header of a token request.",
        ));
    }
    let invalid =
        || AadError::malformed("The Basic credentials in the Authorization header are not valid.");
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| invalid())?;
    let (raw_id, raw_secret) = decoded
        .iter()
        .position(|byte| *byte == b':')
        .map(|colon| (&decoded[..colon], &decoded[colon + 1..]))
        .ok_or_else(invalid)?;
    let form_decode = |raw: &[u8]| {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|byte| if *byte == b'+' { b' ' } else { *byte })
            .collect();
        String::from_utf8(percent_decode(&spaced)).map_err(|_| invalid())
    };
    let (client_id, secret) = (form_decode(raw_id)?, form_decode(raw_secret)?);
    let present = |name: &str| {
        fields
            .iter()
            .any(|(field, value)| field == name && !value.is_empty())
    };
    if present("client_secret") || present("client_assertion") {
        return Err(AadError::malformed(
            "Only one client authentication method may be used: the Authorization header or \
             'client_secret' / 'client_assertion' in the body.",
        ));
    }
    match fields
        .iter()
        .find(|(field, value)| field == "client_id" && !value.is_empty())
    {
        Some((_, body_id)) if !body_id.eq_ignore_ascii_case(&client_id) => {
            return Err(AadError::malformed(
                "The client ID in the Authorization header does not match the 'client_id' \
                 parameter.",
            ));
        }
        Some(_) => {}
        None => {
            fields.retain(|(field, _)| field != "client_id");
            fields.push(("client_id".to_owned(), client_id));
        }
    }
    fields.retain(|(field, _)| field != "client_secret");
    fields.push(("client_secret".to_owned(), secret));
    Ok((fields, true))
}

/// Reads the body, within the size limit, as `application/x-www-form-urlencoded` UTF-8.
async fn read_form(shared: &Shared, request: Request) -> Result<Vec<(String, String)>, AadError> {
    let limit = shared.max_body_bytes;
    let bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|error| {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                AadError::body_too_large(limit)
            } else {
                AadError::malformed("The request body could not be read.")
            }
        })?;
    parse_form(&bytes)
}

/// The most fields a token request's form may have.
const MAX_FORM_FIELDS: usize = 64;

/// Parses a form body strictly: every name and value must be valid UTF-8 once decoded, and
/// no field may appear twice.
pub(crate) fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, AadError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for pair in body
        .split(|byte| *byte == b'&')
        .filter(|pair| !pair.is_empty())
    {
        // Entra's token requests have a dozen fields or so: a cap keeps a crafted body cheap.
        if fields.len() == MAX_FORM_FIELDS {
            return Err(AadError::malformed(&format!(
                "The request has more than {MAX_FORM_FIELDS} parameters."
            )));
        }
        let (name, value) = match pair.iter().position(|byte| *byte == b'=') {
            Some(index) => (&pair[..index], &pair[index + 1..]),
            None => (pair, &[][..]),
        };
        let decode = |raw: &[u8]| {
            let spaced: Vec<u8> = raw
                .iter()
                .map(|byte| if *byte == b'+' { b' ' } else { *byte })
                .collect();
            let bytes: Vec<u8> = percent_decode(&spaced);
            String::from_utf8(bytes)
                .map_err(|_| AadError::malformed("The request body is not valid UTF-8."))
        };
        let name = decode(name)?;
        if !names.insert(name.clone()) {
            return Err(AadError::malformed(&format!(
                "The parameter '{name}' appears twice."
            )));
        }
        fields.push((name, decode(value)?));
    }
    Ok(fields)
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |byte: u8| (byte as char).to_digit(16).map(|digit| digit as u8);
    let mut output = Vec::with_capacity(input.len());
    let mut index = 0;
    while index < input.len() {
        let byte = input[index];
        let escaped = (byte == b'%' && index + 2 < input.len())
            .then(|| hex(input[index + 1]).zip(hex(input[index + 2])))
            .flatten();
        if let Some((high, low)) = escaped {
            output.push(high << 4 | low);
            index += 3;
            continue;
        }
        output.push(byte);
        index += 1;
    }
    output
}

/// The decoded form; an empty value counts as absent, as it does at Entra.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, value)| field == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, AadError> {
        self.get(name)
            .ok_or_else(|| AadError::missing_parameter(name))
    }
}

/// Validates the request and issues the token response.
fn issue(
    shared: &Shared,
    tenant_name: &str,
    form: &Form,
    audit: &mut TokenAudit,
) -> Result<Value, AadError> {
    let grant_type = form.required("grant_type")?;
    if !matches!(
        grant_type,
        "client_credentials" | JWT_BEARER_GRANT | "refresh_token"
    ) {
        return Err(AadError::unsupported_grant_type(grant_type));
    }
    let directory = shared
        .directory
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tenant = directory
        .tenant(tenant_name)
        .ok_or_else(|| AadError::tenant_not_found(tenant_name))?;
    let client_id = form.required("client_id")?;
    let app = tenant
        .application(client_id)
        .ok_or_else(|| AadError::application_not_found(client_id, tenant_name))?;
    authenticate_client(shared, &directory, tenant, app, form, audit)?;

    let now = now();
    match grant_type {
        "client_credentials" => client_credentials(shared, tenant, app, form, now),
        "refresh_token" => {
            let token = form.required("refresh_token")?;
            let (grant, expires_at) = lock(&shared.refresh_tokens)
                .get(token)
                .map(|(grant, expires_at)| (grant.clone(), expires_at))
                .ok_or_else(|| AadError::bad_refresh_token(false))?;
            if !grant.client_id.eq_ignore_ascii_case(&app.client_id) || grant.tenant_id != tenant.id
            {
                return Err(AadError::bad_refresh_token(false));
            }
            if expires_at <= now {
                return Err(AadError::bad_refresh_token(true));
            }
            let user = directory
                .user(&grant.user_object_id)
                .ok_or_else(|| AadError::bad_refresh_token(false))?;
            delegated(shared, tenant, app, user, form, now)
        }
        _ => {
            match form.get("requested_token_use") {
                Some("on_behalf_of") => {}
                Some(other) => {
                    return Err(AadError::malformed(&format!(
                        "The value '{other}' of 'requested_token_use' is not supported."
                    )));
                }
                None => return Err(AadError::missing_parameter("requested_token_use")),
            }
            let assertion = form.required("assertion")?;
            let user = verify_user_assertion(shared, &directory, tenant, app, assertion, now)?;
            delegated(shared, tenant, app, user, form, now)
        }
    }
}

/// Checks the client's secret or assertion.
fn authenticate_client(
    shared: &Shared,
    directory: &Directory,
    tenant: &Tenant,
    app: &Application,
    form: &Form,
    audit: &mut TokenAudit,
) -> Result<(), AadError> {
    match (form.get("client_secret"), form.get("client_assertion")) {
        (Some(_), Some(_)) => Err(AadError::malformed(
            "Only one of 'client_secret' and 'client_assertion' may be presented.",
        )),
        (Some(secret), None) => {
            if app.secrets.iter().any(|known| known == secret) {
                audit.client_auth = Some("client_secret".to_owned());
                Ok(())
            } else {
                Err(AadError::invalid_client_secret())
            }
        }
        (None, Some(assertion)) => {
            match form.get("client_assertion_type") {
                Some(JWT_BEARER_ASSERTION_TYPE) => {}
                Some(other) => {
                    return Err(AadError::malformed(&format!(
                        "The client_assertion_type '{other}' is not supported."
                    )));
                }
                None => return Err(AadError::missing_parameter("client_assertion_type")),
            }
            let jwt = UnverifiedJwt::parse(assertion)
                .map_err(|_| AadError::invalid_jwt("The client assertion is not a JWT."))?;
            let names_thumbprint =
                jwt.header_str("x5t#S256").is_some() || jwt.header_str("x5t").is_some();
            // A token issued by someone else is federated when the application trusts that
            // issuer, or when it names no certificate; tokens from issuers carry `x5t` too.
            let foreign_issuer = jwt
                .claim_str("iss")
                .filter(|iss| !iss.eq_ignore_ascii_case(&app.client_id));
            let federated = foreign_issuer.is_some_and(|iss| {
                !names_thumbprint
                    || app
                        .federated_credentials
                        .iter()
                        .any(|credential| credential.issuer == iss)
            });
            let method = if federated {
                verify_federated_assertion(shared, directory, app, &jwt)?
            } else if names_thumbprint {
                verify_certificate_assertion(shared, tenant, app, &jwt)?
            } else {
                return Err(AadError::assertion_signature(
                    "The assertion names no certificate: its header has neither 'x5t#S256' nor \
                     'x5t'.",
                ));
            };
            check_replay(shared, &jwt)?;
            audit.client_auth = Some(method);
            Ok(())
        }
        (None, None) => Err(AadError::missing_client_credential()),
    }
}

/// A client assertion signed with one of the application's certificates.
fn verify_certificate_assertion(
    shared: &Shared,
    tenant: &Tenant,
    app: &Application,
    jwt: &UnverifiedJwt,
) -> Result<String, AadError> {
    let thumbprint = match (jwt.header_str("x5t#S256"), jwt.header_str("x5t")) {
        (Some(value), _) => Some(("x5t#S256", value)),
        (None, Some(value)) => Some(("x5t", value)),
        (None, None) => None,
    };
    let Some((kind, value)) = thumbprint else {
        return Err(AadError::assertion_signature(
            "The assertion names no certificate.",
        ));
    };
    let wanted = decode_thumbprint(value).unwrap_or_default();
    let certificate = app
        .certificates
        .iter()
        .map(|certificate| &certificate.registered)
        .find(|registered| match kind {
            "x5t#S256" => registered.sha256.as_slice() == wanted,
            _ => registered.sha1.as_slice() == wanted,
        })
        .ok_or_else(|| {
            AadError::assertion_signature(&format!(
                "Key was not found: the {kind} thumbprint '{value}' matches no certificate \
                 registered for application '{}'. If subject name/issuer authentication is \
                 configured, send the certificate chain (x5c).",
                app.client_id
            ))
        })?;

    let chain = jwt.header.get("x5c");
    if let Some(chain) = chain {
        let leaf = match chain {
            Value::Array(items) => items.first().and_then(Value::as_str),
            Value::String(single) => Some(single.as_str()),
            _ => None,
        };
        let leaf_der = leaf.and_then(|text| {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD.decode(compact).ok()
        });
        if leaf_der.as_deref() != Some(certificate.der.as_slice()) {
            return Err(AadError::assertion_signature(
                "The first certificate of the x5c chain is not the certificate the thumbprint \
                 names.",
            ));
        }
    } else if app.require_certificate_chain {
        return Err(AadError::assertion_signature(
            "The application uses subject name and issuer authentication, so the assertion must \
             carry its certificate chain in the x5c header.",
        ));
    }

    let algorithm =
        jwt.verify_rsa(&certificate.rsa_public_key)
            .map_err(|problem| match problem {
                JwtProblem::UnsupportedAlgorithm => {
                    AadError::assertion_signature("The assertion's alg must be PS256 or RS256.")
                }
                _ => AadError::assertion_signature(
                    "The signature does not verify with the registered certificate's key.",
                ),
            })?;

    let names_client = |claim: &str| {
        jwt.claim_str(claim)
            .is_some_and(|value| value.eq_ignore_ascii_case(&app.client_id))
    };
    if !names_client("iss") || !names_client("sub") {
        return Err(AadError::assertion_client_mismatch());
    }
    check_token_endpoint_audience(shared, tenant, jwt)?;
    check_assertion_times(jwt)?;
    let chain_label = if chain.is_some() { " x5c" } else { "" };
    Ok(format!(
        "certificate {} {kind}{chain_label}",
        algorithm.name()
    ))
}

/// A token from an external (or the emulator's own) issuer, under a federated credential.
fn verify_federated_assertion(
    shared: &Shared,
    directory: &Directory,
    app: &Application,
    jwt: &UnverifiedJwt,
) -> Result<String, AadError> {
    let issuer = jwt.claim_str("iss").unwrap_or_default();
    let for_issuer: Vec<_> = app
        .federated_credentials
        .iter()
        .filter(|credential| credential.issuer == issuer)
        .collect();
    if for_issuer.is_empty() {
        return Err(AadError::federated_mismatch(700_211, "issuer", issuer));
    }
    let own_key = [shared.signing.rsa_public_key().to_vec()];
    let keys: &[Vec<u8>] = if issuer == shared.federation_issuer() {
        &own_key
    } else {
        directory.trusted_issuer_keys(issuer).unwrap_or_default()
    };
    if !keys.iter().any(|key| jwt.verify_rsa(key).is_ok()) {
        return Err(AadError::assertion_signature(&format!(
            "The federated token does not verify with any key of issuer '{issuer}'."
        )));
    }
    let subject = jwt.claim_str("sub").unwrap_or_default();
    let for_subject: Vec<_> = for_issuer
        .into_iter()
        .filter(|credential| credential.subject == subject)
        .collect();
    if for_subject.is_empty() {
        return Err(AadError::federated_mismatch(700_213, "subject", subject));
    }
    if !for_subject
        .iter()
        .any(|credential| jwt.audience_matches(|aud| aud == credential.audience))
    {
        let presented = jwt
            .claims
            .get("aud")
            .map(Value::to_string)
            .unwrap_or_default();
        return Err(AadError::federated_mismatch(
            700_212, "audience", &presented,
        ));
    }
    check_assertion_times(jwt)?;
    Ok("federated".to_owned())
}

/// The assertion must name this token endpoint (by any name of the tenant) as audience.
fn check_token_endpoint_audience(
    shared: &Shared,
    tenant: &Tenant,
    jwt: &UnverifiedJwt,
) -> Result<(), AadError> {
    let accepted: Vec<String> = shared
        .base_urls()
        .iter()
        .flat_map(|base| {
            tenant.names().flat_map(move |name| {
                [
                    format!("{base}/{name}/oauth2/v2.0/token"),
                    format!("{base}/{name}/oauth2/token"),
                    format!("{base}/{name}/v2.0"),
                ]
            })
        })
        .map(|url| url.to_ascii_lowercase())
        .collect();
    let matches = |aud: &str| {
        let aud = aud.trim_end_matches('/').to_ascii_lowercase();
        accepted.contains(&aud)
    };
    if jwt.audience_matches(matches) {
        Ok(())
    } else {
        Err(AadError::assertion_audience(&format!(
            "{}/{}/oauth2/v2.0/token",
            shared.base_url, tenant.id
        )))
    }
}

fn check_assertion_times(jwt: &UnverifiedJwt) -> Result<(), AadError> {
    let now = now();
    let exp = jwt
        .claim_time("exp")
        .ok_or_else(|| AadError::assertion_time_range("The assertion has no 'exp' claim."))?;
    if now > exp + CLOCK_SKEW_SECS {
        return Err(AadError::assertion_time_range(&format!(
            "Current time: {}, assertion valid until {}.",
            format_time(now),
            format_time(exp)
        )));
    }
    if let Some(nbf) = jwt
        .claim_time("nbf")
        .filter(|nbf| *nbf > now + CLOCK_SKEW_SECS)
    {
        return Err(AadError::assertion_time_range(&format!(
            "Current time: {}, assertion not valid before {}.",
            format_time(now),
            format_time(nbf)
        )));
    }
    Ok(())
}

/// With replay protection on, a `jti` may be presented once until its assertion expires.
fn check_replay(shared: &Shared, jwt: &UnverifiedJwt) -> Result<(), AadError> {
    if !shared.reject_replayed_assertions.load(Ordering::Relaxed) {
        return Ok(());
    }
    let jti = jwt
        .claim_str("jti")
        .ok_or_else(|| AadError::invalid_jwt("The client assertion has no 'jti' claim."))?;
    let now = now();
    let exp = jwt.claim_time("exp").unwrap_or(now);
    let mut used = lock(&shared.used_jtis);
    if used.get(jti).is_some_and(|(_, expiry)| expiry >= now) {
        return Err(AadError::invalid_jwt(&format!(
            "The client assertion with jti '{jti}' has already been used."
        )));
    }
    used.insert(jti.to_owned(), (), exp.saturating_add(CLOCK_SKEW_SECS), now);
    Ok(())
}

/// The user behind an on-behalf-of assertion: a token this emulator issued to that user for
/// the presenting application, still valid.
fn verify_user_assertion<'d>(
    shared: &Shared,
    directory: &'d Directory,
    tenant: &Tenant,
    app: &Application,
    assertion: &str,
    now: i64,
) -> Result<&'d User, AadError> {
    let jwt = UnverifiedJwt::parse(assertion)
        .map_err(|_| AadError::user_assertion_invalid("The assertion is not a JWT."))?;
    if jwt.verify_rsa(shared.signing.rsa_public_key()).is_err() {
        return Err(AadError::user_assertion_invalid(
            "The assertion's signature does not verify with this authority's keys.",
        ));
    }
    let issuer = jwt.claim_str("iss").unwrap_or_default();
    if !shared
        .base_urls()
        .iter()
        .any(|base| issuer.starts_with(&format!("{base}/")))
    {
        return Err(AadError::user_assertion_invalid(&format!(
            "The assertion's issuer '{issuer}' is not this authority."
        )));
    }
    let exp = jwt.claim_time("exp").unwrap_or(i64::MIN);
    let nbf = jwt.claim_time("nbf").unwrap_or(i64::MIN);
    if now > exp.saturating_add(CLOCK_SKEW_SECS) || nbf > now + CLOCK_SKEW_SECS {
        return Err(AadError::user_assertion_expired(now, exp));
    }
    if !jwt.audience_matches(|aud| app.is_audience(aud)) {
        let presented = jwt.claim_str("aud").unwrap_or_default();
        return Err(AadError::user_assertion_audience(presented));
    }
    if jwt.claim_str("idtyp") == Some("app") {
        return Err(AadError::user_assertion_invalid(
            "The assertion is an application token; on-behalf-of needs a user's token.",
        ));
    }
    let object_id = jwt.claim_str("oid").unwrap_or_default();
    let user = directory.user(object_id).ok_or_else(|| {
        AadError::user_assertion_invalid(&format!("The user '{object_id}' does not exist."))
    })?;
    // The exchange happens in the tenant that issued the user's token.
    if jwt
        .claim_str("tid")
        .is_none_or(|tid| !tid.eq_ignore_ascii_case(&tenant.id))
    {
        return Err(AadError::user_not_in_tenant(&user.upn, issuer, &tenant.id));
    }
    crate::resource::check_assertion(shared, &user.object_id, &jwt)?;
    Ok(user)
}

/// The access token lifetime, and whether the client declared the CAE capability.
fn lifetime(shared: &Shared, form: &Form) -> Result<(u64, bool), AadError> {
    let cae = match form.get("claims") {
        Some(text) => declares_cp1(text)?,
        None => false,
    };
    let settings = shared
        .settings
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lifetime = if cae {
        settings.cae_access_token_lifetime_secs
    } else {
        settings.access_token_lifetime_secs
    };
    Ok((lifetime, cae))
}

/// Whether a `claims` request parameter asks for the `CP1` client capability.
fn declares_cp1(claims: &str) -> Result<bool, AadError> {
    let value: Value = serde_json::from_str(claims)
        .map_err(|_| AadError::malformed("The 'claims' parameter is not valid JSON."))?;
    let values = value
        .get("access_token")
        .and_then(|token| token.get("xms_cc"))
        .and_then(|capability| capability.get("values"))
        .and_then(Value::as_array);
    Ok(values.is_some_and(|values| {
        values
            .iter()
            .filter_map(Value::as_str)
            .any(|cap| cap.eq_ignore_ascii_case("CP1"))
    }))
}

/// The standard claims every access token carries.
fn base_claims(
    shared: &Shared,
    tenant: &Tenant,
    audience: &str,
    now: i64,
    lifetime: u64,
) -> Map<String, Value> {
    let exp = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
    let mut claims = Map::new();
    claims.insert("aud".into(), json!(audience));
    claims.insert("iss".into(), json!(shared.issuer(&tenant.id)));
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    claims.insert("tid".into(), json!(tenant.id));
    claims.insert("uti".into(), json!(random_token(16)));
    claims.insert("ver".into(), json!("2.0"));
    claims
}

fn token_response(shared: &Shared, access_token: String, lifetime: u64) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("token_type".into(), json!("Bearer"));
    body.insert("expires_in".into(), json!(lifetime));
    body.insert("ext_expires_in".into(), json!(lifetime));
    let refresh_in = shared
        .settings
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .refresh_in_secs;
    // Entra hints at refreshing long-lived tokens (two hours or more) halfway through.
    let refresh_in = refresh_in.or((lifetime >= 7200).then_some(lifetime / 2));
    if let Some(refresh_in) = refresh_in {
        body.insert("refresh_in".into(), json!(refresh_in.min(lifetime)));
    }
    body.insert("access_token".into(), json!(access_token));
    body
}

/// An app-only token for `{resource}/.default`.
fn client_credentials(
    shared: &Shared,
    tenant: &Tenant,
    app: &Application,
    form: &Form,
    now: i64,
) -> Result<Value, AadError> {
    let scope = form.required("scope")?;
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let [only] = scopes.as_slice() else {
        return Err(AadError::invalid_scope(
            "A client credentials request asks for exactly one scope: the resource's /.default.",
        ));
    };
    let resource = only
        .strip_suffix("/.default")
        .filter(|resource| !resource.is_empty());
    let Some(resource) = resource else {
        return Err(AadError::invalid_scope(&format!(
            "The scope '{only}' is not valid: client credentials flows must use the resource \
             identifier followed by /.default."
        )));
    };
    check_resource_exists(tenant, resource)?;
    let (lifetime, cae) = lifetime(shared, form)?;
    let mut claims = base_claims(shared, tenant, resource, now, lifetime);
    claims.insert("appid".into(), json!(app.client_id));
    claims.insert("azp".into(), json!(app.client_id));
    claims.insert("idtyp".into(), json!("app"));
    claims.insert("oid".into(), json!(app.service_principal_id));
    claims.insert("sub".into(), json!(app.service_principal_id));
    if !app.roles.is_empty() {
        claims.insert("roles".into(), json!(app.roles));
    }
    if cae {
        claims.insert("xms_cc".into(), json!(["CP1"]));
    }
    let access_token = shared.sign(&Value::Object(claims))?;
    Ok(Value::Object(token_response(
        shared,
        access_token,
        lifetime,
    )))
}

/// A delegated token for `user`, from an on-behalf-of exchange or a refresh token.
fn delegated(
    shared: &Shared,
    tenant: &Tenant,
    app: &Application,
    user: &User,
    form: &Form,
    now: i64,
) -> Result<Value, AadError> {
    let scope = form.required("scope")?;
    let requested: Vec<&str> = scope.split_whitespace().collect();
    let oidc: Vec<&str> = requested
        .iter()
        .copied()
        .filter(|scope| {
            OIDC_SCOPES
                .iter()
                .any(|oidc| oidc.eq_ignore_ascii_case(scope))
        })
        .collect();
    let resource_scopes: Vec<(String, String)> = requested
        .iter()
        .filter(|scope| !oidc.contains(scope))
        .map(|scope| split_scope(scope))
        .collect();
    let Some((resource, _)) = resource_scopes.first() else {
        return Err(AadError::invalid_scope(
            "The request asks for no resource: add a scope such as api://{app}/{permission}.",
        ));
    };
    if resource_scopes
        .iter()
        .any(|(other, _)| !other.eq_ignore_ascii_case(resource))
    {
        return Err(AadError::invalid_scope(
            "The scopes name more than one resource; a token is for one resource only.",
        ));
    }
    check_resource_exists(tenant, resource)?;
    let permissions = consented_permissions(app, resource, &resource_scopes)?;

    let (lifetime, cae) = lifetime(shared, form)?;
    let mut claims = base_claims(shared, tenant, resource, now, lifetime);
    claims.insert("appid".into(), json!(app.client_id));
    claims.insert("azp".into(), json!(app.client_id));
    claims.insert("idtyp".into(), json!("user"));
    claims.insert("name".into(), json!(user.name));
    claims.insert("oid".into(), json!(user.object_id));
    claims.insert("preferred_username".into(), json!(user.upn));
    claims.insert("upn".into(), json!(user.upn));
    claims.insert("scp".into(), json!(permissions.join(" ")));
    claims.insert(
        "sub".into(),
        json!(pairwise_subject(&user.object_id, &app.client_id)),
    );
    if cae {
        claims.insert("xms_cc".into(), json!(["CP1"]));
    }
    let access_token = shared.sign(&Value::Object(claims))?;
    let mut body = token_response(shared, access_token, lifetime);

    let granted: Vec<String> = resource_scopes
        .iter()
        .map(|(resource, permission)| format!("{resource}/{permission}"))
        .chain(
            oidc.iter()
                .filter(|scope| !scope.eq_ignore_ascii_case("offline_access"))
                .map(|scope| (*scope).to_owned()),
        )
        .collect();
    body.insert("scope".into(), json!(granted.join(" ")));
    let asked = |name: &str| oidc.iter().any(|scope| scope.eq_ignore_ascii_case(name));
    if asked("openid") {
        let mut id_claims = base_claims(shared, tenant, &app.client_id, now, 3600);
        id_claims.insert("name".into(), json!(user.name));
        id_claims.insert("oid".into(), json!(user.object_id));
        id_claims.insert("preferred_username".into(), json!(user.upn));
        id_claims.insert(
            "sub".into(),
            json!(pairwise_subject(&user.object_id, &app.client_id)),
        );
        body.insert(
            "id_token".into(),
            json!(shared.sign(&Value::Object(id_claims))?),
        );
    }
    if form.get("client_info") == Some("1") {
        let info = json!({ "uid": user.object_id, "utid": user.tenant_id }).to_string();
        body.insert("client_info".into(), json!(URL_SAFE_NO_PAD.encode(info)));
    }
    if asked("offline_access") {
        let refresh_token = format!("emu.rt.{}", random_token(48));
        let refresh_lifetime = shared
            .settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .refresh_token_lifetime_secs;
        lock(&shared.refresh_tokens).insert(
            refresh_token.clone(),
            RefreshGrant {
                client_id: app.client_id.clone(),
                tenant_id: tenant.id.clone(),
                user_object_id: user.object_id.clone(),
            },
            now.saturating_add(i64::try_from(refresh_lifetime).unwrap_or(i64::MAX)),
            now,
        );
        body.insert("refresh_token".into(), json!(refresh_token));
    }
    Ok(Value::Object(body))
}

/// A resource must be an application registered in the tenant or one of Microsoft's APIs,
/// whose service principals every tenant has.
fn check_resource_exists(tenant: &Tenant, resource: &str) -> Result<(), AadError> {
    let resource_trimmed = resource.trim_end_matches('/');
    let microsoft = MICROSOFT_RESOURCES
        .iter()
        .any(|known| known.eq_ignore_ascii_case(resource_trimmed));
    if microsoft
        || tenant
            .applications
            .iter()
            .any(|app| app.is_audience(resource))
    {
        Ok(())
    } else {
        Err(AadError::resource_not_found(resource, &tenant.id))
    }
}

/// `api://x/Read` is (`api://x`, `Read`); `User.Read` is Microsoft Graph's.
fn split_scope(scope: &str) -> (String, String) {
    match scope.rfind('/') {
        Some(index) if index > 0 && index + 1 < scope.len() => {
            (scope[..index].to_owned(), scope[index + 1..].to_owned())
        }
        _ => (
            DEFAULT_RESOURCE.to_owned(),
            scope.trim_matches('/').to_owned(),
        ),
    }
}

/// The permissions a delegated token carries, checked against the application's consent.
fn consented_permissions(
    app: &Application,
    resource: &str,
    requested: &[(String, String)],
) -> Result<Vec<String>, AadError> {
    let consented: Option<Vec<&str>> = app.consented_scopes.as_ref().map(|scopes| {
        scopes
            .iter()
            .filter_map(|scope| {
                let (consented_resource, permission) = scope.rsplit_once('/')?;
                consented_resource
                    .eq_ignore_ascii_case(resource)
                    .then_some(permission)
            })
            .collect()
    });
    let mut permissions = Vec::new();
    for (_, permission) in requested {
        if permission == ".default" {
            match &consented {
                Some(list) if list.is_empty() => {
                    return Err(AadError::consent_required(
                        &app.client_id,
                        &app.name,
                        &format!("{resource}/.default"),
                    ));
                }
                Some(list) => permissions.extend(list.iter().map(|p| (*p).to_owned())),
                None => permissions.push("user_impersonation".to_owned()),
            }
        } else {
            let allowed = consented
                .as_ref()
                .is_none_or(|list| list.iter().any(|p| p.eq_ignore_ascii_case(permission)));
            if !allowed {
                return Err(AadError::consent_required(
                    &app.client_id,
                    &app.name,
                    &format!("{resource}/{permission}"),
                ));
            }
            permissions.push(permission.clone());
        }
    }
    permissions.dedup();
    Ok(permissions)
}

/// Entra's `sub` is pairwise: stable per user and application, different across applications.
fn pairwise_subject(object_id: &str, client_id: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{object_id}|{client_id}").as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..32])
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill(buffer.as_mut_slice());
    URL_SAFE_NO_PAD.encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent_escapes() {
        let fields = parse_form(b"scope=a+b%2Fc&client_secret=a%2Bb%3D&empty=&flag").expect("ok");
        assert_eq!(fields[0], ("scope".into(), "a b/c".into()));
        assert_eq!(fields[1], ("client_secret".into(), "a+b=".into()));
        assert_eq!(fields[2], ("empty".into(), String::new()));
        assert_eq!(fields[3], ("flag".into(), String::new()));
    }

    #[test]
    fn forms_reject_bad_utf8_and_duplicates() {
        assert_eq!(
            parse_form(b"a=%FF%FE").err().map(|e| e.code),
            Some(9_002_313)
        );
        assert_eq!(parse_form(b"a=\xff").err().map(|e| e.code), Some(9_002_313));
        assert_eq!(
            parse_form(b"a=1&a=2").err().map(|e| e.code),
            Some(9_002_313)
        );
        // A stray percent sign is kept literally rather than failing.
        assert_eq!(parse_form(b"a=%&b=%4").expect("ok")[1].1, "%4");
    }

    #[test]
    fn cp1_is_found_in_claims() {
        assert!(declares_cp1(r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#).expect("json"));
        assert!(!declares_cp1(r#"{"access_token":{"nbf":{"essential":true}}}"#).expect("json"));
        assert!(declares_cp1("not json").is_err());
    }

    #[test]
    fn scopes_split_into_resource_and_permission() {
        assert_eq!(
            split_scope("api://x/Read"),
            ("api://x".into(), "Read".into())
        );
        assert_eq!(
            split_scope("https://graph.microsoft.com/User.Read"),
            ("https://graph.microsoft.com".into(), "User.Read".into())
        );
        assert_eq!(
            split_scope("User.Read"),
            (DEFAULT_RESOURCE.into(), "User.Read".into())
        );
    }
}
