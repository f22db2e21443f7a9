//! Opening a backup for reading: find its objects, decrypt and check its
//! manifest, then stream the archive through age, zstd and tar and hold
//! every entry against the manifest. `verify` and `restore` share this; they
//! differ only in where entry bytes go.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read, Write};

use ed25519_dalek::VerifyingKey;

use crate::age_stream::{self, DecryptionKey};
use crate::error::{Error, Result};
use crate::hashing::{Counted, HashingReader};
use crate::manifest::{self, Entry, EntryKind, MANIFEST_ENTRY, Manifest, OpenedManifest};
use crate::naming::BackupName;
use crate::pipe::pipe;
use crate::progress::Progress;
use crate::target::{ObjectInfo, Target};

/// What opens a backup: the decryption key, and optionally the node key the
/// manifest must be signed with (without it any valid signature is
/// accepted and the signer is reported).
pub struct Unlock<'a> {
    pub key: &'a DecryptionKey,
    pub trusted_signer: Option<&'a VerifyingKey>,
}

impl<'a> Unlock<'a> {
    pub fn new(key: &'a DecryptionKey) -> Self {
        Self {
            key,
            trusted_signer: None,
        }
    }

    pub fn trusting(mut self, signer: &'a VerifyingKey) -> Self {
        self.trusted_signer = Some(signer);
        self
    }
}

/// What a successful verify or restore checked.
#[derive(Clone, Debug)]
pub struct CheckedBackup {
    pub name: BackupName,
    pub manifest: Manifest,
    /// The manifest's signer (base64 Ed25519 public key).
    pub signer: String,
    pub files: u64,
    pub bytes: u64,
    pub archive_size: u64,
}

/// A backup whose manifest object was decrypted and checked.
pub(crate) struct OpenedBackup {
    pub name: BackupName,
    pub opened: OpenedManifest,
    pub recipients: Vec<String>,
    pub archive: ObjectInfo,
}

const MANIFEST_LIMIT: u64 = 256 << 20;
const RECIPIENTS_LIMIT: u64 = 64 << 10;

pub(crate) fn open_backup(
    target: &dyn Target,
    name: &BackupName,
    unlock: &Unlock<'_>,
) -> Result<OpenedBackup> {
    let objects = target.list()?;
    let find = |object: String| objects.iter().find(|o| o.name == object).cloned();
    let archive = find(name.archive_object());
    let recipients_object = find(name.recipients_object());
    let Some(_) = find(name.manifest_object()) else {
        return Err(if archive.is_some() || recipients_object.is_some() {
            Error::Incomplete {
                target: target.describe(),
                name: name.to_string(),
                object: name.manifest_object(),
            }
        } else {
            Error::NotFound {
                target: target.describe(),
                name: name.to_string(),
            }
        });
    };
    let recipients = match recipients_object {
        Some(object) => read_recipients(target, &object.name)?,
        None => Vec::new(),
    };

    let object = name.manifest_object();
    let reader = target.open(&object)?;
    let decrypted = unlock
        .key
        .open(BufReader::new(reader), &object, || recipients.clone())?;
    let bytes = age_stream::read_all(decrypted, &object, MANIFEST_LIMIT)?;
    let opened = manifest::open_manifest_object(&bytes, name.as_str(), unlock.trusted_signer)?;

    let archive_object = &opened.seal.archive_object;
    if archive_object != &name.archive_object() {
        return Err(Error::Manifest {
            name: name.to_string(),
            detail: format!("it seals {archive_object}, not this backup's archive"),
        });
    }
    let Some(archive) = archive else {
        return Err(Error::Damaged {
            object: archive_object.clone(),
            detail: "the object is missing from the target".to_owned(),
        });
    };
    let expected = opened.seal.archive_size;
    if archive.size < expected {
        return Err(Error::Truncated {
            object: archive.name,
            expected,
            actual: archive.size,
        });
    }
    if archive.size > expected {
        return Err(Error::Damaged {
            object: archive.name,
            detail: format!(
                "it holds {} bytes, {} more than the manifest records",
                archive.size,
                archive.size - expected
            ),
        });
    }
    Ok(OpenedBackup {
        name: name.clone(),
        opened,
        recipients,
        archive,
    })
}

fn read_recipients(target: &dyn Target, object: &str) -> Result<Vec<String>> {
    let reader = target.open(object)?;
    let bytes = age_stream::read_all(reader, object, RECIPIENTS_LIMIT)?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Where checked entry bytes go.
pub(crate) trait EntrySink {
    fn directory(&mut self, entry: &Entry) -> Result<()>;
    fn file(&mut self, entry: &Entry) -> Result<Box<dyn Write + '_>>;
}

/// Discards entry bytes: verify.
pub(crate) struct Discard;

impl EntrySink for Discard {
    fn directory(&mut self, _entry: &Entry) -> Result<()> {
        Ok(())
    }

    fn file(&mut self, _entry: &Entry) -> Result<Box<dyn Write + '_>> {
        Ok(Box::new(io::sink()))
    }
}

/// Streams the archive and checks it whole: age authenticates every chunk
/// and the end; every entry is held against the manifest (path, kind, size,
/// SHA-256), nothing may be missing or extra, the signed manifest must be
/// the last entry, and the ciphertext's size must match the seal.
pub(crate) fn check_archive(
    target: &dyn Target,
    backup: &OpenedBackup,
    unlock: &Unlock<'_>,
    sink: &mut dyn EntrySink,
    progress: &dyn Progress,
) -> Result<CheckedBackup> {
    let object = backup.archive.name.as_str();
    let damaged = |detail: String| Error::Damaged {
        object: object.to_owned(),
        detail,
    };
    let raw = target.open(object)?;
    let mut input = BufReader::with_capacity(1 << 20, Counted::new(raw));
    let recipients = || backup.recipients.clone();
    let decrypted = match unlock.key.open(&mut input, object, recipients) {
        // The manifest object opened with this key, and both objects are
        // encrypted to the same recipients: the archive's header was altered.
        Err(Error::WrongKey { .. } | Error::WrongPassphrase { .. }) => {
            return Err(damaged(
                "its age header does not open with the key that opened its manifest".to_owned(),
            ));
        }
        other => other?,
    };

    // Reading, decrypting and decompressing on one thread; checking,
    // hashing and writing entries on this one.
    let (mut pipe_writer, pipe_reader) = pipe();
    let (open_result, unpack_result) = std::thread::scope(|scope| {
        let opener = scope.spawn(move || -> Result<(), Option<String>> {
            let mut decrypted = Counted::new(decrypted);
            let copied = zstd::stream::read::Decoder::new(&mut decrypted)
                .and_then(|mut decompressed| pipe_writer.copy_from(&mut decompressed))
                .and_then(|_| pipe_writer.finish());
            match copied {
                Ok(()) => Ok(()),
                Err(error) => match decrypted.take_failure() {
                    Some(age_error) => Err(Some(format!("age: {age_error}"))),
                    // The unpacking side stopped first; its error says why.
                    None if error.kind() == io::ErrorKind::BrokenPipe => Err(None),
                    None => Err(Some(format!("zstd: {error}"))),
                },
            }
        });
        let unpack_result = unpack(pipe_reader, backup, sink, progress);
        let open_result = opener
            .join()
            .unwrap_or_else(|_| Err(Some("the decryption thread panicked".to_owned())));
        (open_result, unpack_result)
    });

    let mut raw = input.into_inner();
    if let Some(error) = raw.take_failure() {
        return Err(Error::target(&target.describe(), object, "reading", error));
    }
    if let Err(Some(problem)) = open_result {
        let at = raw.count();
        return Err(damaged(format!(
            "decryption failed near byte {at}: {problem}"
        )));
    }
    let (files, bytes) = unpack_result?;
    io::copy(&mut raw, &mut io::sink())
        .map_err(|error| Error::target(&target.describe(), object, "reading", error))?;
    let size = raw.count();
    let expected = backup.opened.seal.archive_size;
    if size != expected {
        return Err(damaged(format!(
            "{size} bytes were read, the manifest records {expected}"
        )));
    }
    Ok(CheckedBackup {
        name: backup.name.clone(),
        manifest: backup.opened.manifest.clone(),
        signer: manifest::key_text(&backup.opened.signer),
        files,
        bytes,
        archive_size: size,
    })
}

fn unpack(
    input: impl Read,
    backup: &OpenedBackup,
    sink: &mut dyn EntrySink,
    progress: &dyn Progress,
) -> Result<(u64, u64)> {
    let name = backup.name.as_str();
    let object = backup.archive.name.as_str();
    let damaged = |detail: String| Error::Damaged {
        object: object.to_owned(),
        detail,
    };
    let entry_error = |path: &str, problem: String| Error::Entry {
        name: name.to_owned(),
        path: path.to_owned(),
        problem,
    };
    let manifest = &backup.opened.manifest;
    let expected: HashMap<&str, &Entry> = manifest
        .entries
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    let mut seen: HashSet<String> = HashSet::with_capacity(expected.len());
    let mut manifest_seen = false;
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut buffer = vec![0u8; 1 << 20];

    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(|error| damaged(format!("tar: {error}")))?;
    for tar_entry in entries {
        let mut tar_entry = tar_entry.map_err(|error| damaged(format!("tar: {error}")))?;
        let path_bytes = tar_entry.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&path_bytes)
            .trim_end_matches('/')
            .to_owned();
        if manifest_seen {
            return Err(entry_error(
                &path,
                "follows the manifest, which must be the last entry".to_owned(),
            ));
        }
        if !is_safe_path(&path) {
            return Err(entry_error(
                &path,
                "is not a plain relative path (absolute, `..` or empty parts); refused".to_owned(),
            ));
        }
        if path == MANIFEST_ENTRY {
            let mut embedded = Vec::new();
            tar_entry
                .by_ref()
                .take(MANIFEST_LIMIT)
                .read_to_end(&mut embedded)
                .map_err(|error| damaged(format!("tar: {error}")))?;
            if embedded != backup.opened.signed_manifest {
                return Err(entry_error(
                    &path,
                    "differs from the manifest object stored beside the archive".to_owned(),
                ));
            }
            manifest_seen = true;
            continue;
        }
        let Some(&entry) = expected.get(path.as_str()) else {
            return Err(entry_error(
                &path,
                "is in the archive but not in the manifest".to_owned(),
            ));
        };
        if !seen.insert(path.clone()) {
            return Err(entry_error(
                &path,
                "appears twice in the archive".to_owned(),
            ));
        }
        let tar_kind = tar_entry.header().entry_type();
        match (entry.kind, tar_kind) {
            (EntryKind::Dir, tar::EntryType::Directory) => sink.directory(entry)?,
            (EntryKind::File, tar::EntryType::Regular) => {
                let size = tar_entry.size();
                if size != entry.size {
                    return Err(entry_error(
                        &path,
                        format!("holds {size} bytes, the manifest records {}", entry.size),
                    ));
                }
                progress.entry(&path);
                let mut hashing = HashingReader::new(&mut tar_entry, Some(progress));
                let mut output = sink.file(entry)?;
                loop {
                    let read = hashing
                        .read(&mut buffer)
                        .map_err(|error| damaged(format!("reading entry {path}: {error}")))?;
                    if read == 0 {
                        break;
                    }
                    output
                        .write_all(&buffer[..read])
                        .map_err(|error| sink_error(&path, error))?;
                }
                drop(output);
                let (read, sha256) = hashing.finish();
                if read != entry.size {
                    return Err(entry_error(
                        &path,
                        format!("ends after {read} of {} bytes", entry.size),
                    ));
                }
                if entry.sha256.as_deref() != Some(sha256.as_str()) {
                    return Err(entry_error(
                        &path,
                        format!(
                            "content differs from the manifest (SHA-256 {sha256}, recorded {})",
                            entry.sha256.as_deref().unwrap_or("none")
                        ),
                    ));
                }
                files += 1;
                bytes += read;
            }
            (kind, other) => {
                return Err(entry_error(
                    &path,
                    format!("is a {other:?} entry in the archive, a {kind:?} in the manifest"),
                ));
            }
        }
    }
    if !manifest_seen {
        return Err(damaged(
            "the archive ends before its manifest entry".to_owned(),
        ));
    }
    if seen.len() != expected.len() {
        let missing: Vec<&str> = manifest
            .entries
            .iter()
            .map(|e| e.path.as_str())
            .filter(|path| !seen.contains(*path))
            .collect();
        return Err(entry_error(
            missing[0],
            format!(
                "is in the manifest but not in the archive ({} entries missing)",
                missing.len()
            ),
        ));
    }
    // Read to the end: the other side checks zstd's frame and age's last
    // chunk only when it is asked for everything.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|error| damaged(format!("after the last entry: {error}")))?;
    Ok((files, bytes))
}

/// Turns a restore sink's write error into an error that names the entry.
fn sink_error(path: &str, error: io::Error) -> Error {
    Error::RestoreWrite {
        path: path.into(),
        source: error,
    }
}

/// Relative, `/`-separated, no empty, `.` or `..` parts: nothing that could
/// land outside the restore directory.
pub(crate) fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Seal, sha256_hex, sign_manifest};
    use crate::progress::NoProgress;
    use ed25519_dalek::SigningKey;

    const NAME: &str = "archipel-20260512T020000Z";

    fn file(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: path.to_owned(),
            kind: EntryKind::File,
            mode: 0o644,
            size: content.len() as u64,
            sha256: Some(sha256_hex(content)),
        }
    }

    fn opened(entries: Vec<Entry>) -> OpenedBackup {
        let key = SigningKey::from_bytes(&[1; 32]);
        let manifest = Manifest {
            format: manifest::FORMAT,
            name: NAME.to_owned(),
            created: "2026-05-12T02:00:00Z".parse().expect("time"),
            server_name: "bzk.example".to_owned(),
            metadata: Default::default(),
            recipients: vec![],
            compression: "zstd".to_owned(),
            total_bytes: entries.iter().map(|e| e.size).sum(),
            entries,
        };
        let signed_manifest = sign_manifest(&manifest, &key);
        let seal = Seal {
            archive_object: format!("{NAME}.tar.zst.age"),
            archive_size: 0,
            signed_manifest_sha256: sha256_hex(&signed_manifest),
        };
        OpenedBackup {
            name: BackupName::parse(NAME).expect("name"),
            opened: OpenedManifest {
                manifest,
                seal,
                signed_manifest,
                signer: key.verifying_key(),
            },
            recipients: vec![],
            archive: ObjectInfo {
                name: format!("{NAME}.tar.zst.age"),
                size: 0,
            },
        }
    }

    /// A tar of `(path, content)` entries, written with raw
    /// headers so that unsafe paths can be written too; the manifest last
    /// unless `with_manifest` is false.
    fn archive(backup: &OpenedBackup, entries: &[(&str, &[u8])], with_manifest: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut append = |path: &str, content: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.as_gnu_mut().expect("gnu header").name[..path.len()]
                .copy_from_slice(path.as_bytes());
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(content.len() as u64);
            header.set_cksum();
            builder.append(&header, content).expect("append");
        };
        for (path, content) in entries {
            append(path, content);
        }
        if with_manifest {
            append(MANIFEST_ENTRY, &backup.opened.signed_manifest);
        }
        builder.into_inner().expect("tar")
    }

    fn check(
        backup: &OpenedBackup,
        entries: &[(&str, &[u8])],
        with_manifest: bool,
    ) -> Result<(u64, u64)> {
        unpack(
            archive(backup, entries, with_manifest).as_slice(),
            backup,
            &mut Discard,
            &NoProgress,
        )
    }

    #[test]
    fn a_matching_archive_passes() {
        let backup = opened(vec![file("db/a", b"alpha"), file("db/b", b"")]);
        assert_eq!(
            check(&backup, &[("db/a", b"alpha"), ("db/b", b"")], true).expect("passes"),
            (2, 5)
        );
    }

    #[test]
    fn each_mismatch_names_its_entry() {
        let backup = opened(vec![file("db/a", b"alpha"), file("db/b", b"beta")]);
        type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], bool, &'a str);
        let cases: [Case; 6] = [
            (
                "content",
                &[("db/a", b"alphA"), ("db/b", b"beta")],
                true,
                "entry db/a: content differs",
            ),
            (
                "size",
                &[("db/a", b"alpha!"), ("db/b", b"beta")],
                true,
                "entry db/a: holds 6 bytes",
            ),
            (
                "extra",
                &[("db/a", b"alpha"), ("db/c", b"x"), ("db/b", b"beta")],
                true,
                "entry db/c: is in the archive but not in the manifest",
            ),
            (
                "missing",
                &[("db/a", b"alpha")],
                true,
                "entry db/b: is in the manifest but not in the archive",
            ),
            (
                "traversal",
                &[("../../etc/cron.d/x", b"evil")],
                true,
                "entry ../../etc/cron.d/x: is not a plain relative path",
            ),
            (
                "no manifest",
                &[("db/a", b"alpha"), ("db/b", b"beta")],
                false,
                "ends before its manifest entry",
            ),
        ];
        for (label, entries, with_manifest, expected) in cases {
            let error = check(&backup, entries, with_manifest)
                .expect_err(label)
                .to_string();
            assert!(error.contains(expected), "{label}: {error}");
        }
    }

    #[test]
    fn an_embedded_manifest_that_differs_is_refused() {
        let backup = opened(vec![file("db/a", b"alpha")]);
        let other = opened(vec![file("db/a", b"alpha"), file("db/b", b"")]);
        let error = check(
            &backup,
            &[
                ("db/a", b"alpha"),
                (MANIFEST_ENTRY, &other.opened.signed_manifest),
            ],
            false,
        )
        .expect_err("a different embedded manifest")
        .to_string();
        assert!(
            error.contains("differs from the manifest object"),
            "{error}"
        );
    }

    #[test]
    fn paths_that_could_escape_are_unsafe() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "db/../../x",
            "a//b",
            "./a",
            "a\\..\\b",
        ] {
            assert!(!is_safe_path(bad), "{bad:?}");
        }
        for good in ["db", "vault/db/000012.sst", "media/ab/cdef"] {
            assert!(is_safe_path(good), "{good:?}");
        }
    }
}
