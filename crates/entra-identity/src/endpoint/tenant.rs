//! Which tenant a request goes to: the multi-tenant rules of azure-identity.

use crate::endpoint::authority::{TenantId, is_valid_tenant};
use crate::error::{ClientAuthenticationError, CredentialError, FailureKind};

/// The environment variable that, set to any non-empty value, turns multi-tenant requests off:
/// every request then goes to the configured tenant.
pub const AZURE_IDENTITY_DISABLE_MULTITENANTAUTH: &str = "AZURE_IDENTITY_DISABLE_MULTITENANTAUTH";

/// The configured tenant and which others a request may name.
#[derive(Clone, Debug)]
pub(crate) struct TenantPolicy {
    default: TenantId,
    additionally_allowed: Vec<String>,
    multitenant_disabled: bool,
}

impl TenantPolicy {
    pub(crate) fn new(
        default: TenantId,
        additionally_allowed: Vec<String>,
        multitenant_disabled: bool,
    ) -> Self {
        Self {
            default,
            additionally_allowed,
            multitenant_disabled,
        }
    }

    pub(crate) fn default_tenant(&self) -> &TenantId {
        &self.default
    }

    /// The tenant a request for `requested` goes to.
    ///
    /// 1. none requested, or the configured one: the configured tenant;
    /// 2. the configured tenant is `adfs`, or multi-tenant is disabled: the configured tenant;
    /// 3. `*` or the tenant itself is in `additionally_allowed_tenants`: the requested tenant;
    /// 4. nothing additionally allowed and the configured tenant is `organizations`: the
    ///    requested tenant;
    /// 5. otherwise an error naming `additionally_allowed_tenants`.
    ///
    /// Unlike azure-identity, a requested tenant with characters outside `[A-Za-z0-9.-]` is an
    /// error, so nothing raw reaches a URL.
    pub(crate) fn resolve<'a>(
        &'a self,
        requested: Option<&'a str>,
    ) -> Result<&'a str, CredentialError> {
        let default = self.default.as_str();
        let Some(requested) = requested.filter(|tenant| !tenant.is_empty()) else {
            return Ok(default);
        };
        if requested.eq_ignore_ascii_case(default) {
            return Ok(default);
        }
        if default.eq_ignore_ascii_case("adfs") || self.multitenant_disabled {
            tracing::info!(
                requested,
                configured = default,
                "multi-tenant authentication is disabled: using the configured tenant"
            );
            return Ok(default);
        }
        if !is_valid_tenant(requested) {
            return Err(CredentialError::InvalidRequest(
                "Invalid tenant ID provided. You can locate your tenant ID by following the \
                 instructions here: https://learn.microsoft.com/partner-center/find-ids-and-domain-names"
                    .to_owned(),
            ));
        }
        let allowed = self
            .additionally_allowed
            .iter()
            .any(|tenant| tenant == "*" || tenant.eq_ignore_ascii_case(requested));
        if allowed
            || (self.additionally_allowed.is_empty()
                && default.eq_ignore_ascii_case("organizations"))
        {
            return Ok(requested);
        }
        Err(CredentialError::ClientAuthentication(
            ClientAuthenticationError::new(
                FailureKind::TenantNotAllowed,
                format!(
                    "The current credential is not configured to acquire tokens for tenant \
                 {requested}. To enable acquiring tokens for this tenant add it to the \
                 additionally_allowed_tenants when creating the credential, or add \"*\" to \
                 additionally_allowed_tenants to allow acquiring tokens for any tenant."
                ),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(default: &str, allowed: &[&str], disabled: bool) -> TenantPolicy {
        TenantPolicy::new(
            TenantId::parse(default).expect("tenant"),
            allowed.iter().map(|tenant| (*tenant).to_owned()).collect(),
            disabled,
        )
    }

    #[test]
    fn the_multi_tenant_matrix() {
        /// Configured tenant, allowed list, disabled, requested, outcome.
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            bool,
            Option<&'a str>,
            Result<&'a str, ()>,
        );
        let cases: &[Case<'_>] = &[
            ("t1", &[], false, None, Ok("t1")),
            ("t1", &[], false, Some(""), Ok("t1")),
            ("t1", &[], false, Some("t1"), Ok("t1")),
            ("t1", &[], false, Some("T1"), Ok("t1")),
            ("t1", &[], false, Some("t2"), Err(())),
            ("t1", &["t2"], false, Some("t2"), Ok("t2")),
            ("t1", &["t2"], false, Some("t3"), Err(())),
            ("t1", &["*"], false, Some("t3"), Ok("t3")),
            ("t1", &[], true, Some("t2"), Ok("t1")),
            ("adfs", &["*"], false, Some("t2"), Ok("adfs")),
            ("organizations", &[], false, Some("t2"), Ok("t2")),
            ("organizations", &["t3"], false, Some("t2"), Err(())),
        ];
        for (default, allowed, disabled, requested, expected) in cases {
            let policy = policy(default, allowed, *disabled);
            let outcome = policy.resolve(*requested).map_err(|_| ());
            assert_eq!(
                outcome, *expected,
                "{default} {allowed:?} {disabled} {requested:?}"
            );
        }
    }

    #[test]
    fn a_refused_tenant_names_the_option() {
        let error = policy("t1", &[], false)
            .resolve(Some("other"))
            .expect_err("refused");
        let auth = error.client_authentication().expect("authentication error");
        assert_eq!(auth.kind(), FailureKind::TenantNotAllowed);
        assert_eq!(
            auth.message(),
            "The current credential is not configured to acquire tokens for tenant other. To \
             enable acquiring tokens for this tenant add it to the additionally_allowed_tenants \
             when creating the credential, or add \"*\" to additionally_allowed_tenants to allow \
             acquiring tokens for any tenant."
        );
    }

    #[test]
    fn requested_tenants_never_reach_a_url_raw() {
        let policy = policy("t1", &["*"], false);
        for bad in ["a/b", "my tenant", "../x", "t?x=1"] {
            assert!(
                matches!(
                    policy.resolve(Some(bad)),
                    Err(CredentialError::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
