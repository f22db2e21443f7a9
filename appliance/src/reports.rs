//! `archipel reports`: what users reported to the operators, newest first
//! (on a running node too: it reads along).

use std::io::Write;

use anyhow::Result;
use archipel_homeserver::service::reports::Report;

use crate::{config::Config, node};

/// Prints the newest `limit` reports, as a table or JSON lines.
pub fn list(config: &Config, json: bool, limit: usize) -> Result<()> {
    let node = node::open_for_reading(config)?;
    let reports = node.homeserver.services.reports.newest(limit)?;
    let mut out = std::io::stdout().lock();
    if json {
        for report in &reports {
            writeln!(out, "{}", serde_json::to_string(report)?)?;
        }
        return Ok(());
    }
    if reports.is_empty() {
        writeln!(out, "no reports")?;
    }
    for report in &reports {
        write_report(&mut out, report)?;
    }
    Ok(())
}

fn write_report(out: &mut dyn Write, report: &Report) -> Result<()> {
    let when = archipel_vault::export::amsterdam_time(report.ts);
    writeln!(out, "{when}  {} reported", report.reporter)?;
    match &report.event_id {
        Some(event) => writeln!(out, "  event {event} in {}", report.room_id)?,
        None => writeln!(out, "  room {}", report.room_id)?,
    }
    if let Some(reason) = &report.reason {
        // What users wrote, never terminal control sequences.
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        writeln!(out, "  reason: {reason}")?;
    }
    Ok(())
}
