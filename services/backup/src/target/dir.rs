//! A local directory: a mounted disk or USB stick.
//!
//! An object is written to a hidden temporary file in the directory, fsynced,
//! renamed into place without replacing anything, and the directory fsynced.
//! A failed write (a full disk) removes the temporary file; hidden names are
//! never listed, so nothing half-written looks like a backup.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::{ObjectInfo, ObjectWriter, Target};
use crate::error::{Error, Result};

const TEMPORARY_PREFIX: &str = ".partial-";

pub struct DirTarget {
    root: PathBuf,
    description: String,
}

impl DirTarget {
    /// The directory must exist: a missing mount point is an error, not a
    /// reason to write backups onto the system disk.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let description = format!("directory {}", root.display());
        match fs::metadata(&root) {
            Ok(metadata) if metadata.is_dir() => Ok(Self { root, description }),
            Ok(_) => Err(Error::TargetConfig {
                target: description,
                message: "is not a directory".to_owned(),
            }),
            Err(error) => Err(Error::TargetConfig {
                target: description,
                message: format!("cannot be used ({error}); is the backup disk mounted?"),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(Error::target(
                &self.description,
                name,
                "naming",
                io::Error::other("not a valid object name"),
            ));
        }
        Ok(self.root.join(name))
    }

    fn sync_dir(&self, object: &str) -> Result<()> {
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| {
                Error::target(
                    &self.description,
                    object,
                    "syncing the directory after writing",
                    error,
                )
            })
    }
}

impl Target for DirTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn list(&self) -> Result<Vec<ObjectInfo>> {
        let listing_error = |error| Error::target(&self.description, "", "listing", error);
        let mut objects = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(listing_error)? {
            let entry = entry.map_err(listing_error)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let metadata = entry.metadata().map_err(listing_error)?;
            if metadata.is_file() {
                objects.push(ObjectInfo {
                    name,
                    size: metadata.len(),
                });
            }
        }
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        let path = self.path(name)?;
        let file = tempfile::Builder::new()
            .prefix(&format!("{TEMPORARY_PREFIX}{name}."))
            .tempfile_in(&self.root)
            .map_err(|error| Error::target(&self.description, name, "creating", error))?;
        Ok(Box::new(DirWriter {
            file,
            path,
            name: name.to_owned(),
            target: self.description.clone(),
            root: self.root.clone(),
        }))
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(name)?;
        match File::open(&path) {
            Ok(file) => Ok(Box::new(file)),
            Err(error) => Err(Error::target(&self.description, name, "opening", error)),
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        fs::remove_file(&path)
            .map_err(|error| Error::target(&self.description, name, "deleting", error))?;
        self.sync_dir(name)
    }
}

struct DirWriter {
    file: NamedTempFile,
    path: PathBuf,
    name: String,
    target: String,
    root: PathBuf,
}

impl Write for DirWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.file.write(data)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl ObjectWriter for DirWriter {
    fn commit(self: Box<Self>) -> Result<()> {
        let DirWriter {
            file,
            path,
            name,
            target,
            root,
        } = *self;
        file.as_file()
            .sync_all()
            .map_err(|error| Error::target(&target, &name, "syncing", error))?;
        // persist_noclobber never replaces an object that already exists.
        file.persist_noclobber(&path)
            .map_err(|error| Error::target(&target, &name, "renaming into place", error.error))?;
        File::open(&root)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| {
                Error::target(&target, &name, "syncing the directory after writing", error)
            })
    }
}
