//! The credentials as Rust services hold them: behind `Arc<dyn TokenCredential>` chosen at
//! start-up, with azure_core's trait imported beside ours, and replaced by a test double.
//!
//! That this file compiles is half the test: `Arc<dyn TokenCredential>`, `Box<dyn ...>`,
//! `Send` futures from a trait object, and method calls that would be ambiguous if the
//! credentials only had the two traits' methods.

#![allow(missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

// Both traits in scope, as in a service that also uses the Azure SDK's clients.
#[allow(unused_imports)]
#[cfg(feature = "azure-core")]
use azure_core::credentials::TokenCredential as AzureTokenCredential;
use entra_emulator::{ApplicationConfig, UserConfig, UserTokenRequest};
use entra_identity::{
    AccessTokenInfo, CloseFuture, CredentialError, MapEnvironment, OnBehalfOfApplication,
    TokenCredential, TokenFuture, TokenRequestOptions,
};

const MIDDLE_TIER: &str = "10000000-0000-0000-0000-0000000000aa";
const SECRET: &str = "middle-tier-secret";
const USER: &str = "20000000-0000-0000-0000-0000000000aa";

/// A service that holds whichever credential its configuration chose.
struct Service {
    credential: Arc<dyn TokenCredential>,
}

impl Service {
    async fn call_downstream(&self, scope: &str) -> Result<String, CredentialError> {
        let token = self
            .credential
            .get_token(&[scope], TokenRequestOptions::new())
            .await?;
        Ok(token.token.expose_secret().to_owned())
    }
}

/// A test double counting its calls.
#[derive(Debug, Default)]
struct Fixed {
    calls: AtomicUsize,
    closed: AtomicUsize,
}

impl TokenCredential for Fixed {
    fn get_token_info<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if scopes.is_empty() {
            return TokenFuture::ready(Err(CredentialError::InvalidRequest("no scope".into())));
        }
        let tenant = options.tenant_id.unwrap_or("home").to_owned();
        // A double may also answer later, borrowing what it was given.
        TokenFuture::new(async move {
            tokio::task::yield_now().await;
            Ok(
                AccessTokenInfo::new(format!("double-{tenant}-{}", scopes[0]), 4_000_000_000)
                    .with_refresh_on(Some(3_000_000_000)),
            )
        })
    }

    fn close(&self) -> CloseFuture<'_> {
        self.closed.fetch_add(1, Ordering::SeqCst);
        CloseFuture::done()
    }
}

fn config() -> entra_emulator::EmulatorConfig {
    let mut config = common::config();
    let tenant = &mut config.tenants[0];
    tenant.applications.push(ApplicationConfig {
        name: "middle-tier".to_owned(),
        client_id: Some(MIDDLE_TIER.to_owned()),
        secrets: vec![SECRET.to_owned()],
        ..ApplicationConfig::default()
    });
    tenant.users.push(UserConfig {
        object_id: Some(USER.to_owned()),
        upn: "someone@fabrikam.onmicrosoft.com".to_owned(),
        name: None,
    });
    config
}

#[tokio::test]
async fn a_service_holds_any_credential_behind_arc_dyn() {
    let emulator = entra_emulator::Emulator::builder()
        .config(config())
        .start()
        .await
        .expect("emulator");
    let (workload, _) = common::credential(&emulator);
    let user_token = emulator
        .mint_user_token(&UserTokenRequest {
            user: USER.to_owned(),
            audience: format!("api://{MIDDLE_TIER}"),
            ..UserTokenRequest::default()
        })
        .expect("user token");
    let application = OnBehalfOfApplication::builder(common::TENANT, MIDDLE_TIER)
        .client_secret(SECRET)
        .authority(emulator.url())
        .disable_instance_discovery(true)
        .http_options(common::http(&emulator))
        .environment(Arc::new(MapEnvironment::new()))
        .build()
        .expect("application");
    let on_behalf_of = application
        .credential_for(user_token.as_str())
        .expect("credential");

    // Chosen at start-up: each configuration gives the service a different credential.
    let services = [
        Service {
            credential: Arc::new(workload.clone()),
        },
        Service {
            credential: Arc::new(on_behalf_of.clone()),
        },
        Service {
            credential: Arc::new(Fixed::default()),
        },
    ];
    let mut tokens = Vec::new();
    for service in &services {
        tokens.push(
            service
                .call_downstream(common::DOWNSTREAM)
                .await
                .expect("token"),
        );
    }
    assert_eq!(
        common::claims(&tokens[0])["appid"],
        common::WORKLOAD,
        "the workload's own token"
    );
    let obo = common::claims(&tokens[1]);
    assert_eq!(obo["oid"], USER, "a token for the user");
    assert_eq!(obo["azp"], MIDDLE_TIER);
    assert_eq!(tokens[2], format!("double-home-{}", common::DOWNSTREAM));

    // The futures of a trait object can be spawned: they are `Send + 'static` once the
    // arguments are.
    let credential: Arc<dyn TokenCredential> = Arc::new(workload.clone());
    let spawned = tokio::spawn(async move {
        credential
            .get_token_info(&[common::GRAPH], TokenRequestOptions::new())
            .await
    });
    let info = spawned.await.expect("task").expect("token");
    assert_eq!(info.token_type, "Bearer");

    // `Box<dyn>` and `Arc<Arc<..>>` forward too; closing through the trait closes the
    // credential.
    let boxed: Box<dyn TokenCredential> = Box::new(workload.clone());
    boxed.close().await;
    let closed = workload
        .get_token(&[common::GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("closed");
    assert!(
        matches!(closed, CredentialError::CredentialUnavailable(_)),
        "{closed:?}"
    );
    let double = Arc::new(Fixed::default());
    let nested: Arc<dyn TokenCredential> = Arc::new(double.clone());
    let other_tenant = nested
        .get_token(
            &[common::GRAPH],
            TokenRequestOptions::new().tenant_id("fabrikam"),
        )
        .await
        .expect("token");
    assert_eq!(
        other_tenant.token.expose_secret(),
        format!("double-fabrikam-{}", common::GRAPH)
    );
    nested.close().await;
    assert_eq!(double.calls.load(Ordering::SeqCst), 1);
    assert_eq!(double.closed.load(Ordering::SeqCst), 1);
}

/// Needs the `azure-core` feature, which implements azure_core's trait for the credentials.
#[cfg(feature = "azure-core")]
#[tokio::test]
async fn calls_compile_with_both_traits_in_scope() {
    let emulator = common::emulator().await;
    let (credential, calls) = common::credential(&emulator);
    // Method syntax on the credential picks its own methods, not either trait's...
    let ours = credential
        .get_token(
            &[common::GRAPH],
            TokenRequestOptions::new().enable_cae(true),
        )
        .await
        .expect("our token");
    // ...and each trait stays reachable by its path.
    let theirs = AzureTokenCredential::get_token(&credential, &[common::GRAPH], None)
        .await
        .expect("azure_core token");
    let through_ours = TokenCredential::get_token_info(
        &credential,
        &[common::GRAPH],
        TokenRequestOptions::default(),
    )
    .await
    .expect("token info");
    // The CAE request and the plain ones are cached apart; the plain ones share one token.
    assert_eq!(calls.count(), 2);
    assert_eq!(theirs.token.secret(), through_ours.token.expose_secret());
    assert_ne!(
        ours.token.expose_secret(),
        through_ours.token.expose_secret()
    );
    // azure_core's own trait object still works.
    let sdk: Arc<dyn AzureTokenCredential> = Arc::new(credential);
    assert!(sdk.get_token(&[common::GRAPH], None).await.is_ok());
}

#[test]
fn request_options_read_like_the_seeds() {
    let challenge = r#"{"access_token":{"nbf":{"essential":true}}}"#;
    let options = TokenRequestOptions::new()
        .claims(challenge)
        .tenant_id("fabrikam")
        .enable_cae(true);
    assert_eq!(options.claims, Some(challenge));
    assert_eq!(options.tenant_id, Some("fabrikam"));
    assert!(options.enable_cae);
    assert_eq!(TokenRequestOptions::new(), TokenRequestOptions::default());
}
