//! Making a backup: sources -> tar -> zstd -> age -> the target, in one pass.
//!
//! Two threads share the work: this one walks the sources, reads and hashes
//! every file and writes the tar stream into a pipe; the other compresses
//! (zstd's own workers do the heavy part), encrypts, hashes the ciphertext
//! and writes it to the target. No plaintext byte ever reaches a disk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use ed25519_dalek::SigningKey;
use jiff::Timestamp;

use crate::age_stream::Encryption;
use crate::error::{Error, Result};
use crate::hashing::{Counted, HashingReader};
use crate::manifest::{self, Entry, EntryKind, FORMAT, MANIFEST_ENTRY, Manifest, Seal};
use crate::naming::BackupName;
use crate::pipe::{PipeReader, PipeWriter, pipe};
use crate::progress::{Phase, Progress};
use crate::target::{ObjectWriter, Target};

/// One named thing to back up: a directory (taken whole, recursively) or a
/// file. The name is where it lands in the backup and on restore, relative
/// to the destination, e.g. `db`, `vault/db`, `media`, `signing.key`.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub path: PathBuf,
}

impl Source {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
        }
    }
}

pub struct CreateOptions {
    /// The node's server name, recorded in the manifest.
    pub server_name: String,
    /// The node's key; signs the manifest.
    pub signing_key: SigningKey,
    pub encryption: Encryption,
    /// Recorded in the manifest as given, e.g. `vault_checkpoint` -> the
    /// vault's signed checkpoint note at snapshot time.
    pub metadata: BTreeMap<String, String>,
    /// The backup's time (and so its name); `None`: now.
    pub time: Option<Timestamp>,
    /// zstd level; 3 (zstd's default) compresses JSON and RocksDB files well
    /// at several hundred MB/s a core.
    pub compression_level: i32,
    /// zstd worker threads; 0 compresses on the pipeline's own thread.
    pub compression_threads: u32,
}

impl CreateOptions {
    pub fn new(
        server_name: impl Into<String>,
        signing_key: SigningKey,
        encryption: Encryption,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            server_name: server_name.into(),
            signing_key,
            encryption,
            metadata: BTreeMap::new(),
            time: None,
            compression_level: 3,
            compression_threads: u32::try_from(cores).unwrap_or(1),
        }
    }
}

/// What [`create`] wrote.
#[derive(Clone, Debug)]
pub struct BackupInfo {
    pub name: BackupName,
    pub manifest: Manifest,
    /// Bytes of the encrypted archive object.
    pub archive_size: u64,
}

struct Planned {
    archive_path: String,
    source_path: PathBuf,
    kind: EntryKind,
    mode: u32,
    size: u64,
}

/// Reads within a file are this large: few system calls, little memory.
const READ_BUFFER: usize = 1 << 20;

/// Input per zstd worker job. zstd's default for level 3 (8 MiB) keeps
/// about 40 MiB in flight with two workers; 2 MiB jobs keep about 10 MiB at
/// the same speed and a ratio within 0.1%.
const COMPRESSION_JOB: u32 = 2 << 20;

/// Writes a new backup of `sources` to `target`. The backup appears in the
/// target (its manifest object is written) only after the archive is
/// complete; on any error every object of this backup is removed again and
/// earlier backups are not touched.
pub fn create(
    sources: &[Source],
    options: &CreateOptions,
    target: &dyn Target,
    progress: &dyn Progress,
) -> Result<BackupInfo> {
    let planned = plan(sources)?;
    let name = BackupName::at(options.time.unwrap_or_else(Timestamp::now));
    let taken = target
        .list()?
        .iter()
        .any(|object| BackupName::from_object(&object.name).is_some_and(|(n, _)| n == name));
    if taken {
        return Err(Error::AlreadyExists {
            target: target.describe(),
            name: name.to_string(),
        });
    }
    let total_bytes = planned.iter().map(|entry| entry.size).sum();
    progress.begin(Phase::Create, total_bytes);

    let archive_object = name.archive_object();
    let writer = target.create(&archive_object)?;
    let (entries, encrypted, signed_manifest) =
        write_archive(&planned, &name, options, writer, target, progress)?;
    let EncryptedArchive {
        writer,
        size: archive_size,
    } = encrypted;
    writer.commit()?;

    let manifest = entries;
    let seal = Seal {
        archive_object: archive_object.clone(),
        archive_size,
        signed_manifest_sha256: manifest::sha256_hex(&signed_manifest),
    };
    let sealed = manifest::seal_manifest(&signed_manifest, &seal, &options.signing_key);
    if let Err(error) = write_small_objects(&name, options, &sealed, target) {
        // Best effort: the manifest object was not written, so what is left
        // is listed as incomplete even if a delete fails.
        for object in [name.recipients_object(), archive_object] {
            let _ = target.delete(&object);
        }
        return Err(error);
    }
    Ok(BackupInfo {
        name,
        manifest,
        archive_size,
    })
}

/// The recipients sidecar, then the manifest object: its presence marks the
/// backup complete, so it goes last.
fn write_small_objects(
    name: &BackupName,
    options: &CreateOptions,
    sealed: &[u8],
    target: &dyn Target,
) -> Result<()> {
    let recipients = options.encryption.public_recipients().join("\n") + "\n";
    let object = name.recipients_object();
    let mut writer = target.create(&object)?;
    writer
        .write_all(recipients.as_bytes())
        .map_err(|error| Error::target(&target.describe(), &object, "writing", error))?;
    writer.commit()?;

    let object = name.manifest_object();
    let writer = target.create(&object)?;
    let failed = |error| Error::target(&target.describe(), &object, "writing", error);
    let mut encrypted = options.encryption.wrap(writer).map_err(failed)?;
    encrypted.write_all(sealed).map_err(failed)?;
    encrypted.finish().map_err(failed)?.commit()
}

struct EncryptedArchive {
    writer: Box<dyn ObjectWriter>,
    size: u64,
}

enum StageError {
    /// The other stage stopped; its error is the one to report.
    Upstream,
    Own(Error),
}

fn write_archive(
    planned: &[Planned],
    name: &BackupName,
    options: &CreateOptions,
    writer: Box<dyn ObjectWriter>,
    target: &dyn Target,
    progress: &dyn Progress,
) -> Result<(Manifest, EncryptedArchive, Vec<u8>)> {
    let (pipe_writer, pipe_reader) = pipe();
    let archive_object = name.archive_object();
    let target_name = target.describe();
    let (tar_result, encrypt_result) = std::thread::scope(|scope| {
        let encrypt = std::thread::Builder::new()
            .name("archipel-backup-encrypt".to_owned())
            .spawn_scoped(scope, || {
                encrypt_stage(pipe_reader, options, writer, &target_name, &archive_object)
            });
        let encrypt = match encrypt {
            Ok(handle) => handle,
            Err(error) => {
                return (
                    Err(Error::Pipeline(format!(
                        "starting the encryption thread: {error}"
                    ))),
                    Err(StageError::Upstream),
                );
            }
        };
        let tar_result = tar_stage(pipe_writer, planned, name, options, progress);
        let encrypt_result = encrypt.join().unwrap_or_else(|_| {
            Err(StageError::Own(Error::Pipeline(
                "the encryption thread panicked".to_owned(),
            )))
        });
        (tar_result, encrypt_result)
    });
    match (tar_result, encrypt_result) {
        (Ok((manifest, signed)), Ok(encrypted)) => Ok((manifest, encrypted, signed)),
        // A target error (full, unreachable) is the cause of the tar
        // stage's broken pipe, so it is the one to report.
        (_, Err(StageError::Own(error))) => Err(error),
        (Err(error), _) => Err(error),
        (Ok(_), Err(StageError::Upstream)) => {
            Err(Error::Pipeline("the archive stream ended early".to_owned()))
        }
    }
}

fn encrypt_stage(
    mut input: PipeReader,
    options: &CreateOptions,
    writer: Box<dyn ObjectWriter>,
    target: &str,
    object: &str,
) -> Result<EncryptedArchive, StageError> {
    let mut counted = Counted::new(writer);
    let result = (|| -> io::Result<()> {
        let encrypted = options.encryption.wrap(&mut counted)?;
        let mut compressed =
            zstd::stream::write::Encoder::new(encrypted, options.compression_level)?;
        if options.compression_threads > 0 {
            compressed.multithread(options.compression_threads)?;
            compressed.set_parameter(zstd::stream::raw::CParameter::JobSize(COMPRESSION_JOB))?;
        }
        input.copy_to(&mut compressed)?;
        compressed.finish()?.finish()?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            let size = counted.count();
            Ok(EncryptedArchive {
                writer: counted.into_inner(),
                size,
            })
        }
        Err(error) => {
            if let Some(target_error) = counted.take_failure() {
                Err(StageError::Own(Error::target(
                    target,
                    object,
                    "writing",
                    target_error,
                )))
            } else if error.kind() == io::ErrorKind::UnexpectedEof {
                Err(StageError::Upstream)
            } else {
                Err(StageError::Own(Error::Pipeline(format!(
                    "compressing and encrypting: {error}"
                ))))
            }
        }
    }
    // `counted` (and with it the uncommitted object) is dropped on error:
    // the target discards it.
}

fn tar_stage(
    output: PipeWriter,
    planned: &[Planned],
    name: &BackupName,
    options: &CreateOptions,
    progress: &dyn Progress,
) -> Result<(Manifest, Vec<u8>)> {
    let pipeline_error =
        |error: io::Error| Error::Pipeline(format!("writing the archive stream: {error}"));
    let mut builder = tar::Builder::new(output);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut entries = Vec::with_capacity(planned.len());
    let mut total_bytes = 0;
    for item in planned {
        progress.entry(&item.archive_path);
        let entry = match item.kind {
            EntryKind::Dir => {
                let mut header = header(tar::EntryType::Directory, item.mode, 0, None);
                builder
                    .append_data(&mut header, &item.archive_path, io::empty())
                    .map_err(pipeline_error)?;
                Entry {
                    path: item.archive_path.clone(),
                    kind: EntryKind::Dir,
                    mode: item.mode,
                    size: 0,
                    sha256: None,
                }
            }
            EntryKind::File => append_file(&mut builder, item, progress)?,
        };
        total_bytes += entry.size;
        entries.push(entry);
    }
    let manifest = Manifest {
        format: FORMAT,
        name: name.to_string(),
        created: name.created(),
        server_name: options.server_name.clone(),
        metadata: options.metadata.clone(),
        recipients: options.encryption.public_recipients(),
        compression: "zstd".to_owned(),
        entries,
        total_bytes,
    };
    let signed = manifest::sign_manifest(&manifest, &options.signing_key);
    let mut header = header(tar::EntryType::Regular, 0o600, signed.len() as u64, None);
    builder
        .append_data(&mut header, MANIFEST_ENTRY, signed.as_slice())
        .map_err(pipeline_error)?;
    let output = builder.into_inner().map_err(pipeline_error)?;
    output.finish().map_err(pipeline_error)?;
    Ok((manifest, signed))
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: Option<u64>) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime.unwrap_or(0));
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_file(
    builder: &mut tar::Builder<PipeWriter>,
    item: &Planned,
    progress: &dyn Progress,
) -> Result<Entry> {
    let read_error = |source| Error::SourceRead {
        path: item.source_path.clone(),
        source,
    };
    let file = File::open(&item.source_path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    let size = metadata.len();
    let mtime = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map(|age| age.as_secs());
    let mut header = header(tar::EntryType::Regular, item.mode, size, mtime);
    let mut hashing = HashingReader::new(file.take(size), Some(progress));
    let capacity = usize::try_from(size)
        .unwrap_or(READ_BUFFER)
        .clamp(8 << 10, READ_BUFFER);
    let appended = builder.append_data(
        &mut header,
        &item.archive_path,
        BufReader::with_capacity(capacity, &mut hashing),
    );
    if let Err(error) = appended {
        return Err(match hashing.take_failure() {
            Some(source) => read_error(source),
            None => Error::Pipeline(format!(
                "writing {} into the archive stream: {error}",
                item.archive_path
            )),
        });
    }
    let read = hashing.count();
    if read != size {
        return Err(Error::SourceChanged {
            path: item.source_path.clone(),
            reason: format!("it shrank from {size} to {read} bytes"),
        });
    }
    let mut probe = [0u8; 1];
    if hashing
        .inner_mut()
        .get_mut()
        .read(&mut probe)
        .map_err(read_error)?
        != 0
    {
        return Err(Error::SourceChanged {
            path: item.source_path.clone(),
            reason: format!("it grew beyond {size} bytes"),
        });
    }
    let (_, sha256) = hashing.finish();
    Ok(Entry {
        path: item.archive_path.clone(),
        kind: EntryKind::File,
        mode: item.mode,
        size,
        sha256: Some(sha256),
    })
}

/// Checks the source names and walks the sources: every directory and file,
/// in a stable order (sorted by name).
fn plan(sources: &[Source]) -> Result<Vec<Planned>> {
    if sources.is_empty() {
        return Err(Error::InvalidSource {
            name: String::new(),
            reason: "nothing to back up".to_owned(),
        });
    }
    for source in sources {
        check_source_name(&source.name)?;
    }
    for (index, a) in sources.iter().enumerate() {
        for b in &sources[index + 1..] {
            let nested = |outer: &str, inner: &str| {
                inner == outer || inner.starts_with(&format!("{outer}/"))
            };
            if nested(&a.name, &b.name) || nested(&b.name, &a.name) {
                return Err(Error::InvalidSource {
                    name: b.name.clone(),
                    reason: format!("overlaps the source `{}`", a.name),
                });
            }
        }
    }
    let mut planned = Vec::new();
    for source in sources {
        let invalid = |reason: String| Error::InvalidSource {
            name: source.name.clone(),
            reason,
        };
        // The source itself may be a symbolic link (e.g. a config under /etc).
        let metadata = fs::metadata(&source.path)
            .map_err(|error| invalid(format!("{}: {error}", source.path.display())))?;
        if metadata.is_dir() {
            walk(&source.name, &source.path, &metadata, &mut planned)?;
        } else if metadata.is_file() {
            planned.push(Planned {
                archive_path: source.name.clone(),
                source_path: source.path.clone(),
                kind: EntryKind::File,
                mode: permissions(&metadata),
                size: metadata.len(),
            });
        } else {
            return Err(invalid(format!(
                "{} is neither a file nor a directory",
                source.path.display()
            )));
        }
    }
    Ok(planned)
}

fn check_source_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidSource {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(invalid("a source needs a name"));
    }
    if name == MANIFEST_ENTRY {
        return Err(invalid("the name is reserved for the manifest"));
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\0'))
    {
        return Err(invalid(
            "the name must be a relative path of plain parts separated by `/`",
        ));
    }
    Ok(())
}

fn walk(
    archive_path: &str,
    path: &Path,
    metadata: &fs::Metadata,
    planned: &mut Vec<Planned>,
) -> Result<()> {
    let unreadable = |source| Error::SourceRead {
        path: path.to_owned(),
        source,
    };
    planned.push(Planned {
        archive_path: archive_path.to_owned(),
        source_path: path.to_owned(),
        kind: EntryKind::Dir,
        mode: permissions(metadata),
        size: 0,
    });
    let mut children = fs::read_dir(path)
        .map_err(unreadable)?
        .collect::<io::Result<Vec<_>>>()
        .map_err(unreadable)?;
    children.sort_by_key(|child| child.file_name());
    for child in children {
        let child_path = child.path();
        let Some(file_name) = child.file_name().to_str().map(str::to_owned) else {
            return Err(Error::InvalidSource {
                name: archive_path.to_owned(),
                reason: format!("{} is not a UTF-8 name", child_path.display()),
            });
        };
        let child_archive_path = format!("{archive_path}/{file_name}");
        let child_metadata = child.metadata().map_err(|source| Error::SourceRead {
            path: child_path.clone(),
            source,
        })?;
        let file_type = child_metadata.file_type();
        if file_type.is_dir() {
            walk(&child_archive_path, &child_path, &child_metadata, planned)?;
        } else if file_type.is_file() {
            planned.push(Planned {
                archive_path: child_archive_path,
                source_path: child_path,
                kind: EntryKind::File,
                mode: permissions(&child_metadata),
                size: child_metadata.len(),
            });
        } else {
            return Err(Error::InvalidSource {
                name: archive_path.to_owned(),
                reason: format!(
                    "{} is a symbolic link or special file; backups hold only files and directories",
                    child_path.display()
                ),
            });
        }
    }
    Ok(())
}

fn permissions(metadata: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_must_be_plain_relative_paths() {
        for bad in ["", "/etc", "../x", "a//b", "a/./b", MANIFEST_ENTRY] {
            assert!(check_source_name(bad).is_err(), "{bad:?}");
        }
        for good in ["db", "vault/db", "signing.key", "archipel.toml"] {
            assert!(check_source_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn overlapping_sources_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sources = [
            Source::new("vault", dir.path()),
            Source::new("vault/db", dir.path()),
        ];
        let error = plan(&sources).err().expect("overlap refused").to_string();
        assert!(error.contains("overlaps"), "{error}");
    }

    #[test]
    fn symbolic_links_inside_a_source_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).expect("symlink");
        let error = plan(&[Source::new("media", dir.path())])
            .err()
            .expect("link refused")
            .to_string();
        assert!(error.contains("symbolic link"), "{error}");
    }
}
