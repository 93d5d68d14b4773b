//! Helpers shared by the emulator's integration tests: an HTTPS client that trusts the
//! emulator, a client-assertion signer, and JWT inspection.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod abuse;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use entra_emulator::{
    ApplicationConfig, CertificateConfig, Emulator, EmulatorConfig, FederatedCredentialConfig,
    TenantConfig, UserConfig,
};
use serde_json::{Value, json};

pub const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
pub const DOMAIN: &str = "fabrikam.onmicrosoft.com";
pub const OTHER_TENANT: &str = "bbbbbbbb-0000-0000-0000-000000000002";
pub const API: &str = "10000000-0000-0000-0000-000000000001";
pub const SNI_APP: &str = "10000000-0000-0000-0000-000000000002";
pub const WORKLOAD: &str = "10000000-0000-0000-0000-000000000003";
pub const CONSENTED: &str = "10000000-0000-0000-0000-000000000004";
pub const DOWNSTREAM: &str = "10000000-0000-0000-0000-000000000005";
pub const USER: &str = "20000000-0000-0000-0000-000000000001";
pub const SECRET: &str = "correct-horse-battery-staple";

pub struct Harness {
    pub emulator: Emulator,
    pub http: reqwest::Client,
}

pub fn config() -> EmulatorConfig {
    let app = |client_id: &str, name: &str| ApplicationConfig {
        name: name.to_owned(),
        client_id: Some(client_id.to_owned()),
        ..ApplicationConfig::default()
    };
    EmulatorConfig {
        tenants: vec![
            TenantConfig {
                id: Some(TENANT.to_owned()),
                domains: vec![DOMAIN.to_owned()],
                applications: vec![
                    ApplicationConfig {
                        secrets: vec![SECRET.to_owned()],
                        certificates: vec![CertificateConfig::default()],
                        app_id_uri: Some("api://middle-tier".to_owned()),
                        roles: vec!["Reader".to_owned()],
                        ..app(API, "api")
                    },
                    ApplicationConfig {
                        certificates: vec![CertificateConfig::default()],
                        require_certificate_chain: true,
                        ..app(SNI_APP, "sni")
                    },
                    ApplicationConfig {
                        federated_credentials: vec![FederatedCredentialConfig {
                            subject: "system:serviceaccount:ns:workload".to_owned(),
                            ..FederatedCredentialConfig::default()
                        }],
                        ..app(WORKLOAD, "workload")
                    },
                    ApplicationConfig {
                        app_id_uri: Some("api://downstream".to_owned()),
                        ..app(DOWNSTREAM, "downstream")
                    },
                    ApplicationConfig {
                        secrets: vec![SECRET.to_owned()],
                        consented_scopes: Some(vec!["api://downstream/Data.Read".to_owned()]),
                        ..app(CONSENTED, "consented")
                    },
                ],
                users: vec![UserConfig {
                    object_id: Some(USER.to_owned()),
                    upn: "megan@fabrikam.onmicrosoft.com".to_owned(),
                    name: Some("Megan Bowen".to_owned()),
                }],
            },
            TenantConfig {
                id: Some(OTHER_TENANT.to_owned()),
                applications: vec![ApplicationConfig {
                    secrets: vec![SECRET.to_owned()],
                    ..app(API, "api")
                }],
                ..TenantConfig::default()
            },
        ],
        ..EmulatorConfig::default()
    }
}

pub async fn start() -> Harness {
    start_with(config()).await
}

pub async fn start_with(config: EmulatorConfig) -> Harness {
    let emulator = Emulator::builder()
        .config(config)
        .start()
        .await
        .expect("emulator starts");
    let http = client_trusting(&emulator.ca_pem());
    Harness { emulator, http }
}

pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

impl Harness {
    pub fn token_url(&self, tenant: &str) -> String {
        self.emulator.token_endpoint(tenant)
    }

    /// Posts a token request and returns (status, JSON body).
    pub async fn post_token(&self, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(self.token_url(tenant))
            .form(form)
            .send()
            .await
            .expect("response");
        let status = response.status().as_u16();
        let body = response.json().await.expect("JSON body");
        (status, body)
    }

    /// The PKCS#8 DER key and DER certificate of an application's first certificate.
    pub fn certificate(&self, client_id: &str) -> (Vec<u8>, Vec<u8>) {
        let info = self.emulator.info();
        let app = info
            .tenants
            .iter()
            .flat_map(|tenant| tenant.applications.iter())
            .find(|app| app.client_id == client_id)
            .expect("registered app");
        let cert = &app.certificates[0];
        let key = pem::parse(cert.key_pem.as_deref().expect("generated key")).expect("key pem");
        let der = pem::parse(&cert.cert_pem).expect("cert pem");
        (key.into_contents(), der.into_contents())
    }
}

/// Signs a JWT with an RSA key (PKCS#8 DER); `alg` is PS256 or RS256.
pub fn sign_jwt(key_pkcs8: &[u8], header: &Value, claims: &Value) -> String {
    let key = RsaKeyPair::from_pkcs8(key_pkcs8).expect("rsa key");
    let mut token = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let padding: &dyn signature::RsaEncoding = match header["alg"].as_str() {
        Some("PS256") => &signature::RSA_PSS_SHA256,
        _ => &signature::RSA_PKCS1_SHA256,
    };
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        padding,
        &SystemRandom::new(),
        token.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// What a client assertion looks like; tests change one thing at a time.
pub struct AssertionSpec {
    pub alg: &'static str,
    pub thumbprint_header: &'static str,
    pub with_chain: bool,
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub jti: String,
}

impl AssertionSpec {
    pub fn new(harness: &Harness, client_id: &str, tenant: &str) -> Self {
        Self {
            alg: "PS256",
            thumbprint_header: "x5t#S256",
            with_chain: false,
            aud: harness.token_url(tenant),
            iss: client_id.to_owned(),
            sub: client_id.to_owned(),
            exp: now() + 600,
            jti: uuid::Uuid::new_v4().to_string(),
        }
    }

    pub fn sign(&self, key_pkcs8: &[u8], cert_der: &[u8]) -> String {
        use sha2::Digest as _;
        let thumbprint = match self.thumbprint_header {
            "x5t" => URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(cert_der)),
            _ => URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(cert_der)),
        };
        let mut header = json!({ "alg": self.alg, "typ": "JWT" });
        header[self.thumbprint_header] = json!(thumbprint);
        if self.with_chain {
            header["x5c"] = json!([STANDARD.encode(cert_der)]);
        }
        let now = now();
        let claims = json!({
            "aud": self.aud, "iss": self.iss, "sub": self.sub, "jti": self.jti,
            "nbf": now, "iat": now, "exp": self.exp,
        });
        sign_jwt(key_pkcs8, &header, &claims)
    }
}

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const OBO_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The claims of a JWT, unverified.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

/// The first AADSTS code of an error body.
pub fn code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().expect("error_codes")
}
