//! Vault media: one sealed copy of each file, however many records
//! reference it.
//!
//! A file is read once, as a stream, and sealed in chunks under a key of
//! its own (wrapped by the vault key) into `media/blobs/<name>`. Its name
//! is a hash of its bytes keyed with a key derived from the vault key: the
//! same file sent twice, or under two `mxc://` URIs, is one copy, and a
//! name tells nobody without the vault key what the file is. Records name
//! the file by its URI and commit to its bytes by their SHA-256.
//!
//! Every record that references a file is counted. Erasing the last one
//! destroys the file's key in the erasure's own batch (crypto-shredding,
//! like a record's data key) and removes the file after.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use archipel_store::{Batch, key};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result, Vault, record::MediaCopy, seal::DataKey};

/// The folder under the vault's media folder that holds the sealed files.
pub const BLOB_DIR: &str = "blobs";

/// A file an event references, where the homeserver keeps it.
#[derive(Clone, Debug)]
pub struct MediaSource {
    /// The `mxc://` URI the event references.
    pub mxc: String,
    /// The file to read, once, when the vault does not hold it yet: the
    /// homeserver's, or an encrypted attachment decrypted.
    pub path: PathBuf,
    /// Whether this is the decrypted content of the encrypted file at `mxc`
    /// (what the homeserver holds there is ciphertext).
    pub decrypted: bool,
}

/// How the vault looks up a file: by its URI, and for a decrypted
/// attachment by what it is the plaintext of.
fn lookup_key(mxc: &str, decrypted: bool) -> String {
    if decrypted {
        format!("decrypted {mxc}")
    } else {
        mxc.to_owned()
    }
}

/// A stored file: its wrapped key and what verify checks without it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Blob {
    /// The file's data key, wrapped by the vault key (base64).
    key: String,
    /// Size of the file's bytes.
    pub size: u64,
    /// SHA-256 (base64) of the file's bytes.
    pub sha256: String,
    /// SHA-256 (base64) of the sealed file.
    pub sealed_sha256: String,
    /// What names these bytes: `mxc://` URIs (see [`lookup_key`]).
    pub mxcs: Vec<String>,
}

/// What one batch stored: files sealed but not yet committed, by URI, and
/// files to remove once it is.
#[derive(Default)]
pub(crate) struct BatchMedia {
    stored: HashMap<String, (String, Blob)>,
    /// New sealed files, to sync with their folder before the batch commits.
    pub sealed: Vec<PathBuf>,
    /// Files whose last reference the batch erases, to remove after it commits.
    pub released: Vec<PathBuf>,
    /// References the batch drops: `(name, seq)`.
    dropped: HashSet<(String, u64)>,
}

impl Vault {
    fn blob_dir(&self) -> PathBuf {
        self.media_dir.join(BLOB_DIR)
    }

    /// The vault's copy of `source`, referenced by record `seq` in `batch`:
    /// sealed now, unless the vault (or this batch) holds its bytes already.
    pub(crate) fn store_media(
        &self,
        batch: &mut Batch,
        seq: u64,
        source: &MediaSource,
        media: &mut BatchMedia,
    ) -> Result<MediaCopy> {
        let lookup = lookup_key(&source.mxc, source.decrypted);
        let (name, blob) = match self.blob_of(&lookup, media)? {
            Some(known) => known,
            None => self.seal_file(batch, source, &lookup, media)?,
        };
        batch.put(
            &self.log.blob_refs,
            key::with_u64(name.as_bytes().to_vec(), seq),
            b"",
        );
        Ok(MediaCopy {
            mxc: source.mxc.clone(),
            part: 0,
            size: blob.size,
            sealed_sha256: String::new(),
            sha256: Some(blob.sha256),
            decrypted: source.decrypted,
        })
    }

    /// The stored file `mxc` (a [`lookup_key`]) names, from this batch or
    /// the database.
    fn blob_of(&self, mxc: &str, media: &BatchMedia) -> Result<Option<(String, Blob)>> {
        if let Some(known) = media.stored.get(mxc) {
            return Ok(Some(known.clone()));
        }
        let Some(name) = self.log.mxc_blobs.get(mxc.as_bytes())? else {
            return Ok(None);
        };
        let name = String::from_utf8(name)
            .map_err(|_| Error::Corrupt(format!("the media file name of {mxc}")))?;
        Ok(self.blob(&name)?.map(|blob| (name, blob)))
    }

    pub(crate) fn blob(&self, name: &str) -> Result<Option<Blob>> {
        self.log
            .blobs
            .get(name.as_bytes())?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Corrupt(format!("media file {name}: {e}")))
            })
            .transpose()
    }

    /// Streams `source` into a sealed file, names it by its bytes, and
    /// files it in `batch` (or finds that the vault holds these bytes
    /// under another URI already).
    fn seal_file(
        &self,
        batch: &mut Batch,
        source: &MediaSource,
        lookup: &str,
        media: &mut BatchMedia,
    ) -> Result<(String, Blob)> {
        let dir = self.blob_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut input = File::open(&source.path)
            .map_err(|e| Error::io(format!("reading {}", source.path.display()), e))?;
        let temp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| Error::io(format!("creating a file in {}", dir.display()), e))?;
        let key = DataKey::generate();
        let mut named = Sha256::new();
        named.update(self.key.derive("media file names").as_slice());
        let mut plain = Sha256::new();
        let mut sealed = Sha256::new();
        let mut size = 0u64;
        {
            let mut output = BufWriter::new(temp.as_file());
            key.seal_stream(&mut input, &mut output, &mut |chunk, sealed_chunk| {
                named.update(chunk);
                plain.update(chunk);
                sealed.update(sealed_chunk);
                size += chunk.len() as u64;
            })
            .and_then(|()| output.flush())
            .map_err(|e| Error::io(format!("sealing {}", source.path.display()), e))?;
        }
        let name = hex(&named.finalize());
        let sha256 = B64.encode(plain.finalize());
        // The same bytes under another URI: one copy, one more name.
        let existing = match media.stored.values().find(|(n, _)| *n == name) {
            Some((_, blob)) => Some(blob.clone()),
            None => self.blob(&name)?,
        };
        let mut blob = match existing {
            Some(blob) => blob,
            None => {
                temp.as_file()
                    .sync_all()
                    .map_err(|e| Error::io("syncing a sealed media file", e))?;
                let path = dir.join(&name);
                temp.persist(&path)
                    .map_err(|e| Error::io(format!("storing {}", path.display()), e.error))?;
                media.sealed.push(path);
                Blob {
                    key: B64.encode(self.key.wrap_named(&key, &name)),
                    size,
                    sha256,
                    sealed_sha256: B64.encode(sealed.finalize()),
                    mxcs: Vec::new(),
                }
            }
        };
        blob.mxcs.push(lookup.to_owned());
        batch.put_json(&self.log.blobs, name.as_bytes(), &blob);
        batch.put(&self.log.mxc_blobs, lookup.as_bytes(), name.as_bytes());
        for (n, b) in media.stored.values_mut() {
            if *n == name {
                b.mxcs = blob.mxcs.clone();
            }
        }
        media
            .stored
            .insert(lookup.to_owned(), (name.clone(), blob.clone()));
        Ok((name, blob))
    }

    /// Writes the bytes of the vault's copy of `copy` (a file the vault
    /// holds once) to `out`, as they are opened. Requires the vault key.
    pub fn open_media_to(&self, copy: &MediaCopy, out: &mut dyn Write) -> Result<()> {
        let (name, blob) = self
            .blob_of(
                &lookup_key(&copy.mxc, copy.decrypted),
                &BatchMedia::default(),
            )?
            .ok_or_else(|| Error::NotFound(format!("the vault holds no copy of {}", copy.mxc)))?;
        if Some(&blob.sha256) != copy.sha256.as_ref() {
            return Err(Error::Corrupt(format!(
                "the vault's copy of {} is not the file the record names",
                copy.mxc
            )));
        }
        let key = self.key.unwrap_named(
            &B64.decode(&blob.key).map_err(|_| {
                Error::Corrupt(format!("media file {name}: the wrapped key is not base64"))
            })?,
            &name,
        )?;
        let path = self.blob_dir().join(&name);
        let mut input =
            File::open(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        key.open_stream(&mut std::io::BufReader::new(&mut input), out)
    }

    /// Drops record `seq`'s references to the files of `copies` in `batch`.
    /// A file no other record references loses its key in the same batch
    /// (nothing opens it any more) and is queued for removal.
    pub(crate) fn release_media(
        &self,
        batch: &mut Batch,
        seq: u64,
        copies: &[MediaCopy],
        media: &mut BatchMedia,
    ) -> Result<()> {
        for copy in copies.iter().filter(|c| c.sha256.is_some()) {
            let lookup = lookup_key(&copy.mxc, copy.decrypted);
            let Some((name, blob)) = self.blob_of(&lookup, media)? else {
                continue;
            };
            if !media.dropped.insert((name.clone(), seq)) {
                continue;
            }
            batch.delete(
                &self.log.blob_refs,
                key::with_u64(name.as_bytes().to_vec(), seq),
            );
            let still_referenced = self
                .log
                .blob_refs
                .scan_prefix(key::prefix([name.as_bytes()]))
                .filter_map(|row| row.ok())
                .filter_map(|(k, _)| key::split_last_u64(&k).map(|(_, seq)| seq))
                .any(|other| !media.dropped.contains(&(name.clone(), other)));
            if !still_referenced {
                batch.delete(&self.log.blobs, name.as_bytes());
                for mxc in &blob.mxcs {
                    batch.delete(&self.log.mxc_blobs, mxc.as_bytes());
                }
                media.released.push(self.blob_dir().join(&name));
            }
        }
        Ok(())
    }
}

/// Whether `path` is a file being sealed (or left half-sealed by a crash):
/// named aside until it is complete.
pub(crate) fn is_unfinished(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".tmp"))
}

impl Vault {
    /// Removes media files a crash left half-sealed. Only for the vault's
    /// owner, before it captures anything (a follower of a running node
    /// would remove what the node is sealing).
    pub fn remove_unfinished_media(&self) -> Result<()> {
        remove_unfinished(&self.blob_dir())
    }
}

fn remove_unfinished(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let unfinished: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_unfinished(p))
        .collect();
    remove_files(&unfinished)
}

/// Removes the files of `paths` (their keys are gone already: this only
/// frees the space).
pub(crate) fn remove_files(paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        if let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::io(format!("removing {}", path.display()), e));
        }
    }
    Ok(())
}

/// The sealed file verify checks for `copy`, and the SHA-256 the sealed
/// file must have; `None` when the vault has no such file on record.
pub(crate) fn sealed_file_of(
    log: &crate::log::Log,
    media_dir: &Path,
    copy: &MediaCopy,
) -> Option<(PathBuf, String)> {
    let lookup = lookup_key(&copy.mxc, copy.decrypted);
    let name = String::from_utf8(log.mxc_blobs.get(lookup.as_bytes()).ok()??).ok()?;
    let blob: Blob = serde_json::from_slice(&log.blobs.get(name.as_bytes()).ok()??).ok()?;
    (Some(&blob.sha256) == copy.sha256.as_ref())
        .then(|| (media_dir.join(BLOB_DIR).join(name), blob.sealed_sha256))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
