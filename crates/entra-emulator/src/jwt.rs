//! JSON Web Tokens: the tokens the emulator signs, and the assertions it verifies.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::Error;
use crate::pki::{CertificateAuthority, RegisteredCertificate, jwk_components};

/// The RSA key the emulator signs its tokens with, published in its JWKS.
pub(crate) struct SigningKey {
    key_pair: RsaKeyPair,
    certificate: RegisteredCertificate,
    rng: SystemRandom,
}

impl SigningKey {
    pub(crate) fn generate(ca: &CertificateAuthority) -> Result<Self, Error> {
        let generated = ca.client_certificate("entra-emulator token signing")?;
        let key_pair = RsaKeyPair::from_pkcs8(&generated.key_pkcs8_der).map_err(Error::pki)?;
        let certificate = RegisteredCertificate::from_der(&generated.cert_der)?;
        Ok(Self {
            key_pair,
            certificate,
            rng: SystemRandom::new(),
        })
    }

    /// The key ID, which Entra sets to the signing certificate's `x5t`.
    pub(crate) fn kid(&self) -> String {
        self.certificate.x5t()
    }

    pub(crate) fn rsa_public_key(&self) -> &[u8] {
        &self.certificate.rsa_public_key
    }

    /// Signs `claims` as an RS256 JWT.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, Error> {
        let kid = self.kid();
        let header = json!({ "typ": "JWT", "alg": "RS256", "kid": kid, "x5t": kid });
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                token.as_bytes(),
                &mut signature,
            )
            .map_err(Error::pki)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    /// The public key as a JWK, the shape Entra's `keys` endpoint serves.
    pub(crate) fn jwk(&self, issuer: &str) -> Result<Value, Error> {
        let (n, e) = jwk_components(&self.certificate.rsa_public_key)?;
        Ok(json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid(),
            "x5t": self.kid(),
            "n": n,
            "e": e,
            "x5c": [STANDARD.encode(&self.certificate.der)],
            "issuer": issuer,
        }))
    }
}

/// A JWT split into its parts, not yet verified.
#[derive(Debug)]
pub(crate) struct UnverifiedJwt {
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

/// Why a JWT could not be read or verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JwtProblem {
    /// Not three base64url segments of JSON objects.
    Malformed,
    /// The `alg` is not one the caller accepts.
    UnsupportedAlgorithm,
    /// The signature does not verify.
    BadSignature,
}

impl UnverifiedJwt {
    /// Splits and decodes a compact JWT. Segments may carry `=` padding, as some clients
    /// (Python azure-identity's async credentials) send them.
    pub(crate) fn parse(token: &str) -> Result<Self, JwtProblem> {
        let mut parts = token.trim().split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtProblem::Malformed);
        };
        let decode = |segment: &str| {
            URL_SAFE_NO_PAD
                .decode(segment.trim_end_matches('='))
                .map_err(|_| JwtProblem::Malformed)
        };
        let object = |segment: &str| match serde_json::from_slice(&decode(segment)?) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(JwtProblem::Malformed),
        };
        Ok(Self {
            header: object(header)?,
            claims: object(claims)?,
            signing_input: format!("{header}.{claims}"),
            signature: decode(signature)?,
        })
    }

    pub(crate) fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    pub(crate) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric date claim; clients send integers, floats (MSAL Python) or numeric strings.
    pub(crate) fn claim_time(&self, name: &str) -> Option<i64> {
        match self.claims.get(name)? {
            Value::Number(number) => number
                .as_i64()
                .or_else(|| number.as_f64().map(|value| value as i64)),
            Value::String(text) => text.parse::<f64>().ok().map(|value| value as i64),
            _ => None,
        }
    }

    /// Whether `aud` equals `expected` (a string or an array holding it).
    pub(crate) fn audience_matches(&self, mut accept: impl FnMut(&str) -> bool) -> bool {
        match self.claims.get("aud") {
            Some(Value::String(aud)) => accept(aud),
            Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).any(accept),
            _ => false,
        }
    }

    /// Verifies the signature with an RSA public key (PKCS#1 DER), accepting RS256 and PS256.
    pub(crate) fn verify_rsa(&self, rsa_public_key: &[u8]) -> Result<Algorithm, JwtProblem> {
        let algorithm = match self.header_str("alg") {
            Some("RS256") => Algorithm::Rs256,
            Some("PS256") => Algorithm::Ps256,
            _ => return Err(JwtProblem::UnsupportedAlgorithm),
        };
        let parameters: &dyn signature::VerificationAlgorithm = match algorithm {
            Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(parameters, rsa_public_key)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwtProblem::BadSignature)?;
        Ok(algorithm)
    }
}

/// The signature algorithms accepted on client assertions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Ps256,
    Rs256,
}

impl Algorithm {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ps256 => "PS256",
            Self::Rs256 => "RS256",
        }
    }
}

/// Decodes a thumbprint header (`x5t`, `x5t#S256`) as Entra does: base64url or standard
/// base64, with or without padding. RFC 7515 says base64url, but clients such as Microsoft's
/// Rust `azure_identity` send standard base64 with padding, and Entra accepts both.
pub(crate) fn decode_thumbprint(value: &str) -> Option<Vec<u8>> {
    let url_safe: String = value
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(url_safe).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let ca = CertificateAuthority::generate().expect("ca");
        SigningKey::generate(&ca).expect("key")
    }

    #[test]
    fn signed_tokens_verify_and_tampering_is_detected() {
        let key = key();
        let token = key.sign(&json!({ "sub": "x", "exp": 1 })).expect("sign");
        let parsed = UnverifiedJwt::parse(&token).expect("parse");
        assert_eq!(
            parsed.verify_rsa(key.rsa_public_key()),
            Ok(Algorithm::Rs256)
        );
        assert_eq!(parsed.header_str("kid"), Some(key.kid().as_str()));

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({ "sub": "y", "exp": 1 }).to_string());
        parts[1] = &forged;
        let tampered = UnverifiedJwt::parse(&parts.join(".")).expect("parse");
        assert_eq!(
            tampered.verify_rsa(key.rsa_public_key()),
            Err(JwtProblem::BadSignature)
        );
    }

    #[test]
    fn padded_segments_and_float_times_are_accepted() {
        let header = STANDARD
            .encode(r#"{"alg":"RS256"}"#)
            .replace('+', "-")
            .replace('/', "_");
        let claims = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"exp":1795253660.57,"nbf":"17","aud":["a","b"]}"#);
        let parsed = UnverifiedJwt::parse(&format!("{header}.{claims}.c2ln")).expect("parse");
        assert_eq!(parsed.claim_time("exp"), Some(1_795_253_660));
        assert_eq!(parsed.claim_time("nbf"), Some(17));
        assert!(parsed.audience_matches(|aud| aud == "b"));
        assert!(!parsed.audience_matches(|aud| aud == "c"));
    }

    #[test]
    fn malformed_tokens_are_rejected_without_panicking() {
        for token in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.e30.e30",
            "e30.W10.e30",
            "bnVsbA.e30.e30",
        ] {
            assert_eq!(
                UnverifiedJwt::parse(token).err(),
                Some(JwtProblem::Malformed),
                "{token}"
            );
        }
    }

    #[test]
    fn thumbprints_decode_in_either_alphabet_with_or_without_padding() {
        let digest = [0xfb_u8, 0xff, 0xbf, 0x01];
        for text in ["-_-_AQ", "-_-_AQ==", "+/+/AQ", "+/+/AQ=="] {
            assert_eq!(decode_thumbprint(text), Some(digest.to_vec()), "{text}");
        }
        assert_eq!(decode_thumbprint("not base64!"), None);
    }
}
