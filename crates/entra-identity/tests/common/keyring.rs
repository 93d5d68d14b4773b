//! A private D-Bus session bus with gnome-keyring's Secret Service on it, for the tests and
//! benchmarks of the keyring-kept token cache. `scripts/test` installs both programs.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use entra_identity::MapEnvironment;

const KEYRING_PASSWORD: &str = "keyring-password";

/// The private session bus's configuration, shared with the Python interop suite.
const BUS_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/keyring/session-bus.conf"
);

/// A session bus and, on it, gnome-keyring's Secret Service, with a home of their own.
pub struct Session {
    pub dir: tempfile::TempDir,
    bus: Child,
    pub bus_address: String,
    keyring: Option<Child>,
}

impl Session {
    /// A bus and a keyring whose login collection is unlocked, as at a desktop login.
    pub fn start() -> Self {
        let mut session = Self::bus_only();
        session.start_keyring(true);
        session
    }

    pub fn bus_only() -> Self {
        let dir = tempfile::tempdir().expect("session dir");
        for sub in ["home", "run"] {
            std::fs::create_dir(dir.path().join(sub)).expect("dir");
        }
        // A bus of our own, without the system's service files (see the config).
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={BUS_CONFIG}"))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("run").join("bus").display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (scripts/test installs it)");
        let mut line = String::new();
        BufReader::new(bus.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("bus address");
        Self {
            dir,
            bus,
            bus_address: line.trim().to_owned(),
            keyring: None,
        }
    }

    /// Starts gnome-keyring-daemon, with the login keyring unlocked (and created the first
    /// time) when `unlock`, and waits until it serves the Secret Service on the bus.
    pub fn start_keyring(&mut self, unlock: bool) {
        let mut command = Command::new("gnome-keyring-daemon");
        command
            .args(["--foreground", "--components=secrets"])
            .env_clear()
            .envs(self.process_environment())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if unlock {
            command.arg("--unlock");
        }
        let mut keyring = command
            .spawn()
            .expect("gnome-keyring-daemon (scripts/test installs it)");
        let mut stdin = keyring.stdin.take().expect("stdin");
        if unlock {
            stdin
                .write_all(KEYRING_PASSWORD.as_bytes())
                .expect("password");
        }
        drop(stdin);
        self.keyring = Some(keyring);
        let started = Instant::now();
        while !self.secret_service_is_up() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the Secret Service did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop_keyring(&mut self) {
        if let Some(mut keyring) = self.keyring.take() {
            let _ = keyring.kill();
            let _ = keyring.wait();
        }
        while self.secret_service_is_up() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn secret_service_is_up(&self) -> bool {
        Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .env_clear()
            .envs(self.process_environment())
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("true"))
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn process_environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HOME", self.home().to_string_lossy().into_owned()),
            (
                "XDG_RUNTIME_DIR",
                self.dir.path().join("run").to_string_lossy().into_owned(),
            ),
            ("DBUS_SESSION_BUS_ADDRESS", self.bus_address.clone()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
        ]
    }

    /// What a credential in this session sees.
    pub fn environment(&self) -> Arc<MapEnvironment> {
        Arc::new(
            MapEnvironment::new()
                .with("HOME", self.home().to_string_lossy())
                .with("DBUS_SESSION_BUS_ADDRESS", &self.bus_address),
        )
    }

    /// The cache item `schema`, read by libsecret's own client as msal-extensions would.
    pub fn stored_cache(&self, schema: &str) -> Option<serde_json::Value> {
        let output = Command::new("secret-tool")
            .args(["lookup", "xdg:schema", schema])
            .args(["MsalClientID", "Microsoft.Developer.IdentityService"])
            .env_clear()
            .envs(self.process_environment())
            .output()
            .expect("secret-tool (scripts/test installs it)");
        if !output.status.success() || output.stdout.is_empty() {
            return None;
        }
        Some(serde_json::from_slice(&output.stdout).expect("the item holds the cache JSON"))
    }

    /// The items holding the cache `schema`, in every collection, as `(label, collection)`.
    pub fn items(&self, schema: &str) -> Vec<(String, String)> {
        let found = self.call(&[
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.SearchItems",
            &format!(
                "dict:string:string:xdg:schema,{schema},\
                 MsalClientID,Microsoft.Developer.IdentityService"
            ),
        ]);
        object_paths(&found)
            .into_iter()
            .map(|item| {
                let label = self.call(&[
                    &item,
                    "org.freedesktop.DBus.Properties.Get",
                    "string:org.freedesktop.Secret.Item",
                    "string:Label",
                ]);
                let label = label
                    .split('"')
                    .nth(1)
                    .expect("a label in the reply")
                    .to_owned();
                let collection = item
                    .strip_prefix("/org/freedesktop/secrets/collection/")
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or(&item)
                    .to_owned();
                (label, collection)
            })
            .collect()
    }

    /// How many connections the bus has (the asking one included).
    pub fn connections(&self) -> usize {
        let output = Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.ListNames",
            ])
            .env_clear()
            .envs(self.process_environment())
            .output()
            .expect("dbus-send");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.trim().starts_with("string \":"))
            .count()
    }

    /// A call to the Secret Service with dbus-send; its printed reply.
    fn call(&self, arguments: &[&str]) -> String {
        let output = Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
            ])
            .args(arguments)
            .env_clear()
            .envs(self.process_environment())
            .output()
            .expect("dbus-send");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn signal_file(&self, name: &str) -> PathBuf {
        self.home().join(".IdentityService").join(name)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(keyring) = &mut self.keyring {
            let _ = keyring.kill();
            let _ = keyring.wait();
        }
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

/// The object paths in a dbus-send reply.
fn object_paths(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter_map(|line| {
            let path = line.trim().strip_prefix("object path \"")?;
            Some(path.strip_suffix('"')?.to_owned())
        })
        .collect()
}
