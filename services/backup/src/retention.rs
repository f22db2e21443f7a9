//! Retention: which backups to keep under a keep-last/daily/weekly/monthly
//! policy, and pruning the rest.
//!
//! Each rule looks at the backups newest first and keeps the newest backup
//! of each of its most recent N periods that have a backup (days, ISO weeks
//! and months in the given time zone). A backup is kept if any rule keeps
//! it; the newest backup is always kept. Periods without a backup do not
//! count, so a node whose backups stopped for a month still keeps N daily
//! backups rather than none.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::list::list;
use crate::naming::BackupName;
use crate::target::Target;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepReason {
    Newest,
    Last,
    Daily,
    Weekly,
    Monthly,
}

/// For each of `times` (in any order), why it is kept; empty means the
/// policy lets it go.
pub fn retain(
    times: &[Timestamp],
    policy: &RetentionPolicy,
    time_zone: &TimeZone,
) -> Vec<Vec<KeepReason>> {
    let mut reasons = vec![Vec::new(); times.len()];
    let mut newest_first: Vec<usize> = (0..times.len()).collect();
    newest_first.sort_by(|&a, &b| times[b].cmp(&times[a]).then(a.cmp(&b)));
    let Some(&newest) = newest_first.first() else {
        return reasons;
    };
    reasons[newest].push(KeepReason::Newest);
    for &index in newest_first.iter().take(policy.keep_last as usize) {
        reasons[index].push(KeepReason::Last);
    }
    let rules: [(u32, KeepReason, PeriodOf); 3] = [
        (policy.keep_daily, KeepReason::Daily, |date| {
            (date.year(), date.month(), date.day())
        }),
        (policy.keep_weekly, KeepReason::Weekly, |date| {
            let week = date.iso_week_date();
            (week.year(), week.week(), 0)
        }),
        (policy.keep_monthly, KeepReason::Monthly, |date| {
            (date.year(), date.month(), 0)
        }),
    ];
    for (count, reason, period_of) in rules {
        let mut kept = 0;
        let mut last_period = None;
        for &index in &newest_first {
            if kept == count {
                break;
            }
            let period = period_of(times[index].to_zoned(time_zone.clone()).date());
            if last_period != Some(period) {
                last_period = Some(period);
                reasons[index].push(reason);
                kept += 1;
            }
        }
    }
    reasons
}

/// The period a date falls in: a day, an ISO week or a month.
type PeriodOf = fn(jiff::civil::Date) -> (i16, i8, i8);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Complete backups kept, with why.
    pub kept: Vec<(String, Vec<KeepReason>)>,
    /// Complete backups deleted (or, on a dry run, that would be).
    pub deleted: Vec<String>,
    /// Leftovers of failed runs removed (or that would be).
    pub leftovers: Vec<String>,
}

/// An incomplete backup older than this (and older than the newest complete
/// one) is the leftover of a failed run, not one still being written.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(24 * 3600);

/// Deletes the complete backups the policy does not keep, and leftovers of
/// failed runs. Never deletes the newest complete backup. A backup's
/// manifest object goes first, so a delete that stops halfway leaves an
/// incomplete backup (removed on a later prune), never one that looks whole.
pub fn prune(
    target: &dyn Target,
    policy: &RetentionPolicy,
    time_zone: &TimeZone,
    now: Timestamp,
    dry_run: bool,
) -> Result<PruneReport> {
    let backups = list(target)?;
    let complete: Vec<&BackupName> = backups
        .iter()
        .filter(|b| b.complete)
        .map(|b| &b.name)
        .collect();
    let times: Vec<Timestamp> = complete.iter().map(|name| name.created()).collect();
    let reasons = retain(&times, policy, time_zone);
    let mut report = PruneReport {
        kept: Vec::new(),
        deleted: Vec::new(),
        leftovers: Vec::new(),
    };
    for (name, reasons) in complete.iter().zip(reasons) {
        if reasons.is_empty() {
            report.deleted.push(name.to_string());
        } else {
            report.kept.push((name.to_string(), reasons));
        }
    }
    let newest_complete = times.iter().max().copied();
    let old_enough = now - jiff::SignedDuration::try_from(LEFTOVER_AGE).expect("a day fits");
    for backup in backups.iter().filter(|b| !b.complete) {
        let created = backup.created();
        if newest_complete.is_some_and(|newest| created < newest) && created < old_enough {
            report.leftovers.push(backup.name.to_string());
        }
    }
    if !dry_run {
        for name in report.deleted.iter().chain(&report.leftovers) {
            delete_backup(target, &BackupName::parse(name)?)?;
        }
    }
    Ok(report)
}

fn delete_backup(target: &dyn Target, name: &BackupName) -> Result<()> {
    let present: Vec<String> = target
        .list()?
        .into_iter()
        .map(|object| object.name)
        .collect();
    for object in [
        name.manifest_object(),
        name.recipients_object(),
        name.archive_object(),
    ] {
        if present.contains(&object) {
            target.delete(&object)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeepReason::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("valid timestamp")
    }

    fn policy(
        keep_last: u32,
        keep_daily: u32,
        keep_weekly: u32,
        keep_monthly: u32,
    ) -> RetentionPolicy {
        RetentionPolicy {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
        }
    }

    /// (policy, backup times, expected reasons per time)
    #[test]
    fn policy_table() {
        type Case = (
            &'static str,
            RetentionPolicy,
            Vec<&'static str>,
            Vec<Vec<KeepReason>>,
        );
        let cases: Vec<Case> = vec![
            ("nothing to keep", policy(0, 0, 0, 0), vec![], vec![]),
            (
                "an empty policy still keeps the newest",
                policy(0, 0, 0, 0),
                vec!["2026-05-01T02:00:00Z", "2026-05-02T02:00:00Z"],
                vec![vec![], vec![Newest]],
            ),
            (
                "keep-last counts backups, not days",
                policy(2, 0, 0, 0),
                vec![
                    "2026-05-01T02:00:00Z",
                    "2026-05-01T14:00:00Z",
                    "2026-05-02T02:00:00Z",
                ],
                vec![vec![], vec![Last], vec![Newest, Last]],
            ),
            (
                "daily keeps the newest backup of each day",
                policy(0, 2, 0, 0),
                vec![
                    "2026-05-01T02:00:00Z",
                    "2026-05-01T14:00:00Z",
                    "2026-05-02T02:00:00Z",
                    "2026-05-02T14:00:00Z",
                ],
                vec![vec![], vec![Daily], vec![], vec![Newest, Daily]],
            ),
            (
                "days without a backup do not count",
                policy(0, 2, 0, 0),
                vec![
                    "2026-03-01T02:00:00Z",
                    "2026-04-01T02:00:00Z",
                    "2026-05-01T02:00:00Z",
                ],
                vec![vec![], vec![Daily], vec![Newest, Daily]],
            ),
            (
                "weekly uses ISO weeks (Monday to Sunday)",
                policy(0, 0, 2, 0),
                // Sun 3 May, Mon 4 May, Sun 10 May, Mon 11 May 2026
                vec![
                    "2026-05-03T12:00:00Z",
                    "2026-05-04T12:00:00Z",
                    "2026-05-10T12:00:00Z",
                    "2026-05-11T12:00:00Z",
                ],
                vec![vec![], vec![], vec![Weekly], vec![Newest, Weekly]],
            ),
            (
                "monthly keeps the newest of each month, across a year",
                policy(0, 0, 0, 3),
                vec![
                    "2025-11-30T02:00:00Z",
                    "2025-12-15T02:00:00Z",
                    "2025-12-31T02:00:00Z",
                    "2026-01-01T02:00:00Z",
                    "2026-01-20T02:00:00Z",
                ],
                vec![
                    vec![Monthly],
                    vec![],
                    vec![Monthly],
                    vec![],
                    vec![Newest, Monthly],
                ],
            ),
            (
                "rules overlap: one backup can count for several",
                policy(1, 2, 1, 2),
                vec![
                    "2026-04-30T02:00:00Z",
                    "2026-05-01T02:00:00Z",
                    "2026-05-02T02:00:00Z",
                ],
                vec![
                    vec![Monthly],
                    vec![Daily],
                    vec![Newest, Last, Daily, Weekly, Monthly],
                ],
            ),
            (
                "input order does not matter",
                policy(0, 1, 0, 0),
                vec!["2026-05-02T02:00:00Z", "2026-05-01T02:00:00Z"],
                vec![vec![Newest, Daily], vec![]],
            ),
        ];
        for (label, policy, times, expected) in cases {
            let times: Vec<Timestamp> = times.into_iter().map(at).collect();
            assert_eq!(retain(&times, &policy, &TimeZone::UTC), expected, "{label}");
        }
    }

    #[test]
    fn days_follow_the_given_time_zone() {
        // 22:30 UTC on 1 May is 00:30 on 2 May in Amsterdam (CEST).
        let times = [at("2026-05-01T22:30:00Z"), at("2026-05-02T08:00:00Z")];
        let policy = policy(0, 2, 0, 0);
        assert_eq!(
            retain(&times, &policy, &TimeZone::UTC),
            vec![vec![Daily], vec![Newest, Daily]]
        );
        let amsterdam = TimeZone::get("Europe/Amsterdam").expect("bundled time zone");
        assert_eq!(
            retain(&times, &policy, &amsterdam),
            vec![vec![], vec![Newest, Daily]]
        );
    }
}
