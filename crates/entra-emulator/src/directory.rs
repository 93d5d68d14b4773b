//! The registered tenants, applications and users, and how they are registered.

use std::collections::HashMap;
use std::path::Path;

use rand::Rng as _;
use rand::distr::Alphanumeric;

use crate::Error;
use crate::config::{
    ApplicationConfig, CertificateConfig, FederatedCredentialConfig, TenantConfig,
    TrustedIssuerConfig, UserConfig,
};
use crate::info::{
    ApplicationInfo, CertificateInfo, FederatedCredentialInfo, TenantInfo, UserInfo,
};
use crate::pki::{self, CertificateAuthority, RegisteredCertificate};

/// The audience federated tokens carry unless a credential says otherwise.
pub(crate) const DEFAULT_FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Everything registered.
#[derive(Default)]
pub(crate) struct Directory {
    tenants: Vec<Tenant>,
    /// Public keys (PKCS#1 DER) of external issuers, by issuer.
    trusted_issuers: HashMap<String, Vec<Vec<u8>>>,
    /// Where each user is, `(tenant, user)` indexes, by lower-cased object ID and by UPN: a
    /// lookup per token request must not scan every user. Nothing is ever unregistered, so
    /// the indexes stay valid.
    users: HashMap<String, (usize, usize)>,
}

pub(crate) struct Tenant {
    pub(crate) id: String,
    pub(crate) domains: Vec<String>,
    pub(crate) applications: Vec<Application>,
    pub(crate) users: Vec<User>,
}

pub(crate) struct Application {
    pub(crate) name: String,
    pub(crate) client_id: String,
    pub(crate) service_principal_id: String,
    pub(crate) app_id_uri: Option<String>,
    pub(crate) secrets: Vec<String>,
    pub(crate) certificates: Vec<ApplicationCertificate>,
    pub(crate) require_certificate_chain: bool,
    pub(crate) federated_credentials: Vec<FederatedCredentialInfo>,
    pub(crate) roles: Vec<String>,
    pub(crate) consented_scopes: Option<Vec<String>>,
}

pub(crate) struct ApplicationCertificate {
    pub(crate) registered: RegisteredCertificate,
    pub(crate) info: CertificateInfo,
}

#[derive(Clone)]
pub(crate) struct User {
    pub(crate) object_id: String,
    pub(crate) upn: String,
    pub(crate) name: String,
    pub(crate) tenant_id: String,
}

/// What registration needs besides the configuration: the CA, where files go, and the
/// emulator's own federation issuer.
pub(crate) struct Registrar<'a> {
    pub(crate) ca: &'a CertificateAuthority,
    pub(crate) state_dir: &'a Path,
    pub(crate) federation_issuer: &'a str,
}

impl Directory {
    pub(crate) fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|tenant| tenant.is_named(name))
    }

    pub(crate) fn user(&self, object_id_or_upn: &str) -> Option<&User> {
        let &(tenant, user) = self.users.get(&object_id_or_upn.to_lowercase())?;
        self.tenants.get(tenant)?.users.get(user)
    }

    pub(crate) fn trusted_issuer_keys(&self, issuer: &str) -> Option<&[Vec<u8>]> {
        self.trusted_issuers.get(issuer).map(Vec::as_slice)
    }

    pub(crate) fn info(&self) -> Vec<TenantInfo> {
        self.tenants.iter().map(Tenant::info).collect()
    }

    pub(crate) fn add_trusted_issuer(&mut self, config: &TrustedIssuerConfig) -> Result<(), Error> {
        let keys = config
            .public_keys_pem
            .iter()
            .map(|text| pki::rsa_public_key_from_pem(text))
            .collect::<Result<Vec<_>, _>>()?;
        self.trusted_issuers
            .entry(config.issuer.clone())
            .or_default()
            .extend(keys);
        Ok(())
    }

    pub(crate) fn add_tenant(
        &mut self,
        config: &TenantConfig,
        registrar: &Registrar<'_>,
    ) -> Result<TenantInfo, Error> {
        let id = config.id.clone().unwrap_or_else(new_guid);
        for name in std::iter::once(&id).chain(&config.domains) {
            validate_tenant_name(name)?;
            if self.tenant(name).is_some() {
                return Err(Error::Config(format!(
                    "tenant '{name}' is already registered"
                )));
            }
        }
        self.tenants.push(Tenant {
            id: id.clone(),
            domains: config.domains.clone(),
            applications: Vec::new(),
            users: Vec::new(),
        });
        for application in &config.applications {
            self.add_application(&id, application, registrar)?;
        }
        for user in &config.users {
            self.add_user(&id, user)?;
        }
        self.tenant(&id)
            .map(Tenant::info)
            .ok_or_else(|| Error::Config("tenant vanished".into()))
    }

    pub(crate) fn add_application(
        &mut self,
        tenant: &str,
        config: &ApplicationConfig,
        registrar: &Registrar<'_>,
    ) -> Result<ApplicationInfo, Error> {
        let tenant = self
            .tenants
            .iter_mut()
            .find(|candidate| candidate.is_named(tenant))
            .ok_or_else(|| Error::Config(format!("no tenant '{tenant}'")))?;
        let client_id = config.client_id.clone().unwrap_or_else(new_guid);
        if tenant.application(&client_id).is_some() {
            return Err(Error::Config(format!(
                "application '{client_id}' is already registered in tenant '{}'",
                tenant.id
            )));
        }
        let mut secrets = config.secrets.clone();
        if config.generate_secret {
            secrets.push(random_secret());
        }
        let app_dir = registrar.state_dir.join("applications").join(&client_id);
        let certificates = config
            .certificates
            .iter()
            .enumerate()
            .map(|(index, certificate)| {
                register_certificate(certificate, &config.name, &app_dir, index, registrar.ca)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let federated_credentials = config
            .federated_credentials
            .iter()
            .map(|credential| federated_info(credential, registrar.federation_issuer))
            .collect();
        let name = if config.name.is_empty() {
            client_id.clone()
        } else {
            config.name.clone()
        };
        tenant.applications.push(Application {
            name,
            client_id: client_id.clone(),
            service_principal_id: new_guid(),
            app_id_uri: config.app_id_uri.clone(),
            secrets,
            certificates,
            require_certificate_chain: config.require_certificate_chain,
            federated_credentials,
            roles: config.roles.clone(),
            consented_scopes: config.consented_scopes.clone(),
        });
        let tenant_id = tenant.id.clone();
        tenant
            .application(&client_id)
            .map(|application| application.info(&tenant_id))
            .ok_or_else(|| Error::Config("application vanished".into()))
    }

    pub(crate) fn add_user(
        &mut self,
        tenant: &str,
        config: &UserConfig,
    ) -> Result<UserInfo, Error> {
        let object_id = config.object_id.clone().unwrap_or_else(new_guid);
        if config.upn.is_empty() {
            return Err(Error::Config("a user needs a upn".to_owned()));
        }
        if self.user(&object_id).is_some() || self.user(&config.upn).is_some() {
            return Err(Error::Config(format!(
                "user '{}' is already registered",
                config.upn
            )));
        }
        let tenant_index = self
            .tenants
            .iter()
            .position(|candidate| candidate.is_named(tenant))
            .ok_or_else(|| Error::Config(format!("no tenant '{tenant}'")))?;
        let tenant = &mut self.tenants[tenant_index];
        let user = User {
            object_id,
            name: config.name.clone().unwrap_or_else(|| config.upn.clone()),
            upn: config.upn.clone(),
            tenant_id: tenant.id.clone(),
        };
        let info = user.info();
        let place = (tenant_index, tenant.users.len());
        self.users.insert(user.object_id.to_lowercase(), place);
        self.users.insert(user.upn.to_lowercase(), place);
        tenant.users.push(user);
        Ok(info)
    }
}

impl Tenant {
    fn is_named(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name)
            || self
                .domains
                .iter()
                .any(|domain| domain.eq_ignore_ascii_case(name))
    }

    /// Every name of the tenant: its ID, then its domains.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.domains.iter().map(String::as_str))
    }

    pub(crate) fn application(&self, client_id: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|app| app.client_id.eq_ignore_ascii_case(client_id))
    }

    fn info(&self) -> TenantInfo {
        TenantInfo {
            id: self.id.clone(),
            domains: self.domains.clone(),
            applications: self
                .applications
                .iter()
                .map(|app| app.info(&self.id))
                .collect(),
            users: self.users.iter().map(User::info).collect(),
        }
    }
}

impl Application {
    /// Whether a token with this `aud` was issued to this application.
    pub(crate) fn is_audience(&self, audience: &str) -> bool {
        let audience = audience.trim_end_matches('/');
        audience.eq_ignore_ascii_case(&self.client_id)
            || audience.eq_ignore_ascii_case(&format!("api://{}", self.client_id))
            || self
                .app_id_uri
                .as_deref()
                .is_some_and(|uri| uri.trim_end_matches('/') == audience)
    }

    fn info(&self, tenant_id: &str) -> ApplicationInfo {
        ApplicationInfo {
            name: self.name.clone(),
            client_id: self.client_id.clone(),
            tenant_id: tenant_id.to_owned(),
            app_id_uri: self.app_id_uri.clone(),
            secrets: self.secrets.clone(),
            certificates: self
                .certificates
                .iter()
                .map(|cert| cert.info.clone())
                .collect(),
            require_certificate_chain: self.require_certificate_chain,
            federated_credentials: self.federated_credentials.clone(),
        }
    }
}

impl User {
    fn info(&self) -> UserInfo {
        UserInfo {
            object_id: self.object_id.clone(),
            upn: self.upn.clone(),
            name: self.name.clone(),
            tenant_id: self.tenant_id.clone(),
        }
    }
}

fn federated_info(config: &FederatedCredentialConfig, own_issuer: &str) -> FederatedCredentialInfo {
    FederatedCredentialInfo {
        issuer: config
            .issuer
            .clone()
            .unwrap_or_else(|| own_issuer.to_owned()),
        subject: config.subject.clone(),
        audience: config
            .audience
            .clone()
            .unwrap_or_else(|| DEFAULT_FEDERATED_AUDIENCE.to_owned()),
    }
}

fn register_certificate(
    config: &CertificateConfig,
    app_name: &str,
    app_dir: &Path,
    index: usize,
    ca: &CertificateAuthority,
) -> Result<ApplicationCertificate, Error> {
    let supplied_pem = match (&config.cert_pem, &config.cert_pem_file) {
        (Some(pem), _) => Some(pem.clone()),
        (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read certificate {}: {e}", path.display()))
        })?),
        (None, None) => None,
    };
    if let Some(pem) = supplied_pem {
        let der = pki::certificates_from_pem(&pem)?.remove(0);
        let registered = RegisteredCertificate::from_der(&der)?;
        let info = certificate_info(&registered, pem, None);
        return Ok(ApplicationCertificate { registered, info });
    }

    let subject = if app_name.is_empty() {
        "application"
    } else {
        app_name
    };
    let generated = ca.client_certificate(subject)?;
    let registered = RegisteredCertificate::from_der(&generated.cert_der)?;
    let password = config.pkcs12_password.clone().unwrap_or_else(random_secret);
    let ca_der = pki::certificates_from_pem(&generated.ca_pem)?.remove(0);
    let pkcs12 = generated.pkcs12(&password, &ca_der)?;

    std::fs::create_dir_all(app_dir).map_err(Error::io(app_dir))?;
    let file = |suffix: &str| app_dir.join(format!("certificate-{index}{suffix}"));
    let cert_path = file(".cert.pem");
    let key_path = file(".key.pem");
    let combined_path = file(".pem");
    let pkcs12_path = file(".pfx");
    write_private(&cert_path, generated.cert_pem.as_bytes())?;
    write_private(&key_path, generated.key_pem.as_bytes())?;
    let combined = format!(
        "{}{}{}",
        generated.key_pem, generated.cert_pem, generated.ca_pem
    );
    write_private(&combined_path, combined.as_bytes())?;
    write_private(&pkcs12_path, &pkcs12)?;

    let mut info = certificate_info(&registered, generated.cert_pem, Some(generated.key_pem));
    info.cert_pem_path = Some(cert_path);
    info.key_pem_path = Some(key_path);
    info.combined_pem_path = Some(combined_path);
    info.pkcs12_path = Some(pkcs12_path);
    info.pkcs12_password = Some(password);
    Ok(ApplicationCertificate { registered, info })
}

fn certificate_info(
    registered: &RegisteredCertificate,
    cert_pem: String,
    key_pem: Option<String>,
) -> CertificateInfo {
    CertificateInfo {
        thumbprint: registered.thumbprint_hex(),
        x5t: registered.x5t(),
        x5t_s256: registered.x5t_s256(),
        cert_pem,
        key_pem,
        cert_pem_path: None,
        key_pem_path: None,
        combined_pem_path: None,
        pkcs12_path: None,
        pkcs12_password: None,
    }
}

/// Writes a file readable only by its owner: it may hold a private key.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(Error::io(path))?;
    file.write_all(contents).map_err(Error::io(path))
}

/// Tenant names go into URLs and paths: only `[A-Za-z0-9.-]`, as Entra allows.
fn validate_tenant_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "'{name}' is not a valid tenant ID or domain"
        )))
    }
}

pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn random_secret() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(34)
        .map(char::from)
        .collect();
    format!("emu~{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a state directory, for a registrar.
    struct Fixture {
        ca: CertificateAuthority,
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                ca: CertificateAuthority::generate().expect("ca"),
                dir: tempfile::tempdir().expect("dir"),
            }
        }

        fn registrar(&self) -> Registrar<'_> {
            Registrar {
                ca: &self.ca,
                state_dir: self.dir.path(),
                federation_issuer: "iss",
            }
        }
    }

    #[test]
    fn tenants_are_found_by_id_and_domain_case_insensitively() {
        let fixture = Fixture::new();
        let registrar = fixture.registrar();
        let mut directory = Directory::default();
        let info = directory
            .add_tenant(
                &TenantConfig {
                    domains: vec!["Contoso.onmicrosoft.com".into()],
                    ..Default::default()
                },
                &registrar,
            )
            .expect("tenant");
        assert!(directory.tenant(&info.id.to_uppercase()).is_some());
        assert!(directory.tenant("contoso.ONMICROSOFT.com").is_some());
        assert!(directory.tenant("fabrikam").is_none());
    }

    #[test]
    fn users_are_found_in_their_tenant_by_object_id_or_upn_case_insensitively() {
        let fixture = Fixture::new();
        let registrar = fixture.registrar();
        let mut directory = Directory::default();
        for tenant in ["t1", "t2"] {
            let config = TenantConfig {
                id: Some(tenant.into()),
                ..Default::default()
            };
            directory.add_tenant(&config, &registrar).expect("tenant");
        }
        let user = |upn: &str| UserConfig {
            upn: upn.into(),
            ..Default::default()
        };
        let first = directory.add_user("t1", &user("Ann@t1")).expect("ann");
        let second = directory.add_user("t2", &user("bob@t2")).expect("bob");
        let found = directory.user("ann@T1").expect("by upn");
        assert_eq!(
            (found.upn.as_str(), found.tenant_id.as_str()),
            ("Ann@t1", "t1")
        );
        let found = directory
            .user(&second.object_id.to_uppercase())
            .expect("by object id");
        assert_eq!(
            (found.upn.as_str(), found.tenant_id.as_str()),
            ("bob@t2", "t2")
        );
        assert_eq!(
            directory
                .user(&first.object_id)
                .map(|user| user.upn.as_str()),
            Some("Ann@t1")
        );
        assert!(directory.user("carol@t1").is_none());
        assert!(
            directory.add_user("t2", &user("ANN@t1")).is_err(),
            "duplicate upn"
        );
        assert!(
            directory.add_user("t3", &user("dan@t3")).is_err(),
            "no such tenant"
        );
        assert!(directory.user("dan@t3").is_none());
    }

    #[test]
    fn bad_tenant_names_and_duplicates_are_refused() {
        let fixture = Fixture::new();
        let registrar = fixture.registrar();
        let mut directory = Directory::default();
        for bad in ["a/b", "my tenant", ""] {
            let config = TenantConfig {
                id: Some(bad.into()),
                ..Default::default()
            };
            assert!(directory.add_tenant(&config, &registrar).is_err(), "{bad}");
        }
        let config = TenantConfig {
            id: Some("t1".into()),
            ..Default::default()
        };
        directory.add_tenant(&config, &registrar).expect("first");
        assert!(directory.add_tenant(&config, &registrar).is_err());
    }

    #[test]
    fn generated_certificates_write_their_files() {
        let fixture = Fixture::new();
        let registrar = fixture.registrar();
        let mut directory = Directory::default();
        let tenant = TenantConfig {
            id: Some("t1".into()),
            applications: vec![ApplicationConfig {
                name: "api".into(),
                generate_secret: true,
                certificates: vec![CertificateConfig::default()],
                federated_credentials: vec![FederatedCredentialConfig {
                    subject: "s".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let info = directory.add_tenant(&tenant, &registrar).expect("tenant");
        let app = &info.applications[0];
        assert_eq!(app.secrets.len(), 1);
        assert_eq!(app.federated_credentials[0].issuer, "iss");
        assert_eq!(
            app.federated_credentials[0].audience,
            DEFAULT_FEDERATED_AUDIENCE
        );
        let cert = &app.certificates[0];
        for path in [
            &cert.cert_pem_path,
            &cert.key_pem_path,
            &cert.combined_pem_path,
            &cert.pkcs12_path,
        ] {
            let path = path.as_ref().expect("written");
            assert!(path.is_file(), "{}", path.display());
        }
        let combined =
            std::fs::read_to_string(cert.combined_pem_path.as_ref().expect("path")).expect("read");
        assert!(combined.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
