//! `archipel vault woo plan|package` and `vault verify-woo`.

use std::{io::Write, path::Path};

use anyhow::Result;
use archipel_vault::export::woo::check::verify_woo;

use crate::{
    args::WooCommand,
    ops::{self, Actor, Node},
};

pub(super) fn woo(
    node: Node<'_>,
    actor: &Actor,
    command: WooCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        WooCommand::Plan {
            matter,
            words,
            room,
            from,
            until,
        } => {
            let request = ops::woo::Request {
                matter,
                words: words.join(" "),
                room,
                from_ms: from,
                until_ms: until,
            };
            let plan = ops::woo::plan(node, actor, &request)?;
            write!(out, "{plan}")?;
        }
        WooCommand::Package {
            plan,
            out: folder,
            json,
        } => {
            let read = ops::woo::read_plan(&plan)?;
            let summary = ops::woo::package(node, actor, &read, &folder)?;
            if json {
                say!(out, "{}", serde_json::to_string(&summary)?);
            } else {
                say!(
                    out,
                    "made the Woo package for {} in {}: {} document(s), {} published ({} page(s), {} redaction(s)), {} withheld whole or published before",
                    read.matter.trim(),
                    folder.display(),
                    summary.documents,
                    summary.published,
                    summary.pages,
                    summary.redactions,
                    summary.not_included,
                );
            }
        }
    }
    Ok(())
}

pub fn verify(dir: &Path, key: Option<&str>, json: bool) -> Result<()> {
    let report = verify_woo(dir, key)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: matter {}, {} document(s), {} record(s) checked against the checkpoint of {} records",
            dir.display(),
            report.matter,
            report.documents,
            report.records,
            report.checkpoint_size
        );
    }
    super::verdict(
        json,
        "package",
        "every document and list is as the archive made it, and every record it shows is in the signed log",
        report.key_from_package,
        &report.problems,
    )
}
