//! A token cache in MSAL's unified cache format, shared with Python azure-identity and msal,
//! and safe for several processes: writes happen under msal-extensions' `.lockfile` protocol.
//! The cache lives in a file, replaced atomically, or encrypted in the platform's secret store
//! with the file kept empty as the signal whose time tells other processes it changed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, Value, json};

/// The largest cache document read: far beyond what pruning leaves, short of what would hurt.
const MAX_DOCUMENT_BYTES: u64 = 128 << 20;
use zeroize::{Zeroize as _, Zeroizing};

/// How long a writer waits for the lock before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// A lock file older than this was left by a process that died holding it, even when nothing
/// else tells (its writer took no OS lock, or its pid was reused by another process).
const STALE_LOCK: Duration = Duration::from_secs(60);
/// How often a waiting writer looks at the lock again.
const LOCK_POLL: Duration = Duration::from_millis(5);

/// An access token as the unified cache stores it.
#[derive(Clone, Debug)]
pub(crate) struct CachedAccessToken {
    pub(crate) secret: String,
    pub(crate) expires_on: i64,
    pub(crate) refresh_on: Option<i64>,
    pub(crate) token_type: String,
}

/// The platform's secret store cannot keep the cache, and it may not be kept in a file.
#[cfg(all(target_os = "linux", feature = "secret-service"))]
#[derive(Debug, thiserror::Error)]
#[error(
    "cache encryption is unavailable; set allow_unencrypted_storage to keep the cache in a \
     file only its owner can read"
)]
pub(crate) struct EncryptionUnavailable(#[source] pub(crate) std::io::Error);

/// Which entries a credential reads and writes: MSAL's `client_id` field (for on-behalf-of,
/// azure-identity's per-assertion key), `environment` (the authority host) and `realm` (the
/// tenant).
#[derive(Clone, Debug)]
pub(crate) struct EntryScope<'a> {
    pub(crate) client_key: &'a str,
    pub(crate) environment: &'a str,
    pub(crate) realm: &'a str,
}

/// One cache: plain or CAE tokens of one cache name.
#[derive(Debug)]
pub(crate) struct MsalCacheFile {
    /// The cache file, or with a secret store the signal file.
    path: PathBuf,
    lock_path: PathBuf,
    store: Store,
    /// The document as this process last read or wrote it, with the bytes it came from: a
    /// read that finds the same bytes (nobody wrote since) parses nothing, and a write
    /// changes it in place.
    parsed: Mutex<Option<Parsed>>,
    /// How many times the document was parsed (the tests count them).
    parses: AtomicUsize,
}

/// A document and the bytes it was parsed from or written as.
struct Parsed {
    bytes: Zeroizing<Vec<u8>>,
    document: Document,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The document holds secrets: its size only.
        f.debug_struct("Parsed")
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A cache document, whose strings (the secrets among them) are wiped when it is dropped.
#[derive(Default)]
pub(crate) struct Document(pub(crate) Map<String, Value>);

impl Drop for Document {
    fn drop(&mut self) {
        self.0.values_mut().for_each(wipe);
    }
}

/// Overwrites the strings in `value` with zeros.
fn wipe(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(values) => values.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// What the cache holds for a request.
#[derive(Debug, Default)]
pub(crate) struct FoundTokens {
    pub(crate) access_token: Option<CachedAccessToken>,
    pub(crate) refresh_token: Option<String>,
}

/// Where the cache's content is kept.
#[derive(Debug)]
pub(crate) enum Store {
    /// In the file itself, readable only by its owner.
    File,
    /// Encrypted by the Secret Service, under the item of this schema name; or in the file,
    /// when `allow_file` and the Secret Service was found unusable at first use.
    #[cfg(all(target_os = "linux", feature = "secret-service"))]
    SecretService {
        connection:
            std::sync::Arc<crate::cache::persistent::secret_service::SecretServiceConnection>,
        schema: String,
        allow_file: bool,
        /// Set once the cache fell back to the file, for the life of the credential.
        on_file: std::sync::atomic::AtomicBool,
    },
    /// Encrypted by the macOS Keychain, under this account.
    #[cfg(target_os = "macos")]
    Keychain { account: String },
    /// In the file itself, encrypted by Windows' Data Protection API for this user.
    #[cfg(windows)]
    DataProtection,
}

impl MsalCacheFile {
    /// The cache at `path`, or signalled by `path` when `store` keeps it elsewhere.
    pub(crate) fn new(path: PathBuf, store: Store) -> Self {
        let mut lock = path.clone().into_os_string();
        lock.push(".lockfile");
        Self {
            path,
            lock_path: PathBuf::from(lock),
            store,
            parsed: Mutex::new(None),
            parses: AtomicUsize::new(0),
        }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    fn parses(&self) -> usize {
        self.parses.load(Ordering::Relaxed)
    }

    /// A valid access token for `scopes` (a subset of the entry's), and when asked for, the
    /// entry's refresh token for them: one read of the cache, parsed only if it changed since
    /// this process last read or wrote it.
    pub(crate) fn find(
        &self,
        entry: &EntryScope<'_>,
        scopes: &[&str],
        now: i64,
        with_refresh_token: bool,
    ) -> std::io::Result<FoundTokens> {
        self.with_document(|document| FoundTokens {
            access_token: access_token_in(document, entry, scopes, now),
            refresh_token: with_refresh_token
                .then(|| refresh_token_in(document, entry, scopes))
                .flatten(),
        })
    }

    /// A valid access token for `scopes` (a subset of the entry's), if the file has one.
    pub(crate) fn find_access_token(
        &self,
        entry: &EntryScope<'_>,
        scopes: &[&str],
        now: i64,
    ) -> std::io::Result<Option<CachedAccessToken>> {
        Ok(self.find(entry, scopes, now, false)?.access_token)
    }

    /// Adds (or replaces) an access token, and a refresh token when given.
    pub(crate) fn store(
        &self,
        entry: &EntryScope<'_>,
        scopes: &[&str],
        token: &CachedAccessToken,
        refresh_token: Option<&str>,
        now: i64,
    ) -> std::io::Result<()> {
        self.modify(|document| store_tokens(document, entry, scopes, token, refresh_token, now))
    }

    /// Runs `read` on the whole cache; a missing or empty one is empty. A cache caught
    /// half-written by a writer that does not replace atomically is read again.
    fn with_document<T>(&self, read: impl FnOnce(&Map<String, Value>) -> T) -> std::io::Result<T> {
        let mut attempts = 0;
        loop {
            let bytes = self.load()?;
            let mut parsed = self
                .parsed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match self.update(&mut parsed, bytes) {
                Ok(current) => return Ok(read(&current.document.0)),
                Err(()) if attempts < 3 => {
                    drop(parsed);
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(()) => return Err(self.not_a_cache()),
            }
        }
    }

    /// Makes `parsed` the document of `bytes`, parsing them only if they are not the bytes
    /// it came from; `Err` when they are not a cache.
    fn update<'a>(
        &self,
        parsed: &'a mut Option<Parsed>,
        bytes: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<&'a Parsed, ()> {
        let bytes = bytes.unwrap_or_default();
        if parsed.as_ref().is_some_and(|parsed| parsed.bytes == bytes) {
            return parsed.as_ref().ok_or(());
        }
        let document = if bytes.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            self.parses.fetch_add(1, Ordering::Relaxed);
            parse_document(&bytes)?
        };
        Ok(parsed.insert(Parsed {
            bytes,
            document: Document(document),
        }))
    }

    fn not_a_cache(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} does not hold a token cache", self.describe()),
        )
    }

    /// Read, change and replace the cache under the lock.
    fn modify(&self, change: impl FnOnce(&mut Map<String, Value>)) -> std::io::Result<()> {
        let _lock = FileLock::acquire(&self.lock_path)?;
        // Another writer may have left a cache we cannot read; starting afresh loses only
        // what was already unreadable. A store we cannot reach is an error, though: writing
        // over it would lose everything in it.
        let mut document = match self.with_document(|_| ()) {
            Ok(()) => self
                .parsed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .map(|mut parsed| Document(std::mem::take(&mut parsed.document.0)))
                .unwrap_or_default(),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => Document::default(),
            Err(error) => return Err(error),
        };
        change(&mut document.0);
        let text = Zeroizing::new(serde_json::to_vec(&document.0)?);
        self.save(&text)?;
        *self
            .parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Parsed {
            bytes: text,
            document,
        });
        Ok(())
    }

    /// Replaces the stored cache with `text`.
    fn save(&self, text: &[u8]) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            create_private_dir(parent)?;
        }
        match &self.store {
            Store::File => self.replace_file(text),
            #[cfg(all(target_os = "linux", feature = "secret-service"))]
            Store::SecretService {
                connection, schema, ..
            } => {
                if self.on_file()? {
                    return self.replace_file(text);
                }
                connection.save(schema, text)?;
                self.signal_change()
            }
            #[cfg(target_os = "macos")]
            Store::Keychain { account } => {
                crate::cache::persistent::platform_store::keychain::save(account, text)?;
                self.signal_change()
            }
            #[cfg(windows)]
            Store::DataProtection => self.replace_file(
                &crate::cache::persistent::platform_store::data_protection::protect(text)?,
            ),
        }
    }

    /// The cache's bytes, or `None` when there is no cache yet.
    fn load(&self) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
        match &self.store {
            Store::File => self.load_file(),
            #[cfg(all(target_os = "linux", feature = "secret-service"))]
            Store::SecretService {
                connection, schema, ..
            } => {
                if self.on_file()? {
                    return self.load_file();
                }
                connection.load(schema)
            }
            #[cfg(target_os = "macos")]
            Store::Keychain { account } => {
                crate::cache::persistent::platform_store::keychain::load(account)
            }
            #[cfg(windows)]
            Store::DataProtection => match std::fs::read(&self.path) {
                Ok(sealed) if sealed.is_empty() => Ok(None),
                Ok(sealed) => {
                    crate::cache::persistent::platform_store::data_protection::unprotect(&sealed)
                        .map(Some)
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error),
            },
        }
    }

    fn load_file(&self) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let too_large = || {
            // Not `InvalidData`, which a writer replaces: a cache this large may be another
            // program's, and is left as it is.
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the token cache {} is larger than {} MiB: not a cache this crate reads",
                    self.path.display(),
                    MAX_DOCUMENT_BYTES >> 20
                ),
            )
        };
        // The length first, so that a huge file is refused without reading it; the read is
        // bounded too, for files whose length says nothing (devices, pipes).
        if file.metadata()?.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        let mut bytes = Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(
            &mut std::io::Read::take(&file, MAX_DOCUMENT_BYTES + 1),
            &mut bytes,
        )?;
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        Ok(Some(bytes))
    }

    /// Whether a cache kept by the Secret Service is in the file instead, as allowed, the
    /// Secret Service having been found unusable when first used; an error when it is
    /// unusable and the file is not allowed. The first call connects, which blocks: it runs
    /// on the blocking pool, never at build time.
    #[cfg(all(target_os = "linux", feature = "secret-service"))]
    fn on_file(&self) -> std::io::Result<bool> {
        let Store::SecretService {
            connection,
            allow_file,
            on_file,
            ..
        } = &self.store
        else {
            return Ok(matches!(self.store, Store::File));
        };
        if on_file.load(Ordering::Relaxed) {
            return Ok(true);
        }
        match connection.ensure_usable() {
            Ok(()) => Ok(false),
            Err(reason) if *allow_file => {
                tracing::info!(
                    "the token cache is stored unencrypted in {}, as allowed: encryption is \
                     unavailable: {}",
                    self.path.display(),
                    crate::error::Chain(&reason)
                );
                on_file.store(true, Ordering::Relaxed);
                Ok(true)
            }
            Err(reason) => Err(std::io::Error::new(
                reason.kind(),
                EncryptionUnavailable(reason),
            )),
        }
    }

    /// msal-extensions reloads a cache kept in a secret store when its signal file's time
    /// changes: the file is touched, as msal-extensions does, never emptied, since a process
    /// without the secret store may keep its allowed plaintext cache there.
    #[cfg(any(
        all(target_os = "linux", feature = "secret-service"),
        target_os = "macos"
    ))]
    fn signal_change(&self) -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        options.open(&self.path)?.set_modified(SystemTime::now())
    }

    fn describe(&self) -> String {
        match &self.store {
            Store::File => self.path.display().to_string(),
            #[cfg(all(target_os = "linux", feature = "secret-service"))]
            Store::SecretService {
                schema, on_file, ..
            } => {
                if on_file.load(Ordering::Relaxed) {
                    self.path.display().to_string()
                } else {
                    format!("the Secret Service item {schema}")
                }
            }
            #[cfg(target_os = "macos")]
            Store::Keychain { account } => format!("the Keychain item {account}"),
            #[cfg(windows)]
            Store::DataProtection => self.path.display().to_string(),
        }
    }

    fn replace_file(&self, text: &[u8]) -> std::io::Result<()> {
        let mut temp_name = self.path.clone().into_os_string();
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = PathBuf::from(temp_name);
        {
            let mut file = private_file(&temp)?;
            // No fsync: the rename keeps other processes from ever seeing half a file, and a
            // lost cache after a power cut costs only new token requests.
            file.write_all(text)?;
        }
        std::fs::rename(&temp, &self.path)
    }
}

/// msal-extensions' lock: the exclusive creation of `<cache>.lockfile`, holding
/// `"<pid> <argv0>"`, removed when done. Like msal-extensions (whose portalocker takes
/// `LOCK_EX` on the file), the holder also keeps an OS lock on the file, which the kernel
/// releases when the holder dies, however it dies.
///
/// A lock file that outlived its writer is broken at once: when no process holds its OS lock
/// and the process it names is gone (or, on a platform without these checks, when it is older
/// than [`STALE_LOCK`]). A lock held by a live writer is waited for, up to [`LOCK_TIMEOUT`].
struct FileLock {
    path: PathBuf,
    /// Open while the lock is held, with the OS lock on it.
    file: std::fs::File,
}

/// What a waiting writer makes of a lock file it found taken.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// A live writer holds it: wait.
    Alive,
    /// Its writer is gone: it may be broken.
    Gone,
}

impl FileLock {
    fn acquire(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        let started = Instant::now();
        loop {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            match options.open(path) {
                Ok(mut file) => {
                    // A writer that finds the file before the OS lock is on it sees it empty
                    // and young, and leaves it alone; it may hold the OS lock for a moment
                    // while looking, which this waits out.
                    lock_exclusively(&file);
                    let program = std::env::args().next().unwrap_or_default();
                    // The pid tells waiters whether the holder is alive; without it they wait
                    // for the lock file to age.
                    let _ = write!(file, "{} {program}", std::process::id());
                    return Ok(Self {
                        path: path.to_owned(),
                        file,
                    });
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    if break_if_stale(path) {
                        continue;
                    }
                    if started.elapsed() > LOCK_TIMEOUT {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the token cache lock {} stayed taken", path.display()),
                        ));
                    }
                    std::thread::sleep(LOCK_POLL);
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Removed before the OS lock goes (when `file` closes), and only if it is still this
        // lock's file.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes the lock file at `path` if the writer that took it is gone; returns whether the lock
/// can be tried again at once (broken, or already released).
fn break_if_stale(path: &Path) -> bool {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return true,
        Err(_) => return false,
    };
    // Holding the OS lock while deciding keeps two waiters from breaking it together: the
    // second finds the file gone or replaced.
    let os_lock = try_lock_exclusively(&file);
    if os_lock == Some(false) {
        return false;
    }
    let mut content = String::new();
    let _ = std::io::Read::read_to_string(&mut (&file), &mut content);
    let pid = content
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse::<u32>().ok());
    let age = file
        .metadata()
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .unwrap_or_default();
    // This process's writers hold the OS lock: a file naming this process without it was left
    // by an earlier process of the same pid (as in containers, where pids start afresh).
    let state = pid.map(|pid| {
        if pid == std::process::id() {
            Some(Holder::Gone)
        } else {
            process_state(pid)
        }
    });
    let holder = match state {
        // Nobody holds the OS lock and the process it names is gone: it crashed holding it.
        // (A writer that only just created the file has not written its pid yet.)
        Some(Some(Holder::Gone)) if os_lock == Some(true) => Holder::Gone,
        // Writers that take no OS lock (older ones), a pid reused by another process, a
        // platform without the checks: only age tells.
        _ if age > STALE_LOCK => Holder::Gone,
        _ => Holder::Alive,
    };
    if holder == Holder::Alive || !same_file(&file, path) {
        return false;
    }
    tracing::warn!(
        "breaking the token cache lock {} left by a writer that is gone (process {})",
        path.display(),
        pid.map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
    );
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Takes the OS lock on a lock file this process just created: waits while another process
/// holds it for a moment to look at the file. A file system without OS locks goes without.
fn lock_exclusively(file: &std::fs::File) {
    #[cfg(unix)]
    {
        let _ = rustix::fs::flock(file, rustix::fs::FlockOperation::LockExclusive);
    }
    #[cfg(not(unix))]
    let _ = file;
}

/// Whether the OS lock on `file` could be taken (`Some(false)`: another process holds it;
/// `None`: it cannot be known here).
fn try_lock_exclusively(file: &std::fs::File) -> Option<bool> {
    #[cfg(unix)]
    {
        match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Some(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Some(false),
            Err(_) => None,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

/// Whether the process `pid` is alive (`None`: it cannot be known here).
fn process_state(pid: u32) -> Option<Holder> {
    #[cfg(unix)]
    {
        let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
        match rustix::process::test_kill_process(pid) {
            // Alive, perhaps as another user's process.
            Ok(()) | Err(rustix::io::Errno::PERM) => Some(Holder::Alive),
            Err(rustix::io::Errno::SRCH) => Some(Holder::Gone),
            Err(_) => None,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        None
    }
}

/// Whether `path` still names the open `file`.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// The cache document in `bytes` (not empty): a JSON object, or `Err` when they are not a
/// cache (whatever was parsed of them is wiped).
pub(crate) fn parse_document(bytes: &[u8]) -> Result<Map<String, Value>, ()> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(mut other) => {
            wipe(&mut other);
            Err(())
        }
        Err(_) => Err(()),
    }
}

/// Adds (or replaces) an access token in `document`, and a refresh token when given, then
/// prunes what no reader can use any more.
pub(crate) fn store_tokens(
    document: &mut Map<String, Value>,
    entry: &EntryScope<'_>,
    scopes: &[&str],
    token: &CachedAccessToken,
    refresh_token: Option<&str>,
    now: i64,
) {
    let mut sorted: Vec<&str> = scopes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let target = sorted.join(" ");
    let key = format!(
        "-{}-accesstoken-{}-{}-{}",
        entry.environment, entry.client_key, entry.realm, target
    )
    .to_lowercase();
    let mut access = json!({
        "credential_type": "AccessToken",
        "secret": token.secret,
        "home_account_id": Value::Null,
        "environment": entry.environment,
        "client_id": entry.client_key,
        "target": target,
        "realm": entry.realm,
        "token_type": token.token_type,
        "cached_at": now.to_string(),
        "expires_on": token.expires_on.to_string(),
        "extended_expires_on": token.expires_on.to_string(),
    });
    if let Some(refresh_on) = token.refresh_on {
        access["refresh_on"] = json!(refresh_on.to_string());
    }
    section(document, "AccessToken").insert(key, access);
    if let Some(refresh_token) = refresh_token {
        let key = format!(
            "-{}-refreshtoken-{}--{}",
            entry.environment, entry.client_key, target
        )
        .to_lowercase();
        section(document, "RefreshToken").insert(
            key,
            json!({
                "credential_type": "RefreshToken",
                "secret": refresh_token,
                "home_account_id": Value::Null,
                "environment": entry.environment,
                "client_id": entry.client_key,
                "target": target,
                "last_modification_time": now.to_string(),
            }),
        );
    }
    prune(document, now);
}

/// A valid access token for `scopes` in `document`. Entries without a secret (written by
/// something else, or damaged) are passed over: they must not hide a usable token.
pub(crate) fn access_token_in(
    document: &Map<String, Value>,
    entry: &EntryScope<'_>,
    scopes: &[&str],
    now: i64,
) -> Option<CachedAccessToken> {
    let tokens = document.get("AccessToken").and_then(Value::as_object)?;
    let token = tokens.values().filter_map(Value::as_object).find(|token| {
        text(token, "credential_type") == Some("AccessToken")
            && text(token, "secret").is_some()
            && text(token, "client_id") == Some(entry.client_key)
            && text(token, "realm").is_some_and(|realm| realm.eq_ignore_ascii_case(entry.realm))
            && text(token, "environment").is_some_and(|env| same_host(env, entry.environment))
            && covers(text(token, "target"), scopes)
            && number(token, "expires_on").is_some_and(|expires_on| expires_on > now)
    })?;
    Some(CachedAccessToken {
        secret: text(token, "secret")?.to_owned(),
        expires_on: number(token, "expires_on")?,
        refresh_on: number(token, "refresh_on"),
        token_type: text(token, "token_type").unwrap_or("Bearer").to_owned(),
    })
}

/// The refresh token for `scopes` under the entry's key in `document`, if exactly one matches
/// (entries without a secret are passed over).
pub(crate) fn refresh_token_in(
    document: &Map<String, Value>,
    entry: &EntryScope<'_>,
    scopes: &[&str],
) -> Option<String> {
    let tokens = document.get("RefreshToken").and_then(Value::as_object)?;
    let mut matching = tokens
        .values()
        .filter_map(Value::as_object)
        .filter(|token| {
            text(token, "secret").is_some()
                && text(token, "client_id") == Some(entry.client_key)
                && text(token, "environment").is_some_and(|env| same_host(env, entry.environment))
                && covers(text(token, "target"), scopes)
        });
    // azure-identity redeems a refresh token only when exactly one matches.
    match (matching.next(), matching.next()) {
        (Some(token), None) => text(token, "secret").map(str::to_owned),
        _ => None,
    }
}

/// How long past its expiry an access token stays in the cache: writers whose clocks lag ours
/// by less than this never see a token of theirs vanish before it expired for them. (MSAL
/// Python itself removes access tokens the moment they expire, when it searches.)
const EXPIRED_KEPT_FOR: i64 = 5 * 60;

/// How long an on-behalf-of refresh token stays unused before it is removed: the longest an
/// Entra ID access token lives (28 hours, for CAE-capable tokens). Such a token is found
/// only with the user assertion it was obtained for, which is itself an access token: after
/// that long the assertion has expired and no one can present it again.
const ON_BEHALF_OF_REFRESH_TOKEN_KEPT_FOR: i64 = 28 * 60 * 60;

/// Removes what no reader can use any more, so that a cache shared by many users does not grow
/// forever: access tokens expired (for [`EXPIRED_KEPT_FOR`]), whoever wrote them, and this
/// crate's on-behalf-of refresh tokens unused for [`ON_BEHALF_OF_REFRESH_TOKEN_KEPT_FOR`].
/// Other refresh tokens, accounts and ID tokens are left alone: MSAL's refresh tokens of
/// signed-in users last for months without an access token beside them, and only an
/// interactive sign-in could replace one.
fn prune(document: &mut Map<String, Value>, now: i64) {
    let removed = |token: &mut Value| {
        wipe(token);
        false
    };
    if let Some(Value::Object(tokens)) = document.get_mut("AccessToken") {
        tokens.retain(|_, token| {
            let expired = token
                .as_object()
                .and_then(|token| number(token, "expires_on"))
                .is_some_and(|expires_on| expires_on.saturating_add(EXPIRED_KEPT_FOR) < now);
            !expired || removed(token)
        });
    }
    if let Some(Value::Object(tokens)) = document.get_mut("RefreshToken") {
        tokens.retain(|_, token| {
            let unused = token.as_object().is_some_and(|token| {
                text(token, "client_id").is_some_and(is_on_behalf_of_key)
                    && token.get("home_account_id").is_none_or(Value::is_null)
                    && number(token, "last_modification_time").is_some_and(|written| {
                        written.saturating_add(ON_BEHALF_OF_REFRESH_TOKEN_KEPT_FOR) < now
                    })
            });
            !unused || removed(token)
        });
    }
}

/// Whether an entry's `client_id` is this crate's on-behalf-of key,
/// `<client id>:obo:<SHA-256 of the user assertion, hex>:<authority>:<tenant>`, which no
/// MSAL writes.
fn is_on_behalf_of_key(client_id: &str) -> bool {
    client_id.split_once(":obo:").is_some_and(|(_, rest)| {
        rest.split_once(':').is_some_and(|(hash, _)| {
            hash.len() == 64 && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
        })
    })
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path)
}

fn section<'a>(document: &'a mut Map<String, Value>, name: &str) -> &'a mut Map<String, Value> {
    let value = document
        .entry(name)
        .or_insert_with(|| Value::Object(Map::new()));
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    // Invariant: the value was made an object just above.
    value.as_object_mut().expect("a cache section is an object")
}

fn text<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

/// Timestamps are strings of integers in the unified cache; numbers are accepted too.
fn number(object: &Map<String, Value>, name: &str) -> Option<i64> {
    match object.get(name)? {
        Value::String(text) => text.trim().parse().ok(),
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// MSAL writes the authority's host name, without a port, as the environment.
fn same_host(stored: &str, ours: &str) -> bool {
    let host = |value: &str| {
        value
            .rsplit_once(':')
            .map_or(value, |(host, _)| host)
            .to_ascii_lowercase()
    };
    host(stored) == host(ours)
}

/// Whether an entry's space-separated `target` holds every requested scope (case-sensitive,
/// as MSAL compares).
fn covers(target: Option<&str>, scopes: &[&str]) -> bool {
    let Some(target) = target else { return false };
    let held: Vec<&str> = target.split(' ').collect();
    scopes.iter().all(|scope| held.contains(scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> EntryScope<'static> {
        EntryScope {
            client_key: "client",
            environment: "login.example",
            realm: "tenant",
        }
    }

    fn token(secret: &str, expires_on: i64) -> CachedAccessToken {
        CachedAccessToken {
            secret: secret.into(),
            expires_on,
            refresh_on: Some(expires_on - 60),
            token_type: "Bearer".into(),
        }
    }

    #[test]
    fn a_cache_file_beyond_the_size_cap_is_refused_unread_and_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("msal.cache.nocae");
        // Sparse: its length is all there is to it.
        std::fs::File::create(&path)
            .and_then(|file| file.set_len(MAX_DOCUMENT_BYTES + 1))
            .expect("a huge file");
        let file = MsalCacheFile::new(path.clone(), Store::File);
        let error = file
            .find_access_token(&entry(), &["a"], 0)
            .expect_err("too large");
        assert_eq!(error.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(error.to_string().contains("larger than 128 MiB"), "{error}");
        file.store(&entry(), &["a"], &token("AT", 2000), None, 1000)
            .expect_err("a write reads the cache first");
        assert_eq!(
            std::fs::metadata(&path).expect("kept").len(),
            MAX_DOCUMENT_BYTES + 1,
            "what is refused is left as it is"
        );
    }

    #[test]
    fn tokens_round_trip_in_msal_format() {
        let dir = tempfile::tempdir().expect("dir");
        let file = MsalCacheFile::new(dir.path().join("sub").join("msal.cache.nocae"), Store::File);
        assert!(
            file.find_access_token(&entry(), &["a"], 0)
                .expect("read")
                .is_none()
        );
        file.store(&entry(), &["b", "a"], &token("AT", 2000), Some("RT"), 1000)
            .expect("store");
        let found = file
            .find_access_token(&entry(), &["a"], 1500)
            .expect("read")
            .expect("found");
        assert_eq!(
            (found.secret.as_str(), found.expires_on, found.refresh_on),
            ("AT", 2000, Some(1940))
        );
        assert!(
            file.find_access_token(&entry(), &["a"], 2000)
                .expect("read")
                .is_none(),
            "expired"
        );
        assert!(
            file.find_access_token(&entry(), &["c"], 1500)
                .expect("read")
                .is_none()
        );
        assert_eq!(
            file.find(&entry(), &["a"], 1500, true)
                .expect("read")
                .refresh_token
                .as_deref(),
            Some("RT")
        );

        let document: Value =
            serde_json::from_slice(&std::fs::read(file.path()).expect("file")).expect("json");
        let key = "-login.example-accesstoken-client-tenant-a b";
        let stored = &document["AccessToken"][key];
        assert_eq!(stored["home_account_id"], Value::Null);
        assert_eq!(stored["expires_on"], "2000");
        assert_eq!(stored["target"], "a b");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!file.lock_path.exists(), "the lock is released");
    }

    #[test]
    fn other_sections_and_entries_survive_a_write() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cache");
        std::fs::write(
            &path,
            r#"{"Account": {"x": {"username": "u"}}, "AccessToken": {"k": {"secret": "other"}}}"#,
        )
        .expect("seed");
        let file = MsalCacheFile::new(path.clone(), Store::File);
        file.store(&entry(), &["a"], &token("AT", 2000), None, 1000)
            .expect("store");
        let document: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("file")).expect("json");
        assert_eq!(document["Account"]["x"]["username"], "u");
        assert_eq!(document["AccessToken"]["k"]["secret"], "other");
    }

    /// Found by the `msal_cache` fuzz target: an entry matching the request but without a
    /// secret (damaged, or another writer's) came first in the section and hid the usable
    /// token stored beside it, so every lookup missed.
    #[test]
    fn entries_without_a_secret_hide_no_usable_token() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cache");
        let shadow = json!({
            "credential_type": "AccessToken", "environment": "login.example",
            "client_id": "client", "realm": "tenant", "target": "a", "expires_on": "2000",
        });
        let shadow_rt = json!({
            "credential_type": "RefreshToken", "environment": "login.example",
            "client_id": "client", "target": "a",
        });
        std::fs::write(
            &path,
            json!({
                "AccessToken": { "-": shadow, "-~": { "secret": 5 } },
                "RefreshToken": { "-": shadow_rt },
            })
            .to_string(),
        )
        .expect("seed");
        let file = MsalCacheFile::new(path, Store::File);
        file.store(&entry(), &["a"], &token("AT", 2000), Some("RT"), 1000)
            .expect("store");
        let found = file.find(&entry(), &["a"], 1500, true).expect("read");
        assert_eq!(found.access_token.expect("found").secret, "AT");
        assert_eq!(found.refresh_token.as_deref(), Some("RT"));
    }

    #[test]
    fn a_stale_lock_is_broken_and_a_held_one_waits() {
        let dir = tempfile::tempdir().expect("dir");
        let file = MsalCacheFile::new(dir.path().join("cache"), Store::File);
        let held = FileLock::acquire(&file.lock_path).expect("lock");
        let path = file.path;
        let writer = std::thread::spawn(move || {
            MsalCacheFile::new(path, Store::File).store(
                &entry(),
                &["a"],
                &token("AT", 2000),
                None,
                1,
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!writer.is_finished(), "the writer waits for the lock");
        drop(held);
        writer.join().expect("thread").expect("stored");
    }

    /// Stores a token from another thread; the receiver gets the outcome.
    fn store_in_background(path: PathBuf) -> std::sync::mpsc::Receiver<std::io::Result<()>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let stored = MsalCacheFile::new(path, Store::File).store(
                &entry(),
                &["a"],
                &token("AT", 2000),
                None,
                1,
            );
            let _ = sender.send(stored);
        });
        receiver
    }

    /// The pid of a process that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let pid = child.id();
        child.wait().expect("exited");
        pid
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_left_by_a_crashed_writer_is_broken_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let file = MsalCacheFile::new(dir.path().join("cache"), Store::File);
        // What msal-extensions or this crate leaves when killed while writing: a fresh lock
        // file naming a process that is gone, with no OS lock on it.
        std::fs::write(&file.lock_path, format!("{} python", dead_pid())).expect("lock");
        let stored = store_in_background(file.path.clone());
        // Far below the minute a stale lock used to cost; a broken lock takes microseconds.
        stored
            .recv_timeout(Duration::from_secs(20))
            .expect("the stale lock was broken, not waited out")
            .expect("stored");
        assert!(!file.lock_path.exists(), "the lock is released");
        // So is a lock naming this very process without holding it: an earlier process of
        // the same pid (a container restarted) left it.
        std::fs::write(&file.lock_path, format!("{} me", std::process::id())).expect("lock");
        store_in_background(file.path)
            .recv_timeout(Duration::from_secs(20))
            .expect("broken")
            .expect("stored");
    }

    #[cfg(unix)]
    #[test]
    fn a_live_holder_excludes_whatever_its_lock_file_says() {
        let dir = tempfile::tempdir().expect("dir");
        let file = MsalCacheFile::new(dir.path().join("cache"), Store::File);

        // A live writer that takes no OS lock (an older writer): its pid is alive.
        let mut live = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep");
        std::fs::write(&file.lock_path, format!("{} old-writer", live.id())).expect("lock");
        let stored = store_in_background(file.path.clone());
        assert!(
            stored.recv_timeout(Duration::from_millis(300)).is_err(),
            "the writer waits for a live holder"
        );
        std::fs::remove_file(&file.lock_path).expect("released");
        stored
            .recv_timeout(Duration::from_secs(20))
            .expect("taken once released")
            .expect("stored");
        let _ = live.kill();
        let _ = live.wait();

        // A writer holding the OS lock whose pid cannot be seen from here (another pid
        // namespace): the OS lock excludes.
        std::fs::write(&file.lock_path, format!("{} elsewhere", dead_pid())).expect("lock");
        let held = std::fs::File::open(&file.lock_path).expect("open");
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).expect("OS lock");
        let stored = store_in_background(file.path.clone());
        assert!(
            stored.recv_timeout(Duration::from_millis(300)).is_err(),
            "the writer waits for the holder of the OS lock"
        );
        std::fs::remove_file(&file.lock_path).expect("released");
        drop(held);
        stored
            .recv_timeout(Duration::from_secs(20))
            .expect("taken once released")
            .expect("stored");
    }

    #[test]
    fn a_miss_parses_the_cache_once_and_the_write_after_it_none() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cache");
        let other = MsalCacheFile::new(path.clone(), Store::File);
        other
            .store(&entry(), &["other"], &token("AT0", 2000), None, 1000)
            .expect("another process's token");
        let file = MsalCacheFile::new(path, Store::File);

        // A miss: the access token and the refresh token are looked up in one parse...
        let found = file.find(&entry(), &["a"], 1500, true).expect("read");
        assert!(found.access_token.is_none() && found.refresh_token.is_none());
        assert_eq!(file.parses(), 1);
        // ...and the token fetched then is merged into the document read, not a new parse.
        file.store(&entry(), &["a"], &token("AT", 2000), Some("RT"), 1500)
            .expect("store");
        assert_eq!(file.parses(), 1);
        // What this process wrote is read without parsing.
        let found = file.find(&entry(), &["a"], 1500, true).expect("read");
        assert_eq!(found.access_token.expect("found").secret, "AT");
        assert_eq!(file.parses(), 1);

        // Another process's write is read, once.
        other
            .store(&entry(), &["b"], &token("AT2", 2000), None, 1500)
            .expect("another write");
        for _ in 0..2 {
            let found = file.find(&entry(), &["b"], 1500, false).expect("read");
            assert_eq!(found.access_token.expect("found").secret, "AT2");
        }
        assert_eq!(file.parses(), 2);
        // The document written by the other process still holds this one's token.
        assert!(
            other
                .find_access_token(&entry(), &["a"], 1500)
                .expect("read")
                .is_some()
        );
    }

    #[test]
    fn writes_prune_what_no_reader_can_use() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cache");
        let now: i64 = 1_800_000_000;
        let user = format!("app:obo:{}:https://login.example/:tenant", "ab".repeat(32));
        let mut access = Map::new();
        for index in 0..20 {
            // Expired tokens, as this crate and MSAL Python write them.
            access.insert(
                format!("-login.example-accesstoken-app-tenant-expired{index}"),
                json!({"credential_type": "AccessToken", "secret": format!("old{index}"),
                       "client_id": "app", "expires_on": (now - 3600 - index).to_string()}),
            );
        }
        access.insert(
            "valid".into(),
            json!({"credential_type": "AccessToken", "secret": "valid",
                   "expires_on": (now + 60).to_string()}),
        );
        access.insert(
            "just-expired".into(),
            json!({"credential_type": "AccessToken", "secret": "late",
                   "expires_on": (now - 60).to_string()}),
        );
        let refresh = json!({
            // A signed-in user's refresh token (MSAL Python): kept, however old.
            "user": {"credential_type": "RefreshToken", "secret": "rt-user",
                     "home_account_id": "uid.utid", "client_id": "app",
                     "last_modification_time": "1"},
            // This crate's on-behalf-of refresh tokens: an old one goes, a recent one stays.
            "obo-old": {"credential_type": "RefreshToken", "secret": "rt-old",
                        "home_account_id": null, "client_id": user,
                        "last_modification_time": (now - 29 * 3600).to_string()},
            "obo-recent": {"credential_type": "RefreshToken", "secret": "rt-recent",
                           "home_account_id": null, "client_id": user,
                           "last_modification_time": (now - 3600).to_string()},
        });
        let document = json!({
            "AccessToken": access,
            "RefreshToken": refresh,
            "Account": {"uid.utid-login.example-tenant": {"home_account_id": "uid.utid"}},
        });
        std::fs::write(&path, serde_json::to_vec(&document).expect("json")).expect("seed");

        let file = MsalCacheFile::new(path.clone(), Store::File);
        file.store(&entry(), &["a"], &token("new", now + 3600), None, now)
            .expect("store");
        let document: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("file")).expect("json");
        let mut kept: Vec<&str> = document["AccessToken"]
            .as_object()
            .expect("access tokens")
            .values()
            .filter_map(|token| token["secret"].as_str())
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, ["late", "new", "valid"]);
        let mut kept: Vec<&str> = document["RefreshToken"]
            .as_object()
            .expect("refresh tokens")
            .values()
            .filter_map(|token| token["secret"].as_str())
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, ["rt-recent", "rt-user"]);
        assert_eq!(
            document["Account"]["uid.utid-login.example-tenant"]["home_account_id"],
            "uid.utid"
        );
    }

    #[test]
    fn only_this_crates_on_behalf_of_keys_are_recognised() {
        let hash = "0f".repeat(32);
        assert!(is_on_behalf_of_key(&format!(
            "client:obo:{hash}:https://login.example/:tenant"
        )));
        assert!(!is_on_behalf_of_key("11111111-2222-3333-4444-555555555555"));
        assert!(!is_on_behalf_of_key(&format!(
            "client:obo:{}:x",
            &hash[1..]
        )));
        assert!(!is_on_behalf_of_key(&format!("client:obo:{hash}")));
    }
}
