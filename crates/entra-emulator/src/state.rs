//! The state every request handler shares.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

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
    pub(crate) refresh_tokens: Mutex<ExpiringMap<RefreshGrant>>,
    /// The `jti` of client assertions seen, while replay protection is on.
    pub(crate) used_jtis: Mutex<ExpiringMap<()>>,
    pub(crate) reject_replayed_assertions: AtomicBool,
    pub(crate) max_body_bytes: usize,
    pub(crate) known_authority_hosts: Vec<String>,
    /// The `tenant_region_scope` of tenant metadata.
    pub(crate) tenant_region_scope: String,
    pub(crate) log: RequestLog,
    pub(crate) counters: Arc<AtomicCounters>,
    pub(crate) faults: Faults,
    pub(crate) revocations: crate::resource::Revocations,
}

/// The most refresh tokens, and the most assertion `jti`s, the emulator remembers.
pub(crate) const MAX_REMEMBERED: usize = 100_000;

/// A map whose entries expire, bounded in size: it grows with traffic, so expired entries go
/// when it fills, and then the oldest entries.
pub(crate) struct ExpiringMap<V> {
    entries: HashMap<String, (V, i64)>,
    /// Keys in insertion order, oldest first (some may have been removed from `entries`).
    order: VecDeque<String>,
    capacity: usize,
}

impl<V> ExpiringMap<V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The value under `key` and when it expires, expired or not.
    pub(crate) fn get(&self, key: &str) -> Option<(&V, i64)> {
        self.entries
            .get(key)
            .map(|(value, expires_at)| (value, *expires_at))
    }

    /// Inserts an entry expiring at `expires_at`, after making room at `now`.
    pub(crate) fn insert(&mut self, key: String, value: V, expires_at: i64, now: i64) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, expiry)| *expiry > now);
            let entries = &self.entries;
            self.order.retain(|key| entries.contains_key(key));
        }
        while self.entries.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        if self
            .entries
            .insert(key.clone(), (value, expires_at))
            .is_none()
        {
            self.order.push_back(key);
        }
    }

    /// Keeps only the entries for which `keep` is true (the insertion order forgets the rest).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        self.entries.retain(|key, (value, _)| keep(key, value));
        let entries = &self.entries;
        self.order.retain(|key| entries.contains_key(key));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What a refresh token stands for.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub(crate) client_id: String,
    pub(crate) tenant_id: String,
    pub(crate) user_object_id: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_maps_drop_expired_entries_then_the_oldest_when_full() {
        let mut map = ExpiringMap::with_capacity(3);
        map.insert("a".into(), 1, 100, 0);
        map.insert("b".into(), 2, 5, 0);
        map.insert("c".into(), 3, 100, 0);
        assert_eq!(map.len(), 3);
        // Full at time 10: "b" has expired and makes room.
        map.insert("d".into(), 4, 100, 10);
        assert_eq!(map.len(), 3);
        assert!(map.get("b").is_none());
        assert_eq!(map.get("a"), Some((&1, 100)));
        // Full and nothing expired: the oldest, "a", goes.
        map.insert("e".into(), 5, 100, 10);
        assert_eq!(map.len(), 3);
        assert!(map.get("a").is_none());
        for key in ["c", "d", "e"] {
            assert!(map.get(key).is_some(), "{key}");
        }
        // Never more than the capacity, whatever the traffic.
        for index in 0..1000 {
            map.insert(format!("k{index}"), index, 1_000_000, 10);
        }
        assert_eq!(map.len(), 3);
        assert!(map.order.len() <= 3);
    }

    #[test]
    fn retained_entries_keep_their_order_and_removed_ones_leave_it() {
        let mut map = ExpiringMap::with_capacity(3);
        for (index, key) in ["a", "b", "c"].into_iter().enumerate() {
            map.insert(key.into(), index, 100, 0);
        }
        map.retain(|key, _| key != "a");
        assert!(map.get("a").is_none());
        assert_eq!(map.order, ["b", "c"]);
        // Room for one: nothing is evicted, and then "b" is the oldest.
        map.insert("d".into(), 3, 100, 0);
        assert_eq!(map.len(), 3);
        map.insert("e".into(), 4, 100, 0);
        assert!(map.get("b").is_none());
        assert!(map.get("c").is_some());
    }
}
