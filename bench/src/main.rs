//! `archipel-bench`: measures Archipel and Synapse side by side through the
//! Matrix client-server API and prints a comparison table.

mod appservice;
mod client;
mod encrypted;
mod federation;
mod report;
mod scenarios;
mod servers;
mod sliding;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use crate::client::Api;
use crate::report::{OverheadRound, ServerMetrics};
use crate::scenarios::Sizes;
use crate::servers::{LaunchOptions, RunningServer, ServerKind};

/// Benchmark Archipel against Synapse over the Matrix client-server API.
///
/// Starts each homeserver in turn (never both at once) from a fresh temporary
/// data directory on a free loopback port, runs the same workload against it
/// over plain HTTP, reads its memory use from /proc, and stops it. Then it
/// prints one table comparing both servers.
///
/// Workload, in order:
///   1. sequential send: one client sends messages one after another;
///   2. concurrent send: N clients, each its own user and access token,
///      send at the same time (into one shared room by default);
///   3. send-to-sync latency: user B long-polls /sync (timeout 30 s) while
///      user A sends; time from the start of A's send until B's /sync
///      returns that message (p50, p99);
///   4. initial sync: a user in many rooms (a few messages each) logs in
///      afresh and performs a full /sync without a since token (median);
///   5. memory: VmRSS and peak VmHWM of the server process tree after the
///      workload.
///
/// Synapse runs from a Python virtualenv with SQLite, open registration and
/// all rate limits raised; Archipel runs as `archipel dev`.
#[derive(Debug, Parser)]
#[command(name = "archipel-bench", version, verbatim_doc_comment)]
struct Cli {
    /// Benchmark only this server (default: both, Archipel first).
    #[arg(long, value_enum, value_name = "SERVER")]
    only: Option<ServerKind>,

    /// Archipel release binary.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/tmp/archipel-target/release/archipel"
    )]
    archipel_bin: PathBuf,

    /// Python interpreter of a virtualenv with `matrix-synapse` installed.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/tmp/synapse-venv/bin/python"
    )]
    synapse_python: PathBuf,

    /// Directory in which the temporary server data directories are created
    /// (default: the system temporary directory).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,

    /// Keep the server data directories (and logs) instead of deleting them.
    #[arg(long)]
    keep_data: bool,

    /// Seconds to wait for a server to answer /_matrix/client/versions.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    startup_timeout: u64,

    /// Also run Archipel with archive capture off, and report what capture
    /// costs in send throughput.
    #[arg(long)]
    capture_overhead: bool,

    /// With --capture-overhead: rounds of the send scenarios on Archipel with
    /// and without the vault (the first round is the full workload), the
    /// order swapped each round; the overhead is reported per round and as
    /// the median. One round's figure moves with whatever else the machine
    /// does.
    #[arg(
        long,
        default_value_t = 1,
        value_name = "N",
        requires = "capture_overhead"
    )]
    rounds: usize,

    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,

    /// Instead of the side-by-side workload: two federating Archipel nodes
    /// (TLS on loopback), throughput from A to B and send-on-A to
    /// sync-on-B latency.
    #[arg(long)]
    federation: bool,

    /// Messages sent on A in the federation throughput run.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    federation_messages: usize,

    /// Concurrent senders on A in the federation throughput run.
    #[arg(long, default_value_t = 4, value_name = "N")]
    federation_senders: usize,

    /// Latency samples in the federation run.
    #[arg(long, default_value_t = 50, value_name = "N")]
    federation_samples: usize,

    /// Instead of the side-by-side workload: matrix-sdk clients in an
    /// end-to-end encrypted room on Archipel with its archive member and
    /// without, in rounds: send throughput, server CPU per message, time
    /// until the vault holds every plaintext, peak memory.
    #[arg(long)]
    encrypted: bool,

    /// Instead of the side-by-side workload: a bridge (application
    /// service) on loopback, played by the bench: events per second
    /// delivered to it in transactions, and send-to-transaction latency.
    #[arg(long)]
    appservice: bool,
    /// Messages sent in the application service throughput run.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    appservice_messages: usize,
    /// Concurrent senders in the application service throughput run.
    #[arg(long, default_value_t = 4, value_name = "N")]
    appservice_senders: usize,
    /// Latency samples in the application service run.
    #[arg(long, default_value_t = 100, value_name = "N")]
    appservice_samples: usize,
    /// Instead of the default workload: simplified sliding sync (MSC4186)
    /// as Element X uses it, for one user in `--sliding-rooms` rooms.
    #[arg(long)]
    sliding: bool,

    /// Rooms of the user in the sliding sync run.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    sliding_rooms: usize,

    /// Send-to-sync latency samples in the sliding sync run.
    #[arg(long, default_value_t = 100, value_name = "N")]
    sliding_samples: usize,

    /// Concurrent matrix-sdk senders in the encrypted run.
    #[arg(long, default_value_t = 4, value_name = "N")]
    encrypted_senders: usize,

    /// Messages per sender in the encrypted run.
    #[arg(long, default_value_t = 100, value_name = "N")]
    encrypted_messages: usize,

    /// Pairs of runs (archive member on and off) in the encrypted run.
    #[arg(long, default_value_t = 3, value_name = "N")]
    encrypted_rounds: usize,

    #[command(flatten)]
    sizes: Sizes,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest shares the workspace's rustls without a built-in provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = tokio::select! {
        outcome = run(&cli) => outcome,
        _ = tokio::signal::ctrl_c() => {
            // Returning drops the running server, which kills it.
            eprintln!("interrupted; stopping servers");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; returns whether every server completed the workload.
async fn run(cli: &Cli) -> Result<bool> {
    cli.sizes.validate()?;
    let opts = LaunchOptions {
        archipel_bin: cli.archipel_bin.clone(),
        synapse_python: cli.synapse_python.clone(),
        work_dir: cli.work_dir.clone().unwrap_or_else(std::env::temp_dir),
        keep_data: cli.keep_data,
        startup_timeout: Duration::from_secs(cli.startup_timeout),
    };
    if cli.encrypted {
        let runs = encrypted::run(
            &opts,
            cli.encrypted_senders,
            cli.encrypted_messages,
            cli.encrypted_rounds,
            &|msg| eprintln!("[encrypted] {msg}"),
        )
        .await?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&runs)?);
        } else {
            print!("\n{}", encrypted::render(&runs));
        }
        return Ok(true);
    }
    if cli.sliding {
        let kinds = match cli.only {
            Some(kind) => vec![kind],
            None => ServerKind::ALL.to_vec(),
        };
        let metrics = sliding::run(
            &opts,
            &kinds,
            cli.sliding_rooms,
            cli.sliding_samples,
            &|msg| eprintln!("[sliding] {msg}"),
        )
        .await?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&metrics)?);
        } else {
            print!("\n{}", sliding::render(&metrics));
        }
        return Ok(true);
    }
    if cli.appservice {
        let metrics = appservice::run(
            &opts,
            cli.appservice_messages,
            cli.appservice_senders,
            cli.appservice_samples,
            &|msg| eprintln!("[appservice] {msg}"),
        )
        .await?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&metrics)?);
        } else {
            print!("\n{}", appservice::render(&metrics));
        }
        return Ok(true);
    }
    if cli.federation {
        let metrics = federation::run(
            &opts,
            cli.federation_messages,
            cli.federation_senders,
            cli.federation_samples,
            &|msg| eprintln!("[federation] {msg}"),
        )
        .await?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&metrics)?);
        } else {
            print!("\n{}", federation::render(&metrics));
        }
        return Ok(true);
    }
    let mut kinds: Vec<ServerKind> = match cli.only {
        Some(kind) => vec![kind],
        None => ServerKind::ALL.to_vec(),
    };
    if cli.capture_overhead && !kinds.contains(&ServerKind::ArchipelWithoutVault) {
        kinds.push(ServerKind::ArchipelWithoutVault);
    }

    let mut results = Vec::with_capacity(kinds.len());
    for kind in kinds {
        results.push(bench_server(kind, &opts, &cli.sizes, Workload::All).await);
    }
    let mut overhead = Vec::new();
    if cli.capture_overhead {
        overhead.extend(OverheadRound::of(&results));
        for round in 2..=cli.rounds {
            eprintln!("[capture overhead] round {round} of {}", cli.rounds);
            let mut order = [ServerKind::Archipel, ServerKind::ArchipelWithoutVault];
            if round % 2 == 0 {
                order.reverse();
            }
            let mut pair = Vec::with_capacity(2);
            for kind in order {
                pair.push(bench_server(kind, &opts, &cli.sizes, Workload::Sends).await);
            }
            if let Some(failed) = pair.iter().find(|m| m.error.is_some()) {
                results.push(failed.clone());
                break;
            }
            overhead.extend(OverheadRound::of(&pair));
        }
    }

    let output = if cli.json {
        report::render_json(&cli.sizes, &results, &overhead)? + "\n"
    } else {
        format!(
            "\n{}",
            report::render_table(&cli.sizes, &results, &overhead)
        )
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (e.g. `| head`) is the reader's choice, not a failure.
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(err).context("writing results");
        }
        _ => {}
    }
    Ok(results.iter().all(|m| m.error.is_none()))
}

/// Which scenarios a server run goes through.
#[derive(Debug, Clone, Copy)]
enum Workload {
    All,
    Sends,
}

/// Starts one server, runs the workload, samples memory and stops it. A
/// failure is recorded in the metrics, next to what was measured before it.
async fn bench_server(
    kind: ServerKind,
    opts: &LaunchOptions,
    sizes: &Sizes,
    workload: Workload,
) -> ServerMetrics {
    let mut metrics = ServerMetrics::new(kind);
    if let Err(err) = run_server(kind, opts, sizes, workload, &mut metrics).await {
        eprintln!("[{kind}] FAILED: {err:#}");
        metrics.error = Some(format!("{err:#}"));
    }
    metrics
}

async fn run_server(
    kind: ServerKind,
    opts: &LaunchOptions,
    sizes: &Sizes,
    workload: Workload,
    metrics: &mut ServerMetrics,
) -> Result<()> {
    let progress = |msg: &str| eprintln!("[{kind}] {msg}");
    progress("starting");
    let server = RunningServer::start(kind, opts)
        .await
        .with_context(|| format!("starting {kind}"))?;
    metrics.version = server.version().map(str::to_string);
    progress(&format!(
        "listening on {} (data in {})",
        server.base_url(),
        server.data_dir().display()
    ));

    let api = Api::new(server.base_url().clone())?;
    let before = server.work();
    let sent = scenarios::run_sends(&api, sizes, metrics, &progress).await;
    if sent.is_ok() {
        // Capture trails the replies by a little (the pump gathers events
        // for 20 ms and syncs the vault every 250 ms): count its work too.
        tokio::time::sleep(Duration::from_secs(1)).await;
        match (before, server.work()) {
            (Ok(before), Ok(after)) => {
                let work = after.since(before);
                progress(&format!(
                    "send work: {:.2} s of CPU, {:.1} MiB written",
                    work.cpu_secs,
                    work.write_bytes as f64 / (1024.0 * 1024.0)
                ));
                metrics.send_work = Some(work);
                metrics.messages_sent = Some(sizes.messages_sent());
            }
            (Err(err), _) | (_, Err(err)) => {
                progress(&format!("could not read CPU time and disk writes: {err:#}"));
            }
        }
    }
    let outcome = match (workload, sent) {
        (Workload::All, Ok(users)) => {
            scenarios::run_reads(&api, sizes, metrics, &progress, &users).await
        }
        (_, sent) => sent.map(drop),
    };
    metrics.rate_limited_retries = api.rate_limited_count();

    // Memory is sampled even after a failed scenario: it is still informative.
    match server.memory() {
        Ok(memory) => {
            progress(&format!(
                "memory: RSS {:.1} MiB, peak {:.1} MiB ({} process{})",
                memory.rss_kib as f64 / 1024.0,
                memory.peak_kib as f64 / 1024.0,
                memory.processes,
                if memory.processes == 1 { "" } else { "es" }
            ));
            metrics.memory = Some(memory);
        }
        Err(err) => progress(&format!("could not read memory: {err:#}")),
    }
    if outcome.is_err() {
        eprint!("{}", server.log_tail());
    }

    progress("stopping");
    let stopped = server
        .stop()
        .await
        .with_context(|| format!("stopping {}", kind));
    outcome?;
    stopped
}
