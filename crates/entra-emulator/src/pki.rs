//! The emulator's own PKI: a CA, the TLS server certificate, and application certificates.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256, RsaKeySize, SanType,
};
use sha1::Digest as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::Error;

/// The emulator's certificate authority, which signs its TLS certificate and application
/// certificates.
pub(crate) struct CertificateAuthority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl CertificateAuthority {
    pub(crate) fn generate() -> Result<Self, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(Error::pki)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "entra-emulator local CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "entra-emulator");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(Error::pki)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(Error::pki)?;
        Ok(Self { issuer })
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A TLS server certificate for the loopback names, as (certificate chain DER, key DER).
    pub(crate) fn server_certificate(&self) -> Result<(Vec<Vec<u8>>, Vec<u8>), Error> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).map_err(Error::pki)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V6(
            std::net::Ipv6Addr::LOCALHOST,
        )));
        params
            .distinguished_name
            .push(DnType::CommonName, "entra-emulator");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(Error::pki)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(Error::pki)?;
        Ok((
            vec![cert.der().to_vec(), self.issuer.der().to_vec()],
            key.serialize_der(),
        ))
    }

    /// A new RSA-2048 key and a client certificate for it, signed by this CA.
    pub(crate) fn client_certificate(&self, subject: &str) -> Result<GeneratedCertificate, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(Error::pki)?;
        params.distinguished_name.push(DnType::CommonName, subject);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key =
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(Error::pki)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(Error::pki)?;
        Ok(GeneratedCertificate {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            ca_pem: self.pem(),
            key_pkcs8_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A key and certificate the emulator generated for an application.
pub(crate) struct GeneratedCertificate {
    pub(crate) cert_der: Vec<u8>,
    pub(crate) cert_pem: String,
    pub(crate) ca_pem: String,
    pub(crate) key_pkcs8_der: Vec<u8>,
    pub(crate) key_pem: String,
}

impl GeneratedCertificate {
    /// The key and the chain (leaf, then CA) as a PKCS#12 file protected by `password`.
    pub(crate) fn pkcs12(&self, password: &str, ca_der: &[u8]) -> Result<Vec<u8>, Error> {
        use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
        let key = PrivateKey::from_der(&self.key_pkcs8_der).map_err(Error::pki)?;
        let leaf = Certificate::from_der(&self.cert_der).map_err(Error::pki)?;
        let ca = Certificate::from_der(ca_der).map_err(Error::pki)?;
        let local_key_id = sha1::Sha1::digest(&self.cert_der).to_vec();
        let chain = PrivateKeyChain::new(local_key_id, key, [leaf, ca]);
        let mut store = KeyStore::new();
        store.add_entry("client", KeyStoreEntry::PrivateKeyChain(chain));
        store.writer(password).write().map_err(Error::pki)
    }
}

/// What the token endpoint needs of a registered certificate.
#[derive(Clone, Debug)]
pub(crate) struct RegisteredCertificate {
    pub(crate) der: Vec<u8>,
    pub(crate) sha1: [u8; 20],
    pub(crate) sha256: [u8; 32],
    /// The RSA public key (PKCS#1 `RSAPublicKey` DER) that verifies assertion signatures.
    pub(crate) rsa_public_key: Vec<u8>,
}

impl RegisteredCertificate {
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, Error> {
        let rsa_public_key = rsa_public_key_of_certificate(der)?;
        Ok(Self {
            der: der.to_vec(),
            sha1: sha1::Sha1::digest(der).into(),
            sha256: sha2::Sha256::digest(der).into(),
            rsa_public_key,
        })
    }

    /// The SHA-1 thumbprint as Entra shows it: upper-case hex.
    pub(crate) fn thumbprint_hex(&self) -> String {
        self.sha1.iter().map(|byte| format!("{byte:02X}")).collect()
    }

    pub(crate) fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha1)
    }

    pub(crate) fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha256)
    }
}

/// Every CERTIFICATE block of a PEM text, as DER, in order.
pub(crate) fn certificates_from_pem(text: &str) -> Result<Vec<Vec<u8>>, Error> {
    let blocks = pem::parse_many(text).map_err(|e| Error::Config(format!("bad PEM: {e}")))?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err(Error::Config(
            "the PEM text holds no CERTIFICATE block".to_owned(),
        ));
    }
    Ok(certs)
}

/// The RSA public key of a certificate, as PKCS#1 `RSAPublicKey` DER.
pub(crate) fn rsa_public_key_of_certificate(der: &[u8]) -> Result<Vec<u8>, Error> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::Config(format!("unreadable certificate: {e}")))?;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(_)) => Ok(cert.public_key().subject_public_key.data.to_vec()),
        _ => Err(Error::Config(
            "only RSA certificates can sign client assertions".to_owned(),
        )),
    }
}

/// The RSA public key of an SPKI PEM block or a certificate PEM block.
pub(crate) fn rsa_public_key_from_pem(text: &str) -> Result<Vec<u8>, Error> {
    let block = pem::parse(text).map_err(|e| Error::Config(format!("bad PEM: {e}")))?;
    match block.tag() {
        "CERTIFICATE" => rsa_public_key_of_certificate(block.contents()),
        "PUBLIC KEY" => {
            let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(block.contents())
                .map_err(|e| Error::Config(format!("unreadable public key: {e}")))?;
            match spki.parsed() {
                Ok(PublicKey::RSA(_)) => Ok(spki.subject_public_key.data.to_vec()),
                _ => Err(Error::Config("trusted issuer keys must be RSA".to_owned())),
            }
        }
        other => Err(Error::Config(format!(
            "expected a PUBLIC KEY or CERTIFICATE, got {other}"
        ))),
    }
}

/// The modulus and exponent of a PKCS#1 `RSAPublicKey`, base64url, as a JWK carries them.
pub(crate) fn jwk_components(rsa_public_key: &[u8]) -> Result<(String, String), Error> {
    let (_, key) = x509_parser::public_key::RSAPublicKey::from_der(rsa_public_key)
        .map_err(|e| Error::Config(format!("unreadable RSA key: {e}")))?;
    let trim = |bytes: &[u8]| {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        URL_SAFE_NO_PAD.encode(&bytes[start..])
    };
    Ok((trim(key.modulus), trim(key.exponent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_are_rsa_and_chain_to_the_ca() {
        let ca = CertificateAuthority::generate().expect("ca");
        let generated = ca.client_certificate("app").expect("cert");
        let registered = RegisteredCertificate::from_der(&generated.cert_der).expect("rsa");
        assert_eq!(registered.thumbprint_hex().len(), 40);
        assert_eq!(registered.x5t_s256().len(), 43);
        let (_, cert) = X509Certificate::from_der(&generated.cert_der).expect("parse");
        let ca_der = certificates_from_pem(&ca.pem()).expect("pem").remove(0);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("parse ca");
        assert_eq!(cert.issuer(), ca_cert.subject());
    }

    #[test]
    fn pkcs12_round_trips_with_its_password() {
        let ca = CertificateAuthority::generate().expect("ca");
        let generated = ca.client_certificate("app").expect("cert");
        let ca_der = certificates_from_pem(&ca.pem()).expect("pem").remove(0);
        let pfx = generated.pkcs12("pa55", &ca_der).expect("pfx");
        let store = p12_keystore::KeyStore::from_pkcs12(
            &pfx,
            "pa55",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .expect("readable with the password");
        let (_, chain) = store.private_key_chain().expect("key chain");
        assert_eq!(chain.certs()[0].as_der(), generated.cert_der.as_slice());
        assert!(
            p12_keystore::KeyStore::from_pkcs12(
                &pfx,
                "wrong",
                p12_keystore::Pkcs12ImportPolicy::Relaxed
            )
            .is_err()
        );
    }
}
