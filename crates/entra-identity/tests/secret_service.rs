//! The persistent cache encrypted by the Linux Secret Service: a private D-Bus session bus and
//! a real gnome-keyring-daemon per test, both installed by `scripts/test`.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::keyring::Session;
use common::*;
use entra_identity::{BuildError, TokenCachePersistenceOptions, TokenCredential};

fn encrypted(name: &str) -> TokenCachePersistenceOptions {
    TokenCachePersistenceOptions::new().with_name(name)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn tokens_are_kept_encrypted_in_the_keyring_and_shared_by_credentials() {
    let emulator = emulator().await;
    let session = Session::start();
    let build = || {
        let (builder, calls) = builder(&emulator, TENANT);
        let credential = builder
            .environment(session.environment())
            .cache_persistence_options(encrypted("keyring"))
            .build()
            .expect("the Secret Service is there: no need to allow unencrypted storage");
        (credential, calls)
    };
    let (first, _) = build();
    let token = first
        .get_token(&[GRAPH], None, None, false)
        .await
        .expect("token");
    let secret = token.token.expose_secret().to_owned();

    // A new credential, with an empty in-memory cache, finds it in the keyring.
    let (second, second_calls) = build();
    let again = second
        .get_token(&[GRAPH], None, None, false)
        .await
        .expect("from the keyring");
    assert_eq!(again.token.expose_secret(), secret);
    assert_eq!(second_calls.count(), 0, "no assertion, no request");
    assert_eq!(emulator.counters().token_requests, 1);

    // The item is what msal-extensions writes: the unified cache, under azure-identity's
    // attributes.
    let document = session
        .stored_cache("keyring.nocae")
        .expect("the cache item");
    let entry = document["AccessToken"]
        .as_object()
        .and_then(|entries| entries.values().next())
        .expect("an access token");
    assert_eq!(entry["secret"], secret.as_str());
    assert_eq!(entry["client_id"], WORKLOAD);
    assert!(session.stored_cache("keyring.cae").is_none());

    // The file is only the signal, empty and private.
    let signal = session.signal_file("keyring.nocae");
    let metadata = std::fs::metadata(&signal).expect("signal file");
    assert_eq!(metadata.len(), 0);
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    }
    // Nothing on disk holds the token in the clear, the keyring's own files included.
    for file in files_under(session.dir.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{} holds the token in the clear",
            file.display()
        );
    }

    // CAE tokens have their own item.
    second
        .get_token(&[GRAPH], None, None, true)
        .await
        .expect("cae");
    assert!(session.stored_cache("keyring.cae").is_some());
    assert_eq!(emulator.counters().token_requests, 2);
}

#[tokio::test]
async fn a_keyring_that_goes_away_costs_requests_never_tokens() {
    let emulator = emulator().await;
    let mut session = Session::start();
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .environment(session.environment())
        .cache_persistence_options(encrypted("restart"))
        .build()
        .expect("credential");
    credential
        .get_token(&[GRAPH], None, None, false)
        .await
        .expect("token");

    session.stop_keyring();
    let without_keyring = credential
        .get_token(&[DOWNSTREAM], None, None, false)
        .await
        .expect("a token from Entra ID while the keyring is down");
    assert!(!without_keyring.token.expose_secret().is_empty());

    // Back again (the same login keyring, unlocked): the credential reconnects and stores.
    session.start_keyring(true);
    credential
        .get_token(&[GRAPH], None, None, true)
        .await
        .expect("cae token");
    let document = session
        .stored_cache("restart.cae")
        .expect("stored after the restart");
    assert_eq!(
        document["AccessToken"].as_object().map(|map| map.len()),
        Some(1)
    );
    let before_restart = session.stored_cache("restart.nocae").expect("kept");
    assert_eq!(
        before_restart["AccessToken"]
            .as_object()
            .map(|map| map.len()),
        Some(1),
        "the token written before the restart is still there"
    );
}

#[tokio::test]
async fn a_locked_keyring_is_a_clear_error_unless_files_are_allowed() {
    let emulator = emulator().await;
    let mut session = Session::start();
    // The login keyring exists; started again without its password, it stays locked.
    session.stop_keyring();
    session.start_keyring(false);

    let (locked, _) = builder(&emulator, TENANT);
    let error = locked
        .environment(session.environment())
        .cache_persistence_options(encrypted("locked"))
        .build()
        .expect_err("a locked keyring cannot be used without a prompt");
    assert!(matches!(error, BuildError::PersistenceUnavailable(_)));
    let message = error.to_string();
    assert!(message.contains("locked"), "{message}");
    assert!(message.contains("allow_unencrypted_storage"), "{message}");

    let (allowed, _) = builder(&emulator, TENANT);
    let credential = allowed
        .environment(session.environment())
        .cache_persistence_options(encrypted("locked").with_allow_unencrypted_storage(true))
        .build()
        .expect("a file, as allowed");
    let token = credential
        .get_token(&[GRAPH], None, None, false)
        .await
        .expect("token");
    let text = std::fs::read_to_string(session.signal_file("locked.nocae")).expect("cache file");
    assert!(text.contains(token.token.expose_secret()));
}

#[test]
fn a_bus_without_a_secret_service_is_a_clear_error() {
    let session = Session::bus_only();
    let built = entra_identity::ClientAssertionCredential::builder(
        TENANT,
        WORKLOAD,
        entra_identity::assertion_fn(|| Ok::<_, std::io::Error>("assertion".to_owned())),
    )
    .environment(session.environment())
    .cache_persistence_options(TokenCachePersistenceOptions::new())
    .build();
    let message = built.expect_err("no Secret Service").to_string();
    assert!(message.contains("Secret Service"), "{message}");
}

/// Runs as a worker process when asked to: writes tokens into the keyring-kept cache.
#[test]
fn keyring_worker_writes_tokens() {
    let (Ok(bus), Ok(signal), Ok(worker)) = (
        std::env::var("ENTRA_KEYRING_BUS"),
        std::env::var("ENTRA_KEYRING_SIGNAL"),
        std::env::var("ENTRA_KEYRING_WORKER"),
    ) else {
        return; // not a worker run
    };
    let cache =
        entra_identity::internal::CacheFile::in_secret_service(signal, "concurrent.nocae", &bus)
            .expect("the Secret Service");
    for index in 0..TOKENS_PER_WORKER {
        let scope = format!("api://resource-{worker}-{index}/.default");
        cache
            .store_access_token(
                "client",
                "login.example",
                "tenant",
                &scope,
                "secret",
                4_000_000_000,
                1,
            )
            .expect("stored");
    }
}

const TOKENS_PER_WORKER: usize = 50;

#[test]
fn four_processes_writing_to_the_keyring_at_once_lose_nothing() {
    let session = Session::start();
    let signal = session.signal_file("concurrent.nocae");
    let exe = std::env::current_exe().expect("test binary");
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "keyring_worker_writes_tokens",
                    "--test-threads=1",
                ])
                .env("ENTRA_KEYRING_BUS", &session.bus_address)
                .env("ENTRA_KEYRING_SIGNAL", &signal)
                .env("ENTRA_KEYRING_WORKER", worker.to_string())
                .stdout(Stdio::null())
                .spawn()
                .expect("worker")
        })
        .collect();
    for mut worker in workers {
        assert!(worker.wait().expect("worker").success());
    }
    let document = session
        .stored_cache("concurrent.nocae")
        .expect("valid JSON in the keyring");
    assert_eq!(
        document["AccessToken"].as_object().map(|map| map.len()),
        Some(4 * TOKENS_PER_WORKER)
    );
    assert_eq!(std::fs::metadata(&signal).expect("signal").len(), 0);
}
