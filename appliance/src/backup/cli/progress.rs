//! The progress bar of a long backup, verification or restore.

use std::io::IsTerminal;

use archipel_backup::{Phase, Progress};

/// A progress bar with throughput on a terminal; nothing otherwise.
pub(super) struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    pub(super) fn new(json: bool, label: &str) -> Self {
        if json || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_owned());
        Self(Some(bar))
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn begin(&self, phase: Phase, total_bytes: u64) {
        if let Some(bar) = &self.0 {
            let verb = match phase {
                Phase::Create => "backing up",
                Phase::Verify => "verifying",
                Phase::Restore => "restoring",
            };
            bar.set_message(format!("{verb} {}", bar.message()));
            bar.set_length(total_bytes);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }
}
