//! Backup names and the names of the objects that make up one backup.
//!
//! A name is `archipel-` and the UTC start time to the second
//! (`archipel-20260512T020000Z`), so names sort by time as plain strings,
//! in a directory listing and in an S3 listing alike.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::error::{Error, Result};

const PREFIX: &str = "archipel-";
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S";

/// `<name>.tar.zst.age`: the archive, tar in zstd in age.
pub const ARCHIVE_SUFFIX: &str = ".tar.zst.age";
/// `<name>.manifest.age`: the signed manifest, age-encrypted. Written last:
/// a backup is complete exactly when this object exists.
pub const MANIFEST_SUFFIX: &str = ".manifest.age";
/// `<name>.recipients.txt`: the public recipients, in the clear, so that a
/// wrong key can be told which keys would work.
pub const RECIPIENTS_SUFFIX: &str = ".recipients.txt";

/// The object kinds of one backup, in the order they are written.
pub const SUFFIXES: [&str; 3] = [ARCHIVE_SUFFIX, RECIPIENTS_SUFFIX, MANIFEST_SUFFIX];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupName {
    text: String,
    created: Timestamp,
}

impl BackupName {
    /// The name of a backup started at `time` (truncated to the second).
    pub fn at(time: Timestamp) -> Self {
        let created = Timestamp::from_second(time.as_second())
            .expect("whole seconds of a valid timestamp are valid");
        let text = format!("{PREFIX}{}Z", created.strftime(TIME_FORMAT));
        Self { text, created }
    }

    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::InvalidName(text.to_owned());
        let time = text
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix('Z'))
            .ok_or_else(invalid)?;
        if time.len() != 15 {
            return Err(invalid());
        }
        let civil = DateTime::strptime(TIME_FORMAT, time).map_err(|_| invalid())?;
        let created = civil
            .to_zoned(TimeZone::UTC)
            .map_err(|_| invalid())?
            .timestamp();
        let name = Self::at(created);
        if name.text != text {
            return Err(invalid());
        }
        Ok(name)
    }

    /// Splits an object name into the backup it belongs to and its suffix.
    pub fn from_object(object: &str) -> Option<(Self, &'static str)> {
        SUFFIXES.iter().find_map(|suffix| {
            let name = object.strip_suffix(suffix)?;
            Some((Self::parse(name).ok()?, *suffix))
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn created(&self) -> Timestamp {
        self.created
    }

    pub fn archive_object(&self) -> String {
        format!("{}{ARCHIVE_SUFFIX}", self.text)
    }

    pub fn manifest_object(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.text)
    }

    pub fn recipients_object(&self) -> String {
        format!("{}{RECIPIENTS_SUFFIX}", self.text)
    }
}

impl fmt::Display for BackupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let earlier: Timestamp = "2026-05-12T02:00:00.750Z".parse().expect("valid timestamp");
        let later: Timestamp = "2026-11-03T23:59:59Z".parse().expect("valid timestamp");
        let a = BackupName::at(earlier);
        let b = BackupName::at(later);
        assert_eq!(a.as_str(), "archipel-20260512T020000Z");
        assert_eq!(BackupName::parse(a.as_str()).expect("parses"), a);
        assert!(a.as_str() < b.as_str());
        assert_eq!(
            a.created(),
            "2026-05-12T02:00:00Z"
                .parse::<Timestamp>()
                .expect("valid timestamp")
        );
    }

    #[test]
    fn object_names_map_back_to_their_backup() {
        let name = BackupName::parse("archipel-20260512T020000Z").expect("parses");
        assert_eq!(
            BackupName::from_object(&name.archive_object()),
            Some((name.clone(), ARCHIVE_SUFFIX))
        );
        assert_eq!(
            BackupName::from_object(&name.manifest_object()),
            Some((name.clone(), MANIFEST_SUFFIX))
        );
        assert_eq!(
            BackupName::from_object("archipel-20260512T020000Z.txt"),
            None
        );
        assert_eq!(
            BackupName::from_object(".tmp-archipel-20260512T020000Z.tar.zst.age"),
            None
        );
    }

    #[test]
    fn rejects_what_is_not_a_name() {
        for text in [
            "",
            "archipel-",
            "archipel-20261312T020000Z",
            "archipel-20260512T020000",
            "x-20260512T020000Z",
            "archipel-20260512T020000Z/../x",
        ] {
            assert!(BackupName::parse(text).is_err(), "{text}");
        }
    }
}
