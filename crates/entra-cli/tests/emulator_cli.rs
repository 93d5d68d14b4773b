//! `entra emulator` as a user runs it: a separate process, its info file, the tokens it mints
//! for `entra token`, its private state directory and its signals.

#![cfg(unix)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use base64::Engine as _;
use serde_json::Value;

/// How long the tests wait for the emulator to start or stop: far more than it needs.
const BOUND: Duration = Duration::from_secs(60);

const TENANT: &str = "contoso.onmicrosoft.com";
const MIDDLE_TIER: &str = "11111111-2222-3333-4444-555555555555";
const WORKLOAD: &str = "22222222-3333-4444-5555-666666666666";

fn entra_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("entra")
}

/// `entra` with only PATH and TMPDIR from the environment.
fn entra(tmp: &Path) -> Command {
    let mut command = Command::new(entra_path());
    command.env_clear().env("TMPDIR", tmp);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

/// A running `entra emulator` and what it printed.
struct RunningEmulator {
    child: Child,
    state_dir: PathBuf,
    info_file: PathBuf,
    info: Value,
}

impl RunningEmulator {
    /// Starts `entra emulator ARGS` with TMPDIR = `tmp` and waits until it is ready.
    fn start(tmp: &Path, args: &[&str]) -> Self {
        let mut command = StdCommand::new(entra_path());
        command.arg("emulator").args(args);
        Self::spawn(tmp, command)
    }

    /// Starts `entra emulator` with a soft limit of `soft_limit` open files.
    fn start_with_descriptor_limit(tmp: &Path, soft_limit: u32) -> Self {
        let mut command = StdCommand::new("bash");
        command
            .arg("-c")
            .arg(format!("ulimit -Sn {soft_limit} && exec \"$0\" emulator"))
            .arg(entra_path());
        Self::spawn(tmp, command)
    }

    fn spawn(tmp: &Path, mut command: StdCommand) -> Self {
        let mut child = command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", tmp)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn entra emulator");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + BOUND;
        let mut printed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the emulator did not start: {printed:?}"));
            let done = line.starts_with("Press Ctrl-C");
            printed.push(line);
            if done {
                break;
            }
        }
        let field = |label: &str| {
            printed
                .iter()
                .find_map(|line| line.trim().strip_prefix(label))
                .map(|value| PathBuf::from(value.trim()))
                .unwrap_or_else(|| panic!("no {label} in {printed:?}"))
        };
        let state_dir = field("state directory:");
        let info_file = field("info file:");
        let info = serde_json::from_str(&std::fs::read_to_string(&info_file).expect("info file"))
            .expect("info JSON");
        Self {
            child,
            state_dir,
            info_file,
            info,
        }
    }

    fn url(&self) -> &str {
        self.info["url"].as_str().expect("url")
    }

    fn ca(&self) -> &str {
        self.info["ca_pem_path"].as_str().expect("ca path")
    }

    fn middle_tier_secret(&self) -> String {
        self.info["tenants"][0]["applications"][0]["secrets"][0]
            .as_str()
            .expect("secret")
            .to_owned()
    }

    /// Sends `signal` (such as `INT`) and waits for the exit status.
    fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        let sent = StdCommand::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the emulator did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        // A test that failed midway: do not leave the process behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn claims(token: &str) -> Value {
    let payload = token.trim().split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn stdout_of(command: &mut Command) -> String {
    let output = command.output().expect("run");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn a_full_session_mints_tokens_and_gets_tokens_through_each_credential() {
    let tmp = tempfile::tempdir().expect("tmp");
    let emulator = RunningEmulator::start(tmp.path(), &[]);
    let info_env = emulator.info_file.clone();

    // The state directory is private, with a random name, in TMPDIR.
    assert_eq!(emulator.state_dir.parent(), Some(tmp.path()));
    assert_eq!(mode(&emulator.state_dir), 0o700);
    assert_eq!(mode(&emulator.info_file), 0o600);

    // A user token for the middle tier, alone on stdout, piped into on-behalf-of.
    let user_token = stdout_of(
        entra(tmp.path())
            .args(["emulator", "mint-user-token", "--scope", "access_as_user"])
            .args(["--audience", &format!("api://{MIDDLE_TIER}")])
            .env("ENTRA_EMULATOR_INFO", &info_env),
    );
    assert_eq!(user_token.lines().count(), 1, "{user_token}");
    let user_claims = claims(&user_token);
    assert_eq!(user_claims["aud"], format!("api://{MIDDLE_TIER}"));
    assert_eq!(user_claims["scp"], "access_as_user");
    assert_eq!(user_claims["upn"], "adele@contoso.onmicrosoft.com");

    let obo_token = stdout_of(
        entra(tmp.path())
            .args(["token", "on-behalf-of", "--tenant-id", TENANT])
            .args([
                "--client-id",
                MIDDLE_TIER,
                "--scope",
                "api://downstream/.default",
            ])
            .args(["--authority", emulator.url(), "--ca-file", emulator.ca()])
            .args(["--user-assertion-file", "-", "--output", "token"])
            .env("AZURE_CLIENT_SECRET", emulator.middle_tier_secret())
            .write_stdin(user_token),
    );
    let obo_claims = claims(&obo_token);
    assert_eq!(obo_claims["aud"], "api://downstream");
    assert_eq!(obo_claims["oid"], user_claims["oid"]);

    // A federated token for the workload, minted by the assertion command for every request.
    let assertion_command = format!("'{}' emulator mint-federated-token", entra_path().display());
    let federated = stdout_of(
        entra(tmp.path())
            .args(["emulator", "mint-federated-token", "--info-file"])
            .arg(&emulator.info_file),
    );
    assert_eq!(
        claims(&federated)["sub"],
        "system:serviceaccount:default:workload"
    );
    let app_token = stdout_of(
        entra(tmp.path())
            .args(["token", "client-assertion", "--tenant-id", TENANT])
            .args([
                "--client-id",
                WORKLOAD,
                "--scope",
                "api://downstream/.default",
            ])
            .args(["--authority", emulator.url(), "--ca-file", emulator.ca()])
            .args([
                "--assertion-command",
                &assertion_command,
                "--output",
                "token",
            ])
            .env("ENTRA_EMULATOR_INFO", &info_env),
    );
    let app_claims = claims(&app_token);
    assert_eq!(app_claims["appid"], WORKLOAD);
    assert_eq!(app_claims["idtyp"], "app");

    // An expired user token is refused as Entra refuses it.
    let expired = stdout_of(
        entra(tmp.path())
            .args(["emulator", "mint-user-token", "--expires-in", "-3600"])
            .args(["--audience", MIDDLE_TIER])
            .env("ENTRA_EMULATOR_INFO", &info_env),
    );
    let refused = entra(tmp.path())
        .args(["token", "on-behalf-of", "--tenant-id", TENANT])
        .args([
            "--client-id",
            MIDDLE_TIER,
            "--scope",
            "api://downstream/.default",
        ])
        .args(["--authority", emulator.url(), "--ca-file", emulator.ca()])
        .args(["--user-assertion-file", "-"])
        .env("AZURE_CLIENT_SECRET", emulator.middle_tier_secret())
        .write_stdin(expired)
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("AADSTS500133"),
        "{refused:?}"
    );

    // A mint the emulator refuses says why, with a configuration error status.
    let unknown_user = entra(tmp.path())
        .args([
            "emulator",
            "mint-user-token",
            "--user",
            "nobody@example.com",
        ])
        .args(["--audience", MIDDLE_TIER])
        .env("ENTRA_EMULATOR_INFO", &info_env)
        .output()
        .expect("run");
    assert_eq!(unknown_user.status.code(), Some(4), "{unknown_user:?}");
    assert!(unknown_user.stdout.is_empty());

    // The admin API lists itself.
    let listing: Value = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let ca = std::fs::read(emulator.ca()).expect("ca");
            reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("pem")])
                .build()
                .expect("client")
                .get(format!("{}/_emulator", emulator.url()))
                .send()
                .await
                .expect("response")
                .json()
                .await
                .expect("json")
        });
    let paths: Vec<_> = listing["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|endpoint| endpoint["path"].as_str())
        .collect();
    for path in [
        "/_emulator/tokens/user",
        "/_emulator/tokens/federated",
        "/_emulator/info",
        "/_emulator/resource/revocations",
    ] {
        assert!(paths.contains(&path), "{listing}");
    }

    // Ctrl-C: a clean exit that removes the private state directory.
    let state_dir = emulator.state_dir.clone();
    let status = emulator.stop("INT");
    assert!(status.success(), "{status:?}");
    assert!(
        !state_dir.exists(),
        "{} is left behind",
        state_dir.display()
    );
}

#[test]
fn sigterm_removes_the_private_state_dir_and_keeps_an_explicit_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let private = RunningEmulator::start(tmp.path(), &[]);
    let state_dir = private.state_dir.clone();
    assert!(private.stop("TERM").success());
    assert!(
        !state_dir.exists(),
        "{} is left behind",
        state_dir.display()
    );

    let explicit = tmp.path().join("kept");
    let kept = RunningEmulator::start(
        tmp.path(),
        &["--state-dir", explicit.to_str().expect("utf-8")],
    );
    assert_eq!(kept.state_dir, explicit);
    assert!(kept.stop("INT").success());
    assert!(explicit.join("ca.pem").exists());
    assert!(explicit.join("info.json").exists());
}

#[test]
fn a_failed_start_leaves_no_state_dir() {
    let tmp = tempfile::tempdir().expect("tmp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let output = entra(tmp.path())
        .args(["emulator", "--port", &port])
        .timeout(BOUND)
        .output()
        .expect("run");
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&port),
        "the error names the port: {output:?}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The commands of the worked session in docs/emulator.md (the `$ ` lines between
/// `<!-- session -->` and `<!-- /session -->`).
fn documented_session() -> Vec<String> {
    session_in("docs/emulator.md")
}

/// The commands (`$ ` lines) between the `<!-- session -->` markers of `file`, a path from the
/// repository's root.
fn session_in(file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(file);
    let text = std::fs::read_to_string(&path).expect(file);
    let start = text.find("<!-- session -->").expect("session start marker");
    let end = text.find("<!-- /session -->").expect("session end marker");
    text[start..end]
        .lines()
        .filter_map(|line| line.strip_prefix("$ "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_documented_session_runs_as_written() {
    let commands = documented_session();
    assert!(commands.len() >= 10, "{commands:?}");
    let tmp = tempfile::tempdir().expect("tmp");
    let output = run_session(&commands.join("\n"), tmp.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let all = format!("{stdout}{stderr}");
    for expected in [
        "entra emulator listening on https://127.0.0.1:",
        "\"scp\": \"access_as_user\"",
        "\"accessToken\": \"eyJ",
        "Authorization: Bearer eyJ",
        "\"appid\": \"22222222-3333-4444-5555-666666666666\"",
        "AADSTS500133",
        "exit status 3",
        "POST /_emulator/tokens/federated",
        "No such file or directory",
    ] {
        assert!(all.contains(expected), "no {expected:?} in:\n{all}");
    }
    assert_eq!(all.matches("Authorization: Bearer eyJ").count(), 2, "{all}");
    // The session stopped the emulator and it removed its state directory: TMPDIR holds only
    // what the session wrote in its working directory.
    let left = state_dirs_in(tmp.path());
    assert!(left.is_empty(), "{left:?}");
}

/// The README's short session: from starting the emulator to an on-behalf-of token.
#[test]
fn the_readme_session_runs_as_written() {
    let commands = session_in("README.md");
    assert!(commands.len() >= 6, "{commands:?}");
    let tmp = tempfile::tempdir().expect("tmp");
    let output = run_session(&commands.join("\n"), tmp.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Only the token's JSON reaches standard output (the emulator's lines go to its log).
    let answer: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("{error}: not the JSON of a token:\n{stdout}{stderr}"));
    assert!(
        answer["accessToken"]
            .as_str()
            .is_some_and(|token| token.starts_with("eyJ")),
        "{stdout}"
    );
    assert_eq!(answer["tokenType"], "Bearer", "{stdout}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// The emulator state directories (made without `--state-dir`) left in `dir`.
fn state_dirs_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("the directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.starts_with("entra-emulator-"))
        .collect()
}

/// Runs `script` with bash as a user's shell would: `entra` on PATH, job control for `%1`,
/// TMPDIR and the working directory in `dir`.
fn run_session(script: &str, dir: &Path) -> std::process::Output {
    let bin_dir = entra_path()
        .parent()
        .expect("the binary's directory")
        .to_owned();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -m\n{script}\n"))
        .env_clear()
        .env("PATH", path)
        .env("TMPDIR", dir)
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .timeout(BOUND)
        .output()
        .expect("bash")
}

#[test]
fn the_session_in_the_help_runs_as_written() {
    let help = stdout_of(Command::new(entra_path()).args(["emulator", "--help"]));
    let (_, session) = help
        .split_once("A session (")
        .expect("a session in the help");
    // The lines after the heading, indented by two spaces.
    let script: String = session
        .lines()
        .skip(1)
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let tmp = tempfile::tempdir().expect("tmp");
    let output = run_session(&script, tmp.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    // One token on behalf of the user, one for the workload, as JSON.
    assert_eq!(
        stdout.matches("\"accessToken\": \"eyJ").count(),
        2,
        "{output:?}"
    );
    let left = state_dirs_in(tmp.path());
    assert!(left.is_empty(), "{left:?}");
}

/// The soft limit on open files of a running process, from /proc.
#[cfg(target_os = "linux")]
fn soft_descriptor_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("Max open files");
    line.split_whitespace()
        .nth(3)
        .and_then(|soft| soft.parse().ok())
        .expect("a number")
}

#[cfg(target_os = "linux")]
#[test]
fn the_emulator_raises_its_descriptor_limit_to_the_hard_limit() {
    let hard: u64 = {
        let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .expect("Max open files")
            .to_owned();
        line.split_whitespace()
            .nth(4)
            .and_then(|hard| hard.parse().ok())
            .unwrap_or(u64::MAX)
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let emulator = RunningEmulator::start_with_descriptor_limit(tmp.path(), 256);
    let soft = soft_descriptor_limit(emulator.child.id());
    assert_eq!(soft, hard.min(65_536));
    assert!(emulator.stop("TERM").success());
}
