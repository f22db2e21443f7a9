//! Scheduled backups in `archipel run`: at the configured times, a snapshot
//! goes to every target, then each target is pruned. The outcome of the
//! last run is kept in `backup-status.json` in the data folder (for the
//! console and monitoring) and logged; a failure is an error in the log,
//! and the next run comes at the next scheduled time.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use jiff::{Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    ScheduleConfig,
    write::{Written, write_backups},
};
use crate::{admin::server::Admin, config::Config};

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

/// The outcome of the newest scheduled run, as `backup-status.json` keeps it.
#[derive(Serialize, Deserialize)]
pub struct Status {
    pub started: String,
    pub finished: String,
    pub targets: Vec<TargetStatus>,
}

#[derive(Serialize, Deserialize)]
pub struct TargetStatus {
    pub target: String,
    pub ok: bool,
    /// When a backup to this target last succeeded, in this run or an
    /// earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<usize>,
}

impl TargetStatus {
    /// Not (yet) written.
    fn new(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            ok: false,
            last_success: None,
            backup: None,
            error: None,
            pruned: None,
        }
    }
}

/// The newest scheduled run's outcome, if one ran.
pub fn read_status(data_dir: &std::path::Path) -> Option<Status> {
    let bytes = std::fs::read(data_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// When a scheduled backup to each target last succeeded, in seconds since
/// the epoch, as the newest run recorded it.
pub fn last_successes(data_dir: &std::path::Path) -> Vec<(String, i64)> {
    read_status(data_dir)
        .into_iter()
        .flat_map(|status| status.targets)
        .filter_map(|t| Some((t.target, t.last_success?.as_second())))
        .collect()
}

/// When the backup run in progress started, if one runs: one run at a
/// time, scheduled or asked for.
static RUNNING: std::sync::Mutex<Option<Timestamp>> = std::sync::Mutex::new(None);

fn running() -> std::sync::MutexGuard<'static, Option<Timestamp>> {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// When the backup run in progress started, if one runs.
pub fn running_since() -> Option<Timestamp> {
    *running()
}

/// The one backup run in progress, until dropped.
pub struct Running(());

impl Running {
    /// Claims the run, or says since when another one runs.
    pub fn claim() -> Result<Self> {
        let mut running = running();
        if let Some(since) = *running {
            anyhow::bail!("a backup run is in progress already (since {since})");
        }
        *running = Some(Timestamp::now());
        Ok(Self(()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        *running() = None;
    }
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
        let done = match Running::claim() {
            Ok(running) => run_once(&admin, &config, running).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            tracing::error!(target: "archipel::backup", error = %format!("{e:#}"), "scheduled backup failed");
        }
    }
}

/// One run, scheduled or asked for: snapshot, a backup to every target,
/// prune each.
pub async fn run_once(admin: &Arc<Admin>, config: &Config, _running: Running) -> Result<()> {
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
                    error: Some(format!("{e:#}")),
                    ..TargetStatus::new(&target.name)
                }),
            }
        }
        let written = write_backups(
            &config,
            &snapshot,
            &targets,
            &config.backup.recipients,
            &|_| Box::new(archipel_backup::NoProgress),
        );
        drop(snapshot);
        for (target, Written { outcome, .. }) in targets.iter().zip(written) {
            let mut status = TargetStatus::new(&target.name);
            match outcome {
                Ok((info, seconds)) => {
                    tracing::info!(target: "archipel::backup", to = %target.name, backup = %info.name, bytes = info.archive_size, seconds, "backup written");
                    status.ok = true;
                    status.last_success = Some(Timestamp::now());
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
        let previous = read_status(&config.node.data_dir);
        for status in statuses.iter_mut().filter(|s| s.last_success.is_none()) {
            status.last_success = previous
                .iter()
                .flat_map(|p| &p.targets)
                .find(|p| p.target == status.target)
                .and_then(|p| p.last_success);
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
    fn one_backup_run_at_a_time() {
        let first = Running::claim().expect("the first run");
        let refused = Running::claim().err().expect("a second run is refused");
        assert!(
            refused.to_string().contains("in progress already"),
            "{refused}"
        );
        assert!(running_since().is_some());
        drop(first);
        assert!(running_since().is_none());
        Running::claim().expect("a run once the first ended");
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

    /// A scheduled run on a node: a backup to each target, a failing target
    /// reported without stopping the others, pruning, and the status file.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_scheduled_run_backs_up_prunes_and_reports() {
        let work = tempfile::tempdir().expect("temp dir");
        let data_dir = work.path().join("data");
        let mut config = Config::for_data_dir(&data_dir).expect("dev config");
        let identity = age::x25519::Identity::generate();
        config.backup.recipients = vec![identity.to_public().to_string()];
        let usb = work.path().join("usb");
        std::fs::create_dir(&usb).expect("usb");
        let target = |name: &str, directory: &std::path::Path| super::super::TargetConfig {
            name: name.into(),
            directory: Some(directory.to_owned()),
            s3: None,
            passphrase_file: None,
        };
        config.backup.targets = vec![
            target("usb", &usb),
            target("unplugged", &work.path().join("unplugged")),
        ];
        // Keep only the newest: the second run prunes the first.
        config.backup.keep = super::super::KeepConfig {
            last: 0,
            daily: 0,
            weekly: 0,
            monthly: 0,
        };
        let node = crate::node::open(&config).expect("node");
        let admin = Admin::new(
            config.clone(),
            node.homeserver.services.clone(),
            node.vault.clone(),
        );

        let failed = run_once(&admin, &config, Running::claim().expect("no run yet"))
            .await
            .expect_err("one target fails");
        assert!(failed.to_string().contains("1 of 2"), "{failed}");
        let status: serde_json::Value = serde_json::from_slice(
            &std::fs::read(data_dir.join(STATUS_FILE)).expect("status file"),
        )
        .expect("status JSON");
        let targets = status["targets"].as_array().expect("targets");
        let usb_status = targets.iter().find(|t| t["target"] == "usb").expect("usb");
        assert_eq!(usb_status["ok"], true, "{status}");
        let first = usb_status["backup"].as_str().expect("name").to_owned();
        let unplugged = targets
            .iter()
            .find(|t| t["target"] == "unplugged")
            .expect("unplugged");
        assert_eq!(unplugged["ok"], false);
        assert!(
            unplugged["error"]
                .as_str()
                .is_some_and(|e| e.contains("mounted")),
            "{status}"
        );

        // Backup names have a resolution of one second.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let _ = run_once(
            &admin,
            &config,
            Running::claim().expect("one run at a time"),
        )
        .await;
        let backups = archipel_backup::list(&archipel_backup::DirTarget::new(&usb).expect("usb"))
            .expect("list");
        assert_eq!(backups.len(), 1, "{backups:?}");
        assert_ne!(backups[0].name.as_str(), first, "the older one was pruned");
        assert!(
            std::fs::read_dir(&data_dir)
                .expect("data dir")
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with(".backup")),
            "no snapshot is left behind"
        );
    }

    #[test]
    fn a_spring_forward_gap_still_runs() {
        // 2027-03-28: clocks go from 02:00 to 03:00 in Amsterdam.
        let s = schedule(24, "02:30");
        let next = next_run(at("2027-03-27T12:00:00Z"), &s, &amsterdam()).expect("a run");
        assert_eq!(next, at("2027-03-28T01:30:00Z"));
    }
}
