//! The claims of a validated access token.

use serde_json::{Map, Value};

/// The claims of an access token that passed validation.
///
/// Typed accessors cover what a middle tier usually needs; [`Claims::get`] reads any other
/// claim as JSON.
#[derive(Clone, Debug)]
pub struct Claims {
    claims: Map<String, Value>,
}

impl Claims {
    pub(crate) fn new(claims: Map<String, Value>) -> Self {
        Self { claims }
    }

    /// Any claim, as JSON.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// A claim that is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        self.get_str("iss").unwrap_or_default()
    }

    /// The tenant that issued the token (`tid`).
    pub fn tenant_id(&self) -> &str {
        self.get_str("tid").unwrap_or_default()
    }

    /// The caller's object ID (`oid`): the user, or the service principal of an app-only
    /// token. Stable across applications, unlike `sub`.
    pub fn object_id(&self) -> Option<&str> {
        self.get_str("oid")
    }

    /// The subject (`sub`), pairwise: unique to this user and this API.
    pub fn subject(&self) -> Option<&str> {
        self.get_str("sub")
    }

    /// The client application the caller used: `azp` (v2.0 tokens) or `appid` (v1.0).
    pub fn client_app_id(&self) -> Option<&str> {
        self.get_str("azp").or_else(|| self.get_str("appid"))
    }

    /// The token version (`ver`): `1.0` or `2.0`.
    pub fn version(&self) -> Option<&str> {
        self.get_str("ver")
    }

    /// When the token expires (`exp`), in seconds since the Unix epoch.
    pub fn expires_on(&self) -> i64 {
        numeric_date(self.claims.get("exp")).unwrap_or_default()
    }

    /// The delegated scopes (`scp`, space-separated); none in an app-only token.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.get_str("scp").unwrap_or_default().split_whitespace()
    }

    /// The app roles (`roles`).
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.claims
            .get("roles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }

    /// Whether the token was issued to an application acting as itself (no user): `idtyp` is
    /// `app`, or, in tokens without `idtyp`, there are no delegated scopes.
    pub fn is_app_only(&self) -> bool {
        match self.get_str("idtyp") {
            Some(kind) => kind == "app",
            None => self.get_str("scp").is_none(),
        }
    }

    /// The client capabilities the token was issued for (`xms_cc`); `cp1` means the client
    /// handles Continuous Access Evaluation claims challenges.
    pub fn client_capabilities(&self) -> impl Iterator<Item = &str> {
        self.claims
            .get("xms_cc")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }

    /// All the claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.claims
    }
}

/// A JWT NumericDate: an integer, or a float that Entra never sends but others do.
pub(crate) fn numeric_date(value: Option<&Value>) -> Option<i64> {
    let number = value?.as_number()?;
    number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|value| value.is_finite())
            // Saturating: a float beyond i64 becomes i64::MAX or MIN.
            .map(|value| value as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        match value {
            Value::Object(map) => Claims::new(map),
            _ => unreachable!("an object"),
        }
    }

    #[test]
    fn accessors_read_v1_and_v2_shapes() {
        let v2 = claims(
            json!({"azp": "client", "scp": "a  b", "idtyp": "user", "exp": 5.9,
            "xms_cc": ["cp1"], "roles": ["R", 3]}),
        );
        assert_eq!(v2.client_app_id(), Some("client"));
        assert_eq!(v2.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(v2.roles().collect::<Vec<_>>(), ["R"]);
        assert_eq!(v2.expires_on(), 5);
        assert!(!v2.is_app_only());
        assert_eq!(v2.client_capabilities().collect::<Vec<_>>(), ["cp1"]);
        let v1 = claims(json!({"appid": "client", "roles": ["Data.Write"]}));
        assert_eq!(v1.client_app_id(), Some("client"));
        assert!(v1.is_app_only());
        assert_eq!(v1.scopes().count(), 0);
    }

    #[test]
    fn numeric_dates_never_panic() {
        assert_eq!(numeric_date(Some(&json!(1e300))), Some(i64::MAX));
        assert_eq!(numeric_date(Some(&json!("12"))), None);
        assert_eq!(numeric_date(Some(&json!(-3))), Some(-3));
        assert_eq!(numeric_date(None), None);
    }
}
