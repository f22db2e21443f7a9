//! Starting, stopping and crashing a real `archipel` process.
//!
//! Every test owns its own [`TestServer`]: a fresh data directory in a
//! temporary folder and a listener on a free loopback port, so tests can run
//! in parallel. The server's stderr goes to a log file next to the data
//! directory; its tail is printed whenever the server fails to start or a
//! test panics while the server is alive.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::{Instant, sleep, timeout};

/// How long the server may take to print its ready line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How many lines of the server log to show when something goes wrong.
const LOG_TAIL_LINES: usize = 60;

/// The prefix of the single line the server prints on stdout once it serves.
const READY_PREFIX: &str = "archipel ready: client API at ";

/// Path of the `archipel` binary built by cargo for this test target.
pub fn archipel_bin() -> &'static str {
    env!("CARGO_BIN_EXE_archipel")
}

/// A running (or deliberately stopped) `archipel dev` process.
pub struct TestServer {
    /// Holds the data directory and the log file; removed on drop.
    root: TempDir,
    /// Flags passed after the fixed `dev` arguments.
    extra_args: Vec<String>,
    child: Option<Child>,
    url: String,
    /// Number of times the process has been spawned, for log separators.
    generation: u32,
    /// Pass `--open-registration` (m.login.dummy sign-up for test clients).
    open_registration: bool,
    /// `--server-name`.
    server_name: String,
    /// Run as `archipel run --config FILE` (a production node) instead of
    /// `archipel dev`.
    config: Option<PathBuf>,
    /// The client API over HTTPS, when the node serves it.
    https_url: Option<String>,
    /// `--listen` of `archipel dev`: a free port unless a restart keeps one.
    listen: String,
    /// The management listener, when the node serves one.
    console_url: Option<String>,
    /// The first operator's setup link, if the node printed one.
    setup_link: Option<String>,
}

impl TestServer {
    /// Starts a server with open registration and no extra flags.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with open registration and the given extra flags,
    /// e.g. `["--rate-limit"]`.
    pub async fn start_with(extra_args: &[&str]) -> Self {
        let mut server = Self::new("localhost");
        server.extra_args = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        server.spawn_with_data().await
    }

    /// Starts a server named `server_name` that federates as `federation`
    /// (the text of a file with a `[federation]` table) says.
    pub async fn start_federated(server_name: &str, federation: &str) -> Self {
        let mut server = Self::new(server_name);
        let file = server.root().join("federation.toml");
        fs::write(&file, federation).expect("write the federation file");
        server.extra_args = vec!["--federation".to_owned(), file.display().to_string()];
        server.spawn_with_data().await
    }

    /// Starts a server named `server_name` on a data directory that
    /// `prepare` makes at the path it is given (which does not exist yet),
    /// e.g. by restoring a backup there.
    pub async fn start_prepared(server_name: &str, prepare: impl FnOnce(&Path)) -> Self {
        let mut server = Self::new(server_name);
        prepare(&server.data_dir());
        server.spawn().await;
        server
    }

    /// Starts a production node, `archipel run --config FILE`, whose
    /// configuration `config` writes given the test's folder (the data
    /// folder is `data` in it and exists, empty).
    pub async fn start_configured(server_name: &str, config: impl FnOnce(&Path) -> String) -> Self {
        let mut server = Self::new(server_name);
        fs::create_dir(server.data_dir()).expect("create the data directory");
        let file = server.root().join("archipel.toml");
        fs::write(&file, config(server.root())).expect("write the configuration");
        server.config = Some(file);
        server.open_registration = false;
        server.spawn().await;
        server
    }

    /// Creates `name` with [`crate::client::PASSWORD`] (a server
    /// administrator if `admin`) through the admin socket of this node,
    /// started with [`TestServer::start_configured`].
    pub fn create_user(&self, name: &str, admin: bool) {
        let config = self.config.as_ref().expect("a configured node");
        let mut command = std::process::Command::new(archipel_bin());
        command.args(["user", "create", name, "--password-stdin", "--config"]);
        command.arg(config);
        if admin {
            command.arg("--admin");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn archipel");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{}\n", crate::client::PASSWORD).as_bytes())
            .expect("write the password");
        let output = child.wait_with_output().expect("archipel exits");
        assert!(
            output.status.success(),
            "user create {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A server named `server_name` in a fresh temporary folder, not started:
    /// `archipel dev` with open registration unless changed.
    fn new(server_name: &str) -> Self {
        let root = tempfile::Builder::new()
            .prefix("archipel-e2e-")
            .tempdir()
            .expect("create a temporary directory for the server");
        Self {
            root,
            extra_args: Vec::new(),
            child: None,
            url: String::new(),
            generation: 0,
            open_registration: true,
            server_name: server_name.to_owned(),
            config: None,
            https_url: None,
            console_url: None,
            setup_link: None,
            listen: "127.0.0.1:0".to_owned(),
        }
    }

    /// Creates the (empty) data folder and starts the server.
    async fn spawn_with_data(mut self) -> Self {
        fs::create_dir(self.data_dir()).expect("create the data directory");
        self.spawn().await;
        self
    }

    /// The client API over HTTPS (`https://127.0.0.1:PORT`), if the node serves it.
    /// The management listener (`/metrics`), as the ready line names it.
    pub fn console_url(&self) -> Option<&str> {
        self.console_url.as_deref()
    }

    /// The link for the console's first operator, as the node printed it
    /// at its last start (none once the node has an operator).
    pub fn setup_link(&self) -> Option<&str> {
        self.setup_link.as_deref()
    }

    pub fn https_url(&self) -> Option<&str> {
        self.https_url.as_deref()
    }

    /// The test's folder: the data folder, the log and any files the test keeps.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The server name in this server's user and room IDs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Starts a server whose registration is closed, as in production.
    pub async fn start_closed() -> Self {
        let mut server = Self::start().await;
        server.stop().await;
        server.open_registration = false;
        server.restart().await;
        server
    }

    /// Base URL of the client-server API, e.g. `http://127.0.0.1:43123`.
    ///
    /// The port changes on every (re)start.
    pub fn url(&self) -> &str {
        assert!(self.child.is_some(), "the server is not running");
        &self.url
    }

    /// The server's data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// Kills the server with SIGKILL, as a crash or power loss would, and
    /// reaps it.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("kill: the server is not running");
        signal(&child, Signal::SIGKILL);
        let status = timeout(SHUTDOWN_TIMEOUT, child.wait())
            .await
            .expect("the server did not die after SIGKILL")
            .expect("wait for the killed server");
        self.note_exit(status, "SIGKILL");
    }

    /// Stops the server with SIGTERM and waits for a clean exit (status 0).
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("stop: the server is not running");
        signal(&child, Signal::SIGTERM);
        let status = match timeout(SHUTDOWN_TIMEOUT, child.wait()).await {
            Ok(status) => status.expect("wait for the server after SIGTERM"),
            Err(_) => {
                signal(&child, Signal::SIGKILL);
                let _ = child.wait().await;
                panic!(
                    "the server did not exit within {SHUTDOWN_TIMEOUT:?} after SIGTERM\n{}",
                    self.log_tail()
                );
            }
        };
        self.note_exit(status, "SIGTERM");
        assert!(
            status.success(),
            "the server did not shut down cleanly after SIGTERM: {status}\n{}",
            self.log_tail()
        );
    }

    /// Like [`TestServer::restart`], on the same port: for clients that
    /// keep their homeserver URL (a matrix-sdk client) across the restart.
    pub async fn restart_on_same_port(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        self.listen = self
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        self.spawn().await;
    }

    /// Starts the server again on the same data directory, stopping it with
    /// SIGTERM first if it is still running. The URL changes.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        self.generation += 1;

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server log");
        writeln!(log, "===== archipel start #{} =====", self.generation)
            .expect("write to the server log");

        let data_dir = self.data_dir();
        let mut command = Command::new(archipel_bin());
        match &self.config {
            Some(config) => command.arg("run").arg("--config").arg(config),
            None => command
                .arg("dev")
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--listen", &self.listen])
                .args(["--server-name", &self.server_name])
                .args(self.open_registration.then_some("--open-registration")),
        };
        command
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);

        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", archipel_bin()));
        let stdout = child.stdout.take().expect("the server's stdout is piped");
        self.child = Some(child);

        match timeout(
            STARTUP_TIMEOUT,
            wait_for_ready_line(stdout, self.server_name.clone()),
        )
        .await
        {
            Ok(Ok((ready, stdout))) => {
                self.url = ready.url;
                self.https_url = ready.https_url;
                self.console_url = ready.console_url;
                self.setup_link = ready.setup_link;
                // Keep draining stdout so the server never blocks on a full pipe.
                tokio::spawn(drain(stdout));
            }
            Ok(Err(problem)) => {
                let status = self.reap_after_failed_start().await;
                panic!(
                    "archipel did not become ready: {problem} (process: {status})\n{}",
                    self.log_tail()
                );
            }
            Err(_) => {
                let status = self.reap_after_failed_start().await;
                panic!(
                    "archipel printed no ready line within {STARTUP_TIMEOUT:?} (process: {status})\n{}",
                    self.log_tail()
                );
            }
        }
    }

    async fn reap_after_failed_start(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return "not running".to_owned();
        };
        if let Ok(Some(status)) = child.try_wait() {
            return status.to_string();
        }
        signal(&child, Signal::SIGKILL);
        match child.wait().await {
            Ok(status) => format!("killed, {status}"),
            Err(err) => format!("killed, wait failed: {err}"),
        }
    }

    fn note_exit(&self, status: ExitStatus, how: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(self.log_path()) {
            let _ = writeln!(log, "===== archipel stopped by {how}: {status} =====");
        }
    }

    /// The running server's resident memory now and at its peak (VmRSS,
    /// VmHWM), in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("the server is running");
        let status =
            fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The whole server log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last lines of the server log, framed for a panic message.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!(
            "----- last {} lines of {} -----\n{}\n----- end of server log -----",
            tail.len(),
            self.log_path().display(),
            tail.join("\n")
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

fn signal(child: &Child, signal: Signal) {
    let pid = child
        .id()
        .expect("the server process has not been reaped yet");
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
    kill(pid, signal).unwrap_or_else(|err| panic!("send {signal} to the server: {err}"));
}

/// Reads stdout until the ready line and returns the client API URLs it
/// announces (HTTP, and HTTPS if served), with the remaining stdout.
async fn wait_for_ready_line(
    stdout: ChildStdout,
    server_name: String,
) -> Result<(Ready, BufReader<ChildStdout>), String> {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let mut setup_link = None;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .await
            .map_err(|err| format!("reading stdout failed: {err}"))?;
        if read == 0 {
            return Err("stdout closed before the ready line (the process exited?)".to_owned());
        }
        if let Some(rest) = line.strip_prefix("first operator: open ") {
            setup_link = rest.split_whitespace().next().map(ToOwned::to_owned);
        }
        if let Some(mut ready) = parse_ready_line(line.trim_end(), &server_name) {
            ready.setup_link = setup_link;
            return Ok((ready, reader));
        }
    }
}

/// What the ready line says the node serves.
struct Ready {
    url: String,
    https_url: Option<String>,
    console_url: Option<String>,
    setup_link: Option<String>,
}

/// `archipel ready: client API at http://127.0.0.1:PORT[ and https://...][, federation at ...][, console at ...], server name NAME`
fn parse_ready_line(line: &str, server_name: &str) -> Option<Ready> {
    let rest = line.strip_prefix(READY_PREFIX)?;
    assert!(
        rest.ends_with(&format!(", server name {server_name}")),
        "unexpected ready line: {line}"
    );
    let mut parts = rest.split(", ");
    let mut urls = parts
        .next()?
        .split(" and ")
        .map(|url| url.trim().to_owned());
    let console_url = parts
        .find_map(|part| part.strip_prefix("console at "))
        .map(str::to_owned);
    Some(Ready {
        url: urls.next()?,
        https_url: urls.next(),
        console_url,
        setup_link: None,
    })
}

async fn drain(mut reader: BufReader<ChildStdout>) {
    let mut line = String::new();
    while let Ok(read) = reader.read_line(&mut line).await {
        if read == 0 {
            break;
        }
        line.clear();
    }
}

/// Polls `check` until it returns `Some`, failing the test with `what` if
/// that does not happen within `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < give_up,
            "timed out after {deadline:?} waiting for {what}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Each line of `text` as JSON: the output of a command's `--json`, or a
/// JSON Lines file.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Every file below `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files
}

/// Total size in bytes of the regular files below `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |meta| meta.len()),
            _ => 0,
        })
        .sum()
}

/// Runs `archipel ARGS` to completion (for commands that do not serve).
pub fn run_archipel(args: &[&str]) -> std::process::Output {
    run_archipel_with_env(args, &[])
}

/// [`run_archipel`] with extra environment variables.
pub fn run_archipel_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(archipel_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("run {} {args:?}: {err}", archipel_bin()))
}
