//! The emulator's configuration: what it registers at start and how it issues tokens.
//!
//! The same types are read from TOML by `entra emulator --config FILE` and accepted as JSON by
//! the admin endpoints that register tenants, applications and users at run time.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the emulator starts with.
///
/// With no tenants configured, [`EmulatorConfig::default`] registers nothing;
/// [`EmulatorConfig::sample`] gives the documented default tenant, applications and user that
/// `entra emulator` starts with when it is given no configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Tenants (directories) and what they contain.
    pub tenants: Vec<TenantConfig>,
    /// Token lifetimes and refresh hints.
    pub tokens: TokenSettings,
    /// Issuers, besides the emulator itself, whose JWTs federated credentials may accept.
    pub trusted_issuers: Vec<TrustedIssuerConfig>,
    /// Reject a client assertion whose `jti` was already presented.
    ///
    /// Off by default because Entra ID accepts a client assertion until it expires and MSAL
    /// reuses a signed assertion for up to nine minutes. Turn it on to check that a client signs
    /// a fresh assertion for every request.
    pub reject_replayed_assertions: bool,
    /// Largest request body accepted, in bytes; larger bodies get HTTP 413.
    pub max_body_bytes: Option<usize>,
    /// Extra authority hosts that instance discovery treats as valid (the emulator's own host
    /// and Entra's well-known hosts always are).
    pub known_authority_hosts: Vec<String>,
    /// The `tenant_region_scope` that tenant metadata names (Entra's values are `NA`, `EU`,
    /// `AS`, `OC`, `SA`, `AF`...); `NA` when absent.
    pub tenant_region_scope: Option<String>,
    /// How long a client has to finish the TLS handshake, and then to send each request's
    /// headers (also how long an idle keep-alive connection stays open), in milliseconds;
    /// 10 000 when absent.
    pub header_read_timeout_ms: Option<u64>,
    /// How long a client has, once a request's headers are in, to send its whole body, in
    /// milliseconds; 10 000 when absent. A late body gets HTTP 408 and the connection closes.
    pub body_read_timeout_ms: Option<u64>,
    /// The most connections served at once; when absent, half the process's file descriptor
    /// limit (`ulimit -n`), between 64 and 16,384 (512 where the limit is unknown). Further
    /// connections wait in the listen queue until one closes, so the emulator never runs out
    /// of file descriptors.
    pub max_connections: Option<usize>,
}

impl EmulatorConfig {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The configuration `entra emulator` uses when it is given none: one tenant
    /// (`contoso.onmicrosoft.com`) with a middle-tier API that has a secret and a certificate, a
    /// workload that signs in with a federated credential issued by the emulator, a downstream
    /// API, and one user.
    pub fn sample() -> Self {
        Self {
            tenants: vec![TenantConfig {
                id: Some(SAMPLE_TENANT_ID.to_owned()),
                domains: vec!["contoso.onmicrosoft.com".to_owned()],
                applications: vec![
                    ApplicationConfig {
                        name: "middle-tier-api".to_owned(),
                        client_id: Some(SAMPLE_MIDDLE_TIER_CLIENT_ID.to_owned()),
                        app_id_uri: Some(format!("api://{SAMPLE_MIDDLE_TIER_CLIENT_ID}")),
                        secrets: vec![],
                        generate_secret: true,
                        certificates: vec![CertificateConfig::default()],
                        roles: vec!["Data.Read.All".to_owned()],
                        ..ApplicationConfig::default()
                    },
                    ApplicationConfig {
                        name: "workload".to_owned(),
                        client_id: Some(SAMPLE_WORKLOAD_CLIENT_ID.to_owned()),
                        federated_credentials: vec![FederatedCredentialConfig {
                            issuer: None,
                            subject: "system:serviceaccount:default:workload".to_owned(),
                            audience: None,
                        }],
                        ..ApplicationConfig::default()
                    },
                    ApplicationConfig {
                        name: "downstream-api".to_owned(),
                        client_id: Some(SAMPLE_DOWNSTREAM_CLIENT_ID.to_owned()),
                        app_id_uri: Some("api://downstream".to_owned()),
                        ..ApplicationConfig::default()
                    },
                ],
                users: vec![UserConfig {
                    object_id: Some(SAMPLE_USER_OBJECT_ID.to_owned()),
                    upn: "adele@contoso.onmicrosoft.com".to_owned(),
                    name: Some("Adele Vance".to_owned()),
                }],
            }],
            ..Self::default()
        }
    }
}

/// The tenant ID of [`EmulatorConfig::sample`].
pub const SAMPLE_TENANT_ID: &str = "7a9c6e2b-3f4d-4b8a-9c1e-5d6f7a8b9c0d";
/// The middle-tier API's client ID in [`EmulatorConfig::sample`].
pub const SAMPLE_MIDDLE_TIER_CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// The federated workload's client ID in [`EmulatorConfig::sample`].
pub const SAMPLE_WORKLOAD_CLIENT_ID: &str = "22222222-3333-4444-5555-666666666666";
/// The downstream API's client ID in [`EmulatorConfig::sample`].
pub const SAMPLE_DOWNSTREAM_CLIENT_ID: &str = "33333333-4444-5555-6666-777777777777";
/// The user's object ID in [`EmulatorConfig::sample`].
pub const SAMPLE_USER_OBJECT_ID: &str = "00000000-0000-0000-0000-0000000000aa";

/// A tenant: a GUID, any number of domain names, and what is registered in it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant ID (a GUID); generated when absent.
    pub id: Option<String>,
    /// Domain names that also name this tenant, such as `contoso.onmicrosoft.com`.
    pub domains: Vec<String>,
    /// Applications registered in the tenant.
    pub applications: Vec<ApplicationConfig>,
    /// Users of the tenant.
    pub users: Vec<UserConfig>,
}

/// An application registration and its credentials.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApplicationConfig {
    /// A name for people and for the info file.
    pub name: String,
    /// The client (application) ID; generated when absent.
    pub client_id: Option<String>,
    /// The application ID URI that tokens for this API carry as audience (`api://...`).
    pub app_id_uri: Option<String>,
    /// Client secret values the application may present.
    pub secrets: Vec<String>,
    /// Generate one random client secret in addition to `secrets`.
    pub generate_secret: bool,
    /// Certificates whose keys may sign client assertions.
    pub certificates: Vec<CertificateConfig>,
    /// Require subject-name/issuer authentication: client assertions must carry an `x5c` chain
    /// whose leaf is one of the application's certificates.
    pub require_certificate_chain: bool,
    /// Federated identity credentials: external tokens the application may present instead of
    /// a secret or certificate.
    pub federated_credentials: Vec<FederatedCredentialConfig>,
    /// Application roles granted to this application, sent as `roles` in its app-only tokens.
    pub roles: Vec<String>,
    /// Delegated permissions consented for this application (`{resource}/{permission}`), which
    /// bound what an on-behalf-of request may ask for. `None` consents to everything.
    pub consented_scopes: Option<Vec<String>>,
}

/// A certificate for an application: generated by the emulator, or read from a PEM file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CertificateConfig {
    /// A PEM file holding the certificate (and optionally more certificates after it). When
    /// absent the emulator generates an RSA key and a certificate signed by its CA.
    pub cert_pem_file: Option<PathBuf>,
    /// The certificate PEM itself, as an alternative to `cert_pem_file`.
    pub cert_pem: Option<String>,
    /// The password of the generated PKCS#12 file; generated when absent.
    pub pkcs12_password: Option<String>,
}

/// A federated identity credential: tokens from `issuer` with `subject` and `audience`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederatedCredentialConfig {
    /// The issuer (`iss`) of accepted tokens; the emulator's own federation issuer when absent.
    pub issuer: Option<String>,
    /// The subject (`sub`) of accepted tokens.
    pub subject: String,
    /// The audience (`aud`) of accepted tokens; `api://AzureADTokenExchange` when absent.
    pub audience: Option<String>,
}

/// An external token issuer and the public keys its tokens are verified with.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    /// The issuer (`iss`) value.
    pub issuer: String,
    /// RSA public keys (SPKI PEM) or certificates (PEM) of the issuer.
    pub public_keys_pem: Vec<String>,
}

/// A user of a tenant.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// The user's object ID (a GUID); generated when absent.
    pub object_id: Option<String>,
    /// The user principal name, such as `adele@contoso.onmicrosoft.com`.
    pub upn: String,
    /// The display name.
    pub name: Option<String>,
}

/// How the emulator issues tokens. Every field can be changed while it runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// Lifetime of ordinary access tokens, in seconds (`expires_in`).
    pub access_token_lifetime_secs: u64,
    /// Lifetime of access tokens for clients that declare the `CP1` capability (CAE).
    pub cae_access_token_lifetime_secs: u64,
    /// The `refresh_in` hint sent with every token, in seconds; none when absent.
    pub refresh_in_secs: Option<u64>,
    /// Lifetime of refresh tokens, in seconds.
    pub refresh_token_lifetime_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            access_token_lifetime_secs: 3599,
            cae_access_token_lifetime_secs: 86_399,
            refresh_in_secs: None,
            refresh_token_lifetime_secs: 90 * 24 * 3600,
        }
    }
}

/// A partial update of [`TokenSettings`], as the admin endpoint accepts it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettingsUpdate {
    /// New `access_token_lifetime_secs`.
    pub access_token_lifetime_secs: Option<u64>,
    /// New `cae_access_token_lifetime_secs`.
    pub cae_access_token_lifetime_secs: Option<u64>,
    /// New `refresh_in_secs`; `Some(None)` (JSON `null`) removes the hint.
    #[serde(default, with = "double_option")]
    pub refresh_in_secs: Option<Option<u64>>,
    /// New `refresh_token_lifetime_secs`.
    pub refresh_token_lifetime_secs: Option<u64>,
}

impl TokenSettings {
    /// Applies a partial update.
    pub fn apply(&mut self, update: &TokenSettingsUpdate) {
        if let Some(value) = update.access_token_lifetime_secs {
            self.access_token_lifetime_secs = value;
        }
        if let Some(value) = update.cae_access_token_lifetime_secs {
            self.cae_access_token_lifetime_secs = value;
        }
        if let Some(value) = update.refresh_in_secs {
            self.refresh_in_secs = value;
        }
        if let Some(value) = update.refresh_token_lifetime_secs {
            self.refresh_token_lifetime_secs = value;
        }
    }
}

/// Tells a field that is absent (`None`) from one that is `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Option<u64>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<u64>>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_config_parses_every_section() {
        let config = EmulatorConfig::from_toml(
            r#"
            reject_replayed_assertions = true
            tenant_region_scope = "EU"
            header_read_timeout_ms = 2000
            body_read_timeout_ms = 3000
            max_connections = 64
            [tokens]
            access_token_lifetime_secs = 600
            refresh_in_secs = 300
            [[tenants]]
            id = "aaaaaaaa-0000-0000-0000-000000000001"
            domains = ["fabrikam.onmicrosoft.com"]
            [[tenants.applications]]
            name = "api"
            secrets = ["s3cret"]
            require_certificate_chain = true
            certificates = [{}]
            federated_credentials = [{ subject = "repo:x" }]
            [[tenants.users]]
            upn = "user@fabrikam.onmicrosoft.com"
            "#,
        )
        .expect("valid config");
        assert!(config.reject_replayed_assertions);
        assert_eq!(config.tenant_region_scope.as_deref(), Some("EU"));
        assert_eq!(
            (
                config.header_read_timeout_ms,
                config.body_read_timeout_ms,
                config.max_connections
            ),
            (Some(2000), Some(3000), Some(64))
        );
        assert_eq!(config.tokens.access_token_lifetime_secs, 600);
        assert_eq!(config.tokens.refresh_in_secs, Some(300));
        let app = &config.tenants[0].applications[0];
        assert_eq!(app.secrets, ["s3cret"]);
        assert!(app.require_certificate_chain);
        assert_eq!(app.federated_credentials[0].subject, "repo:x");
        assert_eq!(
            config.tenants[0].users[0].upn,
            "user@fabrikam.onmicrosoft.com"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(EmulatorConfig::from_toml("tenant = 1").is_err());
    }

    #[test]
    fn settings_update_distinguishes_null_from_absent() {
        let mut settings = TokenSettings {
            refresh_in_secs: Some(10),
            ..TokenSettings::default()
        };
        let keep: TokenSettingsUpdate =
            serde_json::from_str(r#"{"access_token_lifetime_secs": 5}"#).expect("json");
        settings.apply(&keep);
        assert_eq!(settings.refresh_in_secs, Some(10));
        assert_eq!(settings.access_token_lifetime_secs, 5);
        let clear: TokenSettingsUpdate =
            serde_json::from_str(r#"{"refresh_in_secs": null}"#).expect("json");
        settings.apply(&clear);
        assert_eq!(settings.refresh_in_secs, None);
    }
}
