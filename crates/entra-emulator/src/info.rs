//! What the emulator tells its clients about itself: the info file and the admin API's answers.
//!
//! These types are serialised to the JSON *info file* that `entra emulator` writes, so that
//! scripts and programs in any language can find the URL, the CA and every credential.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole emulator: where it listens, how to trust it, and what is registered.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EmulatorInfo {
    /// The base URL, such as `https://127.0.0.1:49152`.
    pub url: String,
    /// The authority host to give a credential: the base URL (it is the same).
    pub authority_host: String,
    /// The CA certificate that signs the emulator's TLS certificate, as PEM.
    pub ca_pem: String,
    /// Where `ca_pem` is written, when the emulator has a state directory.
    pub ca_pem_path: Option<PathBuf>,
    /// The `iss` of federated tokens the emulator mints (`POST /_emulator/tokens/federated`).
    pub federation_issuer: String,
    /// The base URL of the admin endpoints.
    pub admin_url: String,
    /// Every registered tenant.
    pub tenants: Vec<TenantInfo>,
}

/// A registered tenant.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TenantInfo {
    /// The tenant ID (GUID).
    pub id: String,
    /// Domain names that also name the tenant.
    pub domains: Vec<String>,
    /// Applications registered in the tenant.
    pub applications: Vec<ApplicationInfo>,
    /// Users of the tenant.
    pub users: Vec<UserInfo>,
}

/// A registered application and all of its credentials.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ApplicationInfo {
    /// The name given at registration.
    pub name: String,
    /// The client ID.
    pub client_id: String,
    /// The tenant the application is registered in.
    pub tenant_id: String,
    /// The application ID URI, if the application exposes an API.
    pub app_id_uri: Option<String>,
    /// Client secret values (this is a test authority: they are meant to be read).
    pub secrets: Vec<String>,
    /// Certificates, with the paths of their key material.
    pub certificates: Vec<CertificateInfo>,
    /// Whether client assertions must carry an `x5c` chain.
    pub require_certificate_chain: bool,
    /// Federated identity credentials.
    pub federated_credentials: Vec<FederatedCredentialInfo>,
}

/// An application certificate.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CertificateInfo {
    /// SHA-1 thumbprint, upper-case hex, as the Azure portal shows it.
    pub thumbprint: String,
    /// The `x5t` header value (base64url SHA-1, no padding).
    pub x5t: String,
    /// The `x5t#S256` header value (base64url SHA-256, no padding).
    pub x5t_s256: String,
    /// The certificate as PEM.
    pub cert_pem: String,
    /// The private key as unencrypted PKCS#8 PEM, when the emulator generated it.
    pub key_pem: Option<String>,
    /// The certificate PEM file.
    pub cert_pem_path: Option<PathBuf>,
    /// The private key PEM file.
    pub key_pem_path: Option<PathBuf>,
    /// Key then certificate then CA, in one PEM file: what `client_certificate` takes.
    pub combined_pem_path: Option<PathBuf>,
    /// The PKCS#12 file (key, leaf and CA certificate).
    pub pkcs12_path: Option<PathBuf>,
    /// The PKCS#12 file's password.
    pub pkcs12_password: Option<String>,
}

/// A federated identity credential.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FederatedCredentialInfo {
    /// Accepted issuer.
    pub issuer: String,
    /// Accepted subject.
    pub subject: String,
    /// Accepted audience.
    pub audience: String,
}

/// A user.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct UserInfo {
    /// The object ID (`oid`).
    pub object_id: String,
    /// The user principal name.
    pub upn: String,
    /// The display name.
    pub name: String,
    /// The user's home tenant.
    pub tenant_id: String,
}
