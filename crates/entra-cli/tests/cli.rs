//! The `entra` binary end to end against an in-process emulator over TLS: every way of giving
//! `entra token` its configuration (flags, environment variables, files, commands, standard
//! input), the output formats, the exit codes, and that no secret ever reaches an output.
//!
//! Every child runs with a cleared environment, so the machine's AZURE_* or SSL_CERT_FILE
//! variables never leak in.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use assert_cmd::Command;
use base64::Engine as _;
use entra_emulator::{
    ApplicationConfig, CertificateConfig, CertificateInfo, Emulator, EmulatorConfig, Fault,
    FaultRule, FederatedCredentialConfig, RequestRecord, SettingsUpdate, TenantConfig,
    TokenSettingsUpdate, UserConfig, UserTokenRequest,
};
use serde_json::Value;

const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const DOMAIN: &str = "fabrikam.onmicrosoft.com";
const SECOND_TENANT: &str = "bbbbbbbb-0000-0000-0000-000000000002";
const THIRD_TENANT: &str = "cccccccc-0000-0000-0000-000000000003";
/// Not registered anywhere: a request naming it fails.
const UNKNOWN_TENANT: &str = "dddddddd-0000-0000-0000-000000000004";
const WORKLOAD: &str = "10000000-0000-0000-0000-000000000001";
const API: &str = "10000000-0000-0000-0000-000000000002";
const SNI_API: &str = "10000000-0000-0000-0000-000000000003";
const DOWNSTREAM: &str = "10000000-0000-0000-0000-000000000004";
const SUBJECT: &str = "system:serviceaccount:ns:workload";
const SECRET: &str = "cli-test-client-secret-Zq9w";
const WRONG_SECRET: &str = "cli-test-wrong-secret-Kd2p";
const PFX_PASSWORD: &str = "cli-test-pfx-password-Xr7m";
const WRONG_PFX_PASSWORD: &str = "cli-test-wrong-pfx-password-Lb4";
const USER_OID: &str = "20000000-0000-0000-0000-000000000001";
const USER: &str = "adele@fabrikam.onmicrosoft.com";
const GUEST_OID: &str = "30000000-0000-0000-0000-000000000001";
const GUEST: &str = "guest@second.example";
const APP_SCOPE: &str = "api://downstream/.default";
const OBO_SCOPE: &str = "api://downstream/Data.Read";

fn config() -> EmulatorConfig {
    let app = |client_id: &str, name: &str| ApplicationConfig {
        name: name.to_owned(),
        client_id: Some(client_id.to_owned()),
        ..ApplicationConfig::default()
    };
    let workload = || ApplicationConfig {
        federated_credentials: vec![FederatedCredentialConfig {
            subject: SUBJECT.to_owned(),
            ..FederatedCredentialConfig::default()
        }],
        ..app(WORKLOAD, "workload")
    };
    let downstream = || ApplicationConfig {
        app_id_uri: Some("api://downstream".to_owned()),
        ..app(DOWNSTREAM, "downstream")
    };
    let api = || ApplicationConfig {
        secrets: vec![SECRET.to_owned()],
        ..app(API, "middle-tier")
    };
    EmulatorConfig {
        tenants: vec![
            TenantConfig {
                id: Some(TENANT.to_owned()),
                domains: vec![DOMAIN.to_owned()],
                applications: vec![
                    workload(),
                    ApplicationConfig {
                        certificates: vec![CertificateConfig {
                            pkcs12_password: Some(PFX_PASSWORD.to_owned()),
                            ..CertificateConfig::default()
                        }],
                        ..api()
                    },
                    ApplicationConfig {
                        certificates: vec![CertificateConfig::default()],
                        require_certificate_chain: true,
                        ..app(SNI_API, "sni-middle-tier")
                    },
                    downstream(),
                ],
                users: vec![UserConfig {
                    object_id: Some(USER_OID.to_owned()),
                    upn: USER.to_owned(),
                    name: None,
                }],
            },
            TenantConfig {
                id: Some(SECOND_TENANT.to_owned()),
                applications: vec![workload(), api(), downstream()],
                users: vec![UserConfig {
                    object_id: Some(GUEST_OID.to_owned()),
                    upn: GUEST.to_owned(),
                    name: None,
                }],
                ..TenantConfig::default()
            },
            TenantConfig {
                id: Some(THIRD_TENANT.to_owned()),
                applications: vec![workload(), downstream()],
                ..TenantConfig::default()
            },
        ],
        ..EmulatorConfig::default()
    }
}

/// A running emulator, a scratch directory, and every secret handed to `entra`.
struct Harness {
    // Dropped first: the emulator stops before its runtime goes away.
    emulator: Emulator,
    _runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    /// Values that must never appear in any output.
    secrets: Mutex<Vec<String>>,
}

impl Harness {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let emulator = runtime
            .block_on(Emulator::builder().config(config()).start())
            .expect("emulator starts");
        let secrets = [SECRET, WRONG_SECRET, PFX_PASSWORD, WRONG_PFX_PASSWORD]
            .map(str::to_owned)
            .to_vec();
        Self {
            emulator,
            _runtime: runtime,
            dir: tempfile::tempdir().expect("temporary directory"),
            secrets: Mutex::new(secrets),
        }
    }

    fn secret(&self, value: &str) -> String {
        self.secrets.lock().expect("secrets").push(value.to_owned());
        value.to_owned()
    }

    /// A federated token the workload's credential accepts: a client assertion.
    fn client_assertion(&self) -> String {
        let token = self
            .emulator
            .mint_federated_token(SUBJECT, None, 3600)
            .expect("federated token");
        self.secret(&token)
    }

    /// A user's token for `audience`: a user assertion.
    fn user_assertion(&self, user: &str, audience: &str) -> String {
        let token = self
            .emulator
            .mint_user_token(&UserTokenRequest {
                user: user.to_owned(),
                audience: audience.to_owned(),
                ..UserTokenRequest::default()
            })
            .expect("user token");
        self.secret(&token)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    fn certificate(&self, client_id: &str) -> CertificateInfo {
        self.emulator.info().tenants[0]
            .applications
            .iter()
            .find(|app| app.client_id == client_id)
            .expect("application")
            .certificates[0]
            .clone()
    }

    fn url(&self) -> &str {
        self.emulator.url()
    }

    fn ca(&self) -> &Path {
        self.emulator.ca_pem_path()
    }

    /// `entra token <flow> --ca-file <emulator CA>`, the authority and the rest left to the test.
    fn token(&self, flow: &str) -> Command {
        let mut command = entra();
        command.args(["token", flow, "--ca-file"]).arg(self.ca());
        command
    }

    /// `entra token on-behalf-of` with what every on-behalf-of run here needs.
    fn obo(&self, client_id: &str, user_assertion: &Path) -> Command {
        let mut command = self.token("on-behalf-of");
        command
            .args(["--tenant-id", TENANT, "--client-id", client_id])
            .args(["--scope", OBO_SCOPE, "--authority", self.url()])
            .arg("--disable-instance-discovery")
            .arg("--user-assertion-file")
            .arg(user_assertion);
        command
    }

    /// Runs `command` and checks that no secret reached its output.
    fn run(&self, command: &mut Command) -> Run {
        let output = command.output().expect("entra runs");
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        };
        for secret in self.secrets.lock().expect("secrets").iter() {
            assert!(
                !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
                "a secret leaked: {secret:?}\n{run:?}"
            );
        }
        run
    }

    fn token_requests(&self) -> Vec<RequestRecord> {
        self.emulator
            .requests()
            .into_iter()
            .filter(|request| request.path.ends_with("/oauth2/v2.0/token"))
            .collect()
    }

    fn last_token_request(&self) -> RequestRecord {
        self.token_requests().pop().expect("a token request")
    }
}

/// `entra` with nothing from this process's environment but PATH.
fn entra() -> Command {
    let mut command = Command::cargo_bin("entra").expect("the entra binary");
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, Some(expected), "{self:#?}");
        self
    }

    #[track_caller]
    fn ok(&self) -> &Self {
        self.code(0)
    }

    /// The JSON output's access token, checked to appear once in stdout and never in stderr.
    #[track_caller]
    fn access_token(&self) -> String {
        self.ok();
        let document: Value = serde_json::from_str(&self.stdout).expect("JSON output");
        let token = document["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned();
        assert_eq!(self.stdout.matches(token.as_str()).count(), 1, "{self:#?}");
        assert!(!self.stderr.contains(token.as_str()), "{self:#?}");
        token
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).expect("JSON output")
    }
}

/// A JWT's claims, unverified.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[test]
fn client_assertion_from_files_commands_flags_and_environment() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());

    // --assertion-file with every setting as a flag.
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file),
    );
    let token = run.access_token();
    assert_eq!(run.json()["tenant"], TENANT);
    let issued = claims(&token);
    assert_eq!(issued["tid"], TENANT);
    assert_eq!(issued["appid"], WORKLOAD);
    assert_eq!(issued["aud"], "api://downstream");
    let request = h.last_token_request();
    assert_eq!(request.path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(request.form["grant_type"], "client_credentials");
    assert_eq!(request.client_auth.as_deref(), Some("federated"));

    // Every setting from the environment, AZURE_FEDERATED_TOKEN_FILE included.
    let run = h.run(
        h.token("client-assertion")
            .args(["--scope", APP_SCOPE])
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", WORKLOAD)
            .env("AZURE_AUTHORITY_HOST", h.url())
            .env("AZURE_FEDERATED_TOKEN_FILE", &assertion_file),
    );
    assert_eq!(claims(&run.access_token())["appid"], WORKLOAD);
    assert_eq!(run.json()["tenant"], TENANT);
    assert_eq!(h.token_requests().len(), 2);

    // --assertion-command: the command's standard output is the assertion.
    let command_file = h.write("command-token", &h.client_assertion());
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-command")
            .arg(format!("cat '{}'", command_file.display())),
    );
    assert_eq!(claims(&run.access_token())["appid"], WORKLOAD);
    assert_eq!(
        h.last_token_request().client_auth.as_deref(),
        Some("federated")
    );
    // ... and wins over AZURE_FEDERATED_TOKEN_FILE, set in every workload identity pod.
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-command")
            .arg(format!("cat '{}'", command_file.display()))
            .env("AZURE_FEDERATED_TOKEN_FILE", h.dir.path().join("missing")),
    );
    assert_eq!(claims(&run.access_token())["appid"], WORKLOAD);
    // Both flags: a usage error.
    h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file)
            .args(["--assertion-command", "true"]),
    )
    .code(2);

    // A failing command is a configuration failure naming the command's status.
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .args(["--assertion-command", "exit 7"]),
    );
    run.code(4);
    assert!(run.stderr.contains("assertion command"), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");

    // Flags win over the environment: every variable names something that would fail.
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", DOMAIN, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file)
            .env("AZURE_TENANT_ID", UNKNOWN_TENANT)
            .env("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000dead")
            .env("AZURE_AUTHORITY_HOST", "http://insecure.invalid")
            .env("AZURE_FEDERATED_TOKEN_FILE", h.dir.path().join("missing")),
    );
    let token = run.access_token();
    // As az: the tenant's GUID (the token's `tid`), not the domain it was asked by.
    assert_eq!(run.json()["tenant"], TENANT);
    assert_eq!(claims(&token)["tid"], TENANT);
    assert_eq!(
        h.last_token_request().path,
        format!("/{DOMAIN}/oauth2/v2.0/token")
    );

    // No assertion at all: a usage error, as a missing --user-assertion-file is.
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()]),
    );
    run.code(2);
    assert!(
        run.stderr.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{run:#?}"
    );
    // Nor a tenant: clap's usage error, proving nothing leaked in from this environment.
    h.run(
        h.token("client-assertion")
            .args(["--client-id", WORKLOAD, "--scope", APP_SCOPE])
            .arg("--assertion-file")
            .arg(&assertion_file),
    )
    .code(2);
}

#[test]
fn output_formats_and_decode() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());
    let command = |output: &str| {
        let mut command = h.token("client-assertion");
        command
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file)
            .args(["--output", output]);
        command
    };

    // JSON, as `az account get-access-token`.
    let run = h.run(&mut command("json"));
    let token = run.access_token();
    let json = run.json();
    let expires_on = json["expires_on"].as_i64().expect("expires_on");
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("now");
    assert!(
        expires_on > now + 600 && expires_on <= now + 86_400,
        "{json}"
    );
    let exp = claims(&token)["exp"].as_i64().expect("exp");
    assert!(
        (exp - expires_on).abs() <= 5,
        "exp {exp}, expires_on {expires_on}"
    );
    let expires_text = json["expiresOn"].as_str().expect("expiresOn");
    assert_eq!(
        expires_text.len(),
        "2025-01-01 00:00:00.000000".len(),
        "{json}"
    );
    assert!(expires_text.ends_with(".000000"), "{json}");
    assert_eq!(json["tokenType"], "Bearer");
    assert_eq!(json["tenant"], TENANT);
    let object = json.as_object().expect("an object");
    assert!(object.contains_key("refreshOn"), "{json}");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "accessToken",
            "expiresOn",
            "expires_on",
            "refreshOn",
            "tenant",
            "tokenType"
        ]
    );

    // The bare token, and nothing else.
    let run = h.run(&mut command("token"));
    run.ok();
    let bare = run.stdout.trim_end_matches('\n');
    assert_eq!(bare.split('.').count(), 3, "{run:#?}");
    assert_eq!(run.stdout, format!("{bare}\n"));
    assert!(!run.stderr.contains(bare));
    assert_eq!(claims(bare)["appid"], WORKLOAD);

    // An Authorization header line.
    let run = h.run(&mut command("header"));
    run.ok();
    let header = run.stdout.strip_suffix('\n').expect("one line");
    let value = header
        .strip_prefix("Authorization: Bearer ")
        .expect("an Authorization header");
    assert_eq!(value.split('.').count(), 3, "{run:#?}");
    assert!(!run.stderr.contains(value));

    // An unknown format is a usage error.
    h.run(&mut command("yaml")).code(2);

    // `entra decode` from an argument, `-` and standard input.
    let check = |run: &Run| {
        run.ok();
        assert!(run.stdout.contains("NOT VERIFIED"), "{run:#?}");
        assert!(run.stdout.contains(WORKLOAD), "{run:#?}");
        assert!(run.stdout.contains(TENANT), "{run:#?}");
        assert!(run.stdout.contains("\"exp (UTC)\""), "{run:#?}");
        assert!(run.stdout.contains("\"alg\": \"RS256\""), "{run:#?}");
    };
    check(&h.run(entra().args(["decode", &token])));
    check(&h.run(entra().args(["decode", &format!("Bearer {bare}")])));
    check(&h.run(entra().arg("decode").write_stdin(format!("{token}\n"))));
    check(
        &h.run(
            entra()
                .args(["decode", "-"])
                .write_stdin(format!("{bare}\n")),
        ),
    );
    let run = h.run(entra().args(["decode", "not-a-jwt"]));
    run.code(4);
    assert!(run.stderr.contains("not a JWT"), "{run:#?}");
}

#[test]
fn on_behalf_of_with_secrets_and_user_assertions() {
    let h = Harness::start();
    let user_assertion = h.user_assertion(USER, API);
    let user_file = h.write("user-token", &user_assertion);

    // AZURE_CLIENT_SECRET, the user's token from a file.
    let run = h.run(h.obo(API, &user_file).env("AZURE_CLIENT_SECRET", SECRET));
    let issued = claims(&run.access_token());
    assert_eq!(issued["oid"], USER_OID);
    assert_eq!(issued["azp"], API);
    assert_eq!(issued["scp"], "Data.Read");
    let request = h.last_token_request();
    assert_eq!(request.client_auth.as_deref(), Some("client_secret"));
    assert_eq!(request.form["requested_token_use"], "on_behalf_of");
    assert_eq!(request.form["assertion"], "[redacted]");
    assert_eq!(h.emulator.counters().instance_discovery_requests, 0);

    // --client-secret-env names another variable, which wins over AZURE_CLIENT_SECRET; the
    // user's token comes from standard input.
    let run = h.run(
        h.obo(API, Path::new("-"))
            .args(["--client-secret-env", "OTHER_VAR"])
            .env("OTHER_VAR", SECRET)
            .env("AZURE_CLIENT_SECRET", WRONG_SECRET)
            .env("AZURE_FEDERATED_TOKEN_FILE", h.dir.path().join("missing"))
            .write_stdin(format!("{user_assertion}\n")),
    );
    assert_eq!(claims(&run.access_token())["oid"], USER_OID);
    assert_eq!(
        h.last_token_request().client_auth.as_deref(),
        Some("client_secret")
    );
    assert_eq!(h.token_requests().len(), 2);

    // Settings from the environment, the header output.
    let run = h.run(
        h.token("on-behalf-of")
            .args(["--scope", OBO_SCOPE, "--disable-instance-discovery"])
            .args(["--user-assertion-file", "-", "--output", "header"])
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", API)
            .env("AZURE_AUTHORITY_HOST", h.url())
            .env("AZURE_CLIENT_SECRET", SECRET)
            .write_stdin(user_assertion),
    );
    run.ok();
    assert!(
        run.stdout.starts_with("Authorization: Bearer ey"),
        "{run:#?}"
    );

    // A wrong secret: Entra's refusal, exit status 3.
    let run = h.run(
        h.obo(API, &user_file)
            .env("AZURE_CLIENT_SECRET", WRONG_SECRET),
    );
    run.code(3);
    assert!(run.stderr.contains("AADSTS7000215"), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");

    // --client-secret-env naming an empty or unset variable: a configuration error.
    let run = h.run(
        h.obo(API, &user_file)
            .args(["--client-secret-env", "UNSET_VAR"])
            .env("AZURE_CLIENT_SECRET", SECRET),
    );
    run.code(4);
    assert!(run.stderr.contains("UNSET_VAR"), "{run:#?}");
    // No client credential at all: a usage error.
    h.run(&mut h.obo(API, &user_file)).code(2);
    // Two client credentials: a usage error naming both flags.
    let certificate = h.certificate(API);
    let combined = certificate.combined_pem_path.expect("combined PEM");
    let run = h.run(
        h.obo(API, &user_file)
            .args(["--client-secret-env", "OTHER_VAR"])
            .env("OTHER_VAR", SECRET)
            .arg("--certificate")
            .arg(&combined),
    );
    run.code(2);
    assert!(
        run.stderr.contains("--certificate") && run.stderr.contains("--client-secret-env"),
        "{run:#?}"
    );
    // An unreadable user assertion file.
    let run = h.run(
        h.obo(API, &h.dir.path().join("missing"))
            .env("AZURE_CLIENT_SECRET", SECRET),
    );
    run.code(4);
    assert!(run.stderr.contains("user assertion"), "{run:#?}");
    // One larger than any token is refused without being read whole.
    let huge = h.write("huge-user-token", &"a".repeat(1024 * 1024 + 1));
    let run = h.run(h.obo(API, &huge).env("AZURE_CLIENT_SECRET", SECRET));
    run.code(4);
    assert!(run.stderr.contains("larger than 1048576 bytes"), "{run:#?}");
    // An empty one, named by the CLI's flag.
    let empty = h.write("empty-user-token", "\n");
    let run = h.run(h.obo(API, &empty).env("AZURE_CLIENT_SECRET", SECRET));
    run.code(4);
    assert!(
        run.stderr
            .contains("the user assertion (--user-assertion-file) is empty"),
        "{run:#?}"
    );
    // Missing --user-assertion-file: usage.
    h.run(
        h.token("on-behalf-of")
            .args(["--tenant-id", TENANT, "--client-id", API])
            .args(["--scope", OBO_SCOPE, "--authority", h.url()])
            .env("AZURE_CLIENT_SECRET", SECRET),
    )
    .code(2);
}

#[test]
fn on_behalf_of_with_certificates() {
    let h = Harness::start();
    let certificate = h.certificate(API);
    let combined = certificate.combined_pem_path.expect("combined PEM");
    let pfx = certificate.pkcs12_path.expect("PKCS#12");
    assert_eq!(certificate.pkcs12_password.as_deref(), Some(PFX_PASSWORD));
    let user_file = h.write("user-token", &h.user_assertion(USER, API));

    // A combined PEM file: PS256 with x5t#S256, no chain.
    let run = h.run(h.obo(API, &user_file).arg("--certificate").arg(&combined));
    assert_eq!(claims(&run.access_token())["oid"], USER_OID);
    assert_eq!(
        h.last_token_request().client_auth.as_deref(),
        Some("certificate PS256 x5t#S256")
    );

    // PKCS#12 with the password in AZURE_CLIENT_CERTIFICATE_PASSWORD; AZURE_CLIENT_SECRET and
    // AZURE_FEDERATED_TOKEN_FILE are ignored once a certificate is given.
    let run = h.run(
        h.obo(API, &user_file)
            .arg("--certificate")
            .arg(&pfx)
            .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", PFX_PASSWORD)
            .env("AZURE_CLIENT_SECRET", WRONG_SECRET)
            .env("AZURE_FEDERATED_TOKEN_FILE", h.dir.path().join("missing")),
    );
    assert_eq!(claims(&run.access_token())["oid"], USER_OID);
    assert!(
        h.last_token_request()
            .client_auth
            .is_some_and(|auth| auth.starts_with("certificate ")),
    );

    // PKCS#12 from AZURE_CLIENT_CERTIFICATE_PATH with the password in another variable.
    let run = h.run(
        h.obo(API, &user_file)
            .args(["--certificate-password-env", "PFX_PW"])
            .env("PFX_PW", PFX_PASSWORD)
            .env("AZURE_CLIENT_CERTIFICATE_PATH", &pfx)
            .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", WRONG_PFX_PASSWORD),
    );
    assert_eq!(claims(&run.access_token())["oid"], USER_OID);
    assert_eq!(h.token_requests().len(), 3);

    // A wrong password, or none: the certificate cannot be read, a configuration error.
    let run = h.run(
        h.obo(API, &user_file)
            .arg("--certificate")
            .arg(&pfx)
            .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", WRONG_PFX_PASSWORD),
    );
    run.code(4);
    assert!(
        run.stderr
            .contains("the password in AZURE_CLIENT_CERTIFICATE_PASSWORD does not open"),
        "{run:#?}"
    );
    // Without one, the message names the variable to set, and says so once.
    let run = h.run(h.obo(API, &user_file).arg("--certificate").arg(&pfx));
    run.code(4);
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    assert_eq!(
        run.stderr
            .matches("set AZURE_CLIENT_CERTIFICATE_PASSWORD")
            .count(),
        1,
        "{run:#?}"
    );
    assert!(!run.stderr.contains("Incorrect password"), "{run:#?}");
    // An unreadable certificate file.
    let run = h.run(
        h.obo(API, &user_file)
            .arg("--certificate")
            .arg(h.dir.path().join("missing.pem")),
    );
    run.code(4);
    assert!(
        run.stderr.contains("cannot read the certificate"),
        "{run:#?}"
    );
    assert_eq!(
        h.token_requests().len(),
        3,
        "no request for a broken configuration"
    );

    // Subject name/issuer authentication needs the chain (x5c).
    let sni = h.certificate(SNI_API);
    let sni_pem = sni.combined_pem_path.expect("combined PEM");
    let sni_user = h.write("sni-user-token", &h.user_assertion(USER, SNI_API));
    let run = h.run(h.obo(SNI_API, &sni_user).arg("--certificate").arg(&sni_pem));
    run.code(3);
    assert!(run.stderr.contains("AADSTS700027"), "{run:#?}");
    let run = h.run(
        h.obo(SNI_API, &sni_user)
            .arg("--certificate")
            .arg(&sni_pem)
            .arg("--send-certificate-chain"),
    );
    assert_eq!(claims(&run.access_token())["azp"], SNI_API);
    let auth = h.last_token_request().client_auth.expect("client_auth");
    assert!(auth.contains("x5c"), "{auth}");
    for value in ["true", "1", "TRUE"] {
        let run = h.run(
            h.obo(SNI_API, &sni_user)
                .env("AZURE_CLIENT_CERTIFICATE_PATH", &sni_pem)
                .env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", value),
        );
        assert_eq!(claims(&run.access_token())["azp"], SNI_API);
        let auth = h.last_token_request().client_auth.expect("client_auth");
        assert!(auth.contains("x5c"), "{value}: {auth}");
    }
    for value in ["false", "0", ""] {
        let run = h.run(
            h.obo(SNI_API, &sni_user)
                .env("AZURE_CLIENT_CERTIFICATE_PATH", &sni_pem)
                .env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", value),
        );
        run.code(3);
        assert!(run.stderr.contains("AADSTS700027"), "{value}: {run:#?}");
    }
}

#[test]
fn tenants_cae_and_claims() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());
    let command = || {
        let mut command = h.token("client-assertion");
        command
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file);
        command
    };

    // --request-tenant allowed by --additionally-allowed-tenant.
    let run = h.run(
        command()
            .args(["--request-tenant", SECOND_TENANT])
            .args(["--additionally-allowed-tenant", THIRD_TENANT])
            .args(["--additionally-allowed-tenant", SECOND_TENANT]),
    );
    assert_eq!(claims(&run.access_token())["tid"], SECOND_TENANT);
    assert_eq!(run.json()["tenant"], SECOND_TENANT);
    assert_eq!(
        h.last_token_request().path,
        format!("/{SECOND_TENANT}/oauth2/v2.0/token")
    );

    // ... and by AZURE_ADDITIONALLY_ALLOWED_TENANTS, `;`-separated.
    let run = h.run(command().args(["--request-tenant", THIRD_TENANT]).env(
        "AZURE_ADDITIONALLY_ALLOWED_TENANTS",
        format!("{SECOND_TENANT};{THIRD_TENANT}"),
    ));
    assert_eq!(claims(&run.access_token())["tid"], THIRD_TENANT);
    assert_eq!(run.json()["tenant"], THIRD_TENANT);
    let run = h.run(
        command()
            .args(["--request-tenant", SECOND_TENANT])
            .env("AZURE_ADDITIONALLY_ALLOWED_TENANTS", "*"),
    );
    assert_eq!(claims(&run.access_token())["tid"], SECOND_TENANT);
    let requests = h.token_requests().len();

    // A tenant not allowed: refused before any request, a configuration failure naming the
    // CLI's flag and variable, not the library's parameter.
    for case in 0..3 {
        let mut refused = command();
        match case {
            0 => &mut refused,
            1 => refused.args(["--additionally-allowed-tenant", SECOND_TENANT]),
            _ => refused.env("AZURE_ADDITIONALLY_ALLOWED_TENANTS", SECOND_TENANT),
        };
        let run = h.run(refused.args(["--request-tenant", THIRD_TENANT]));
        run.code(4);
        assert!(
            run.stderr.contains("--additionally-allowed-tenant")
                && run.stderr.contains("AZURE_ADDITIONALLY_ALLOWED_TENANTS")
                && !run.stderr.contains("additionally_allowed_tenants"),
            "{run:#?}"
        );
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    assert_eq!(h.token_requests().len(), requests);

    // Continuous Access Evaluation: the CP1 capability, xms_cc in the token.
    let run = h.run(command().arg("--enable-cae"));
    let token = run.access_token();
    assert_eq!(claims(&token)["xms_cc"], serde_json::json!(["CP1"]));
    let request = h.last_token_request();
    assert!(request.form["claims"].contains("CP1"), "{request:?}");

    // A claims challenge goes to Entra as the claims form field.
    let challenge = r#"{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}"#;
    let run = h.run(command().args(["--claims", challenge]));
    run.access_token();
    let request = h.last_token_request();
    let sent: Value = serde_json::from_str(&request.form["claims"]).expect("claims JSON");
    assert_eq!(
        sent["access_token"]["nbf"]["value"], "1700000000",
        "{request:?}"
    );

    // On-behalf-of in another tenant, allowed from the environment.
    let guest = h.write("guest-token", &h.user_assertion(GUEST, API));
    let run = h.run(
        h.obo(API, &guest)
            .args(["--request-tenant", SECOND_TENANT, "--enable-cae"])
            .env("AZURE_ADDITIONALLY_ALLOWED_TENANTS", SECOND_TENANT)
            .env("AZURE_CLIENT_SECRET", SECRET),
    );
    let issued = claims(&run.access_token());
    assert_eq!(issued["tid"], SECOND_TENANT);
    assert_eq!(issued["oid"], GUEST_OID);
    assert_eq!(issued["xms_cc"], serde_json::json!(["CP1"]));
    let run = h.run(
        h.obo(API, &guest)
            .args(["--request-tenant", THIRD_TENANT])
            .env("AZURE_ADDITIONALLY_ALLOWED_TENANTS", SECOND_TENANT)
            .env("AZURE_CLIENT_SECRET", SECRET),
    );
    run.code(4);
    assert!(
        run.stderr.contains("--additionally-allowed-tenant"),
        "{run:#?}"
    );
}

#[test]
fn usage_and_configuration_errors() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());

    // No --scope: clap's usage error.
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file),
    );
    run.code(2);
    assert!(run.stderr.contains("--scope"), "{run:#?}");
    h.run(entra().args(["token", "password"])).code(2);
    h.run(&mut entra()).code(2);

    // An http:// authority, from a flag or from AZURE_AUTHORITY_HOST.
    let insecure = h.url().replace("https://", "http://");
    for from_flag in [true, false] {
        let mut command = h.token("client-assertion");
        if from_flag {
            command.args(["--authority", &insecure]);
        } else {
            command.env("AZURE_AUTHORITY_HOST", &insecure);
        }
        let run = h.run(
            command
                .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
                .args(["--scope", APP_SCOPE])
                .arg("--assertion-file")
                .arg(&assertion_file),
        );
        run.code(4);
        assert!(run.stderr.contains("http"), "{run:#?}");
    }
    // An unreadable CA file.
    let run = h.run(
        entra()
            .args(["token", "client-assertion", "--ca-file"])
            .arg(h.dir.path().join("missing-ca.pem"))
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file),
    );
    run.code(4);
    assert!(run.stderr.contains("CA file"), "{run:#?}");
    assert!(h.token_requests().is_empty());

    // Without the emulator's CA the TLS handshake fails: a configuration failure.
    let run = h.run(
        entra()
            .args(["token", "client-assertion"])
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file),
    );
    run.code(4);
    assert!(h.token_requests().is_empty());
    // The message says the certificate was refused and how to trust a CA; the causes below
    // it say why.
    assert!(
        run.stderr
            .contains("error: The server's TLS certificate was not accepted."),
        "{run:#?}"
    );
    assert!(run.stderr.contains("SSL_CERT_FILE"), "{run:#?}");
    assert!(
        run.stderr
            .lines()
            .any(|line| line.starts_with("  caused by: ") && line.contains("certificate")),
        "{run:#?}"
    );
    // The CLI names its own flag for it, once, and not the library's option.
    assert_eq!(run.stderr.matches("--ca-file PATH").count(), 1, "{run:#?}");
    assert!(!run.stderr.contains("trust_pem"), "{run:#?}");
}

#[test]
fn secrets_stay_out_of_debug_logs() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());
    let user_file = h.write("user-token", &h.user_assertion(USER, API));
    let certificate = h.certificate(API);
    let pfx = certificate.pkcs12_path.expect("PKCS#12");
    let runs = [
        h.run(
            h.token("client-assertion")
                .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
                .args(["--scope", APP_SCOPE, "--authority", h.url()])
                .arg("--assertion-file")
                .arg(&assertion_file)
                .env("ENTRA_LOG", "trace"),
        ),
        h.run(
            h.obo(API, &user_file)
                .env("AZURE_CLIENT_SECRET", SECRET)
                .env("ENTRA_LOG", "trace"),
        ),
        h.run(
            h.obo(API, &user_file)
                .arg("--certificate")
                .arg(&pfx)
                .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", PFX_PASSWORD)
                .env("ENTRA_LOG", "trace"),
        ),
    ];
    for run in &runs {
        // `Harness::run` checked the secrets; the token is in stdout once, never in the log.
        run.access_token();
        assert!(run.stderr.contains("TRACE"), "{run:#?}");
    }
    let run = h.run(
        h.obo(API, &user_file)
            .env("AZURE_CLIENT_SECRET", WRONG_SECRET)
            .env("ENTRA_LOG", "trace"),
    );
    run.code(3);
}

#[test]
fn demo_runs_both_credentials_offline() {
    let run = entra().arg("demo").output().expect("entra demo runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{run:?}");
    assert!(stdout.contains("ClientAssertionCredential"), "{stdout}");
    assert!(stdout.contains("OnBehalfOfCredential"), "{stdout}");
}

/// A JWT-shaped text with the given claims, for `entra decode` (which verifies nothing).
fn unsigned_jwt(claims: &Value) -> String {
    let encode = |json: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        encode(r#"{"alg":"RS256","typ":"JWT"}"#.to_owned()),
        encode(claims.to_string())
    )
}

/// `std::process::Command` for `entra`, for what assert_cmd cannot arrange: a standard
/// output that is full or closed.
fn entra_process() -> std::process::Command {
    use assert_cmd::cargo::CommandCargoExt as _;
    let mut command = std::process::Command::cargo_bin("entra").expect("the entra binary");
    command.env_clear();
    command
}

/// Waits at most a minute for `child`, killing it past that.
fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().expect("kill");
            panic!("entra did not finish within a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn exit_status_1_internal_when_output_cannot_be_written() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let output = entra_process()
        .args(["decode", &unsigned_jwt(&serde_json::json!({"sub": "x"}))])
        .stdout(full)
        .output()
        .expect("entra runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot write to standard output"),
        "{stderr}"
    );
}

#[test]
fn exit_status_2_usage_for_missing_conflicting_or_malformed_inputs() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());
    let user_file = h.write("user-token", &h.user_assertion(USER, API));

    // A missing assertion and a missing user assertion are the same kind of failure.
    let no_assertion = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()]),
    );
    no_assertion.code(2);
    assert!(
        no_assertion.stderr.contains("--assertion-file"),
        "{no_assertion:#?}"
    );
    let no_user_assertion = h.run(
        h.token("on-behalf-of")
            .args(["--tenant-id", TENANT, "--client-id", API])
            .args(["--scope", OBO_SCOPE, "--authority", h.url()])
            .env("AZURE_CLIENT_SECRET", SECRET),
    );
    no_user_assertion.code(2);
    assert!(
        no_user_assertion.stderr.contains("--user-assertion-file"),
        "{no_user_assertion:#?}"
    );

    // A secret and a certificate, or a certificate and an assertion: which one would be used
    // is not guessed.
    let combined = h.certificate(API).combined_pem_path.expect("combined PEM");
    h.run(
        h.obo(API, &user_file)
            .args(["--client-secret-env", "OTHER_VAR"])
            .env("OTHER_VAR", SECRET)
            .env("AZURE_CLIENT_CERTIFICATE_PATH", &combined),
    )
    .code(2);
    h.run(
        h.obo(API, &user_file)
            .arg("--certificate")
            .arg(&combined)
            .arg("--assertion-file")
            .arg(&assertion_file),
    )
    .code(2);

    // --claims is checked before any request: JSON, and an object.
    for claims in [r#"{"access_token":"#, "[1]", "not json"] {
        let run = h.run(
            h.token("client-assertion")
                .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
                .args(["--scope", APP_SCOPE, "--authority", h.url()])
                .arg("--assertion-file")
                .arg(&assertion_file)
                .args(["--claims", claims]),
        );
        run.code(2);
        assert!(run.stderr.contains("--claims"), "{run:#?}");
    }
    assert!(h.token_requests().is_empty());
}

#[test]
fn exit_status_3_authentication_refused_is_said_once_plainly() {
    let h = Harness::start();
    let user_file = h.write("user-token", &h.user_assertion(USER, API));
    let wrong_secret = || {
        let mut command = h.obo(API, &user_file);
        command.env("AZURE_CLIENT_SECRET", WRONG_SECRET);
        command
    };

    let run = h.run(&mut wrong_secret());
    run.code(3);
    // Once: no log line repeating the error line.
    assert_eq!(run.stderr.matches("AADSTS7000215").count(), 1, "{run:#?}");
    assert!(run.stderr.starts_with("error: "), "{run:#?}");
    assert!(!run.stderr.contains("WARN"), "{run:#?}");
    // Plainly: Entra's description has CR LF line ends; they become plain lines.
    assert!(!run.stderr.contains('\r'), "{run:#?}");
    assert!(run.stderr.contains("\n       Trace ID: "), "{run:#?}");

    // -v adds the library's own log of the failure; standard error is a pipe here, so
    // without colour.
    let run = h.run(wrong_secret().arg("-v"));
    run.code(3);
    assert!(run.stderr.contains("WARN"), "{run:#?}");
    assert!(!run.stderr.contains('\u{1b}'), "{run:#?}");
    assert!(!run.stderr.contains('\r'), "{run:#?}");
}

#[test]
fn colour_only_on_a_terminal_and_without_no_color() {
    let h = Harness::start();
    let user_file = h.write("user-token", &h.user_assertion(USER, API));
    // `script` (util-linux, in Debian's essential bsdutils) runs the command on a terminal.
    let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    let line = [
        assert_cmd::cargo::cargo_bin("entra").display().to_string(),
        "-v".to_owned(),
        "token".to_owned(),
        "on-behalf-of".to_owned(),
        "--ca-file".to_owned(),
        h.ca().display().to_string(),
        "--tenant-id".to_owned(),
        TENANT.to_owned(),
        "--client-id".to_owned(),
        API.to_owned(),
        "--scope".to_owned(),
        OBO_SCOPE.to_owned(),
        "--authority".to_owned(),
        h.url().to_owned(),
        "--disable-instance-discovery".to_owned(),
        "--user-assertion-file".to_owned(),
        user_file.display().to_string(),
    ]
    .iter()
    .map(|word| quote(word))
    .collect::<Vec<_>>()
    .join(" ");
    let on_terminal = |no_color: Option<&str>| {
        let mut command = Command::new("script");
        command
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .env_clear()
            .env("AZURE_CLIENT_SECRET", WRONG_SECRET)
            .timeout(std::time::Duration::from_secs(60));
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        h.run(&mut command)
    };
    let coloured = on_terminal(None);
    coloured.code(3);
    assert!(coloured.stdout.contains("WARN"), "{coloured:#?}");
    assert!(coloured.stdout.contains('\u{1b}'), "{coloured:#?}");
    // NO_COLOR set to anything but empty: no colour, even on a terminal.
    let plain = on_terminal(Some("1"));
    plain.code(3);
    assert!(plain.stdout.contains("WARN"), "{plain:#?}");
    assert!(!plain.stdout.contains('\u{1b}'), "{plain:#?}");
    let empty = on_terminal(Some(""));
    assert!(empty.stdout.contains('\u{1b}'), "{empty:#?}");
}

#[test]
fn exit_status_4_configuration_for_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("address").port();
    let state = tempfile::tempdir().expect("temporary directory");
    let output = entra()
        .args(["emulator", "--port", &port.to_string(), "--state-dir"])
        .arg(state.path())
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("entra runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(output.stdout.is_empty(), "{output:?}");
    // Its cause, once, with the way out.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is in use")) && stderr.contains("--port"),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn exit_status_4_configuration_for_an_authority_that_is_not_entra() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());
    // What a web server that is not Entra ID answers: a 404 page. Not worth trying again.
    h.emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".to_owned(),
        count: 1,
        fault: Fault::Body {
            status: Some(404),
            body: "<html><body>Not Found</body></html>".to_owned(),
        },
    });
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file),
    );
    run.code(4);
    assert_eq!(run.stderr.matches("error: ").count(), 1, "{run:#?}");
    assert_eq!(h.token_requests().len(), 1, "not retried");
}

#[test]
fn exit_status_5_transient_when_throttled() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());
    // Retry-After beyond the request's budget: the credential does not wait.
    h.emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".to_owned(),
        count: 1,
        fault: Fault::Status {
            status: 429,
            retry_after: Some(3600),
        },
    });
    let run = h.run(
        h.token("client-assertion")
            .args(["--tenant-id", TENANT, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file),
    );
    run.code(5);
    assert!(run.stderr.contains("throttling"), "{run:#?}");
    assert_eq!(run.stderr.matches("error: ").count(), 1, "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
}

#[test]
fn exit_status_141_when_standard_output_is_closed_early() {
    let token = unsigned_jwt(&serde_json::json!({ "sub": "x".repeat(100_000) }));
    let mut child = entra_process()
        .arg("decode")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("entra runs");
    // The reader goes away before entra writes anything, as `head -1` would after a line.
    drop(child.stdout.take());
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(token.as_bytes()).expect("write the token");
    }
    let status = wait_bounded(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert_eq!(stderr, "", "quietly");
}

#[test]
fn az_output_in_local_time_with_the_tenant_of_the_token() {
    let h = Harness::start();
    let assertion_file = h.write("federated-token", &h.client_assertion());
    h.emulator.update_settings(&SettingsUpdate {
        tokens: Some(TokenSettingsUpdate {
            refresh_in_secs: Some(Some(1800)),
            ..TokenSettingsUpdate::default()
        }),
        ..SettingsUpdate::default()
    });
    let command = |zone: &str| {
        let mut command = h.token("client-assertion");
        command
            .args(["--tenant-id", DOMAIN, "--client-id", WORKLOAD])
            .args(["--scope", APP_SCOPE, "--authority", h.url()])
            .arg("--assertion-file")
            .arg(&assertion_file)
            .env("TZ", zone);
        command
    };
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    // az's `expiresOn` text for a POSIX time seen `offset` seconds east of UTC.
    let az = |unix: i64, offset: i64| {
        time::OffsetDateTime::from_unix_timestamp(unix + offset)
            .expect("a time")
            .format(&format)
            .expect("formatted")
    };
    // The POSIX time of an az text seen `offset` seconds east of UTC.
    let unix = |text: &str, offset: i64| {
        time::PrimitiveDateTime::parse(text, &format)
            .expect("az's format")
            .assume_utc()
            .unix_timestamp()
            - offset
    };

    // Five and a half hours east of UTC (a POSIX TZ: no time zone database needed).
    let run = h.run(&mut command("XYZ-05:30"));
    run.access_token();
    let json = run.json();
    let expires_on = json["expires_on"].as_i64().expect("expires_on, an integer");
    let east = 5 * 3600 + 30 * 60;
    assert_eq!(json["expiresOn"], az(expires_on, east), "{json}");
    let refresh_on = unix(json["refreshOn"].as_str().expect("refreshOn"), east);
    assert!(
        (expires_on - refresh_on - (3599 - 1800)).abs() <= 5,
        "{json}"
    );
    // As az prints it: the tenant's GUID from the token, though asked by domain.
    assert_eq!(json["tenant"], TENANT, "{json}");
    assert_eq!(json["tokenType"], "Bearer");

    // The same token seen from UTC reads 5:30 earlier.
    let run = h.run(&mut command("UTC0"));
    run.access_token();
    let json = run.json();
    let expires_on = json["expires_on"].as_i64().expect("expires_on");
    assert_eq!(json["expiresOn"], az(expires_on, 0), "{json}");
}

#[test]
fn emulator_configuration_errors_point_at_the_mistake() {
    let state = tempfile::tempdir().expect("temporary directory");
    let config = state.path().join("emulator.toml");
    std::fs::write(&config, "bogus = 1\n").expect("write");
    let output = entra()
        .args(["emulator", "--config"])
        .arg(&config)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("entra runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    // The parser's caret stays under the key it points at.
    let lines: Vec<&str> = stderr.lines().collect();
    let source = lines
        .iter()
        .find(|line| line.ends_with("1 | bogus = 1"))
        .unwrap_or_else(|| panic!("the source line: {stderr}"));
    let caret = lines
        .iter()
        .find(|line| line.ends_with("| ^^^^^"))
        .unwrap_or_else(|| panic!("the caret line: {stderr}"));
    assert_eq!(source.find("bogus"), caret.find('^'), "{stderr}");
    assert!(stderr.contains("unknown field `bogus`"), "{stderr}");
}
