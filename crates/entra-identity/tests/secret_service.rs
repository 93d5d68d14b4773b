//! The persistent cache encrypted by the Linux Secret Service: a private D-Bus session bus and
//! a real gnome-keyring-daemon per test, both installed by `scripts/test`.
#![cfg(all(target_os = "linux", feature = "secret-service"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::keyring::Session;
use common::*;
use entra_identity::TokenRequestOptions;
use entra_identity::{CredentialError, TokenCachePersistenceOptions};

fn encrypted(name: &str) -> TokenCachePersistenceOptions {
    TokenCachePersistenceOptions::new().name(name)
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
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    let secret = token.token.expose_secret().to_owned();

    // A new credential, with an empty in-memory cache, finds it in the keyring, over the
    // first one's connection.
    let connections = session.connections();
    let (second, second_calls) = build();
    assert_eq!(
        session.connections(),
        connections,
        "one connection per process"
    );
    let again = second
        .get_token(&[GRAPH], TokenRequestOptions::new())
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

    // Every write touches the signal file, which other processes watch, and leaves what is
    // in it alone: a process without the keyring may keep its allowed plaintext cache there.
    std::fs::write(&signal, b"{}").expect("plaintext of another process");
    let touched_before = std::fs::metadata(&signal)
        .and_then(|metadata| metadata.modified())
        .expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(20));
    second
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect("another scope");
    let touched_after = std::fs::metadata(&signal)
        .and_then(|metadata| metadata.modified())
        .expect("mtime");
    assert!(touched_after > touched_before, "the signal file is touched");
    assert_eq!(std::fs::read(&signal).expect("signal"), b"{}");
    let document = session
        .stored_cache("keyring.nocae")
        .expect("the cache item");
    assert_eq!(
        document["AccessToken"].as_object().map(|map| map.len()),
        Some(2)
    );

    // One item per cache, in the login (default) collection, under azure-identity's label.
    assert_eq!(
        session.items("keyring.nocae"),
        vec![("MSALCache".to_owned(), "login".to_owned())]
    );

    // CAE tokens have their own item.
    second
        .get_token(&[GRAPH], TokenRequestOptions::new().enable_cae(true))
        .await
        .expect("cae");
    assert!(session.stored_cache("keyring.cae").is_some());
    assert_eq!(session.items("keyring.cae").len(), 1);
    assert_eq!(emulator.counters().token_requests, 3);
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
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");

    session.stop_keyring();
    let without_keyring = credential
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect("a token from Entra ID while the keyring is down");
    assert!(!without_keyring.token.expose_secret().is_empty());

    // Back again (the same login keyring, unlocked): the credential reconnects and stores.
    session.start_keyring(true);
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new().enable_cae(true))
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

/// The error a token request gets when the cache cannot be encrypted and files are not
/// allowed: the credential is unavailable, says what to do, and its cause says why.
fn assert_encryption_unavailable(error: &CredentialError) -> Vec<String> {
    assert!(
        matches!(error, CredentialError::CredentialUnavailable(_)),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("allow_unencrypted_storage"),
        "{error}"
    );
    std::iter::successors(Some(error as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect()
}

#[tokio::test]
async fn a_locked_keyring_is_a_clear_error_unless_files_are_allowed() {
    let emulator = emulator().await;
    let mut session = Session::start();
    // The login keyring exists; started again without its password, it stays locked.
    session.stop_keyring();
    session.start_keyring(false);

    // Building does not wait on D-Bus: the keyring is found locked when first used.
    let (locked, _) = builder(&emulator, TENANT);
    let credential = locked
        .environment(session.environment())
        .cache_persistence_options(encrypted("locked"))
        .build()
        .expect("building never talks to the Secret Service");
    let error = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("a locked keyring cannot be used without a prompt");
    assert_encryption_unavailable(&error);
    // Why is told by the cause, the I/O error of the Secret Service's answer.
    let why = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
        .expect("the Secret Service's error");
    assert_eq!(why.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(why.to_string().contains("locked"), "{why}");
    assert_eq!(
        emulator.counters().token_requests,
        0,
        "no token is fetched that could not be kept"
    );

    let (allowed, _) = builder(&emulator, TENANT);
    let credential = allowed
        .environment(session.environment())
        .cache_persistence_options(encrypted("locked").allow_unencrypted_storage(true))
        .build()
        .expect("a file, as allowed");
    let token = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    let text = std::fs::read_to_string(session.signal_file("locked.nocae")).expect("cache file");
    assert!(text.contains(token.token.expose_secret()));
}

#[tokio::test]
async fn a_bus_without_a_secret_service_is_a_clear_error() {
    let emulator = emulator().await;
    let session = Session::bus_only();
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .environment(session.environment())
        .cache_persistence_options(TokenCachePersistenceOptions::new())
        .build()
        .expect("building never talks to the Secret Service");
    let error = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("no Secret Service");
    // The message says the cache cannot be encrypted; its cause, that the Secret Service is
    // missing.
    let chain = assert_encryption_unavailable(&error);
    assert!(
        chain[1..]
            .iter()
            .any(|cause| cause.contains("Secret Service")),
        "{chain:?}"
    );
    assert_eq!(emulator.counters().token_requests, 0);
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
    assert_eq!(
        session.items("concurrent.nocae").len(),
        1,
        "replaced, never duplicated"
    );
}

/// A stand-in Secret Service on a test's bus, for what gnome-keyring never does: ask for a
/// prompt on every write (as KeePassXC may), or never answer at all. Its `zbus` is the
/// library's own dependency, there with the `secret-service` feature.
#[allow(unreachable_pub)]
mod stand_in {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

    const COLLECTION: &str = "/org/freedesktop/secrets/collection/login";
    const PROMPT: &str = "/org/freedesktop/secrets/prompt/p1";

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Behaviour {
        /// Everything works but storing, which asks for a prompt that is never answered.
        PromptsOnWrite,
        /// Owns the name, and never answers a call.
        Silent,
        /// Cannot look items up, and stores without a prompt.
        ReadsFail,
    }

    /// The stand-in, served on a runtime of its own until dropped.
    pub struct StandIn {
        prompts: Arc<AtomicUsize>,
        writes: Arc<AtomicUsize>,
        connection: Option<zbus::Connection>,
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            drop(self.connection.take());
            if let Some(runtime) = self.runtime.take() {
                // Callable from an async test, unlike dropping the runtime.
                runtime.shutdown_background();
            }
        }
    }

    impl StandIn {
        pub fn start(bus_address: &str, behaviour: Behaviour) -> Self {
            // Started on a thread of its own: async tests may start it.
            let bus_address = bus_address.to_owned();
            std::thread::spawn(move || Self::start_here(&bus_address, behaviour))
                .join()
                .expect("the stand-in started")
        }

        fn start_here(bus_address: &str, behaviour: Behaviour) -> Self {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let prompts = Arc::new(AtomicUsize::new(0));
            let writes = Arc::new(AtomicUsize::new(0));
            let connection = runtime.block_on(async {
                zbus::connection::Builder::address(bus_address)
                    .expect("address")
                    .serve_at("/org/freedesktop/secrets", Service { behaviour })
                    .expect("service")
                    .serve_at(
                        COLLECTION,
                        Collection {
                            behaviour,
                            writes: writes.clone(),
                        },
                    )
                    .expect("collection")
                    .serve_at(
                        PROMPT,
                        Prompt {
                            prompts: prompts.clone(),
                        },
                    )
                    .expect("prompt")
                    .name("org.freedesktop.secrets")
                    .expect("name")
                    .build()
                    .await
                    .expect("the stand-in on the bus")
            });
            Self {
                prompts,
                writes,
                connection: Some(connection),
                runtime: Some(runtime),
            }
        }

        pub fn prompts(&self) -> usize {
            self.prompts.load(Ordering::SeqCst)
        }

        /// Items stored (or asked to be, behind a prompt).
        pub fn writes(&self) -> usize {
            self.writes.load(Ordering::SeqCst)
        }
    }

    fn path(text: &str) -> OwnedObjectPath {
        OwnedObjectPath::try_from(text).expect("object path")
    }

    struct Service {
        behaviour: Behaviour,
    }

    #[zbus::interface(name = "org.freedesktop.Secret.Service")]
    impl Service {
        async fn open_session(
            &self,
            _algorithm: &str,
            _input: Value<'_>,
        ) -> zbus::fdo::Result<(OwnedValue, OwnedObjectPath)> {
            if self.behaviour == Behaviour::Silent {
                std::future::pending::<()>().await;
            }
            // The client's half of the key exchange is ignored and any public key answers
            // it: nothing is decrypted here.
            let public_key = OwnedValue::try_from(Value::from(vec![2_u8; 128]))
                .map_err(|error| zbus::fdo::Error::Failed(error.to_string()))?;
            Ok((public_key, path("/org/freedesktop/secrets/session/s1")))
        }

        async fn read_alias(&self, _name: &str) -> OwnedObjectPath {
            path(COLLECTION)
        }

        async fn search_items(
            &self,
            _attributes: HashMap<String, String>,
        ) -> zbus::fdo::Result<(Vec<OwnedObjectPath>, Vec<OwnedObjectPath>)> {
            if self.behaviour == Behaviour::ReadsFail {
                return Err(zbus::fdo::Error::Failed("cannot read items".to_owned()));
            }
            Ok((Vec::new(), Vec::new()))
        }
    }

    struct Collection {
        behaviour: Behaviour,
        writes: Arc<AtomicUsize>,
    }

    #[zbus::interface(name = "org.freedesktop.Secret.Collection")]
    impl Collection {
        #[zbus(property)]
        async fn locked(&self) -> bool {
            false
        }

        async fn create_item(
            &self,
            _properties: HashMap<String, OwnedValue>,
            _secret: (OwnedObjectPath, Vec<u8>, Vec<u8>, String),
            _replace: bool,
        ) -> (OwnedObjectPath, OwnedObjectPath) {
            self.writes.fetch_add(1, Ordering::SeqCst);
            if self.behaviour == Behaviour::ReadsFail {
                return (path(&format!("{COLLECTION}/i1")), path("/"));
            }
            (path("/"), path(PROMPT))
        }
    }

    struct Prompt {
        prompts: Arc<AtomicUsize>,
    }

    #[zbus::interface(name = "org.freedesktop.Secret.Prompt")]
    impl Prompt {
        /// Shows nothing, and never completes.
        async fn prompt(&self, _window_id: &str) {
            self.prompts.fetch_add(1, Ordering::SeqCst);
        }

        async fn dismiss(&self) {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_is_abandoned_and_not_asked_for_again() {
    let emulator = emulator().await;
    let session = Session::bus_only();
    let stand_in =
        stand_in::StandIn::start(&session.bus_address, stand_in::Behaviour::PromptsOnWrite);
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .environment(session.environment())
        .cache_persistence_options(encrypted("prompting"))
        .build()
        .expect("an unlocked default collection: usable");

    // The write asks for a prompt; the token comes anyway, once the prompt is given up.
    let token = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        credential.get_token(&[GRAPH], TokenRequestOptions::new()),
    )
    .await
    .expect("the prompt is given up, not waited for")
    .expect("a token from Entra ID");
    assert!(!token.token.expose_secret().is_empty());
    assert_eq!(stand_in.prompts(), 1);

    // The Secret Service is left alone for a while: no second prompt, no wait.
    credential
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect("another token");
    assert_eq!(stand_in.prompts(), 1, "no second prompt");
    assert_eq!(stand_in.writes(), 1);
    assert_eq!(emulator.counters().token_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_service_that_never_answers_holds_up_no_build_and_no_worker() {
    let emulator = emulator().await;
    let session = Session::bus_only();
    let _stand_in = stand_in::StandIn::start(&session.bus_address, stand_in::Behaviour::Silent);
    // Built on a runtime worker, as a request handler would: it returns at once (it used to
    // wait up to 40 s for the Secret Service to answer).
    let (unencrypted, _) = builder(&emulator, TENANT);
    let (encrypted_only, _) = builder(&emulator, TENANT);
    let environment = session.environment();
    let building = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let built = (
            encrypted_only
                .environment(environment.clone())
                .cache_persistence_options(encrypted("silent"))
                .build(),
            unencrypted
                .environment(environment)
                .cache_persistence_options(encrypted("silent").allow_unencrypted_storage(true))
                .build(),
        );
        (built, started.elapsed())
    });
    let ((encrypted_only, unencrypted), took) = building.await.expect("built");
    assert!(
        took < std::time::Duration::from_secs(5),
        "the build waited on D-Bus: {took:?}"
    );
    let encrypted_only = encrypted_only.expect("built without D-Bus");
    let unencrypted = unencrypted.expect("built without D-Bus");

    // The first request finds out, off the runtime's workers, within the Secret Service's
    // deadline, while the other worker keeps running tasks.
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let error = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        encrypted_only.get_token(&[GRAPH], TokenRequestOptions::new()),
    )
    .await
    .expect("the Secret Service is given up, not waited for")
    .expect_err("no answer, no encrypted cache");
    assert_encryption_unavailable(&error);
    assert!(
        ticks.load(std::sync::atomic::Ordering::Relaxed) > 10,
        "the runtime kept running tasks"
    );
    ticker.abort();

    // Allowed to, the other credential keeps its cache in the file.
    let token = unencrypted
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("a token, kept in the file");
    let text = std::fs::read_to_string(session.signal_file("silent.nocae")).expect("cache file");
    assert!(text.contains(token.token.expose_secret()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_be_read_is_never_written_over() {
    let emulator = emulator().await;
    let session = Session::bus_only();
    let stand_in = stand_in::StandIn::start(&session.bus_address, stand_in::Behaviour::ReadsFail);
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .environment(session.environment())
        .cache_persistence_options(encrypted("unreadable"))
        .build()
        .expect("the default collection is there and unlocked");
    let token = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("a token from Entra ID, the cache being unreadable");
    assert!(!token.token.expose_secret().is_empty());
    // Writing a cache made of this one token would lose whatever the unreadable one holds.
    assert_eq!(stand_in.writes(), 0);
    assert_eq!(emulator.counters().token_requests, 1);
}
