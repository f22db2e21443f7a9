//! The crate's one error type. Every message names the thing that is wrong:
//! the backup, the object in the target, the entry in the archive, or the
//! recipients a backup is encrypted to.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("source `{name}`: {reason}")]
    InvalidSource { name: String, reason: String },

    #[error("reading source file {path}: {source}")]
    SourceRead { path: PathBuf, source: io::Error },

    #[error(
        "source file {path} changed while it was being backed up ({reason}); take the backup from a checkpoint or a quiet directory"
    )]
    SourceChanged { path: PathBuf, reason: String },

    #[error("not an age X25519 recipient: `{text}` ({reason})")]
    InvalidRecipient { text: String, reason: String },

    #[error("not an age identity file: {0}")]
    InvalidIdentity(String),

    #[error(
        "no recipients: a backup must be encrypted to at least one recipient or to a passphrase"
    )]
    NoRecipients,

    #[error("not a backup name: `{0}` (expected archipel-YYYYMMDDTHHMMSSZ)")]
    InvalidName(String),

    #[error("{target}: a backup named {name} already exists")]
    AlreadyExists { target: String, name: String },

    #[error("{target}: no backup named {name}")]
    NotFound { target: String, name: String },

    #[error(
        "{target}: backup {name} is incomplete (its manifest object {object} is missing): the run that wrote it failed or is still running"
    )]
    Incomplete {
        target: String,
        name: String,
        object: String,
    },

    #[error("{target}: {action} {object}: {source}{}", full_hint(source))]
    Target {
        target: String,
        object: String,
        action: &'static str,
        source: io::Error,
    },

    #[error("{target}: {message}")]
    TargetConfig { target: String, message: String },

    #[error(
        "the given key cannot decrypt {object}; it is encrypted to {}",
        describe_recipients(recipients)
    )]
    WrongKey {
        object: String,
        recipients: Vec<String>,
    },

    #[error("the passphrase does not decrypt {object}")]
    WrongPassphrase { object: String },

    #[error("{object} is truncated: it holds {actual} bytes, the manifest records {expected}")]
    Truncated {
        object: String,
        expected: u64,
        actual: u64,
    },

    #[error("{object} is damaged or was altered: {detail}")]
    Damaged { object: String, detail: String },

    #[error("backup {name}: archive entry {path}: {problem}")]
    Entry {
        name: String,
        path: String,
        problem: String,
    },

    #[error(
        "backup {name}: the manifest's signature does not verify{}",
        signer_note(signer)
    )]
    BadSignature { name: String, signer: String },

    #[error("backup {name} is signed by {signer}, not by the trusted key {trusted}")]
    UntrustedSigner {
        name: String,
        signer: String,
        trusted: String,
    },

    #[error("backup {name}: manifest: {detail}")]
    Manifest { name: String, detail: String },

    #[error("restore destination {path} {reason}")]
    Destination { path: PathBuf, reason: String },

    #[error("restoring into {path}: {source}")]
    RestoreWrite { path: PathBuf, source: io::Error },

    #[error("the check of the restored data failed, nothing was switched: {0}")]
    RestoreCheck(String),

    #[error("the backup's content failed its check: {0}")]
    ContentCheck(String),

    #[error("backup pipeline: {0}")]
    Pipeline(String),
}

fn full_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
            " (the target is full; earlier backups are untouched)"
        }
        _ => "",
    }
}

fn describe_recipients(recipients: &[String]) -> String {
    if recipients.is_empty() {
        "recipients that are not recorded next to it".to_owned()
    } else {
        recipients.join(", ")
    }
}

fn signer_note(signer: &str) -> String {
    if signer.is_empty() {
        String::new()
    } else {
        format!(" (claimed signer {signer})")
    }
}

impl Error {
    pub(crate) fn target(
        target: &str,
        object: &str,
        action: &'static str,
        source: io::Error,
    ) -> Self {
        Error::Target {
            target: target.to_owned(),
            object: object.to_owned(),
            action,
            source,
        }
    }
}
