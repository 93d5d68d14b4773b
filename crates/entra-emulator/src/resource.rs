//! The emulator as a protected resource: v1.0 user tokens, and (below) an API that validates
//! the emulator's tokens and can revoke a user's session for Continuous Access Evaluation.

use serde_json::{Value, json};

use crate::Error;
use crate::state::Shared;

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
