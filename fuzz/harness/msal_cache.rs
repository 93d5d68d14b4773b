//! MSAL's unified token cache document, as the persistent cache reads and rewrites it (shared
//! with Python azure-identity, msal and other MSALs, so any process may have written it).
//!
//! Input: the document. Lookups use the entries the document itself holds, so that real
//! caches are searched for what they contain.

use entra_identity::internal::CacheDocument;
use serde_json::Value;

/// When the harness runs, in Unix seconds.
const NOW: i64 = 1_700_000_000;

/// Reads the document in `data`, looks up its entries, stores a token, and reads the
/// rewritten document back.
pub(crate) fn run(data: &[u8]) {
    let Ok(mut document) = CacheDocument::parse(data) else {
        return;
    };
    let mut lookups = lookups(data);
    lookups.push(Lookup {
        client_id: "client".to_owned(),
        environment: "login.microsoftonline.com".to_owned(),
        realm: "tenant".to_owned(),
        scope: "https://graph.microsoft.com/.default".to_owned(),
    });
    for lookup in &lookups {
        let _ = document.find_access_token(
            &lookup.client_id,
            &lookup.environment,
            &lookup.realm,
            &lookup.scope,
            NOW,
        );
        let _ = document.find_refresh_token(&lookup.client_id, &lookup.environment, &lookup.scope);
    }
    // A token stored is found, before and after the document is written and read back.
    let stored = &lookups[0];
    document.store_access_token(
        &stored.client_id,
        &stored.environment,
        &stored.realm,
        &stored.scope,
        "stored-secret",
        NOW + 3600,
        Some("stored-refresh-token"),
        NOW,
    );
    let findable = !stored.scope.contains(' ');
    let find = |document: &CacheDocument| {
        document.find_access_token(
            &stored.client_id,
            &stored.environment,
            &stored.realm,
            &stored.scope,
            NOW,
        )
    };
    if findable {
        assert!(find(&document).is_some(), "a stored token is not found");
    }
    let bytes = document.to_bytes().expect("a cache document is written");
    let reread = CacheDocument::parse(&bytes).expect("a written cache document is read back");
    if findable {
        assert!(
            find(&reread).is_some(),
            "a stored token is not found once written"
        );
    }
}

/// What a lookup asks for.
struct Lookup {
    client_id: String,
    environment: String,
    realm: String,
    scope: String,
}

/// Lookups for the first few access and refresh tokens of the document.
fn lookups(data: &[u8]) -> Vec<Lookup> {
    let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let text = |entry: &Value, name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    ["AccessToken", "RefreshToken"]
        .iter()
        .filter_map(|section| document.get(*section).and_then(Value::as_object))
        .flat_map(|section| section.values().take(4))
        .map(|entry| Lookup {
            client_id: text(entry, "client_id"),
            environment: text(entry, "environment"),
            realm: text(entry, "realm"),
            scope: text(entry, "target")
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned(),
        })
        .collect()
}
