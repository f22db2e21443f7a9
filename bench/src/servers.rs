//! Starting, probing and stopping the homeservers under test.
//!
//! Each server runs from a fresh temporary data directory on a free loopback
//! port and is killed when its [`RunningServer`] is stopped or dropped.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::Url;
use serde::Serialize;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::client::Api;

/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Archipel,
    Synapse,
    /// Archipel with archive capture switched off (`archipel dev
    /// --without-vault`): the baseline for the vault's capture overhead.
    ArchipelWithoutVault,
}

impl ServerKind {
    pub const ALL: [ServerKind; 2] = [ServerKind::Archipel, ServerKind::Synapse];

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Archipel => "Archipel",
            ServerKind::ArchipelWithoutVault => "Archipel without vault",
            ServerKind::Synapse => "Synapse",
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where to find the servers and how to run them.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    pub archipel_bin: PathBuf,
    pub synapse_python: PathBuf,
    /// Parent directory for the per-server data directories.
    pub work_dir: PathBuf,
    pub keep_data: bool,
    pub startup_timeout: Duration,
}

/// Resident memory of a server's process tree, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemoryUsage {
    /// Current resident set size (sum of `VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size (sum of `VmHWM`).
    pub peak_kib: u64,
    /// Number of processes summed.
    pub processes: usize,
}

/// CPU time and disk writes of a server's process tree since it started.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Work {
    /// User and system CPU time, in seconds.
    pub cpu_secs: f64,
    /// Bytes the processes caused to be written to storage (`write_bytes`
    /// in `/proc/PID/io`: files, WALs, flushes and compactions).
    pub write_bytes: u64,
}

impl Work {
    /// What was done between `earlier` and `self`.
    pub fn since(self, earlier: Work) -> Work {
        Work {
            cpu_secs: self.cpu_secs - earlier.cpu_secs,
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
        }
    }
}

pub struct RunningServer {
    kind: ServerKind,
    // Field order matters: the child is killed (on drop) before the data
    // directory is removed.
    child: Child,
    pid: u32,
    base_url: Url,
    data_dir: PathBuf,
    _temp: Option<TempDir>,
    version: Option<String>,
}

impl RunningServer {
    /// Starts a server of the given kind and waits until it answers
    /// `GET /_matrix/client/versions`.
    pub async fn start(kind: ServerKind, opts: &LaunchOptions) -> Result<Self> {
        Self::start_named(kind, opts, "localhost", &[]).await
    }

    /// Like [`RunningServer::start`], with a server name and extra arguments
    /// for Archipel (e.g. `--federation FILE`).
    pub async fn start_named(
        kind: ServerKind,
        opts: &LaunchOptions,
        server_name: &str,
        extra: &[String],
    ) -> Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix(&format!("archipel-bench-{}-", kind.name().to_lowercase()))
            .tempdir_in(&opts.work_dir)
            .with_context(|| format!("creating a data directory in {}", opts.work_dir.display()))?;
        let (temp, data_dir) = if opts.keep_data {
            (None, temp.keep())
        } else {
            let path = temp.path().to_path_buf();
            (Some(temp), path)
        };
        let port = free_port()?;
        let base_url = Url::parse(&format!("http://127.0.0.1:{port}/"))?;

        let (mut command, version) = match kind {
            ServerKind::Archipel => {
                archipel_command(opts, &data_dir, port, true, server_name, extra).await?
            }
            ServerKind::ArchipelWithoutVault => {
                archipel_command(opts, &data_dir, port, false, server_name, extra).await?
            }
            ServerKind::Synapse => synapse_command(opts, &data_dir, port).await?,
        };
        let stdout = std::fs::File::create(data_dir.join("stdout.log"))?;
        let stderr = std::fs::File::create(data_dir.join("stderr.log"))?;
        let child = command
            .current_dir(&data_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {kind}"))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{kind} exited immediately"))?;

        let mut server = Self {
            kind,
            child,
            pid,
            base_url,
            data_dir,
            _temp: temp,
            version,
        };
        server.wait_ready(opts.startup_timeout).await?;
        Ok(server)
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Memory of the server process and all its descendants.
    pub fn memory(&self) -> Result<MemoryUsage> {
        process_tree_memory(self.pid)
    }

    pub fn work(&self) -> Result<Work> {
        process_tree_work(self.pid)
    }

    /// Asks the server to shut down (SIGTERM), killing it if it lingers.
    pub async fn stop(mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("{} had already exited", self.kind);
        }
        let pid = i32::try_from(self.pid).context("pid out of range")?;
        // The process may exit between the check above and the signal.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let api = Api::new(self.base_url.clone())?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during startup ({status})\n{}",
                    self.kind,
                    self.log_tail()
                );
            }
            if api.is_ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer GET /_matrix/client/versions within {:?}\n{}",
                    self.kind,
                    timeout,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of the server's output, to explain a failure.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["stderr.log", "stdout.log", "homeserver.log"] {
            let path = self.data_dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                continue;
            }
            let start = lines.len().saturating_sub(20);
            out.push_str(&format!("--- last lines of {} ---\n", path.display()));
            for line in &lines[start..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

async fn archipel_command(
    opts: &LaunchOptions,
    data_dir: &Path,
    port: u16,
    vault: bool,
    server_name: &str,
    extra: &[String],
) -> Result<(Command, Option<String>)> {
    let bin = &opts.archipel_bin;
    if !bin.is_file() {
        bail!(
            "Archipel binary not found at {}\n\
             Build it with `cargo build --release -p archipel` (or pass --archipel-bin), \
             or run only the Synapse side with `--only synapse`.",
            bin.display()
        );
    }
    let version = command_output(Command::new(bin).arg("--version")).await;
    let server_data = data_dir.join("data");
    let mut command = Command::new(bin);
    command
        .arg("dev")
        .arg("--data-dir")
        .arg(&server_data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--server-name")
        .arg(server_name)
        .arg("--open-registration")
        .args(extra);
    if !vault {
        command.arg("--without-vault");
    }
    Ok((command, version))
}

async fn synapse_command(
    opts: &LaunchOptions,
    data_dir: &Path,
    port: u16,
) -> Result<(Command, Option<String>)> {
    let python = &opts.synapse_python;
    let hint = "Create the Synapse environment with:\n  \
         python3 -m venv /var/tmp/synapse-venv && /var/tmp/synapse-venv/bin/pip install matrix-synapse\n\
         (or pass --synapse-python, or run only the Archipel side with `--only archipel`)";
    if !python.is_file() {
        bail!("Synapse Python not found at {}\n{hint}", python.display());
    }
    let version = command_output(
        Command::new(python)
            .arg("-c")
            .arg("import synapse, sys; sys.stdout.write(synapse.__version__)"),
    )
    .await
    .ok_or_else(|| anyhow!("{} cannot import synapse\n{hint}", python.display()))?;

    let config_path = data_dir.join("homeserver.yaml");
    let generated = Command::new(python)
        .args(["-m", "synapse.app.homeserver", "--server-name", "localhost"])
        .arg("--config-path")
        .arg(&config_path)
        .args(["--generate-config", "--report-stats=no"])
        .current_dir(data_dir)
        .output()
        .await
        .context("running Synapse --generate-config")?;
    if !generated.status.success() {
        bail!(
            "Synapse --generate-config failed ({}):\n{}",
            generated.status,
            String::from_utf8_lossy(&generated.stderr)
        );
    }
    let base = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let overrides = synapse_overrides(data_dir, port);
    std::fs::write(&config_path, merge_top_level_yaml(&base, &overrides))
        .with_context(|| format!("writing {}", config_path.display()))?;

    let mut command = Command::new(python);
    command
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(&config_path);
    Ok((command, Some(version)))
}

/// Settings layered over Synapse's generated config: SQLite, a plain-HTTP
/// client listener on loopback, open registration, no key servers, and
/// every rate limit raised far above what the benchmark generates.
fn synapse_overrides(data_dir: &Path, port: u16) -> String {
    let db = data_dir.join("homeserver.db");
    let unlimited = "{per_second: 1000000, burst_count: 1000000}";
    let mut yaml = format!(
        "listeners:\n\
         \x20 - port: {port}\n\
         \x20   bind_addresses: ['127.0.0.1']\n\
         \x20   type: http\n\
         \x20   tls: false\n\
         \x20   x_forwarded: false\n\
         \x20   resources:\n\
         \x20     - names: [client]\n\
         \x20       compress: false\n\
         database:\n\
         \x20 name: sqlite3\n\
         \x20 args:\n\
         \x20   database: \"{db}\"\n\
         enable_registration: true\n\
         enable_registration_without_verification: true\n\
         suppress_key_server_warning: true\n\
         trusted_key_servers: []\n",
        db = db.display()
    );
    for key in [
        "rc_message",
        "rc_registration",
        "rc_registration_token_validity",
        "rc_admin_redaction",
        "rc_joins_per_room",
        "rc_3pid_validation",
        "rc_third_party_invite",
        "rc_media_create",
        "rc_key_requests",
        "rc_delayed_event_mgmt",
        "rc_room_creation",
        "rc_reports",
        "rc_user_directory",
        "rc_profile",
    ] {
        yaml.push_str(&format!("{key}: {unlimited}\n"));
    }
    for (key, subkeys) in [
        ("rc_login", &["address", "account", "failed_attempts"][..]),
        ("rc_joins", &["local", "remote"][..]),
        ("rc_invites", &["per_room", "per_user", "per_issuer"][..]),
        ("rc_presence", &["per_user"][..]),
    ] {
        yaml.push_str(&format!("{key}:\n"));
        for sub in subkeys {
            yaml.push_str(&format!("  {sub}: {unlimited}\n"));
        }
    }
    yaml
}

/// Replaces top-level blocks of `base` whose keys appear in `overrides`, then
/// appends `overrides`. Enough YAML for Synapse's generated config, which is
/// a flat mapping of top-level keys with indented values.
fn merge_top_level_yaml(base: &str, overrides: &str) -> String {
    let overridden: Vec<&str> = overrides.lines().filter_map(top_level_key).collect();
    let mut out = String::with_capacity(base.len() + overrides.len());
    let mut skipping = false;
    for line in base.lines() {
        if let Some(key) = top_level_key(line) {
            skipping = overridden.contains(&key);
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\n# Overrides written by archipel-bench\n");
    out.push_str(overrides);
    out
}

fn top_level_key(line: &str) -> Option<&str> {
    let first = line.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let (key, _) = line.split_once(':')?;
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(key)
}

async fn command_output(command: &mut Command) -> Option<String> {
    let output = command.stdin(Stdio::null()).output().await.ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `root` and all its descendants, parents before children.
fn process_tree(root: u32) -> Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes may vanish while we look; skip them.
        if let Some(ppid) = parent_pid(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut tree = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        tree.push(pid);
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids);
        }
    }
    Ok(tree)
}

/// Sums `VmRSS` and `VmHWM` over `root` and all its descendants.
fn process_tree_memory(root: u32) -> Result<MemoryUsage> {
    let mut usage = MemoryUsage::default();
    for pid in process_tree(root)? {
        let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(status) => status,
            Err(_) if pid != root => continue,
            Err(err) => return Err(err).with_context(|| format!("reading /proc/{pid}/status")),
        };
        usage.rss_kib += status_kib(&status, "VmRSS:").unwrap_or(0);
        usage.peak_kib += status_kib(&status, "VmHWM:").unwrap_or(0);
        usage.processes += 1;
    }
    Ok(usage)
}

/// Sums CPU time (`utime` and `stime`) and `write_bytes` over `root` and
/// all its descendants.
fn process_tree_work(root: u32) -> Result<Work> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .context("reading the clock tick")?
        .context("the system has no clock tick")? as f64;
    let mut work = Work::default();
    for pid in process_tree(root)? {
        let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
        let (stat, io) = match (read("stat"), read("io")) {
            (Ok(stat), Ok(io)) => (stat, io),
            (Err(err), _) | (_, Err(err)) if pid == root => {
                return Err(err).with_context(|| format!("reading /proc/{pid}"));
            }
            _ => continue,
        };
        let cpu_ticks =
            stat_cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))?;
        work.cpu_secs += cpu_ticks as f64 / ticks;
        work.write_bytes += io
            .lines()
            .find_map(|line| line.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .with_context(|| format!("parsing /proc/{pid}/io"))?;
    }
    Ok(work)
}

/// `utime + stime` of a `/proc/PID/stat` line, in clock ticks.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is parenthesised and may contain spaces: count
    // fields after it (state is field 3; utime and stime are 14 and 15).
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is parenthesised and may contain spaces: parse after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_replaces_generated_blocks() {
        let base = "server_name: \"localhost\"\n\
                    listeners:\n  - port: 8008\n    tls: false\n\
                    # a comment\n\
                    database:\n  name: sqlite3\n\
                    trusted_key_servers:\n  - server_name: \"matrix.org\"\n\
                    report_stats: false\n";
        let overrides = "listeners:\n  - port: 1234\ntrusted_key_servers: []\n";
        let merged = merge_top_level_yaml(base, overrides);
        assert!(merged.contains("server_name: \"localhost\""));
        assert!(merged.contains("database:\n  name: sqlite3"));
        assert!(merged.contains("report_stats: false"));
        assert!(!merged.contains("8008"));
        assert!(!merged.contains("matrix.org"));
        assert!(merged.contains("port: 1234"));
        assert_eq!(merged.matches("listeners:").count(), 1);
    }

    #[test]
    fn overrides_raise_nested_rate_limits() {
        let yaml = synapse_overrides(Path::new("/tmp/x"), 4321);
        assert!(yaml.contains("port: 4321"));
        assert!(yaml.contains("rc_login:\n  address: {per_second: 1000000"));
        assert!(yaml.contains("  failed_attempts: "));
        assert!(yaml.contains("rc_message: {per_second: 1000000"));
    }

    #[test]
    fn reads_own_memory() {
        let usage = process_tree_memory(std::process::id()).expect("test input is valid");
        assert!(usage.rss_kib > 0);
        assert!(usage.peak_kib >= usage.rss_kib);
        assert!(usage.processes >= 1);
    }

    #[test]
    fn reads_own_work() {
        let before = process_tree_work(std::process::id()).expect("read /proc");
        // Spins until the CPU time read grows (on a busy machine, wall time
        // says little about this process's share).
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut x = 0u64;
        loop {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(10) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let done = process_tree_work(std::process::id())
                .expect("read /proc")
                .since(before);
            if done.cpu_secs >= 0.1 {
                break;
            }
            assert!(Instant::now() < deadline, "CPU time did not grow: {done:?}");
        }
        // /var/tmp is on disk where /tmp may be a tmpfs, whose writes are not counted.
        let file = tempfile::NamedTempFile::new_in("/var/tmp").expect("temp file");
        std::fs::write(file.path(), vec![7u8; 1 << 20]).expect("write");
        file.as_file().sync_all().expect("sync");
        let done = process_tree_work(std::process::id())
            .expect("read /proc")
            .since(before);
        assert!(done.write_bytes >= 1 << 20, "{done:?}");
    }

    #[test]
    fn parses_cpu_ticks_after_a_command_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 1 0 1 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(22));
    }
}
