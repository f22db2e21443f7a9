//! Plain files beside the database: point-in-time copies to go with
//! [`crate::Store::checkpoint`] in a backup snapshot, and small files made
//! once.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::{fs, io, path::Path};

use crate::error::{Error, Result};

/// Hard-links every file under `from` into the same place under `to`
/// (created; it must not exist), directories recreated. Cheap and exact for
/// files that are written once and then only read or removed, like media:
/// the link keeps a file's bytes even if it is removed from `from` later.
/// Files that vanish while the tree is walked are skipped; files for which
/// `include` says no are left out (half-written ones, caches).
pub fn link_tree(from: &Path, to: &Path, include: &dyn Fn(&Path) -> bool) -> Result<u64> {
    let io_error = |path: &Path, source: io::Error| Error::Io {
        path: path.to_owned(),
        source,
    };
    if to.exists() {
        return Err(Error::CheckpointExists(to.to_owned()));
    }
    fs::create_dir_all(to).map_err(|e| io_error(to, e))?;
    let mut linked = 0;
    let mut stack = vec![(from.to_owned(), to.to_owned())];
    while let Some((source_dir, target_dir)) = stack.pop() {
        let entries = match fs::read_dir(&source_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&source_dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&source_dir, e))?;
            let path = entry.path();
            let target = target_dir.join(entry.file_name());
            let file_type = entry.file_type().map_err(|e| io_error(&path, e))?;
            if file_type.is_dir() {
                fs::create_dir(&target).map_err(|e| io_error(&target, e))?;
                stack.push((path, target));
            } else if file_type.is_file() && include(&path) {
                match fs::hard_link(&path, &target) {
                    Ok(()) => linked += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path, e)),
                }
            }
        }
    }
    Ok(linked)
}

/// Creates `path` with `bytes` and `mode`, all or nothing, durably: after a
/// crash or a power cut it either does not exist or holds every byte (a
/// synced temporary file, linked into place, the folder synced). Fails with
/// `AlreadyExists` if `path` exists: what is made once is never replaced.
pub fn create_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_durably(path, bytes, mode, false)
}

/// [`create_durably`] over what `path` held: after a crash it holds either
/// the old bytes or every new one.
pub fn replace_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_durably(path, bytes, mode, true)
}

fn write_durably(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".new-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    if replace {
        temporary.persist(path).map_err(|e| e.error)?;
    } else {
        temporary.persist_noclobber(path).map_err(|e| e.error)?;
    }
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_made_once_is_complete_and_never_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("key");
        create_durably(&path, b"secret\n", 0o600).expect("created");
        assert_eq!(fs::read(&path).expect("read"), b"secret\n");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = create_durably(&path, b"other\n", 0o600).expect_err("exists");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).expect("read"), b"secret\n");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn links_survive_removal_of_the_original_and_filtered_files_stay_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let from = dir.path().join("media");
        fs::create_dir_all(from.join("files/sub")).expect("dirs");
        fs::write(from.join("files/a"), b"alpha").expect("a");
        fs::write(from.join("files/sub/b"), b"beta").expect("b");
        fs::write(from.join("files/c.partial"), b"half").expect("c");
        let to = dir.path().join("snapshot/media");
        let linked = link_tree(&from, &to, &|path| {
            path.extension().is_none_or(|e| e != "partial")
        })
        .expect("link");
        assert_eq!(linked, 2);
        fs::remove_file(from.join("files/a")).expect("remove original");
        assert_eq!(fs::read(to.join("files/a")).expect("a"), b"alpha");
        assert_eq!(fs::read(to.join("files/sub/b")).expect("b"), b"beta");
        assert!(!to.join("files/c.partial").exists());
        assert!(matches!(
            link_tree(&from, &to, &|_| true),
            Err(Error::CheckpointExists(_))
        ));
    }
}
