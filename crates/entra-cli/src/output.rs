//! Standard output that may go away: a reader that stops early (`entra decode | head -1`)
//! closes the pipe, and the command then stops quietly instead of panicking as `println!`
//! does.

use std::io::Write as _;

use anyhow::anyhow;

use crate::failure::Failure;

/// Writes `text` and a line end to standard output, flushed: the reader sees each line as it
/// is said, and a closed pipe shows at once.
pub(crate) fn line(text: impl std::fmt::Display) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                Failure::closed_output()
            } else {
                Failure::from(anyhow!(error).context("cannot write to standard output"))
            }
        })
}

/// `println!` that returns a [`Failure`] instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

pub(crate) use say;
