//! Where client assertions come from: a function called for every token request (never on a
//! cache hit), or a file re-read when it changes (workload identity).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::environment::Environment;
use crate::error::{BoxError, ContextError};
use crate::secret::ClientAssertion;

/// The future a [`ClientAssertionSource`] returns.
pub type AssertionFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ClientAssertion, BoxError>> + Send + 'a>>;

/// The environment variable naming the federated token file of workload identity.
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";

/// Produces a client assertion (a JWT proving the application's identity) for each token
/// request.
///
/// Implemented for async closures returning `Result<impl Into<ClientAssertion>, impl Into<BoxError>>`;
/// wrap a plain closure with [`assertion_fn`].
pub trait ClientAssertionSource: Send + Sync {
    /// A fresh assertion.
    fn client_assertion(&self) -> AssertionFuture<'_>;
}

impl<F, Fut, T, E> ClientAssertionSource for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<ClientAssertion>,
    E: Into<BoxError>,
{
    fn client_assertion(&self) -> AssertionFuture<'_> {
        let future = self();
        Box::pin(async move { future.await.map(Into::into).map_err(Into::into) })
    }
}

/// A plain (blocking) function as a [`ClientAssertionSource`]; see [`assertion_fn`].
pub struct AssertionFn<F>(F);

impl<F> std::fmt::Debug for AssertionFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssertionFn")
    }
}

/// Uses a plain function as the source of client assertions, like azure-identity's `func`.
///
/// ```
/// use entra_identity::assertion_fn;
/// let source = assertion_fn(|| Ok::<_, std::io::Error>("eyJ...".to_owned()));
/// # let _ = source;
/// ```
pub fn assertion_fn<F, T, E>(function: F) -> AssertionFn<F>
where
    F: Fn() -> Result<T, E> + Send + Sync,
    T: Into<ClientAssertion>,
    E: Into<BoxError>,
{
    AssertionFn(function)
}

impl<F, T, E> ClientAssertionSource for AssertionFn<F>
where
    F: Fn() -> Result<T, E> + Send + Sync,
    T: Into<ClientAssertion>,
    E: Into<BoxError>,
{
    fn client_assertion(&self) -> AssertionFuture<'_> {
        let outcome = (self.0)().map(Into::into).map_err(Into::into);
        Box::pin(std::future::ready(outcome))
    }
}

/// The largest assertion file read: a projected service account token is a JWT of a kilobyte
/// or two.
pub(crate) const MAX_ASSERTION_FILE_BYTES: u64 = 64 * 1024;

/// A client assertion read from a file, such as the service account token Kubernetes
/// workload identity projects (`AZURE_FEDERATED_TOKEN_FILE`). The file is read again whenever
/// its modification time or size changes, so rotated tokens are picked up. A file larger than
/// 64 KiB is an error, and the buffer it is read into is wiped.
#[derive(Debug)]
pub struct FileAssertion {
    path: PathBuf,
    cached: Mutex<Option<(FileStamp, ClientAssertion)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileAssertion {
    /// Reads assertions from `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cached: Mutex::new(None),
        }
    }

    /// Reads assertions from the file `AZURE_FEDERATED_TOKEN_FILE` names, if it is set.
    pub fn from_environment(environment: &dyn Environment) -> Option<Self> {
        environment
            .var(AZURE_FEDERATED_TOKEN_FILE)
            .filter(|path| !path.is_empty())
            .map(Self::new)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read(&self) -> Result<ClientAssertion, BoxError> {
        let unreadable = |error: std::io::Error| {
            ContextError::new(
                format!("cannot read the assertion file {}", self.path.display()),
                error,
            )
        };
        let metadata = tokio::fs::metadata(&self.path).await.map_err(unreadable)?;
        let stamp = FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        };
        let unchanged = self
            .lock()
            .as_ref()
            .filter(|(cached, _)| *cached == stamp)
            .map(|(_, a)| a.clone());
        if let Some(assertion) = unchanged {
            return Ok(assertion);
        }
        let too_large = || -> BoxError {
            format!(
                "the assertion file {} is larger than {MAX_ASSERTION_FILE_BYTES} bytes",
                self.path.display()
            )
            .into()
        };
        if stamp.len > MAX_ASSERTION_FILE_BYTES {
            return Err(too_large());
        }
        let contents = read_wiped(&self.path).await.map_err(unreadable)?;
        // The file may have grown since its size was read.
        if contents.len() as u64 > MAX_ASSERTION_FILE_BYTES {
            return Err(too_large());
        }
        let contents = std::str::from_utf8(&contents).map_err(|error| {
            ContextError::new(
                format!("the assertion file {} is not UTF-8", self.path.display()),
                error,
            )
        })?;
        let assertion = ClientAssertion::new(contents.trim());
        if assertion.is_empty() {
            return Err(format!("the assertion file {} is empty", self.path.display()).into());
        }
        *self.lock() = Some((stamp, assertion.clone()));
        Ok(assertion)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(FileStamp, ClientAssertion)>> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads at most [`MAX_ASSERTION_FILE_BYTES`] and one byte more into a buffer allocated once
/// and wiped when dropped.
async fn read_wiped(path: &Path) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use tokio::io::AsyncReadExt as _;
    let limit = MAX_ASSERTION_FILE_BYTES + 1;
    let file = tokio::fs::File::open(path).await?;
    let mut buffer = zeroize::Zeroizing::new(Vec::with_capacity(limit as usize));
    let mut reader = file.take(limit);
    loop {
        let spare = buffer.capacity() - buffer.len();
        if spare == 0 {
            break;
        }
        if reader.read_buf(&mut *buffer).await? == 0 {
            break;
        }
    }
    Ok(buffer)
}

impl ClientAssertionSource for FileAssertion {
    fn client_assertion(&self) -> AssertionFuture<'_> {
        Box::pin(self.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closures_are_sources() {
        let asynchronous = || async { Ok::<_, std::io::Error>("from-async") };
        assert_eq!(
            asynchronous
                .client_assertion()
                .await
                .expect("ok")
                .expose_secret(),
            "from-async"
        );
        let blocking = assertion_fn(|| Ok::<_, std::io::Error>(String::from("from-fn")));
        assert_eq!(
            blocking
                .client_assertion()
                .await
                .expect("ok")
                .expose_secret(),
            "from-fn"
        );
        let failing = assertion_fn(|| Err::<String, _>("no token today"));
        assert_eq!(
            failing
                .client_assertion()
                .await
                .expect_err("error")
                .to_string(),
            "no token today"
        );
    }

    #[tokio::test]
    async fn files_are_reread_when_they_change() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").expect("write");
        let source = FileAssertion::new(&path);
        assert_eq!(
            source
                .client_assertion()
                .await
                .expect("read")
                .expose_secret(),
            "first"
        );
        std::fs::write(&path, "second-token").expect("rotate");
        assert_eq!(
            source
                .client_assertion()
                .await
                .expect("read")
                .expose_secret(),
            "second-token"
        );
        std::fs::write(&path, vec![b'e'; MAX_ASSERTION_FILE_BYTES as usize + 1]).expect("big");
        let error = source.client_assertion().await.expect_err("too large");
        assert!(
            error.to_string().contains("larger than 65536 bytes"),
            "{error}"
        );
        std::fs::write(&path, "").expect("empty");
        assert!(source.client_assertion().await.is_err());
        std::fs::remove_file(&path).expect("remove");
        let error = source.client_assertion().await.expect_err("missing");
        assert!(error.to_string().contains("cannot read the assertion file"));
        let io = error
            .source()
            .and_then(|cause| cause.downcast_ref::<std::io::Error>())
            .expect("the I/O error is the cause");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}
