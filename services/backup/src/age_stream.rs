//! The age layer: who a backup is encrypted to, and who can open it.
//!
//! age does not allow a passphrase (scrypt) stanza next to other recipients,
//! so a backup is encrypted either to X25519 recipients (the scheduled
//! backups: the private keys are kept off the node) or to a passphrase (an
//! offline recovery copy, e.g. on a USB stick in a safe).

use std::io::{Read, Write};
use std::str::FromStr;

use age::secrecy::SecretString;

use crate::error::{Error, Result};

/// What the age header carries when the file is encrypted to a passphrase;
/// recorded in the recipients sidecar and the manifest.
pub const PASSPHRASE_RECIPIENT: &str = "passphrase (age scrypt)";

/// Who a new backup is encrypted to.
pub enum Encryption {
    Recipients(Vec<age::x25519::Recipient>),
    Passphrase {
        passphrase: SecretString,
        /// scrypt work factor (log2 N); `None` lets age pick about a second
        /// of work on this machine.
        work_factor: Option<u8>,
    },
}

impl Encryption {
    /// Parses `age1...` recipient strings, naming the one that is wrong.
    pub fn to_recipients<S: AsRef<str>>(texts: &[S]) -> Result<Self> {
        if texts.is_empty() {
            return Err(Error::NoRecipients);
        }
        let recipients = texts
            .iter()
            .map(|text| {
                let text = text.as_ref().trim();
                age::x25519::Recipient::from_str(text).map_err(|reason| Error::InvalidRecipient {
                    text: text.to_owned(),
                    reason: reason.to_owned(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::Recipients(recipients))
    }

    pub fn to_passphrase(passphrase: SecretString) -> Self {
        Self::Passphrase {
            passphrase,
            work_factor: None,
        }
    }

    /// The public description of the recipients: `age1...` strings, or the
    /// passphrase marker.
    pub fn public_recipients(&self) -> Vec<String> {
        match self {
            Self::Recipients(recipients) => recipients.iter().map(ToString::to_string).collect(),
            Self::Passphrase { .. } => vec![PASSPHRASE_RECIPIENT.to_owned()],
        }
    }

    pub(crate) fn wrap<W: Write>(
        &self,
        output: W,
    ) -> Result<age::stream::StreamWriter<W>, std::io::Error> {
        let encryptor = match self {
            Self::Recipients(recipients) => {
                age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                    .map_err(std::io::Error::other)?
            }
            Self::Passphrase {
                passphrase,
                work_factor,
            } => {
                let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
                if let Some(log_n) = work_factor {
                    recipient.set_work_factor(*log_n);
                }
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .map_err(std::io::Error::other)?
            }
        };
        encryptor.wrap_output(output)
    }
}

/// What opens a backup: the X25519 identities (an age identity file), or the
/// passphrase of a recovery copy.
pub enum DecryptionKey {
    Identities(Vec<age::x25519::Identity>),
    Passphrase {
        passphrase: SecretString,
        max_work_factor: Option<u8>,
    },
}

impl DecryptionKey {
    /// Parses an age identity file: `AGE-SECRET-KEY-1...` lines, `#` comments.
    pub fn parse_identity_file(text: &str) -> Result<Self> {
        let mut identities = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = age::x25519::Identity::from_str(line).map_err(|reason| {
                Error::InvalidIdentity(format!("line {}: {reason}", index + 1))
            })?;
            identities.push(identity);
        }
        if identities.is_empty() {
            return Err(Error::InvalidIdentity(
                "it holds no AGE-SECRET-KEY-1 line".to_owned(),
            ));
        }
        Ok(Self::Identities(identities))
    }

    pub fn from_passphrase(passphrase: SecretString) -> Self {
        Self::Passphrase {
            passphrase,
            max_work_factor: None,
        }
    }

    /// Opens an age stream. `recipients` is asked only when the key does not
    /// fit, for the error message.
    pub(crate) fn open<R: std::io::BufRead>(
        &self,
        input: R,
        object: &str,
        recipients: impl FnOnce() -> Vec<String>,
    ) -> Result<age::stream::StreamReader<R>> {
        let damaged = |detail: String| Error::Damaged {
            object: object.to_owned(),
            detail,
        };
        let decryptor = age::Decryptor::new_buffered(input).map_err(|error| match error {
            age::DecryptError::Io(io) => damaged(format!("reading the age header: {io}")),
            other => damaged(format!("not a readable age file: {other}")),
        })?;
        let opened = match self {
            Self::Identities(identities) => {
                decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity))
            }
            Self::Passphrase {
                passphrase,
                max_work_factor,
            } => {
                let mut identity = age::scrypt::Identity::new(passphrase.clone());
                if let Some(max) = max_work_factor {
                    identity.set_max_work_factor(*max);
                }
                decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
            }
        };
        opened.map_err(|error| match error {
            age::DecryptError::NoMatchingKeys => Error::WrongKey {
                object: object.to_owned(),
                recipients: recipients(),
            },
            age::DecryptError::DecryptionFailed if matches!(self, Self::Passphrase { .. }) => {
                Error::WrongPassphrase {
                    object: object.to_owned(),
                }
            }
            age::DecryptError::InvalidMac => {
                damaged("the age header's MAC does not verify".to_owned())
            }
            other => damaged(other.to_string()),
        })
    }
}

/// Reads a whole (small) age object into memory.
pub(crate) fn read_all(mut reader: impl Read, object: &str, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| Error::Damaged {
            object: object.to_owned(),
            detail: error.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(Error::Damaged {
            object: object.to_owned(),
            detail: format!("larger than {limit} bytes"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_errors_name_the_bad_string() {
        let good = age::x25519::Identity::generate().to_public().to_string();
        let error = match Encryption::to_recipients(&[good.as_str(), "age1notakey"]) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("a bad recipient was accepted"),
        };
        assert!(error.contains("age1notakey"), "{error}");
        assert!(matches!(
            Encryption::to_recipients::<&str>(&[]),
            Err(Error::NoRecipients)
        ));
    }

    #[test]
    fn identity_file_skips_comments_and_names_bad_lines() {
        use age::secrecy::ExposeSecret;
        let identity = age::x25519::Identity::generate();
        let file = format!(
            "# created: today\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        );
        assert!(
            matches!(DecryptionKey::parse_identity_file(&file), Ok(DecryptionKey::Identities(ids)) if ids.len() == 1)
        );
        let error = match DecryptionKey::parse_identity_file("# x\nAGE-SECRET-KEY-1BAD\n") {
            Err(error) => error.to_string(),
            Ok(_) => panic!("a bad identity was accepted"),
        };
        assert!(error.contains("line 2"), "{error}");
    }
}
