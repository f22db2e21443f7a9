//! Collected figures and their presentation (text table or JSON).

use anyhow::Result;
use serde::Serialize;

use crate::scenarios::{RoomLayout, Sizes};
use crate::servers::{MemoryUsage, ServerKind, Work};

/// Everything measured on one server. `None` means "not measured" (the run
/// was skipped or failed before reaching that scenario).
#[derive(Debug, Clone, Serialize)]
pub struct ServerMetrics {
    pub server: ServerKind,
    pub version: Option<String>,
    pub sequential_msgs_per_sec: Option<f64>,
    pub concurrent_msgs_per_sec: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub initial_sync_median_ms: Option<f64>,
    pub initial_sync_bytes: Option<u64>,
    pub memory: Option<MemoryUsage>,
    /// The server's CPU time and disk writes over the two send scenarios
    /// (and the second after them, for work that trails the replies).
    pub send_work: Option<Work>,
    /// Messages sent in the two send scenarios.
    pub messages_sent: Option<usize>,
    /// Requests answered with 429 and retried; non-zero means a rate limit
    /// distorted the figures.
    pub rate_limited_retries: u64,
    pub error: Option<String>,
}

impl ServerMetrics {
    pub fn new(server: ServerKind) -> Self {
        Self {
            server,
            version: None,
            sequential_msgs_per_sec: None,
            concurrent_msgs_per_sec: None,
            latency_p50_ms: None,
            latency_p99_ms: None,
            latency_max_ms: None,
            initial_sync_median_ms: None,
            initial_sync_bytes: None,
            memory: None,
            send_work: None,
            messages_sent: None,
            rate_limited_retries: 0,
            error: None,
        }
    }

    fn rss_mib(&self) -> Option<f64> {
        self.memory.map(|m| m.rss_kib as f64 / 1024.0)
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        self.memory.map(|m| m.peak_kib as f64 / 1024.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Better {
    Higher,
    Lower,
}

struct Metric {
    label: String,
    key: &'static str,
    unit: &'static str,
    better: Better,
    decimals: usize,
    value: fn(&ServerMetrics) -> Option<f64>,
}

fn metrics(sizes: &Sizes) -> Vec<Metric> {
    let layout = match sizes.concurrent_rooms {
        RoomLayout::Shared => "shared room",
        RoomLayout::PerClient => "room per client",
    };
    vec![
        Metric {
            label: "Sequential send, 1 client".into(),
            key: "sequential_send",
            unit: "msgs/s",
            better: Better::Higher,
            decimals: 1,
            value: |m| m.sequential_msgs_per_sec,
        },
        Metric {
            label: format!("Concurrent send, {} clients, {layout}", sizes.clients),
            key: "concurrent_send",
            unit: "msgs/s",
            better: Better::Higher,
            decimals: 1,
            value: |m| m.concurrent_msgs_per_sec,
        },
        Metric {
            label: "Send-to-sync latency p50".into(),
            key: "latency_p50",
            unit: "ms",
            better: Better::Lower,
            decimals: 1,
            value: |m| m.latency_p50_ms,
        },
        Metric {
            label: "Send-to-sync latency p99".into(),
            key: "latency_p99",
            unit: "ms",
            better: Better::Lower,
            decimals: 1,
            value: |m| m.latency_p99_ms,
        },
        Metric {
            label: format!("Initial sync, {} rooms, median", sizes.rooms),
            key: "initial_sync_median",
            unit: "ms",
            better: Better::Lower,
            decimals: 1,
            value: |m| m.initial_sync_median_ms,
        },
        Metric {
            label: "Server RSS after workload".into(),
            key: "rss",
            unit: "MiB",
            better: Better::Lower,
            decimals: 1,
            value: ServerMetrics::rss_mib,
        },
        Metric {
            label: "Server peak RSS (VmHWM)".into(),
            key: "peak_rss",
            unit: "MiB",
            better: Better::Lower,
            decimals: 1,
            value: ServerMetrics::peak_rss_mib,
        },
    ]
}

/// How many times better Archipel is than Synapse (> 1 means Archipel wins).
fn ratio(better: Better, archipel: Option<f64>, synapse: Option<f64>) -> Option<f64> {
    let (a, s) = (archipel?, synapse?);
    let r = match better {
        Better::Higher => a / s,
        Better::Lower => s / a,
    };
    r.is_finite().then_some(r)
}

fn format_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

fn find(results: &[ServerMetrics], kind: ServerKind) -> Option<&ServerMetrics> {
    results.iter().find(|m| m.server == kind)
}

/// One round of the capture overhead: send throughput (msgs/s) of Archipel
/// with the vault and without, run one after the other, and what the
/// server spent per message sent.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OverheadRound {
    pub sequential_with: f64,
    pub sequential_without: f64,
    pub concurrent_with: f64,
    pub concurrent_without: f64,
    pub per_message_with: Option<PerMessage>,
    pub per_message_without: Option<PerMessage>,
}

/// A server's work over the send scenarios, per message sent.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PerMessage {
    /// CPU time, in microseconds.
    pub cpu_us: f64,
    /// Bytes written to storage, in KiB.
    pub written_kib: f64,
}

impl PerMessage {
    fn of(metrics: &ServerMetrics) -> Option<Self> {
        let work = metrics.send_work?;
        let messages = metrics.messages_sent? as f64;
        Some(Self {
            cpu_us: work.cpu_secs * 1e6 / messages,
            written_kib: work.write_bytes as f64 / 1024.0 / messages,
        })
    }
}

impl OverheadRound {
    /// The round in `results`, if both Archipel runs measured both sends.
    pub fn of(results: &[ServerMetrics]) -> Option<Self> {
        let with = find(results, ServerKind::Archipel)?;
        let without = find(results, ServerKind::ArchipelWithoutVault)?;
        Some(Self {
            sequential_with: with.sequential_msgs_per_sec?,
            sequential_without: without.sequential_msgs_per_sec?,
            concurrent_with: with.concurrent_msgs_per_sec?,
            concurrent_without: without.concurrent_msgs_per_sec?,
            per_message_with: PerMessage::of(with),
            per_message_without: PerMessage::of(without),
        })
    }

    fn sequential_percent(&self) -> f64 {
        percent_change(self.sequential_with, self.sequential_without)
    }

    fn concurrent_percent(&self) -> f64 {
        percent_change(self.concurrent_with, self.concurrent_without)
    }

    /// Per message with the vault and without, if both were measured.
    fn per_message(&self) -> Option<(PerMessage, PerMessage)> {
        Some((self.per_message_with?, self.per_message_without?))
    }
}

/// How much `with` differs from `without`, in percent of `without`.
fn percent_change(with: f64, without: f64) -> f64 {
    (with / without - 1.0) * 100.0
}

/// The median, least and greatest of `values` (not empty).
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// What archive capture costs: send throughput with the vault against
/// without, per round and as the median over the rounds.
fn capture_overhead(rounds: &[OverheadRound]) -> String {
    let mut out = String::from("\nVault capture overhead (Archipel with the vault vs without):\n");
    if rounds.is_empty() {
        out.push_str("  not measured\n");
        return out;
    }
    for (i, round) in rounds.iter().enumerate() {
        if rounds.len() > 1 {
            out.push_str(&format!("  Round {}:\n", i + 1));
        }
        out.push_str(&format!(
            "  Sequential send: {:.1} msgs/s with, {:.1} without: {:+.1}% throughput\n",
            round.sequential_with,
            round.sequential_without,
            round.sequential_percent()
        ));
        out.push_str(&format!(
            "  Concurrent send: {:.1} msgs/s with, {:.1} without: {:+.1}% throughput\n",
            round.concurrent_with,
            round.concurrent_without,
            round.concurrent_percent()
        ));
        if let Some((with, without)) = round.per_message() {
            out.push_str(&format!(
                "  Server CPU per message: {:.0} µs with, {:.0} without: {:+.1}%\n",
                with.cpu_us,
                without.cpu_us,
                percent_change(with.cpu_us, without.cpu_us)
            ));
            out.push_str(&format!(
                "  Disk writes per message: {:.2} KiB with, {:.2} without: {:+.1}%\n",
                with.written_kib,
                without.written_kib,
                percent_change(with.written_kib, without.written_kib)
            ));
        }
    }
    if rounds.len() > 1 {
        out.push_str(&format!(
            "  Over {} rounds, median (least to most):\n",
            rounds.len()
        ));
        let sequential = spread(
            rounds
                .iter()
                .map(OverheadRound::sequential_percent)
                .collect(),
        );
        let concurrent = spread(
            rounds
                .iter()
                .map(OverheadRound::concurrent_percent)
                .collect(),
        );
        for (label, (median, least, most)) in [
            ("Sequential send", sequential),
            ("Concurrent send", concurrent),
        ] {
            out.push_str(&format!(
                "  {label}: {median:+.1}% throughput ({least:+.1}% to {most:+.1}%)\n"
            ));
        }
        let measured: Vec<_> = rounds
            .iter()
            .filter_map(OverheadRound::per_message)
            .collect();
        if measured.len() > 1 {
            let change = |f: fn(&PerMessage) -> f64| {
                spread(
                    measured
                        .iter()
                        .map(|(with, without)| percent_change(f(with), f(without)))
                        .collect(),
                )
            };
            for (label, (median, least, most)) in [
                ("Server CPU per message", change(|m| m.cpu_us)),
                ("Disk writes per message", change(|m| m.written_kib)),
            ] {
                out.push_str(&format!(
                    "  {label}: {median:+.1}% ({least:+.1}% to {most:+.1}%)\n"
                ));
            }
        }
    }
    out
}

/// A plain-text table: metric | Archipel | Synapse | ratio.
pub fn render_table(
    sizes: &Sizes,
    results: &[ServerMetrics],
    overhead: &[OverheadRound],
) -> String {
    let archipel = find(results, ServerKind::Archipel);
    let synapse = find(results, ServerKind::Synapse);

    let mut rows = vec![[
        "Metric".to_string(),
        "Archipel".to_string(),
        "Synapse".to_string(),
        "Ratio".to_string(),
    ]];
    for metric in metrics(sizes) {
        let a = archipel.and_then(metric.value);
        let s = synapse.and_then(metric.value);
        let cell = |v: Option<f64>| match v {
            Some(v) => format!("{v:.prec$}", prec = metric.decimals),
            None => "-".to_string(),
        };
        rows.push([
            format!("{} ({})", metric.label, metric.unit),
            cell(a),
            cell(s),
            ratio(metric.better, a, s).map_or_else(|| "-".to_string(), format_ratio),
        ]);
    }

    let mut widths = [0usize; 4];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&format!(
            "{:<w0$} | {:>w1$} | {:>w2$} | {:>w3$}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        ));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("-|-"));
            out.push('\n');
        }
    }
    out.push_str(
        "Ratio > 1 means Archipel is better: Archipel/Synapse for throughput, \
         Synapse/Archipel for latency, time and memory.\n",
    );

    if find(results, ServerKind::ArchipelWithoutVault).is_some() {
        out.push_str(&capture_overhead(overhead));
    }

    for m in results {
        if let Some(version) = &m.version {
            out.push_str(&format!("{} version: {version}\n", m.server));
        }
        if let Some(bytes) = m.initial_sync_bytes {
            out.push_str(&format!(
                "{} initial sync response: {:.1} KiB\n",
                m.server,
                bytes as f64 / 1024.0
            ));
        }
        if m.rate_limited_retries > 0 {
            out.push_str(&format!(
                "WARNING: {} rate-limited {} requests (retried); its figures are distorted.\n",
                m.server, m.rate_limited_retries
            ));
        }
        if let Some(error) = &m.error {
            out.push_str(&format!("{} FAILED: {error}\n", m.server));
        }
    }
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    sizes: &'a Sizes,
    servers: &'a [ServerMetrics],
    comparison: Vec<JsonRow>,
    /// With --capture-overhead: each round's send throughput with the vault
    /// and without.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    capture_overhead: &'a [OverheadRound],
}

#[derive(Serialize)]
struct JsonRow {
    metric: &'static str,
    label: String,
    unit: &'static str,
    better: Better,
    archipel: Option<f64>,
    synapse: Option<f64>,
    /// Archipel-is-better factor (> 1 means Archipel wins).
    ratio: Option<f64>,
}

pub fn render_json(
    sizes: &Sizes,
    results: &[ServerMetrics],
    overhead: &[OverheadRound],
) -> Result<String> {
    let archipel = find(results, ServerKind::Archipel);
    let synapse = find(results, ServerKind::Synapse);
    let comparison = metrics(sizes)
        .into_iter()
        .map(|metric| {
            let a = archipel.and_then(metric.value);
            let s = synapse.and_then(metric.value);
            JsonRow {
                metric: metric.key,
                label: metric.label,
                unit: metric.unit,
                better: metric.better,
                archipel: a,
                synapse: s,
                ratio: ratio(metric.better, a, s),
            }
        })
        .collect();
    let report = JsonReport {
        sizes,
        servers: results,
        comparison,
        capture_overhead: overhead,
    };
    Ok(serde_json::to_string_pretty(&report)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_favours_archipel_when_above_one() {
        assert_eq!(ratio(Better::Higher, Some(600.0), Some(60.0)), Some(10.0));
        assert_eq!(ratio(Better::Lower, Some(5.0), Some(50.0)), Some(10.0));
        assert_eq!(ratio(Better::Lower, None, Some(50.0)), None);
        assert_eq!(ratio(Better::Higher, Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn overhead_rounds_report_each_round_and_the_median() {
        let round = |with: f64, without: f64| OverheadRound {
            sequential_with: with,
            sequential_without: without,
            concurrent_with: with * 2.0,
            concurrent_without: without * 2.0,
            per_message_with: Some(PerMessage {
                cpu_us: with,
                written_kib: 2.0,
            }),
            per_message_without: Some(PerMessage {
                cpu_us: without,
                written_kib: 1.0,
            }),
        };
        let rounds = [round(90.0, 100.0), round(100.0, 100.0), round(50.0, 100.0)];
        let text = capture_overhead(&rounds);
        assert!(text.contains("Round 3:"), "{text}");
        assert!(text.contains("Over 3 rounds"), "{text}");
        assert!(
            text.contains("Concurrent send: -10.0% throughput (-50.0% to +0.0%)"),
            "{text}"
        );
        let one = capture_overhead(&rounds[..1]);
        assert!(!one.contains("Round") && !one.contains("median"), "{one}");
        assert!(
            one.contains("90.0 msgs/s with, 100.0 without: -10.0%"),
            "{one}"
        );
        assert!(
            text.contains("Server CPU per message: -10.0% (-50.0% to +0.0%)"),
            "{text}"
        );
        assert!(
            one.contains("Server CPU per message: 90 µs with, 100 without: -10.0%"),
            "{one}"
        );
        assert!(
            one.contains("Disk writes per message: 2.00 KiB with, 1.00 without: +100.0%"),
            "{one}"
        );
        assert_eq!(spread(vec![4.0, 1.0, 3.0, 2.0]), (2.5, 1.0, 4.0));
    }

    #[test]
    fn ratio_formatting() {
        assert_eq!(format_ratio(12.345), "12.3x");
        assert_eq!(format_ratio(0.5), "0.50x");
        assert_eq!(format_ratio(250.0), "250x");
    }
}
