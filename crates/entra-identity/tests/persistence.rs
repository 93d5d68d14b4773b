//! Persistent token caching: MSAL-format files shared across credentials and processes.

mod common;

use std::sync::Arc;

use common::*;
use entra_emulator::UserTokenRequest;
use entra_identity::TokenRequestOptions;
use entra_identity::{
    BuildError, MapEnvironment, OnBehalfOfCredential, TokenCachePersistenceOptions,
};

fn persistence(name: &str) -> TokenCachePersistenceOptions {
    TokenCachePersistenceOptions::new()
        .name(name)
        .allow_unencrypted_storage(true)
}

fn home(dir: &tempfile::TempDir) -> Arc<MapEnvironment> {
    Arc::new(MapEnvironment::new().with("HOME", dir.path().to_string_lossy()))
}

#[tokio::test]
async fn a_second_credential_finds_the_first_ones_token_in_the_file() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().expect("home");
    let build = || {
        let (builder, calls) = builder(&emulator, TENANT);
        let credential = builder
            .environment(home(&dir))
            .cache_persistence_options(persistence("shared"))
            .build()
            .expect("credential");
        (credential, calls)
    };
    let (first, _) = build();
    let token = first
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    // A new credential has an empty in-memory cache: the file answers.
    let (second, second_calls) = build();
    let again = second
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("from the file");
    assert_eq!(again.token.expose_secret(), token.token.expose_secret());
    assert_eq!(second_calls.count(), 0, "no assertion, no request");
    assert_eq!(emulator.counters().token_requests, 1);

    let file = dir.path().join(".IdentityService").join("shared.nocae");
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("cache file")).expect("json");
    let entries = document["AccessToken"].as_object().expect("section");
    assert_eq!(entries.len(), 1);
    let entry = entries.values().next().expect("entry");
    assert_eq!(entry["client_id"], WORKLOAD);
    assert_eq!(entry["realm"], TENANT);
    assert_eq!(entry["environment"], "127.0.0.1");
    assert_eq!(entry["target"], GRAPH);

    // CAE tokens live in their own file.
    second
        .get_token(&[GRAPH], TokenRequestOptions::new().enable_cae(true))
        .await
        .expect("cae");
    assert!(
        dir.path()
            .join(".IdentityService")
            .join("shared.cae")
            .is_file()
    );
    assert_eq!(emulator.counters().token_requests, 2);
}

#[tokio::test]
async fn encryption_is_required_unless_waived() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().expect("home");
    let (builder, _) = builder(&emulator, TENANT);
    let error = builder
        .environment(home(&dir))
        .cache_persistence_options(TokenCachePersistenceOptions::new())
        .build()
        .expect_err("no encryption available");
    assert!(matches!(error, BuildError::PersistenceUnavailable { .. }));
    assert!(
        error.to_string().contains("allow_unencrypted_storage"),
        "{error}"
    );
}

#[tokio::test]
async fn a_cache_name_that_cannot_be_a_file_name_is_a_build_error() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().expect("home");
    let too_long = "a".repeat(1024);
    for name in [
        "",
        ".hidden",
        "a/b",
        "a\\b",
        "nul\0inside",
        "line\nbreak",
        &too_long,
    ] {
        let (builder, _) = builder(&emulator, TENANT);
        let error = builder
            .environment(home(&dir))
            .cache_persistence_options(persistence(name))
            .build()
            .expect_err(name);
        assert!(
            matches!(error, BuildError::PersistenceUnavailable { .. }),
            "{name:?}: {error}"
        );
        assert!(
            error.to_string().contains("not a valid cache name"),
            "{error}"
        );
        assert!(!error.to_string().contains('\0'), "{error}");
        assert!(error.to_string().len() < 300, "{error}");
    }
    // The longest name allowed still works.
    let (builder, _) = builder(&emulator, TENANT);
    builder
        .environment(home(&dir))
        .cache_persistence_options(persistence(&"a".repeat(200)))
        .build()
        .expect("a 200-byte name");
}

/// Built without the `secret-service` feature, Linux has no secret store: asking for encrypted
/// persistence fails and says why, and with unencrypted storage allowed the cache is the
/// owner-only file, as on a platform without a store.
#[cfg(all(target_os = "linux", not(feature = "secret-service")))]
#[tokio::test]
async fn without_the_secret_service_feature_linux_falls_back_like_an_unsupported_platform() {
    use std::os::unix::fs::PermissionsExt as _;

    let emulator = emulator().await;
    let dir = tempfile::tempdir().expect("home");
    // A session bus is named, and still not used: the Secret Service is not compiled in.
    let environment = Arc::new(
        MapEnvironment::new()
            .with("HOME", dir.path().to_string_lossy())
            .with("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus"),
    );
    let (encrypted, _) = builder(&emulator, TENANT);
    let error = encrypted
        .environment(environment.clone())
        .cache_persistence_options(TokenCachePersistenceOptions::new().name("minimal"))
        .build()
        .expect_err("no secret store without the feature");
    assert!(
        matches!(error, BuildError::PersistenceUnavailable { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("`secret-service` feature"),
        "{error}"
    );

    let (allowed, _) = builder(&emulator, TENANT);
    let credential = allowed
        .environment(environment)
        .cache_persistence_options(persistence("minimal"))
        .build()
        .expect("a file cache, as allowed");
    let token = credential
        .get_token(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect("token");
    let file = dir.path().join(".IdentityService").join("minimal.nocae");
    let metadata = std::fs::metadata(&file).expect("cache file");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).expect("readable");
    assert!(
        text.contains(token.token.expose_secret()),
        "the token is in the file"
    );
}

#[tokio::test]
async fn on_behalf_of_entries_are_per_user() {
    let emulator = emulator().await;
    let config_user = emulator
        .register_user(
            TENANT,
            &entra_emulator::UserConfig {
                upn: "u@x".into(),
                ..Default::default()
            },
        )
        .expect("user");
    let other_user = emulator
        .register_user(
            TENANT,
            &entra_emulator::UserConfig {
                upn: "v@x".into(),
                ..Default::default()
            },
        )
        .expect("user");
    let app = emulator
        .register_application(
            TENANT,
            &entra_emulator::ApplicationConfig {
                name: "obo".into(),
                secrets: vec!["s3cret".into()],
                ..Default::default()
            },
        )
        .expect("app");
    let assertion = |user: &str| {
        emulator
            .mint_user_token(&UserTokenRequest {
                user: user.to_owned(),
                audience: app.client_id.clone(),
                ..UserTokenRequest::default()
            })
            .expect("user token")
    };
    let dir = tempfile::tempdir().expect("home");
    let build = |user_assertion: &str| {
        OnBehalfOfCredential::builder(TENANT, &app.client_id, user_assertion)
            .client_secret("s3cret")
            .authority(emulator.url())
            .http_options(http(&emulator))
            .environment(home(&dir))
            .cache_persistence_options(persistence("obo"))
            .build()
            .expect("credential")
    };
    let first_assertion = assertion(&config_user.upn);
    let token = build(&first_assertion)
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect("token");
    assert_eq!(
        claims(token.token.expose_secret())["oid"],
        config_user.object_id
    );
    // The same assertion in a new credential: from the file.
    build(&first_assertion)
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect("cached");
    assert_eq!(emulator.counters().token_requests, 1);
    // Another user never gets it.
    let other = build(&assertion(&other_user.upn))
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await;
    assert_eq!(
        claims(other.expect("token").token.expose_secret())["oid"],
        other_user.object_id
    );
    assert_eq!(emulator.counters().token_requests, 2);
    let document: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(".IdentityService").join("obo.nocae")).expect("file"),
    )
    .expect("json");
    let keys: Vec<&str> = document["AccessToken"]
        .as_object()
        .expect("section")
        .values()
        .filter_map(|entry| entry["client_id"].as_str())
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|key| key.starts_with(&format!("{}:obo:", app.client_id))),
        "{keys:?}"
    );
    assert!(
        document["RefreshToken"]
            .as_object()
            .is_some_and(|rts| rts.len() == 2)
    );
    // The assertion itself is never written.
    let text = std::fs::read_to_string(dir.path().join(".IdentityService").join("obo.nocae"))
        .expect("file");
    assert!(!text.contains(&first_assertion));
}

/// Runs as a worker process when asked to: writes 500 tokens into the shared file.
#[test]
fn worker_writes_tokens() {
    let (Ok(path), Ok(worker)) = (
        std::env::var("ENTRA_CACHE_FILE"),
        std::env::var("ENTRA_CACHE_WORKER"),
    ) else {
        return; // not a worker run
    };
    let file = entra_identity::internal::CacheFile::new(path);
    for index in 0..500 {
        let scope = format!("api://resource-{worker}-{index}/.default");
        file.store_access_token(
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

#[test]
fn four_processes_writing_at_once_lose_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("msal.cache.nocae");
    let exe = std::env::current_exe().expect("test binary");
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            std::process::Command::new(&exe)
                .args(["--exact", "worker_writes_tokens", "--test-threads=1"])
                .env("ENTRA_CACHE_FILE", &path)
                .env("ENTRA_CACHE_WORKER", worker.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("worker")
        })
        .collect();
    for mut worker in workers {
        assert!(worker.wait().expect("worker").success());
    }
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("file")).expect("valid JSON");
    assert_eq!(
        document["AccessToken"].as_object().expect("section").len(),
        2000
    );
    let file = entra_identity::internal::CacheFile::new(&path);
    for worker in 0..4 {
        let scope = format!("api://resource-{worker}-499/.default");
        assert!(
            file.find_access_token("client", "login.example", "tenant", &scope, 2)
                .expect("read")
                .is_some()
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_lock_left_by_a_crashed_writer_does_not_hold_up_get_token() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().expect("home");
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .environment(home(&dir))
        .cache_persistence_options(persistence("crashed"))
        .build()
        .expect("credential");
    // What a writer killed while holding the lock (msal-extensions or this crate) leaves: a
    // fresh lock file naming a process that is gone.
    let mut gone = std::process::Command::new("true").spawn().expect("true");
    let pid = gone.id();
    gone.wait().expect("exited");
    let cache_dir = dir.path().join(".IdentityService");
    std::fs::create_dir_all(&cache_dir).expect("dir");
    let lock = cache_dir.join("crashed.nocae.lockfile");
    std::fs::write(&lock, format!("{pid} python")).expect("lock file");

    // The lock is broken at once; it used to cost a minute's wait after the token arrived.
    let token = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        credential.get_token(&[GRAPH], TokenRequestOptions::new()),
    )
    .await
    .expect("not held up by the stale lock")
    .expect("token");
    let text = std::fs::read_to_string(cache_dir.join("crashed.nocae")).expect("cache file");
    assert!(text.contains(token.token.expose_secret()), "written");
    assert!(!lock.exists(), "released");
}
