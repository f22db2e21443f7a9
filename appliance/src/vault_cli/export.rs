//! `vault export` and `vault verify-export`: conversations to read and
//! check, and the offline check of such an export.

use std::{io::Write, path::Path};

use anyhow::Result;
use archipel_vault::{Vault, export};

use super::with_progress;

pub(super) fn export(
    vault: &Vault,
    scope: export::ExportScope,
    folder: &Path,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let summary = with_progress(json, "exporting", |progress| {
        vault.export(&scope, folder, progress)
    })?;
    if json {
        say!(out, "{}", serde_json::to_string(&summary)?);
    } else {
        say!(
            out,
            "exported {} record(s) in {} conversation(s) ({} erased, {} attachment(s)) to {}",
            summary.records,
            summary.conversations,
            summary.erased,
            summary.attachments,
            folder.display()
        );
    }
    Ok(())
}

pub fn verify_export(dir: &std::path::Path, key: Option<&str>, json: bool) -> Result<()> {
    let report = export::check::verify_export(dir, key)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} record(s) checked against the checkpoint of {} records",
            dir.display(),
            report.records,
            report.checkpoint_size
        );
    }
    super::verdict(
        json,
        "export",
        "every record is in the signed log, every event is shown as archived, and nothing was left out or changed",
        report.key_from_export,
        &report.problems,
    )
}
