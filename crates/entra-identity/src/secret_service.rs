//! The Linux Secret Service (GNOME Keyring, KWallet, KeePassXC) as the encrypted store of the
//! persistent token cache.
//!
//! The cache is kept the way msal-extensions keeps it through libsecret, so Python
//! azure-identity and msal on the same machine share it: one item per cache in the default
//! collection, labelled `MSALCache`, with the attributes `xdg:schema = <name>.nocae|.cae` and
//! `MsalClientID = Microsoft.Developer.IdentityService`, holding the whole unified-cache JSON.
//!
//! Nothing here ever shows a prompt: a server has no one to answer it, and waiting for a prompt
//! would hang a token request. A locked keyring is reported as an error instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use secret_service::EncryptionType;
use secret_service::blocking::SecretService;
use zeroize::Zeroizing;

use crate::environment::Environment;

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

/// A connection to the session bus's Secret Service, made when first needed and made again
/// after a failure.
pub(crate) struct SecretServiceConnection {
    bus_address: String,
    service: Mutex<Option<SecretService<'static>>>,
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
        let service = self
            .service
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        // Closing a blocking D-Bus connection blocks on zbus' own runtime, which panics
        // inside an async task, where credentials are usually dropped; a thread of its own
        // closes it instead.
        if let Some(service) = service {
            let closed = std::thread::Builder::new()
                .name("entra-identity-secret-service".to_owned())
                .spawn(move || drop(service));
            if let Err(error) = closed {
                tracing::debug!("cannot close the Secret Service connection: {error}");
            }
        }
    }
}

impl SecretServiceConnection {
    /// Connects to the Secret Service on the session bus that `environment` names, and checks
    /// that it can store the cache without a prompt: its default collection exists and is
    /// unlocked.
    ///
    /// The check runs on a thread of its own, so that it neither blocks an async runtime
    /// that builds a credential nor waits longer than a few seconds for a silent bus.
    pub(crate) fn open(environment: &dyn Environment) -> Result<Self, String> {
        let bus_address = session_bus_address(environment)?;
        let connection = Self {
            bus_address,
            service: Mutex::new(None),
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("entra-identity-secret-service".to_owned())
            .spawn(move || {
                let checked = connection.check_usable();
                // The receiver is gone only when the wait below timed out.
                let _ = sender.send(checked.map(|()| connection));
            })
            .map_err(|error| {
                format!("cannot start a thread to reach the Secret Service: {error}")
            })?;
        let outcome = receiver
            .recv_timeout(CALL_TIMEOUT * 2)
            .map_err(|_| "the Secret Service did not answer in time".to_owned())?;
        // The thread has finished its work once it sent the outcome.
        let _ = thread.join();
        outcome
    }

    /// The cache stored under `schema` (`<name>.nocae` or `<name>.cae`), if there is one.
    pub(crate) fn load(&self, schema: &str) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
        self.with_service(|service| {
            let found = service.search_items(attributes(schema))?;
            if found.unlocked.is_empty() && !found.locked.is_empty() {
                return Err(secret_service::Error::Locked);
            }
            if let [only] = found.unlocked.as_slice() {
                return Ok(Some(Zeroizing::new(only.get_secret()?)));
            }
            // Several collections may hold one: the newest wins.
            let mut newest = None;
            for item in &found.unlocked {
                let modified = item.get_modified()?;
                if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
                    newest = Some((modified, item));
                }
            }
            match newest {
                Some((_, item)) => Ok(Some(Zeroizing::new(item.get_secret()?))),
                None => Ok(None),
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

    fn check_usable(&self) -> Result<(), String> {
        self.with_service(|service| {
            let collection = service.get_default_collection()?;
            if collection.is_locked()? {
                return Err(secret_service::Error::Locked);
            }
            Ok(())
        })
        .map_err(|error| error.to_string())
    }

    /// Runs `operation` on the connection, connecting first if needed. A failed operation
    /// drops the connection, so the next one starts afresh (the Secret Service may have
    /// restarted); it runs once more at once when the failure was the connection's.
    fn with_service<T>(
        &self,
        operation: impl Fn(&SecretService<'static>) -> Result<T, secret_service::Error>,
    ) -> std::io::Result<T> {
        let mut slot = self
            .service
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let was_connected = slot.is_some();
        let mut outcome = self.run(&mut slot, &operation);
        if was_connected && outcome.as_ref().is_err_and(is_connection_failure) {
            outcome = self.run(&mut slot, &operation);
        }
        outcome.map_err(describe)
    }

    fn run<T>(
        &self,
        slot: &mut Option<SecretService<'static>>,
        operation: &impl Fn(&SecretService<'static>) -> Result<T, secret_service::Error>,
    ) -> Result<T, secret_service::Error> {
        let service = match slot.take() {
            Some(service) => service,
            None => self.connect()?,
        };
        let outcome = operation(&service);
        if !outcome.as_ref().is_err_and(is_connection_failure) {
            *slot = Some(service);
        }
        outcome
    }

    fn connect(&self) -> Result<SecretService<'static>, secret_service::Error> {
        let bus = zbus::blocking::connection::Builder::address(self.bus_address.as_str())?
            .method_timeout(CALL_TIMEOUT)
            .build()?;
        // The secret travels encrypted over the bus, under a key agreed for this session.
        SecretService::connect_with_existing(EncryptionType::Dh, bus)
    }
}

/// The session bus: `DBUS_SESSION_BUS_ADDRESS`, or else the socket systemd places at
/// `$XDG_RUNTIME_DIR/bus`.
fn session_bus_address(environment: &dyn Environment) -> Result<String, String> {
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
    Err(
        "there is no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set), so no Secret \
         Service"
            .to_owned(),
    )
}

fn attributes(schema: &str) -> HashMap<&str, &str> {
    HashMap::from([(SCHEMA_ATTRIBUTE, schema), CLIENT_ATTRIBUTE])
}

fn is_connection_failure(error: &secret_service::Error) -> bool {
    matches!(
        error,
        secret_service::Error::Zbus(_)
            | secret_service::Error::ZbusFdo(_)
            | secret_service::Error::Unavailable
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
        other => std::io::Error::other(format!("Secret Service: {other}")),
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
            session_bus_address(&named).as_deref(),
            Ok("unix:path=/x/bus")
        );
        let dir = tempfile::tempdir().expect("dir");
        let runtime = MapEnvironment::new().with("XDG_RUNTIME_DIR", dir.path().to_string_lossy());
        assert!(
            session_bus_address(&runtime).is_err(),
            "no socket in the runtime directory"
        );
        std::fs::write(dir.path().join("bus"), b"").expect("socket stand-in");
        assert_eq!(
            session_bus_address(&runtime),
            Ok(format!("unix:path={}", dir.path().join("bus").display()))
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
        assert!(!error.is_empty());
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
