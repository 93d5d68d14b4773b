//! The macOS and Windows stores that encrypt the persistent token cache, in the places
//! azure-identity (through msal-extensions) uses, so the two share it:
//!
//! - macOS: a generic password in the login Keychain, service
//!   `Microsoft.Developer.IdentityService`, account [`keychain_account`]; the file
//!   `~/.IdentityService/<name>` is touched on every write as the reload signal.
//! - Windows: the file `%LOCALAPPDATA%\.IdentityService\<name>` holds the cache encrypted by
//!   the Data Protection API for the current user, without extra entropy.
//!
//! The naming rules below are checked on every platform; the calls into the operating
//! system compile only on their own.

/// The Keychain service azure-identity stores its caches under.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) const KEYCHAIN_SERVICE: &str = "Microsoft.Developer.IdentityService";

/// The Keychain account of the cache `<name><suffix>`: `MSALCache` for the default cache
/// (`msal.cache.nocae`), the cache's own name for any other, as azure-identity names them.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) fn keychain_account(name: &str, suffix: &str) -> String {
    let cache = format!("{name}{suffix}");
    if cache == "msal.cache.nocae" {
        "MSALCache".to_owned()
    } else {
        cache
    }
}

/// The login Keychain.
#[cfg(target_os = "macos")]
pub(crate) mod keychain {
    use security_framework::os::macos::keychain::SecKeychain;
    use security_framework::passwords::PasswordOptions;
    use zeroize::Zeroizing;

    use super::KEYCHAIN_SERVICE;

    /// `errSecItemNotFound`: there is no such item yet.
    const ITEM_NOT_FOUND: i32 = -25300;

    /// The cache stored for `account`, if there is one.
    pub(crate) fn load(account: &str) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
        without_dialogs(|| {
            let item = PasswordOptions::new_generic_password(KEYCHAIN_SERVICE, account);
            match security_framework::passwords::generic_password(item) {
                Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
                Err(error) if error.code() == ITEM_NOT_FOUND => Ok(None),
                Err(error) => Err(std::io::Error::other(format!("Keychain: {error}"))),
            }
        })
    }

    /// Stores `document` for `account`, replacing what was there.
    pub(crate) fn save(account: &str, document: &[u8]) -> std::io::Result<()> {
        without_dialogs(|| {
            security_framework::passwords::set_generic_password(KEYCHAIN_SERVICE, account, document)
                .map_err(|error| std::io::Error::other(format!("Keychain: {error}")))
        })
    }

    /// Runs `operation` with the Keychain's dialogs (unlock, allow access) turned off, so a
    /// locked keychain or an item another program created fails at once instead of waiting
    /// for someone to answer. The switch is process-wide: one operation at a time holds it.
    fn without_dialogs<T>(operation: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _no_dialogs = SecKeychain::disable_user_interaction()
            .map_err(|error| std::io::Error::other(format!("Keychain: {error}")))?;
        operation()
    }
}

/// The Data Protection API, for the current user.
#[cfg(windows)]
pub(crate) mod data_protection {
    use zeroize::Zeroizing;

    /// Encrypts `document` so that only this user on this machine can read it.
    pub(crate) fn protect(document: &[u8]) -> std::io::Result<Vec<u8>> {
        windows_dpapi::encrypt_data(document, windows_dpapi::Scope::User, None)
            .map_err(|error| std::io::Error::other(format!("DPAPI: {error:#}")))
    }

    /// Decrypts what [`protect`] wrote.
    pub(crate) fn unprotect(sealed: &[u8]) -> std::io::Result<Zeroizing<Vec<u8>>> {
        windows_dpapi::decrypt_data(sealed, windows_dpapi::Scope::User, None)
            .map(Zeroizing::new)
            .map_err(|error| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("DPAPI: {error:#}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keychain_accounts_follow_azure_identity() {
        assert_eq!(keychain_account("msal.cache", ".nocae"), "MSALCache");
        assert_eq!(keychain_account("msal.cache", ".cae"), "msal.cache.cae");
        assert_eq!(keychain_account("mine", ".nocae"), "mine.nocae");
    }
}
