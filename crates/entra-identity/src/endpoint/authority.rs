//! Authorities (the Entra ID host a credential talks to) and tenant IDs.

use std::fmt;

use crate::error::BuildError;

/// Authority hosts of the Azure clouds.
#[derive(Debug)]
#[non_exhaustive]
pub struct AzureAuthorityHosts;

impl AzureAuthorityHosts {
    /// The Azure public cloud (the default).
    pub const AZURE_PUBLIC_CLOUD: &'static str = "login.microsoftonline.com";
    /// Azure operated by 21Vianet (China).
    pub const AZURE_CHINA: &'static str = "login.chinacloudapi.cn";
    /// Azure US Government.
    pub const AZURE_GOVERNMENT: &'static str = "login.microsoftonline.us";
}

/// The environment variable that overrides the default authority host.
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";

/// An https authority such as `https://login.microsoftonline.com`, without a trailing slash.
///
/// Parsed, not just validated: anything not https is refused at construction.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    url: String,
}

impl Authority {
    /// Normalises an authority as azure-identity does: a bare host gets `https://`; leading
    /// and trailing spaces and trailing slashes are dropped; a path is kept; any scheme but
    /// https is refused.
    ///
    /// Only a plain URL is taken: the URL parser would silently drop a tab or a newline
    /// (`https://127.0.0.1\n.evil.com` would connect to `127.0.0.1.evil.com`) and read a
    /// backslash as a slash, so these are refused rather than normalised.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidAuthority`] for a non-https URL, one with no host, a control
    /// character anywhere, whitespace inside, a backslash, userinfo, a query or a fragment.
    pub fn parse(authority: &str) -> Result<Self, BuildError> {
        let invalid = || BuildError::InvalidAuthority {
            authority: authority.to_owned(),
        };
        let has_scheme = authority.contains("://");
        let trimmed = authority.trim().trim_end_matches(['/', ' ']).trim_end();
        if authority.chars().any(char::is_control)
            || trimmed.chars().any(|c| c.is_whitespace() || c == '\\')
        {
            return Err(invalid());
        }
        let candidate = if has_scheme {
            trimmed.to_owned()
        } else {
            format!("https://{trimmed}")
        };
        let parsed = url::Url::parse(&candidate).map_err(|_| invalid())?;
        if parsed.scheme() != "https" || parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid());
        }
        if parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(invalid());
        }
        let url = parsed.as_str().trim_end_matches('/').to_owned();
        Ok(Self { url })
    }

    /// The Azure public cloud.
    pub fn public_cloud() -> Self {
        Self {
            url: format!("https://{}", AzureAuthorityHosts::AZURE_PUBLIC_CLOUD),
        }
    }

    /// The URL, such as `https://login.microsoftonline.com`.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host (and port, if any) of the authority.
    pub fn host(&self) -> &str {
        let rest = self.url.trim_start_matches("https://");
        rest.split('/').next().unwrap_or(rest)
    }

    /// The host name alone, lower-case, without a port: what MSAL's cache calls the
    /// environment.
    pub fn hostname(&self) -> &str {
        let host = self.host();
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`. The tenant must have been validated.
    pub(crate) fn token_endpoint(&self, tenant: &TenantId) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.url, tenant.as_str())
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authority({})", self.url)
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// A tenant ID: a GUID, a domain-like name (`contoso.onmicrosoft.com`) or a name such as
/// `organizations`: dot-separated labels of `[A-Za-z0-9-]`, none empty, at most 253
/// characters, so it is one safe segment of a URL path (never `.` or `..`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant ID.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidTenantId`] when it is empty, longer than 253 characters, has any
    /// character outside `[A-Za-z0-9.-]` or an empty label.
    pub fn parse(tenant: &str) -> Result<Self, BuildError> {
        if is_valid_tenant(tenant) {
            Ok(Self(tenant.to_owned()))
        } else {
            Err(BuildError::InvalidTenantId)
        }
    }

    /// The tenant as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest tenant accepted: the longest domain name.
const MAX_TENANT_LEN: usize = 253;

/// Whether a tenant ID is a GUID or a domain-like name, and so one safe segment of a URL
/// path: labels of `[A-Za-z0-9-]` separated by dots, none empty (no `.`, `..`, `a..b`, `.a`
/// or `a.`), at most [`MAX_TENANT_LEN`] characters in all.
pub(crate) fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= MAX_TENANT_LEN
        && tenant.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_normalise_like_azure_identity() {
        for input in [
            "localhost",
            "https://localhost",
            "localhost/",
            "localhost ",
            "localhost/ ",
            "https://localhost /",
            "https://localhost/",
        ] {
            assert_eq!(
                Authority::parse(input).expect(input).as_str(),
                "https://localhost",
                "{input}"
            );
        }
        assert_eq!(
            Authority::parse("https://foo.com/bar/")
                .expect("path")
                .as_str(),
            "https://foo.com/bar"
        );
        assert_eq!(
            Authority::parse("127.0.0.1:8443").expect("port").host(),
            "127.0.0.1:8443"
        );
    }

    #[test]
    fn non_https_authorities_are_refused_with_the_python_message() {
        for input in [
            "http://localhost",
            "file://localhost",
            "ftp://x",
            "https://",
            "",
        ] {
            let error = Authority::parse(input).expect_err(input);
            assert_eq!(
                error.to_string(),
                format!(
                    "'{input}' is an invalid authority. The value must be a TLS protected (https) URL."
                )
            );
        }
    }

    #[test]
    fn authorities_that_are_not_plain_urls_are_refused() {
        for input in [
            "https://127.0.0.1\n.evil.com",
            "https://127.0.0.1\t.evil.com",
            "https://login.microsoftonline.com\r\n",
            "\u{7f}login.microsoftonline.com",
            "https://login.micro\u{0}softonline.com",
            "https://login. microsoftonline.com",
            "https://login.microsoftonline.com/a b",
            "https://login.microsoftonline.com\\@evil.com",
            "https://user:pw@login.microsoftonline.com",
            "https://user@login.microsoftonline.com",
            "https://:pw@login.microsoftonline.com",
            "https://login.microsoftonline.com?x=1",
            "https://login.microsoftonline.com/?",
            "https://login.microsoftonline.com/#fragment",
        ] {
            assert!(
                matches!(
                    Authority::parse(input),
                    Err(BuildError::InvalidAuthority { .. })
                ),
                "{input:?}"
            );
        }
    }

    #[test]
    fn tenant_ids_are_validated() {
        for good in [
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "contoso.onmicrosoft.com",
            "organizations",
            "common",
        ] {
            assert!(TenantId::parse(good).is_ok(), "{good}");
        }
        let longest = format!("{}.{}", "a".repeat(63), "b".repeat(189));
        assert_eq!(longest.len(), MAX_TENANT_LEN);
        assert!(TenantId::parse(&longest).is_ok());
        for good in ["adfs", "a-b", "x1.y2"] {
            assert!(TenantId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "my tenant",
            "my_tenant",
            "/",
            "\\",
            "\"my-tenant\"",
            "'my-tenant'",
            "",
            "a/../b",
            ".",
            "..",
            "a..b",
            ".contoso.com",
            "contoso.com.",
            "%2e%2e",
            "a%2Fb",
            "contoso\n.com",
            "contoso\t",
            "contoso\u{0}",
            " contoso",
            "contoso.com/",
            "é.com",
            &"a".repeat(254),
        ] {
            assert_eq!(
                TenantId::parse(bad),
                Err(BuildError::InvalidTenantId),
                "{bad}"
            );
        }
    }
}
