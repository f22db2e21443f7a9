//! Exports for records managers to download from the web console: a ZIP
//! archive of `vault export`'s folder (the conversations to read, every
//! record, the proofs and the verifier key), kept on the node for a day.
//! Making one is recorded with its scope, and so is each download: an
//! export is archived content leaving the vault.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow};
use archipel_vault::export::{ExportScope, ExportSummary};
use jiff::Timestamp;

use super::{Actor, Node, audited};

/// How long an export stays on the node.
pub const KEPT_SECS: i64 = 24 * 60 * 60;

/// An export waiting to be downloaded.
pub struct ExportFile {
    /// The file's name: `export-YYYYMMDDTHHMMSSZ-XXXXXXXX.zip`.
    pub name: String,
    pub bytes: u64,
    /// When it was made (Unix seconds).
    pub made: i64,
}

/// Where the node keeps exports: inside its data folder (the encrypted
/// partition on the appliance).
fn folder(node: Node<'_>) -> PathBuf {
    node.config.node.data_dir.join("exports")
}

/// The scope as the audit trail names it.
pub fn describe(scope: &ExportScope) -> String {
    let mut parts = Vec::new();
    if let Some(room) = &scope.room {
        parts.push(format!("room {room}"));
    }
    if let Some(user) = &scope.user {
        parts.push(format!("sent by {user}"));
    }
    if let Some(from) = scope.from_ms {
        parts.push(format!("from {}", super::utc(from)));
    }
    if let Some(until) = scope.until_ms {
        parts.push(format!("until {}", super::utc(until)));
    }
    if parts.is_empty() {
        "every conversation".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Exports `scope`: the vault first signs a checkpoint of every record so
/// far, so that the export holds everything up to now, proven.
pub fn create(
    node: Node<'_>,
    actor: &Actor,
    scope: &ExportScope,
) -> Result<(ExportFile, ExportSummary)> {
    let done = make(node, scope);
    audited(node, actor, "vault export", &describe(scope), done)
}

fn make(node: Node<'_>, scope: &ExportScope) -> Result<(ExportFile, ExportSummary)> {
    node.vault.checkpoint()?;
    let dir = folder(node);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let now = Timestamp::now();
    let stem = format!(
        "export-{}-{:08x}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    );
    // Written beside its final place and renamed when complete: a
    // half-written export is never offered.
    let work = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(&dir)
        .with_context(|| format!("a work folder in {}", dir.display()))?;
    let content = work.path().join(&stem);
    let summary = node.vault.export(scope, &content, |_, _| {})?;
    let packed = work.path().join(format!("{stem}.zip"));
    pack(&content, &stem, &packed)?;
    let name = format!("{stem}.zip");
    let kept = dir.join(&name);
    std::fs::rename(&packed, &kept).with_context(|| format!("keeping {}", kept.display()))?;
    let bytes = std::fs::metadata(&kept)?.len();
    Ok((
        ExportFile {
            name,
            bytes,
            made: now.as_second(),
        },
        summary,
    ))
}

/// Packs the folder `content` into the ZIP archive `to`, under `root/`.
fn pack(content: &Path, root: &str, to: &Path) -> Result<()> {
    let file = std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let mut pending = vec![(content.to_owned(), root.to_owned())];
    while let Some((dir, name)) = pending.pop() {
        zip.add_directory(format!("{name}/"), options)?;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let entry_name = format!("{name}/{}", entry.file_name().to_string_lossy());
            if entry.file_type()?.is_dir() {
                pending.push((path, entry_name));
            } else {
                zip.start_file(entry_name, options)?;
                let mut source = std::fs::File::open(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                std::io::copy(&mut source, &mut zip)?;
            }
        }
    }
    let mut written = zip.finish()?;
    written.flush()?;
    written
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {}", to.display(), e.error()))?
        .sync_all()?;
    Ok(())
}

/// The exports on the node, newest first.
pub fn list(node: Node<'_>) -> Result<Vec<ExportFile>> {
    let dir = folder(node);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(made) = made_at(&name) else {
            continue;
        };
        files.push(ExportFile {
            bytes: entry.metadata()?.len(),
            name,
            made,
        });
    }
    files.sort_by(|a, b| b.name.cmp(&a.name));
    Ok(files)
}

/// When the export named `name` was made, if `name` is an export's.
fn made_at(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("export-")?.strip_suffix(".zip")?;
    let (time, random) = rest.split_once('-')?;
    if random.len() != 8 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // YYYYMMDDTHHMMSSZ
    let digits = |range: std::ops::Range<usize>| {
        time.get(range)
            .filter(|part| part.bytes().all(|b| b.is_ascii_digit()))
    };
    if time.len() != 16 || &time[8..9] != "T" || &time[15..] != "Z" {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?
    );
    Some(text.parse::<Timestamp>().ok()?.as_second())
}

/// The refusal of [`open`] for a name that is no export kept on the node
/// (never made, swept, or not an export's name).
#[derive(Debug)]
pub struct NoSuchExport;

impl std::fmt::Display for NoSuchExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no such export")
    }
}

impl std::error::Error for NoSuchExport {}

/// Opens the export `name` for `actor` to download, recording it.
/// Refused with [`NoSuchExport`] if there is none by that name.
pub fn open(node: Node<'_>, actor: &Actor, name: &str) -> Result<(std::fs::File, u64)> {
    let opened = (|| {
        if made_at(name).is_none() {
            return Err(NoSuchExport.into());
        }
        let path = folder(node).join(name);
        let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::Error::new(NoSuchExport),
            _ => anyhow!("opening {}: {e}", path.display()),
        })?;
        let bytes = file.metadata()?.len();
        Ok((file, bytes))
    })();
    audited(node, actor, "vault export download", name, opened)
}

/// Removes exports older than [`KEPT_SECS`], and what an interrupted
/// export left behind; returns how many exports went.
pub fn sweep(node: Node<'_>) -> Result<usize> {
    let dir = folder(node);
    let now = Timestamp::now().as_second();
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(made) = made_at(&name) {
            if now - made > KEPT_SECS {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                removed += 1;
            }
        } else if name.starts_with(".export-") {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default().as_secs() > 3600)
                .unwrap_or(false);
            if old {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::made_at;

    #[test]
    fn only_export_names_are_exports() {
        assert_eq!(
            made_at("export-20261205T120000Z-0a1b2c3d.zip"),
            Some(1_796_472_000)
        );
        for name in [
            "../vault.key",
            "export-20261205T120000Z-0a1b2c3d.zip/../x",
            "export-20261205T120000Z-zzzzzzzz.zip",
            "export-2026-0a1b2c3d.zip",
            "export-2026120ST120000Z-0a1b2c3d.zip",
            ".export-abc",
        ] {
            assert!(made_at(name).is_none(), "{name}");
        }
    }
}
