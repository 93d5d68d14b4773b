//! The state every request handler shares.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, RwLock};

use serde_json::{Value, json};

use crate::Error;
use crate::aad_error::AadError;
use crate::config::TokenSettings;
use crate::directory::Directory;
use crate::jwt::SigningKey;
use crate::observe::{AtomicCounters, Faults, RequestLog};
use crate::pki::CertificateAuthority;

pub(crate) struct Shared {
    /// `https://127.0.0.1:{port}`.
    pub(crate) base_url: String,
    /// `https://localhost:{port}`, the other name clients may use.
    pub(crate) localhost_url: String,
    pub(crate) ca: CertificateAuthority,
    pub(crate) ca_pem_path: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) signing: SigningKey,
    pub(crate) directory: RwLock<Directory>,
    pub(crate) settings: RwLock<TokenSettings>,
    pub(crate) refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    pub(crate) used_jtis: Mutex<HashMap<String, i64>>,
    pub(crate) reject_replayed_assertions: AtomicBool,
    pub(crate) max_body_bytes: usize,
    pub(crate) known_authority_hosts: Vec<String>,
    pub(crate) log: RequestLog,
    pub(crate) counters: AtomicCounters,
    pub(crate) faults: Faults,
    pub(crate) revocations: crate::resource::Revocations,
}

/// What a refresh token stands for.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub(crate) client_id: String,
    pub(crate) tenant_id: String,
    pub(crate) user_object_id: String,
    pub(crate) expires_at: i64,
}

/// What the token endpoint tells the request log, carried in response extensions.
#[derive(Clone, Debug, Default)]
pub(crate) struct TokenAudit {
    pub(crate) form: BTreeMap<String, String>,
    pub(crate) client_auth: Option<String>,
    pub(crate) error_code: Option<u32>,
}

impl Shared {
    /// Both names of this emulator's base URL.
    pub(crate) fn base_urls(&self) -> [&str; 2] {
        [&self.base_url, &self.localhost_url]
    }

    /// The `iss` of tokens issued in `tenant_id`.
    pub(crate) fn issuer(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/v2.0", self.base_url)
    }

    /// The `iss` of the federated tokens the emulator mints.
    pub(crate) fn federation_issuer(&self) -> String {
        format!("{}/federation", self.base_url)
    }

    pub(crate) fn sign(&self, claims: &Value) -> Result<String, AadError> {
        self.signing
            .sign(claims)
            .map_err(|_| AadError::malformed("Token signing failed."))
    }

    /// A federated token from the emulator's own issuer.
    pub(crate) fn mint_federated(
        &self,
        subject: &str,
        audience: &str,
        expires_in_secs: i64,
    ) -> Result<String, Error> {
        let now = now();
        let claims = json!({
            "iss": self.federation_issuer(),
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(expires_in_secs),
            "jti": crate::directory::new_guid(),
        });
        self.signing.sign(&claims)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, with fractions, for the request log.
pub(crate) fn now_precise() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}
