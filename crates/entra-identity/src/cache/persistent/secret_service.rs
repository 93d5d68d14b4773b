//! The Linux Secret Service (GNOME Keyring, KWallet, KeePassXC) as the encrypted store of the
//! persistent token cache.
//!
//! The cache is kept the way msal-extensions keeps it through libsecret, so Python
//! azure-identity and msal on the same machine share it: one item per cache in the default
//! collection, labelled `MSALCache`, with the attributes `xdg:schema = <name>.nocae|.cae` and
//! `MsalClientID = Microsoft.Developer.IdentityService`, holding the whole unified-cache JSON.
//!
//! Nothing here waits for a prompt: a server has no one to answer it, and waiting would hang a
//! token request while holding the cache's lock. A locked keyring is reported as an error;
//! a Secret Service that asks for a prompt anyway (KeePassXC may, to allow a write) is
//! abandoned after [`OPERATION_DEADLINE`] by closing the connection, and left alone for
//! [`COOL_DOWN`] so that later requests fail fast instead of waiting again.

use std::collections::HashMap;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secret_service::EncryptionType;
use secret_service::blocking::SecretService;
use zeroize::Zeroizing;

use crate::environment::Environment;
use crate::error::ContextError;

/// The attribute msal-extensions adds to every azure-identity cache item, and its value.
const CLIENT_ATTRIBUTE: (&str, &str) = ("MsalClientID", "Microsoft.Developer.IdentityService");
/// The attribute libsecret adds to every item: the name of its schema.
const SCHEMA_ATTRIBUTE: &str = "xdg:schema";
/// azure-identity's label for its cache items.
const LABEL: &str = "MSALCache";
/// libsecret stores passwords, and so the cache, as `text/plain`.
const CONTENT_TYPE: &str = "text/plain";
/// A D-Bus call that takes longer than this has failed: a token request must not hang on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a whole operation (connecting, or a load or save of several calls, or a
/// prompt) may take. Well under the cache lock's stale age (a minute), so that no other
/// process breaks the lock while this one still holds it, even with one retry.
pub(crate) const OPERATION_DEADLINE: Duration = Duration::from_secs(10);
/// How long a Secret Service that kept an operation past its deadline is left alone.
pub(crate) const COOL_DOWN: Duration = Duration::from_secs(300);

/// A connection to the session bus's Secret Service, made when first needed and made again
/// after a failure.
pub(crate) struct SecretServiceConnection {
    bus_address: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    connected: Option<Connected>,
    /// Set when an operation overran its deadline: until then, operations fail at once.
    resting_until: Option<Instant>,
    /// Whether the Secret Service was found able to keep the cache without a prompt.
    usable: bool,
}

struct Connected {
    service: SecretService<'static>,
    /// The same connection as the service's, kept to close it when an operation overruns.
    bus: zbus::blocking::Connection,
}

impl std::fmt::Debug for SecretServiceConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretServiceConnection")
            .field("bus_address", &self.bus_address)
            .finish_non_exhaustive()
    }
}

impl Drop for SecretServiceConnection {
    fn drop(&mut self) {
        let connected = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .connected
            .take();
        // Closing a blocking D-Bus connection blocks on zbus' own runtime, which panics
        // inside an async task, where credentials are usually dropped; a thread of its own
        // closes it instead.
        if let Some(connected) = connected {
            let closed = std::thread::Builder::new()
                .name("entra-identity-secret-service".to_owned())
                .spawn(move || drop(connected));
            if let Err(error) = closed {
                tracing::debug!("cannot close the Secret Service connection: {error}");
            }
        }
    }
}

impl SecretServiceConnection {
    /// The connection to the Secret Service on the session bus that `environment` names:
    /// the one this process made first, or else a new one, not yet connected. Nothing here
    /// waits on D-Bus: the connection is made, and the Secret Service checked
    /// ([`SecretServiceConnection::ensure_usable`]), by the first operation, which runs off
    /// the async runtime's workers. Like libsecret's, the connection lasts as long as the
    /// process, so that a credential built per request does not pay for a connection, a key
    /// exchange and a check (milliseconds) each time.
    pub(crate) fn shared(environment: &dyn Environment) -> std::io::Result<Arc<Self>> {
        static OPEN: Mutex<Vec<Arc<SecretServiceConnection>>> = Mutex::new(Vec::new());
        let bus_address = session_bus_address(environment)?;
        let lock = || {
            OPEN.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let find = |open: &[Arc<Self>]| {
            open.iter()
                .find(|connection| connection.bus_address == bus_address)
                .cloned()
        };
        if let Some(connection) = find(&lock()) {
            return Ok(connection);
        }
        let mut open = lock();
        if let Some(opened_meanwhile) = find(&open) {
            return Ok(opened_meanwhile);
        }
        let connection = Arc::new(Self::new(bus_address));
        open.push(connection.clone());
        Ok(connection)
    }

    /// A connection to the bus at `bus_address`, made by its first operation.
    fn new(bus_address: String) -> Self {
        Self {
            bus_address,
            state: Mutex::new(State::default()),
        }
    }

    /// Checks, once it has succeeded, that the Secret Service can store the cache without a
    /// prompt: its default collection exists and is unlocked. Blocks the calling thread for a
    /// few milliseconds the first time; a Secret Service that does not answer costs
    /// [`OPERATION_DEADLINE`] (twice at most) and is then left alone for [`COOL_DOWN`], its
    /// checks failing at once meanwhile.
    pub(crate) fn ensure_usable(&self) -> std::io::Result<()> {
        let usable = |state: &Mutex<State>| {
            state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .usable
        };
        if usable(&self.state) {
            return Ok(());
        }
        self.check_usable()?;
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .usable = true;
        Ok(())
    }

    /// Connects to the Secret Service on the session bus that `environment` names, and checks
    /// that it can store the cache without a prompt: its default collection exists and is
    /// unlocked. Blocks the calling thread for a few milliseconds; a Secret Service that
    /// does not answer costs a few times [`OPERATION_DEADLINE`] at most.
    pub(crate) fn open(environment: &dyn Environment) -> std::io::Result<Self> {
        let connection = Self::new(session_bus_address(environment)?);
        // Blocking D-Bus calls panic on a thread that runs async tasks, where credentials are
        // often built: the check runs on a thread of its own.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("entra-identity-secret-service".to_owned())
            .spawn(move || {
                let checked = connection.ensure_usable();
                // The receiver is gone only if the wait below gave up.
                let _ = sender.send(checked.map(|()| connection));
            })
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    ContextError::new("cannot start a thread to reach the Secret Service", error),
                )
            })?;
        // Connecting and the check each have their deadline, and may each run twice.
        receiver.recv_timeout(OPERATION_DEADLINE * 4).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the Secret Service did not answer in time",
            )
        })?
    }

    /// The cache stored under `schema` (`<name>.nocae` or `<name>.cae`), if there is one.
    pub(crate) fn load(&self, schema: &str) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
        self.with_service(|service| {
            let found = service.search_items(attributes(schema))?;
            if found.unlocked.is_empty() && !found.locked.is_empty() {
                return Err(secret_service::Error::Locked);
            }
            match found.unlocked.as_slice() {
                [] => Ok(None),
                [only] => Ok(Some(Zeroizing::new(only.get_secret()?))),
                several => {
                    // Other collections hold one too: the default collection's is the one
                    // written, by libsecret as by this module.
                    let default = service.get_default_collection()?;
                    let preferred = several
                        .iter()
                        .find(|item| {
                            item.item_path
                                .as_str()
                                .starts_with(&format!("{}/", default.collection_path.as_str()))
                        })
                        .unwrap_or(&several[0]);
                    Ok(Some(Zeroizing::new(preferred.get_secret()?)))
                }
            }
        })
    }

    /// Stores `document` under `schema`, replacing what was there.
    pub(crate) fn save(&self, schema: &str, document: &[u8]) -> std::io::Result<()> {
        self.with_service(|service| {
            let collection = service.get_default_collection()?;
            if collection.is_locked()? {
                return Err(secret_service::Error::Locked);
            }
            collection.create_item(LABEL, attributes(schema), document, true, CONTENT_TYPE)?;
            Ok(())
        })
    }

    fn check_usable(&self) -> std::io::Result<()> {
        self.with_service(|service| {
            let collection = service.get_default_collection()?;
            if collection.is_locked()? {
                return Err(secret_service::Error::Locked);
            }
            Ok(())
        })
    }

    /// Runs `operation` on the connection, connecting first if needed, within
    /// [`OPERATION_DEADLINE`]. A failed connection is dropped, so the next operation starts
    /// afresh (the Secret Service may have restarted); an operation that found it broken
    /// runs once more at once.
    fn with_service<T>(
        &self,
        operation: impl Fn(&SecretService<'static>) -> Result<T, secret_service::Error>,
    ) -> std::io::Result<T> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = state.resting_until {
            if Instant::now() < until {
                return Err(overran());
            }
            state.resting_until = None;
        }
        let was_connected = state.connected.is_some();
        let mut outcome = self.run(&mut state, &operation);
        if was_connected && outcome.as_ref().is_err_and(is_connection_failure) {
            outcome = self.run(&mut state, &operation);
        }
        outcome.map_err(Into::into)
    }

    fn run<T>(
        &self,
        state: &mut State,
        operation: &impl Fn(&SecretService<'static>) -> Result<T, secret_service::Error>,
    ) -> Result<T, Failure> {
        let connected = match state.connected.take() {
            Some(connected) => connected,
            None => connect(&self.bus_address)?,
        };
        let (finished, outcome) = within_deadline(&connected.bus, || operation(&connected.service));
        match outcome {
            Err(error) if !finished => {
                state.resting_until = Some(Instant::now() + COOL_DOWN);
                tracing::warn!(
                    "the Secret Service did not finish within {OPERATION_DEADLINE:?} (a prompt?): \
                     its connection was closed, and it is left alone for {COOL_DOWN:?}: {error}"
                );
                Err(Failure::Overran)
            }
            Err(error) => {
                if !is_broken(&error) {
                    state.connected = Some(connected);
                }
                Err(Failure::Service(error))
            }
            Ok(value) => {
                state.connected = Some(connected);
                Ok(value)
            }
        }
    }
}

/// Why an operation failed.
#[derive(Debug)]
enum Failure {
    Service(secret_service::Error),
    /// Connecting or the operation took longer than [`OPERATION_DEADLINE`].
    Overran,
    /// No thread could be started to connect.
    NoThread(std::io::Error),
}

impl From<Failure> for std::io::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Service(error) => describe(error),
            Failure::Overran => overran(),
            Failure::NoThread(error) => error,
        }
    }
}

/// Connects on a thread of its own, so that a bus that accepts the connection and then
/// says nothing costs [`OPERATION_DEADLINE`], not forever.
fn connect(bus_address: &str) -> Result<Connected, Failure> {
    let bus_address = bus_address.to_owned();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("entra-identity-secret-service".to_owned())
        .spawn(move || {
            let connected = (|| {
                let bus = zbus::blocking::connection::Builder::address(bus_address.as_str())?
                    .method_timeout(CALL_TIMEOUT)
                    .build()?;
                // The secret travels encrypted over the bus, under a key agreed for this
                // session.
                let service =
                    SecretService::connect_with_existing(EncryptionType::Dh, bus.clone())?;
                Ok(Connected { service, bus })
            })();
            // The receiver is gone only when the wait below timed out; the connection, if
            // any, is then dropped here, on this thread.
            let _ = sender.send(connected);
        })
        .map_err(Failure::NoThread)?;
    match receiver.recv_timeout(OPERATION_DEADLINE) {
        Ok(connected) => connected.map_err(Failure::Service),
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Err(Failure::Overran),
    }
}

/// Runs `operation`, closing `bus` if it is still running after [`OPERATION_DEADLINE`]: a
/// prompt's wait for its answer then ends. Returns whether it finished in time.
fn within_deadline<T>(
    bus: &zbus::blocking::Connection,
    operation: impl FnOnce() -> T,
) -> (bool, T) {
    let (finished, wait) = std::sync::mpsc::channel::<()>();
    let bus = bus.clone();
    let watchdog = std::thread::Builder::new()
        .name("entra-identity-secret-service".to_owned())
        .spawn(move || match wait.recv_timeout(OPERATION_DEADLINE) {
            Err(RecvTimeoutError::Timeout) => {
                let _ = bus.close();
                false
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        });
    let outcome = operation();
    drop(finished);
    let in_time = match watchdog {
        Ok(watchdog) => watchdog.join().unwrap_or(true),
        // Without a watchdog the operation ran unguarded, and it did finish.
        Err(_) => true,
    };
    (in_time, outcome)
}

/// The session bus: `DBUS_SESSION_BUS_ADDRESS`, or else the socket systemd places at
/// `$XDG_RUNTIME_DIR/bus`.
fn session_bus_address(environment: &dyn Environment) -> std::io::Result<String> {
    if let Some(address) = environment
        .var("DBUS_SESSION_BUS_ADDRESS")
        .filter(|address| !address.is_empty())
    {
        return Ok(address);
    }
    if let Some(runtime_dir) = environment
        .var("XDG_RUNTIME_DIR")
        .filter(|dir| !dir.is_empty())
    {
        let socket = std::path::Path::new(&runtime_dir).join("bus");
        if socket.exists() {
            return Ok(format!("unix:path={}", socket.display()));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "there is no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set), so no Secret \
         Service",
    ))
}

fn attributes(schema: &str) -> HashMap<&str, &str> {
    HashMap::from([(SCHEMA_ATTRIBUTE, schema), CLIENT_ATTRIBUTE])
}

/// Whether the connection that gave `error` is no good any more.
fn is_broken(error: &secret_service::Error) -> bool {
    matches!(
        error,
        secret_service::Error::Zbus(_)
            | secret_service::Error::ZbusFdo(_)
            | secret_service::Error::Unavailable
            | secret_service::Error::PromptDisconnected
    )
}

/// Whether an operation that failed so is worth one more try on a new connection.
fn is_connection_failure(failure: &Failure) -> bool {
    matches!(failure, Failure::Service(error) if is_broken(error))
}

fn overran() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the Secret Service did not finish within {OPERATION_DEADLINE:?} (it may have asked \
             for a prompt, which a service cannot answer); it is left alone for {COOL_DOWN:?}"
        ),
    )
}

fn describe(error: secret_service::Error) -> std::io::Error {
    match error {
        secret_service::Error::Locked => std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the Secret Service's default keyring is locked; unlock it (for example with \
             `gnome-keyring-daemon --unlock`) so the token cache can be read without a prompt",
        ),
        secret_service::Error::NoResult => std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the Secret Service has no default keyring",
        ),
        secret_service::Error::Prompt | secret_service::Error::PromptDisconnected => {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the Secret Service asked for a prompt, which a service cannot answer",
            )
        }
        // The Secret Service's error, and the D-Bus error behind it, are the source.
        other => std::io::Error::other(ContextError::new("the Secret Service failed", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::MapEnvironment;

    #[test]
    fn the_bus_comes_from_the_environment() {
        let named = MapEnvironment::new().with("DBUS_SESSION_BUS_ADDRESS", "unix:path=/x/bus");
        assert_eq!(
            session_bus_address(&named).expect("named"),
            "unix:path=/x/bus"
        );
        let dir = tempfile::tempdir().expect("dir");
        let runtime = MapEnvironment::new().with("XDG_RUNTIME_DIR", dir.path().to_string_lossy());
        assert!(
            session_bus_address(&runtime).is_err(),
            "no socket in the runtime directory"
        );
        std::fs::write(dir.path().join("bus"), b"").expect("socket stand-in");
        assert_eq!(
            session_bus_address(&runtime).expect("the socket"),
            format!("unix:path={}", dir.path().join("bus").display())
        );
        assert!(session_bus_address(&MapEnvironment::new()).is_err());
    }

    #[test]
    fn a_bus_that_is_not_there_is_a_clear_error_not_a_hang() {
        let dir = tempfile::tempdir().expect("dir");
        let environment = MapEnvironment::new().with(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", dir.path().join("missing").display()),
        );
        let error = SecretServiceConnection::open(&environment).expect_err("no bus");
        assert!(!error.to_string().is_empty());
    }

    #[test]
    fn items_carry_msal_extensions_attributes() {
        let found = attributes("msal.cache.nocae");
        assert_eq!(found.get("xdg:schema"), Some(&"msal.cache.nocae"));
        assert_eq!(
            found.get("MsalClientID"),
            Some(&"Microsoft.Developer.IdentityService")
        );
        assert_eq!(found.len(), 2);
    }
}
