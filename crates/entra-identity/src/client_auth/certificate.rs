//! Client certificates in pure Rust: PEM (PKCS#8, PKCS#1, encrypted PKCS#8) and PKCS#12
//! (modern AES and legacy 3DES/RC2), and the client assertions they sign.
//!
//! # Limits
//!
//! A certificate is at most [`MAX_CERTIFICATE_BYTES`] (1 MiB). The key derivation of an
//! encrypted key is bounded before it runs: PBKDF2 at most [`MAX_PBKDF2_ITERATIONS`]
//! (1,000,000) iterations, scrypt at most N·r·p = [`MAX_SCRYPT_COST`] (2^23: N = 2^20 with
//! r = 8 and p = 1, which takes 1 GiB of memory), p at most 16. These accept what tools
//! write by default (OpenSSL 3: PBKDF2 with 2,048 iterations, or scrypt N = 2^14, r = 8,
//! p = 1; PKCS#12 from OpenSSL, .NET or Azure Key Vault: 2,000 to 600,000 iterations) and
//! refuse a crafted key that would take gigabytes or minutes (N = 2^40 would abort the
//! process on the allocation). A PKCS#12 file is bounded by p12-keystore's own limits
//! (1,000,000 iterations for its MAC and for each encrypted bag, scrypt at most 1 GiB),
//! per bag, not in total; its size cap bounds the number of bags.

use std::fmt;
use std::sync::Mutex;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use pkcs8::pkcs5::{EncryptionScheme, pbes2::Kdf};
use serde_json::json;
use sha1::Digest as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use zeroize::Zeroizing;

use crate::error::{BuildError, CertificateError};
use crate::secret::ClientAssertion;

/// Lifetime of a signed client assertion.
const ASSERTION_LIFETIME_SECS: i64 = 600;
/// A signed assertion is reused for this long, so it is never sent within five minutes of its
/// expiry.
const ASSERTION_REUSE_SECS: i64 = 300;
/// Backdating of `nbf`/`iat`, for clocks slightly ahead of Entra's.
const CLOCK_SKEW_SECS: i64 = 60;

/// The largest certificate input (PEM text or PKCS#12 bytes) accepted.
pub(crate) const MAX_CERTIFICATE_BYTES: usize = 1024 * 1024;
/// The most PBKDF2 iterations an encrypted key may ask for (p12-keystore's limit too).
pub(crate) const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;
/// The largest scrypt N·r·p an encrypted key may ask for: N = 2^20, r = 8, p = 1.
pub(crate) const MAX_SCRYPT_COST: u64 = 1 << 23;
/// The largest scrypt parallelisation an encrypted key may ask for.
const MAX_SCRYPT_PARALLELISM: u16 = 16;

/// A parsed client certificate: the RSA key, the chain (leaf first) and its thumbprints.
pub(crate) struct ClientCertificate {
    key: RsaKeyPair,
    chain: Vec<Vec<u8>>,
    sha1: [u8; 20],
    sha256: [u8; 32],
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &URL_SAFE_NO_PAD.encode(self.sha256))
            .field("chain_length", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads PEM (when the bytes contain `-----BEGIN`) or PKCS#12.
    pub(crate) fn from_bytes(
        data: &[u8],
        password: Option<&[u8]>,
    ) -> Result<Self, CertificateError> {
        if data.len() > MAX_CERTIFICATE_BYTES {
            return Err(CertificateError::TooLarge {
                limit: MAX_CERTIFICATE_BYTES,
            });
        }
        if data.windows(10).any(|window| window == b"-----BEGIN") {
            Self::from_pem(data, password)
        } else {
            Self::from_pkcs12(data, password)
        }
    }

    fn from_pem(data: &[u8], password: Option<&[u8]>) -> Result<Self, CertificateError> {
        let text = std::str::from_utf8(data).map_err(|_| CertificateError::Unreadable)?;
        if text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(CertificateError::LegacyEncryptedPem);
        }
        let blocks = pem::parse_many(text).map_err(|_| CertificateError::Unreadable)?;
        let chain: Vec<Vec<u8>> = blocks
            .iter()
            .filter(|block| block.tag() == "CERTIFICATE")
            .map(|block| block.contents().to_vec())
            .collect();
        let key_block = blocks
            .iter()
            .find(|block| block.tag().ends_with("PRIVATE KEY"));
        let Some(key_block) = key_block else {
            return Err(CertificateError::MissingPrivateKey);
        };
        let key = match key_block.tag() {
            "ENCRYPTED PRIVATE KEY" => {
                let password = password.ok_or(CertificateError::PasswordRequired)?;
                let encrypted = pkcs8::EncryptedPrivateKeyInfoRef::try_from(key_block.contents())
                    .map_err(|_| CertificateError::Unreadable)?;
                check_key_derivation(&encrypted.encryption_algorithm)?;
                let document = encrypted
                    .decrypt(password)
                    .map_err(|_| CertificateError::WrongPassword)?;
                rsa_from_pkcs8(document.as_bytes())?
            }
            tag => {
                if password.is_some_and(|password| !password.is_empty()) {
                    return Err(CertificateError::PasswordNotNeeded);
                }
                match tag {
                    "PRIVATE KEY" => rsa_from_pkcs8(key_block.contents())?,
                    "RSA PRIVATE KEY" => RsaKeyPair::from_der(key_block.contents())
                        .map_err(|_| CertificateError::Unreadable)?,
                    _ => return Err(CertificateError::NotRsa),
                }
            }
        };
        Self::new(key, chain)
    }

    fn from_pkcs12(data: &[u8], password: Option<&[u8]>) -> Result<Self, CertificateError> {
        let password = match password {
            Some(bytes) => {
                std::str::from_utf8(bytes).map_err(|_| CertificateError::WrongPassword)?
            }
            None => "",
        };
        let store = p12_keystore::KeyStore::from_pkcs12(
            data,
            password,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|error| {
            use p12_keystore::error::Error as P12;
            let looks_like_pkcs12 = data.first() == Some(&0x30);
            match error {
                // What p12-keystore refuses before deriving: iterations or scrypt cost above
                // its limits (or other parameters it cannot use).
                P12::InvalidParameters => CertificateError::KeyDerivationTooCostly {
                    limit: "PKCS#12 key derivation: at most 1000000 iterations (MAC and each \
                            bag) and 1 GiB of scrypt memory"
                        .to_owned(),
                },
                P12::MacError(_) | P12::UnpadError | P12::Pkcs5Error(_) | P12::InvalidData
                    if looks_like_pkcs12 =>
                {
                    CertificateError::WrongPassword
                }
                _ => CertificateError::Unreadable,
            }
        })?;
        let Some((_, chain)) = store.private_key_chain() else {
            return Err(CertificateError::MissingPrivateKey);
        };
        let key_der = Zeroizing::new(chain.key().as_der().to_vec());
        let key = rsa_from_pkcs8(&key_der)?;
        let certificates = chain
            .certs()
            .iter()
            .map(|cert| cert.as_der().to_vec())
            .collect();
        Self::new(key, certificates)
    }

    /// Puts the key's certificate first and checks they belong together.
    fn new(key: RsaKeyPair, mut chain: Vec<Vec<u8>>) -> Result<Self, CertificateError> {
        if chain.is_empty() {
            return Err(CertificateError::MissingCertificate);
        }
        let public_key = key.public_key().as_ref().to_vec();
        let leaf = chain
            .iter()
            .position(|der| rsa_public_key(der).is_some_and(|key| key == public_key))
            .ok_or(CertificateError::KeyDoesNotMatchCertificate)?;
        chain.swap(0, leaf);
        let sha1 = sha1::Sha1::digest(&chain[0]).into();
        let sha256 = sha2::Sha256::digest(&chain[0]).into();
        Ok(Self {
            key,
            chain,
            sha1,
            sha256,
        })
    }

    /// Signs a client assertion for the token endpoint `audience`.
    ///
    /// PS256 with `x5t#S256`, or RS256 with `x5t` for AD FS; `x5c` (standard base64 DER,
    /// leaf first) when `send_chain`.
    pub(crate) fn sign_assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
        adfs: bool,
        send_chain: bool,
    ) -> Result<ClientAssertion, aws_lc_rs::error::Unspecified> {
        let mut header = if adfs {
            json!({ "alg": "RS256", "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode(self.sha1) })
        } else {
            json!({ "alg": "PS256", "typ": "JWT", "x5t#S256": URL_SAFE_NO_PAD.encode(self.sha256) })
        };
        if send_chain {
            header["x5c"] = json!(
                self.chain
                    .iter()
                    .map(|der| STANDARD.encode(der))
                    .collect::<Vec<_>>()
            );
        }
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now - CLOCK_SKEW_SECS,
            "iat": now - CLOCK_SKEW_SECS,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let mut jwt = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let padding: &'static dyn signature::RsaEncoding = if adfs {
            &signature::RSA_PKCS1_SHA256
        } else {
            &signature::RSA_PSS_SHA256
        };
        let mut signed = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(padding, &SystemRandom::new(), jwt.as_bytes(), &mut signed)?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signed));
        Ok(ClientAssertion::new(jwt))
    }
}

/// How many audiences (tenants' token endpoints) a signer keeps a recent assertion for, so a
/// multi-tenant credential that alternates between a few tenants does not sign every time.
const RECENT_AUDIENCES: usize = 8;

/// A certificate and the assertions it signed recently, reused for a few minutes.
#[derive(Debug)]
pub(crate) struct CertificateSigner {
    certificate: ClientCertificate,
    send_chain: bool,
    recent: Mutex<Vec<RecentAssertion>>,
}

#[derive(Debug)]
struct RecentAssertion {
    audience: String,
    signed_at: i64,
    assertion: ClientAssertion,
}

impl CertificateSigner {
    pub(crate) fn new(certificate: ClientCertificate, send_chain: bool) -> Self {
        Self {
            certificate,
            send_chain,
            recent: Mutex::new(Vec::new()),
        }
    }

    /// An assertion for `audience`: the one signed for it last when that is less than five
    /// minutes old, else a new one.
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
        adfs: bool,
    ) -> Result<ClientAssertion, aws_lc_rs::error::Unspecified> {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh =
            |entry: &RecentAssertion| (0..ASSERTION_REUSE_SECS).contains(&(now - entry.signed_at));
        if let Some(previous) = recent.iter().find(|entry| entry.audience == audience)
            && fresh(previous)
        {
            return Ok(previous.assertion.clone());
        }
        let assertion =
            self.certificate
                .sign_assertion(client_id, audience, now, adfs, self.send_chain)?;
        recent.retain(|entry| entry.audience != audience && fresh(entry));
        if recent.len() == RECENT_AUDIENCES {
            // The oldest goes: it expires first.
            recent.remove(0);
        }
        recent.push(RecentAssertion {
            audience: audience.to_owned(),
            signed_at: now,
            assertion: assertion.clone(),
        });
        Ok(assertion)
    }
}

/// Refuses an encrypted key whose key derivation would cost more than the limits allow (see
/// the module docs), before it runs.
fn check_key_derivation(scheme: &EncryptionScheme) -> Result<(), CertificateError> {
    let too_costly = |limit: String| Err(CertificateError::KeyDerivationTooCostly { limit });
    let EncryptionScheme::Pbes2(parameters) = scheme else {
        // PBES1 counts iterations in 16 bits: at most 65,535.
        return Ok(());
    };
    match &parameters.kdf {
        Kdf::Pbkdf2(pbkdf2) if pbkdf2.iteration_count > MAX_PBKDF2_ITERATIONS => {
            too_costly(format!(
                "PBKDF2 iterations {} (at most {MAX_PBKDF2_ITERATIONS})",
                pbkdf2.iteration_count
            ))
        }
        Kdf::Scrypt(scrypt) => {
            let cost = scrypt
                .cost_parameter
                .checked_mul(u64::from(scrypt.block_size))
                .and_then(|cost| cost.checked_mul(u64::from(scrypt.parallelization)));
            if cost.is_none_or(|cost| cost > MAX_SCRYPT_COST)
                || scrypt.parallelization > MAX_SCRYPT_PARALLELISM
            {
                return too_costly(format!(
                    "scrypt N·r·p = {}·{}·{} (at most 2^23, such as N = 2^20, r = 8, p = 1; p at \
                 most {MAX_SCRYPT_PARALLELISM})",
                    scrypt.cost_parameter, scrypt.block_size, scrypt.parallelization
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn rsa_from_pkcs8(der: &[u8]) -> Result<RsaKeyPair, CertificateError> {
    let info = pkcs8::PrivateKeyInfoRef::try_from(der).map_err(|_| CertificateError::Unreadable)?;
    const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
    if info.algorithm.oid.to_string() != RSA_ENCRYPTION {
        return Err(CertificateError::NotRsa);
    }
    RsaKeyPair::from_pkcs8(der).map_err(|_| CertificateError::Unreadable)
}

/// The PKCS#1 RSA public key of a DER certificate.
fn rsa_public_key(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

impl From<CertificateError> for BuildError {
    fn from(error: CertificateError) -> Self {
        Self::InvalidCertificate(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh RSA key and a self-signed certificate for it, as PEM.
    pub(crate) fn rsa_material() -> (String, String) {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("rsa key");
        let params = rcgen::CertificateParams::new(vec!["client".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        (key.serialize_pem(), cert.pem())
    }

    fn encrypted_pem(key_pem: &str, password: &[u8]) -> String {
        let der = pem::parse(key_pem).expect("pem").into_contents();
        let info = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice()).expect("pkcs8");
        let params =
            pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(2048, &[7; 16], [9; 16])
                .expect("params");
        let encrypted = info.encrypt_with_params(params, password).expect("encrypt");
        pem::encode(&pem::Pem::new(
            "ENCRYPTED PRIVATE KEY",
            encrypted.as_bytes(),
        ))
    }

    fn pkcs12(key_pem: &str, cert_pem: &str, password: &str, legacy: bool) -> Vec<u8> {
        use p12_keystore::{
            Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain,
        };
        let key =
            PrivateKey::from_der(&pem::parse(key_pem).expect("key").into_contents()).expect("key");
        let cert = Certificate::from_der(&pem::parse(cert_pem).expect("cert").into_contents())
            .expect("cert");
        let mut store = KeyStore::new();
        store.add_entry(
            "k",
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(vec![1u8], key, [cert])),
        );
        let writer = store.writer(password);
        let writer = if legacy {
            writer.encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
        } else {
            writer
        };
        writer.write().expect("pkcs12")
    }

    /// An encrypted PEM key whose key derivation is replaced by `kdf`, with a certificate:
    /// only the parameters matter, since they are checked before anything is derived.
    fn with_kdf(kdf: Kdf) -> String {
        use pkcs8::der::{Decode as _, Encode as _};
        let (key, cert) = rsa_material();
        let der = pem::parse(encrypted_pem(&key, b"pa55"))
            .expect("pem")
            .into_contents();
        let mut info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(&der).expect("decode");
        let EncryptionScheme::Pbes2(parameters) = &mut info.encryption_algorithm else {
            panic!("PBES2");
        };
        parameters.kdf = kdf;
        let der = info.to_der().expect("encode");
        format!(
            "{}{cert}",
            pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", der))
        )
    }

    #[test]
    fn key_derivation_bombs_are_refused_before_they_go_off() {
        let pbkdf2 = |iterations| {
            Kdf::Pbkdf2(pkcs5::pbes2::Pbkdf2Params {
                salt: pkcs5::pbes2::Salt::new([7; 16]).expect("salt"),
                iteration_count: iterations,
                key_length: None,
                prf: pkcs5::pbes2::Pbkdf2Prf::HmacWithSha256,
            })
        };
        let scrypt = |n: u64, r: u16, p: u16| {
            Kdf::Scrypt(pkcs5::pbes2::ScryptParams {
                salt: pkcs5::pbes2::Salt::new([7; 16]).expect("salt"),
                cost_parameter: n,
                block_size: r,
                parallelization: p,
                key_length: Some(32),
            })
        };
        for kdf in [
            pbkdf2(100_000_000),
            pbkdf2(MAX_PBKDF2_ITERATIONS + 1),
            scrypt(1 << 40, 8, 1),
            scrypt(1 << 22, 8, 1),
            scrypt(1 << 20, 8, 2),
            scrypt(1 << 10, 1, 17),
            scrypt(u64::MAX, u16::MAX, u16::MAX),
        ] {
            let pem = with_kdf(kdf.clone());
            match ClientCertificate::from_bytes(pem.as_bytes(), Some(b"pa55")) {
                Err(CertificateError::KeyDerivationTooCostly { limit }) => {
                    assert!(limit.contains("at most"), "{limit}");
                }
                other => panic!("{kdf:?}: {other:?}"),
            }
        }
        // Within the limits the derivation runs (and here fails: the ciphertext is not
        // for these parameters).
        let pem = with_kdf(pbkdf2(1000));
        assert_eq!(
            ClientCertificate::from_bytes(pem.as_bytes(), Some(b"pa55")).err(),
            Some(CertificateError::WrongPassword)
        );
    }

    #[test]
    fn oversized_input_is_refused_unread() {
        let huge = vec![b'-'; MAX_CERTIFICATE_BYTES + 1];
        assert_eq!(
            ClientCertificate::from_bytes(&huge, None).err(),
            Some(CertificateError::TooLarge {
                limit: MAX_CERTIFICATE_BYTES
            })
        );
    }

    #[test]
    fn every_supported_format_loads() {
        let (key, cert) = rsa_material();
        let plain = format!("{key}{cert}");
        assert!(ClientCertificate::from_bytes(plain.as_bytes(), None).is_ok());
        // Certificate first, key last works too.
        assert!(ClientCertificate::from_bytes(format!("{cert}{key}").as_bytes(), None).is_ok());
        let encrypted = format!("{}{cert}", encrypted_pem(&key, b"pa55"));
        assert!(ClientCertificate::from_bytes(encrypted.as_bytes(), Some(b"pa55")).is_ok());
        assert!(
            ClientCertificate::from_bytes(&pkcs12(&key, &cert, "pa55", false), Some(b"pa55"))
                .is_ok()
        );
        assert!(ClientCertificate::from_bytes(&pkcs12(&key, &cert, "", false), None).is_ok());
        assert!(
            ClientCertificate::from_bytes(&pkcs12(&key, &cert, "pa55", true), Some(b"pa55"))
                .is_ok()
        );
    }

    #[test]
    fn password_mistakes_are_told_apart() {
        let (key, cert) = rsa_material();
        let plain = format!("{key}{cert}");
        let encrypted = format!("{}{cert}", encrypted_pem(&key, b"pa55"));
        let pfx = pkcs12(&key, &cert, "pa55", false);
        let load = |data: &[u8], password: Option<&[u8]>| {
            ClientCertificate::from_bytes(data, password).err()
        };
        assert_eq!(
            load(plain.as_bytes(), Some(b"x")),
            Some(CertificateError::PasswordNotNeeded)
        );
        assert_eq!(
            load(encrypted.as_bytes(), None),
            Some(CertificateError::PasswordRequired)
        );
        assert_eq!(
            load(encrypted.as_bytes(), Some(b"wrong")),
            Some(CertificateError::WrongPassword)
        );
        assert_eq!(
            load(&pfx, Some(b"wrong")),
            Some(CertificateError::WrongPassword)
        );
        assert_eq!(load(&pfx, None), Some(CertificateError::WrongPassword));
        let open_pfx = pkcs12(&key, &cert, "", false);
        assert_eq!(
            load(&open_pfx, Some(b"unneeded")),
            Some(CertificateError::WrongPassword)
        );
    }

    #[test]
    fn unusable_material_is_refused_clearly() {
        let (key, cert) = rsa_material();
        let (other_key, _) = rsa_material();
        let load = |data: &[u8]| ClientCertificate::from_bytes(data, None).err();
        assert_eq!(load(b"not a cert"), Some(CertificateError::Unreadable));
        assert_eq!(
            load(cert.as_bytes()),
            Some(CertificateError::MissingPrivateKey)
        );
        assert_eq!(
            load(key.as_bytes()),
            Some(CertificateError::MissingCertificate)
        );
        assert_eq!(
            load(format!("{other_key}{cert}").as_bytes()),
            Some(CertificateError::KeyDoesNotMatchCertificate)
        );
        let ec = rcgen::KeyPair::generate().expect("ec key");
        let ec_cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .expect("params")
            .self_signed(&ec)
            .expect("cert");
        assert_eq!(
            load(format!("{}{}", ec.serialize_pem(), ec_cert.pem()).as_bytes()),
            Some(CertificateError::NotRsa)
        );
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            load(legacy.as_bytes()),
            Some(CertificateError::LegacyEncryptedPem)
        );
    }

    #[test]
    fn assertions_are_signed_as_designed_and_reused_briefly() {
        let (key, cert) = rsa_material();
        let certificate =
            ClientCertificate::from_bytes(format!("{key}{cert}").as_bytes(), None).expect("cert");
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
        };
        let jwt = certificate
            .sign_assertion(
                "client",
                "https://aud/t/oauth2/v2.0/token",
                1000,
                false,
                true,
            )
            .expect("sign");
        let parts: Vec<&str> = jwt.expose_secret().split('.').collect();
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "PS256");
        assert_eq!(
            header["x5t#S256"].as_str().map(str::len),
            Some(43),
            "base64url, no padding"
        );
        assert_eq!(
            header["x5c"][0],
            STANDARD.encode(pem::parse(&cert).expect("pem").contents())
        );
        let claims = decode(parts[1]);
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("client"), Some("client"))
        );
        assert_eq!(claims["exp"], 1600);
        assert_eq!(claims["aud"], "https://aud/t/oauth2/v2.0/token");
        // The signature verifies with the certificate's key (PSS, SHA-256).
        let public = rsa_public_key(&pem::parse(&cert).expect("pem").into_contents()).expect("key");
        let signed = format!("{}.{}", parts[0], parts[1]);
        signature::UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, public)
            .verify(
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).expect("b64"),
            )
            .expect("valid signature");

        let adfs = certificate
            .sign_assertion("client", "aud", 1000, true, false)
            .expect("sign");
        let header = decode(adfs.expose_secret().split('.').next().expect("header"));
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t"].as_str().map(str::len), Some(27));
        assert!(header.get("x5c").is_none());

        let signer = CertificateSigner::new(certificate, false);
        let first = signer
            .assertion("client", "aud", 1000, false)
            .expect("sign");
        let reused = signer
            .assertion("client", "aud", 1299, false)
            .expect("sign");
        let renewed = signer
            .assertion("client", "aud", 1300, false)
            .expect("sign");
        let other_audience = signer
            .assertion("client", "aud2", 1300, false)
            .expect("sign");
        assert_eq!(first.expose_secret(), reused.expose_secret());
        assert_ne!(first.expose_secret(), renewed.expose_secret());
        assert_ne!(renewed.expose_secret(), other_audience.expose_secret());
        // Alternating audiences (tenants) each keep their own assertion.
        let back = signer
            .assertion("client", "aud", 1301, false)
            .expect("sign");
        let other_again = signer
            .assertion("client", "aud2", 1302, false)
            .expect("sign");
        assert_eq!(back.expose_secret(), renewed.expose_secret());
        assert_eq!(other_again.expose_secret(), other_audience.expose_secret());
        // A bounded number of audiences: the oldest is dropped first.
        for index in 0..RECENT_AUDIENCES {
            signer
                .assertion("client", &format!("tenant-{index}"), 1303, false)
                .expect("sign");
        }
        let recent = signer.recent.lock().expect("lock");
        assert_eq!(recent.len(), RECENT_AUDIENCES);
        assert!(
            recent
                .iter()
                .all(|entry| entry.audience.starts_with("tenant-"))
        );
    }
}
