//! A token cache in MSAL's unified cache format, shared with Python azure-identity and msal,
//! and safe for several processes: writes happen under msal-extensions' `.lockfile` protocol.
//! The cache lives in a file, replaced atomically, or encrypted in the platform's secret store
//! with the file kept empty as the signal whose time tells other processes it changed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};

/// How long a writer waits for the lock before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// A lock file older than this was left by a process that died holding it.
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
}

/// Where the cache's content is kept.
#[derive(Debug)]
pub(crate) enum Store {
    /// In the file itself, readable only by its owner.
    File,
    /// Encrypted by the Secret Service, under the item of this schema name.
    #[cfg(all(target_os = "linux", feature = "secret-service"))]
    SecretService {
        connection:
            std::sync::Arc<crate::cache::persistent::secret_service::SecretServiceConnection>,
        schema: String,
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
        }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A valid access token for `scopes` (a subset of the entry's), if the file has one.
    pub(crate) fn find_access_token(
        &self,
        entry: &EntryScope<'_>,
        scopes: &[&str],
        now: i64,
    ) -> std::io::Result<Option<CachedAccessToken>> {
        let document = self.read()?;
        let Some(tokens) = document.get("AccessToken").and_then(Value::as_object) else {
            return Ok(None);
        };
        let found = tokens.values().filter_map(Value::as_object).find(|token| {
            text(token, "credential_type") == Some("AccessToken")
                && text(token, "client_id") == Some(entry.client_key)
                && text(token, "realm").is_some_and(|realm| realm.eq_ignore_ascii_case(entry.realm))
                && text(token, "environment").is_some_and(|env| same_host(env, entry.environment))
                && covers(text(token, "target"), scopes)
                && number(token, "expires_on").is_some_and(|expires_on| expires_on > now)
        });
        Ok(found.and_then(|token| {
            Some(CachedAccessToken {
                secret: text(token, "secret")?.to_owned(),
                expires_on: number(token, "expires_on")?,
                refresh_on: number(token, "refresh_on"),
                token_type: text(token, "token_type").unwrap_or("Bearer").to_owned(),
            })
        }))
    }

    /// A refresh token for `scopes` under the entry's key, if the file has exactly one.
    pub(crate) fn find_refresh_token(
        &self,
        entry: &EntryScope<'_>,
        scopes: &[&str],
    ) -> std::io::Result<Option<String>> {
        let document = self.read()?;
        let Some(tokens) = document.get("RefreshToken").and_then(Value::as_object) else {
            return Ok(None);
        };
        let mut matching = tokens
            .values()
            .filter_map(Value::as_object)
            .filter(|token| {
                text(token, "client_id") == Some(entry.client_key)
                    && text(token, "environment")
                        .is_some_and(|env| same_host(env, entry.environment))
                    && covers(text(token, "target"), scopes)
            });
        // azure-identity redeems a refresh token only when exactly one matches.
        match (matching.next(), matching.next()) {
            (Some(token), None) => Ok(text(token, "secret").map(str::to_owned)),
            _ => Ok(None),
        }
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
        let mut sorted: Vec<&str> = scopes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let target = sorted.join(" ");
        self.modify(|document| {
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
        })
    }

    /// Reads the whole cache; a missing or empty one is empty. A file caught half-written by
    /// a writer that does not replace atomically is read again.
    fn read(&self) -> std::io::Result<Map<String, Value>> {
        let mut attempts = 0;
        loop {
            let Some(bytes) = self.load()? else {
                return Ok(Map::new());
            };
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Map::new());
            }
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => return Ok(map),
                _ if attempts < 3 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} does not hold a token cache", self.describe()),
                    ));
                }
            }
        }
    }

    /// Read, change and replace the cache under the lock.
    fn modify(&self, change: impl FnOnce(&mut Map<String, Value>)) -> std::io::Result<()> {
        let _lock = FileLock::acquire(&self.lock_path)?;
        // Another writer may have left a cache we cannot read; starting afresh loses only
        // what was already unreadable. A store we cannot reach is an error, though: writing
        // over it would lose everything in it.
        let mut document = match self.read() {
            Ok(document) => document,
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => Map::new(),
            Err(error) => return Err(error),
        };
        change(&mut document);
        let text = zeroize::Zeroizing::new(serde_json::to_vec(&Value::Object(document))?);
        if let Some(parent) = self.path.parent() {
            create_private_dir(parent)?;
        }
        match &self.store {
            Store::File => self.replace_file(&text),
            #[cfg(all(target_os = "linux", feature = "secret-service"))]
            Store::SecretService { connection, schema } => {
                connection.save(schema, &text)?;
                self.signal_change()
            }
            #[cfg(target_os = "macos")]
            Store::Keychain { account } => {
                crate::cache::persistent::platform_store::keychain::save(account, &text)?;
                self.signal_change()
            }
            #[cfg(windows)]
            Store::DataProtection => self.replace_file(
                &crate::cache::persistent::platform_store::data_protection::protect(&text)?,
            ),
        }
    }

    /// The cache's bytes, or `None` when there is no cache yet.
    fn load(&self) -> std::io::Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        match &self.store {
            Store::File => match std::fs::read(&self.path) {
                Ok(bytes) => Ok(Some(zeroize::Zeroizing::new(bytes))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error),
            },
            #[cfg(all(target_os = "linux", feature = "secret-service"))]
            Store::SecretService { connection, schema } => connection.load(schema),
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
            Store::SecretService { schema, .. } => format!("the Secret Service item {schema}"),
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
/// `"<pid> <argv0>"`, removed when done.
struct FileLock {
    path: PathBuf,
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
                    let program = std::env::args().next().unwrap_or_default();
                    // The content is informative only; failing to write it changes nothing.
                    let _ = write!(file, "{} {program}", std::process::id());
                    return Ok(Self {
                        path: path.to_owned(),
                    });
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(path)
                        .and_then(|metadata| metadata.modified())
                        .ok()
                        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        let _ = std::fs::remove_file(path);
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
        let _ = std::fs::remove_file(&self.path);
    }
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
            file.find_refresh_token(&entry(), &["a"])
                .expect("read")
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
}
