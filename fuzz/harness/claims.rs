//! The `claims` form field: a caller's claims (a claims challenge), with the CP1 client
//! capability merged in for Continuous Access Evaluation.
//!
//! Input: the claims text (invalid UTF-8 is replaced, as a caller's `&str` could hold it).

use std::collections::BTreeMap;

use entra_identity::internal::merge_claims;
use serde_json::value::RawValue;

/// A JSON object whose values are kept as written.
type RawObject = BTreeMap<String, Box<RawValue>>;

/// Merges the claims in `data` with and without CAE and checks the result.
pub(crate) fn run(data: &[u8]) {
    let claims = String::from_utf8_lossy(data);
    // Without CAE the claims are sent as given, blank ones not at all.
    let plain = merge_claims(Some(&claims), false).expect("claims without CAE are never refused");
    if claims.trim().is_empty() {
        assert_eq!(plain, None);
    } else {
        assert_eq!(plain.as_deref(), Some(&*claims));
    }
    match merge_claims(Some(&claims), true) {
        Ok(merged) => {
            let merged = merged.expect("CAE always sends claims");
            let object: RawObject = serde_json::from_str(&merged).expect("a JSON object");
            let access_token: RawObject =
                serde_json::from_str(object["access_token"].get()).expect("an access_token object");
            assert_eq!(
                access_token["xms_cc"].get(),
                r#"{"values":["CP1"]}"#,
                "CP1 is requested"
            );
            // The caller's other claims are sent as written.
            if !claims.trim().is_empty() {
                let given: RawObject = serde_json::from_str(&claims).expect("the claims parse");
                for (name, value) in given.iter().filter(|(name, _)| *name != "access_token") {
                    assert_eq!(object[name].get(), value.get(), "the claim {name} is kept");
                }
            }
            // Merging again changes nothing.
            let again = merge_claims(Some(&merged), true)
                .expect("merged claims merge again")
                .expect("claims");
            assert_eq!(again, merged, "the merge is idempotent");
        }
        Err(error) => {
            assert!(
                matches!(error, entra_identity::CredentialError::InvalidRequest(_)),
                "{error:?}"
            );
        }
    }
}
