//! Scheduled backups in `archipel run`: at the configured times, a snapshot
//! goes to every target, then each target is pruned. The outcome of the
//! last run is kept in `backup-status.json` in the data folder (for the
//! console and monitoring) and logged; a failure is an error in the log,
//! and the next run comes at the next scheduled time.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use jiff::{Timestamp, tz::TimeZone};
use serde::Serialize;
use tokio::sync::watch;

use super::{ScheduleConfig, cli};
use crate::{admin::Admin, config::Config};

/// The status file's name in the data folder.
pub const STATUS_FILE: &str = "backup-status.json";

/// Parses `HH:MM`.
pub fn parse_time_of_day(text: &str) -> std::result::Result<jiff::civil::Time, String> {
    let (hours, minutes) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: expected HH:MM, e.g. 02:00"))?;
    let number = |part: &str, max: i8| {
        part.parse::<i8>()
            .ok()
            .filter(|n| (0..=max).contains(n) && part.len() == 2)
            .ok_or_else(|| format!("`{text}`: expected HH:MM, e.g. 02:00"))
    };
    Ok(jiff::civil::Time::constant(
        number(hours, 23)?,
        number(minutes, 59)?,
        0,
        0,
    ))
}

/// The first scheduled time after `after`, or `None` when the schedule is
/// off. The day's times are `at`, `at + every_hours`, ... (wrapping past
/// midnight), read as wall-clock times in `time_zone`.
pub fn next_run(
    after: Timestamp,
    schedule: &ScheduleConfig,
    time_zone: &TimeZone,
) -> Option<Timestamp> {
    if schedule.every_hours == 0 {
        return None;
    }
    let at = parse_time_of_day(&schedule.at).ok()?;
    let today = after.to_zoned(time_zone.clone()).date();
    let per_day = 24 / schedule.every_hours;
    let mut next: Option<Timestamp> = None;
    for day in [today.yesterday().ok()?, today, today.tomorrow().ok()?] {
        for k in 0..per_day {
            let hours = (i64::from(at.hour()) + i64::from(k * schedule.every_hours)) % 24;
            let time = jiff::civil::Time::constant(hours as i8, at.minute(), 0, 0);
            let Ok(zoned) = day.to_datetime(time).to_zoned(time_zone.clone()) else {
                continue;
            };
            let candidate = zoned.timestamp();
            if candidate > after && next.is_none_or(|n| candidate < n) {
                next = Some(candidate);
            }
        }
    }
    next
}

#[derive(Serialize)]
struct Status {
    started: String,
    finished: String,
    targets: Vec<TargetStatus>,
}

#[derive(Serialize)]
struct TargetStatus {
    target: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pruned: Option<usize>,
}

/// Runs the schedule until `stop` turns true.
pub async fn run(admin: Arc<Admin>, mut stop: watch::Receiver<bool>) {
    let config = admin.config().clone();
    let time_zone = config.backup.time_zone();
    loop {
        let Some(next) = next_run(Timestamp::now(), &config.backup.schedule, &time_zone) else {
            return;
        };
        tracing::info!(next = %next.to_zoned(time_zone.clone()), "next scheduled backup");
        let wait =
            Duration::try_from(next.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = run_once(&admin, &config).await {
            tracing::error!(target: "archipel::backup", error = %format!("{e:#}"), "scheduled backup failed");
        }
    }
}

/// One scheduled run: snapshot, a backup to every target, prune each.
pub async fn run_once(admin: &Arc<Admin>, config: &Config) -> Result<()> {
    let started = Timestamp::now();
    let snapshot = admin.snapshot().await?;
    let config = config.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        let mut statuses = Vec::new();
        let mut targets = Vec::new();
        for target in &config.backup.targets {
            match target.open() {
                Ok(open) => targets.push(open),
                Err(e) => statuses.push(TargetStatus {
                    target: target.name.clone(),
                    ok: false,
                    backup: None,
                    error: Some(format!("{e:#}")),
                    pruned: None,
                }),
            }
        }
        let written = cli::write_backups(
            &config,
            &snapshot,
            &targets,
            &config.backup.recipients,
            &|_| Box::new(archipel_backup::NoProgress),
        );
        drop(snapshot);
        for (target, cli::Written { outcome, .. }) in targets.iter().zip(written) {
            let mut status = TargetStatus {
                target: target.name.clone(),
                ok: false,
                backup: None,
                error: None,
                pruned: None,
            };
            match outcome {
                Ok((info, seconds)) => {
                    tracing::info!(target: "archipel::backup", to = %target.name, backup = %info.name, bytes = info.archive_size, seconds, "backup written");
                    status.ok = true;
                    status.backup = Some(info.name.to_string());
                    match archipel_backup::prune(
                        target.target.as_ref(),
                        &config.backup.keep.policy(),
                        &config.backup.time_zone(),
                        Timestamp::now(),
                        false,
                    ) {
                        Ok(report) => {
                            status.pruned = Some(report.deleted.len() + report.leftovers.len());
                        }
                        Err(e) => {
                            tracing::error!(target: "archipel::backup", to = %target.name, error = %e, "pruning old backups failed");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(target: "archipel::backup", to = %target.name, error = %format!("{e:#}"), "backup failed");
                    status.error = Some(format!("{e:#}"));
                }
            }
            statuses.push(status);
        }
        let status = Status {
            started: started.to_string(),
            finished: Timestamp::now().to_string(),
            targets: statuses,
        };
        let path = config.node.data_dir.join(STATUS_FILE);
        if let Err(e) = serde_json::to_vec_pretty(&status)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&path, bytes))
        {
            tracing::warn!(path = %path.display(), error = %e, "writing the backup status");
        }
        status
    })
    .await?;
    let failed = statuses.targets.iter().filter(|t| !t.ok).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} targets failed", statuses.targets.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(every_hours: u32, at: &str) -> ScheduleConfig {
        ScheduleConfig {
            every_hours,
            at: at.into(),
            time_zone: "Europe/Amsterdam".into(),
        }
    }

    fn amsterdam() -> TimeZone {
        TimeZone::get("Europe/Amsterdam").expect("bundled time zone")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn daily_runs_at_the_local_time() {
        // 02:00 in Amsterdam is 01:00 UTC in winter, 00:00 UTC in summer.
        let s = schedule(24, "02:00");
        assert_eq!(
            next_run(at("2026-11-24T10:00:00Z"), &s, &amsterdam()),
            Some(at("2026-11-25T01:00:00Z"))
        );
        assert_eq!(
            next_run(at("2026-11-24T00:30:00Z"), &s, &amsterdam()),
            Some(at("2026-11-24T01:00:00Z"))
        );
        assert_eq!(
            next_run(at("2026-07-01T10:00:00Z"), &s, &amsterdam()),
            Some(at("2026-07-02T00:00:00Z"))
        );
    }

    #[test]
    fn every_six_hours_wraps_past_midnight() {
        let s = schedule(6, "20:30");
        // 20:30, 02:30, 08:30, 14:30 local (UTC+1 in November).
        assert_eq!(
            next_run(at("2026-11-24T02:00:00Z"), &s, &amsterdam()),
            Some(at("2026-11-24T07:30:00Z"))
        );
        assert_eq!(
            next_run(at("2026-11-24T19:30:00Z"), &s, &amsterdam()),
            Some(at("2026-11-25T01:30:00Z"))
        );
    }

    #[test]
    fn off_when_zero() {
        assert_eq!(
            next_run(
                at("2026-11-24T10:00:00Z"),
                &schedule(0, "02:00"),
                &amsterdam()
            ),
            None
        );
    }

    #[test]
    fn time_of_day_is_checked() {
        assert!(parse_time_of_day("02:00").is_ok());
        for bad in ["2:00", "24:00", "02:60", "0200", "noon"] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_spring_forward_gap_still_runs() {
        // 2027-03-28: clocks go from 02:00 to 03:00 in Amsterdam.
        let s = schedule(24, "02:30");
        let next = next_run(at("2027-03-27T12:00:00Z"), &s, &amsterdam()).expect("a run");
        assert_eq!(next, at("2027-03-28T01:30:00Z"));
    }
}
