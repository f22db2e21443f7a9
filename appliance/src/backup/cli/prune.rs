//! `archipel backup prune`: backups past the keep policy removed.

use anyhow::Result;
use serde_json::json;

use super::{TargetArgs, targets::open_targets};
use crate::config::Config;

pub(super) fn prune(
    config: Option<&Config>,
    args: &TargetArgs,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let backup = config.map(|c| c.backup.clone()).unwrap_or_default();
    let policy = backup.keep.policy();
    let time_zone = backup.time_zone();
    let mut reports = Vec::new();
    for target in open_targets(config, args, false)? {
        let report = archipel_backup::prune(
            target.target.as_ref(),
            &policy,
            &time_zone,
            jiff::Timestamp::now(),
            dry_run,
        )?;
        if json {
            reports.push(json!({"target": target.name, "dry_run": dry_run, "report": report}));
            continue;
        }
        let verb = if dry_run { "would delete" } else { "deleted" };
        println!(
            "{}: kept {}, {verb} {}, {verb} {} leftovers of failed runs",
            target.name,
            report.kept.len(),
            report.deleted.len(),
            report.leftovers.len()
        );
        for name in &report.deleted {
            println!("  {verb} {name}");
        }
        for name in &report.leftovers {
            println!("  {verb} leftover {name}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}
