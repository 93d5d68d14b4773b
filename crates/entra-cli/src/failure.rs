//! How `entra` fails: one exit status per kind of failure, and one plain message per failure,
//! in the CLI's own words (its flags and environment variables, not the library's parameters).

use std::fmt::Write as _;
use std::io::Write as _;

/// What `--help` says about the exit status; the README has the same table.
pub(crate) const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    success
  1    internal error: a bug in entra, or standard output failing (such as a full disk)
  2    usage: a flag missing, unknown, conflicting or malformed (such as --claims that is not
       JSON), also when no environment variable stands in for it
  3    authentication refused by Microsoft Entra ID (the message carries the AADSTS code)
  4    configuration: a flag's or variable's value, a file, a certificate or a CA that cannot
       be used, an authority that does not resolve or does not answer as Entra ID does, a
       tenant refused locally, a port already in use
  5    transient: Entra ID could not be reached for now, was throttling or timed out;
       trying again later may work
  141  standard output was closed early (as by `entra decode | head -1`): the rest of the
       output is dropped quietly, as for any command a closed pipe stops";

/// The kind of failure, which is the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// A bug, or something the CLI did not expect.
    Internal = 1,
    /// What clap reports, and required inputs that neither a flag nor a variable gave.
    Usage = 2,
    /// Entra ID refused the request.
    Authentication = 3,
    /// Something the user gave cannot be used; nothing useful was sent.
    Configuration = 4,
    /// Entra ID could not be reached or answered unusably; trying again may work.
    Transient = 5,
    /// Standard output was closed: 128 + SIGPIPE, what a shell reports for a command a closed
    /// pipe stopped.
    ClosedOutput = 141,
}

impl Status {
    /// The exit status.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

/// A failure with the exit status it deserves.
#[derive(Debug)]
pub(crate) struct Failure {
    status: Status,
    error: anyhow::Error,
}

impl Failure {
    pub(crate) fn new(status: Status, error: impl Into<anyhow::Error>) -> Self {
        Self {
            status,
            error: error.into(),
        }
    }

    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Status::Usage, error)
    }

    pub(crate) fn authentication(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Status::Authentication, error)
    }

    pub(crate) fn configuration(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Status::Configuration, error)
    }

    pub(crate) fn transient(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Status::Transient, error)
    }

    /// Standard output is gone: nothing more to say, and no one to say it to.
    pub(crate) fn closed_output() -> Self {
        Self::new(
            Status::ClosedOutput,
            anyhow::anyhow!("standard output was closed"),
        )
    }

    pub(crate) fn status(&self) -> Status {
        self.status
    }

    /// Prints the failure to standard error, once: the message, then each cause not already
    /// said. A closed output prints nothing.
    pub(crate) fn report(&self) {
        if self.status == Status::ClosedOutput {
            return;
        }
        let text = self.text();
        // Standard error gone too: there is nowhere left to say it.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    /// The message, down to the root cause, each line plain: no carriage return, no control
    /// character, the library's parameter names turned into the CLI's flags.
    fn text(&self) -> String {
        let mut text = String::new();
        let message = plain(&self.error.to_string());
        let _ = writeln!(text, "error: {}", indent(&message, "       "));
        let mut previous = message;
        for cause in self.error.chain().skip(1) {
            let cause = plain(&cause.to_string());
            // Some libraries' errors repeat their cause's text: show it once.
            if !previous.contains(&cause) {
                let _ = writeln!(text, "  caused by: {}", indent(&cause, "             "));
            }
            previous = cause;
        }
        text
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self::new(Status::Internal, error)
    }
}

/// The library's words for its options, and the CLI's for the same.
const CLI_NAMES: &[(&str, &str)] = &[
    (
        "give its certificate to HttpOptions::trust_pem",
        "pass its PEM certificate with --ca-file PATH",
    ),
    ("HttpOptions::trust_pem", "--ca-file"),
    (
        "set allow_unencrypted_storage",
        "pass --allow-unencrypted-cache",
    ),
    ("allow_unencrypted_storage", "--allow-unencrypted-cache"),
    (
        "disable_instance_discovery(true) when building the credential",
        "--disable-instance-discovery",
    ),
    ("send_certificate_chain", "--send-certificate-chain"),
    (
        "check the authority",
        "check --authority (or AZURE_AUTHORITY_HOST)",
    ),
    (
        "\"user_assertion\"",
        "The user assertion (--user-assertion-file)",
    ),
];

/// `text` in the CLI's words, with its line breaks as `\n` and no other control character
/// (an answer from the network could carry terminal escapes).
fn plain(text: &str) -> String {
    let mut text = text.to_owned();
    for (library, cli) in CLI_NAMES {
        text = text.replace(library, cli);
    }
    let lines: Vec<String> = text
        .split(['\r', '\n'])
        // Leading spaces stay: they align a parser's caret under the text it points at.
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect()
        })
        .collect();
    lines.join("\n")
}

/// Continuation lines start with `prefix`, under the first line's text.
fn indent(text: &str, prefix: &str) -> String {
    text.replace('\n', &format!("\n{prefix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_plain_lines_in_the_cli_words() {
        let failure = Failure::configuration(anyhow::anyhow!(
            "AADSTS1: bad.\r\nTrace ID: x\r\n\u{1b}[31mred; set allow_unencrypted_storage"
        ));
        assert_eq!(
            failure.text(),
            "error: AADSTS1: bad.\n       Trace ID: x\n       \u{fffd}[31mred; pass \
             --allow-unencrypted-cache\n"
        );
    }

    #[test]
    fn indentation_stays_so_that_carets_point_where_they_should() {
        let failure = Failure::configuration(anyhow::anyhow!(
            "TOML parse error at line 1, column 1\n  |\n1 | bogus = 1\n  | ^^^^^\nunknown field"
        ));
        assert_eq!(
            failure.text(),
            "error: TOML parse error at line 1, column 1\n         |\n       1 | bogus = 1\n         \
             | ^^^^^\n       unknown field\n"
        );
    }

    #[test]
    fn causes_already_said_are_not_repeated() {
        let root = std::io::Error::other("connection refused");
        let failure = Failure::transient(
            anyhow::Error::new(root)
                .context("request failed: connection refused")
                .context("no token"),
        );
        assert_eq!(
            failure.text(),
            "error: no token\n  caused by: request failed: connection refused\n"
        );
    }
}
