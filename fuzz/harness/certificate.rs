//! Client certificates as the credentials load them: PEM (PKCS#8, PKCS#1, encrypted PKCS#8,
//! certificate chains) and PKCS#12, with or without a password, then an assertion signed.
//!
//! Input: one byte `n`, then (when `n` is not 0) a password of `n - 1` bytes, then the
//! certificate bytes. `n = 0` means no password.

use entra_identity::internal::AssertionSigner;

/// Loads the certificate in `data` and signs an assertion with it when it loads.
pub(crate) fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (password, certificate) = if selector == 0 {
        (None, rest)
    } else {
        let length = usize::from(selector - 1).min(rest.len());
        let (password, certificate) = rest.split_at(length);
        (Some(password), certificate)
    };
    match AssertionSigner::new(certificate, password) {
        Ok(signer) => {
            let assertion = signer
                .assertion(
                    "00000000-0000-0000-0000-000000000001",
                    "https://login.microsoftonline.com/tenant/oauth2/v2.0/token",
                    1_700_000_000,
                )
                .expect("a certificate that loads signs assertions");
            assert_eq!(assertion.expose_secret().split('.').count(), 3);
        }
        Err(error) => {
            let _ = format!("{error} {error:?}");
        }
    }
}
