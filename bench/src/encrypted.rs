//! What the archive member costs in an encrypted room: matrix-sdk clients
//! (the crypto every Element X build runs) send into one end-to-end
//! encrypted room on Archipel with its archive member, and without it
//! (`archipel dev --without-archive-member`). With it, the server also
//! runs the archive's device (room keys arriving as to-device messages)
//! and writes a decryption record for every message; the figures are send
//! throughput, the server's CPU time per message, how long the vault takes
//! to hold every plaintext, and peak memory.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use matrix_sdk::config::{RequestConfig, SyncSettings};
use matrix_sdk::ruma::api::client::account::register;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, UserId};
use matrix_sdk::{Client, Room};
use serde::Serialize;

use crate::servers::{LaunchOptions, RunningServer, ServerKind};

const PASSWORD: &str = "bench password 1";

/// One run of the workload on one server.
#[derive(Debug, Clone, Serialize)]
pub struct EncryptedRun {
    pub archive_member: bool,
    pub messages: usize,
    pub senders: usize,
    /// Messages per second over the timed sends.
    pub sends_per_sec: f64,
    /// The server's user and system CPU time from the first timed send
    /// until the vault held every message (and with the archive member,
    /// every plaintext), per message, in microseconds.
    pub cpu_us_per_message: f64,
    /// With the archive member: seconds from the first timed send until
    /// the vault held a decryption record for every message.
    pub all_decrypted_secs: Option<f64>,
    /// Decryption records per second over that time.
    pub decrypted_per_sec: Option<f64>,
    pub peak_rss_mib: f64,
}

/// Runs `rounds` pairs (archive member on, off; the order swapped each
/// round) of `senders` clients sending `messages` each.
pub async fn run(
    opts: &LaunchOptions,
    senders: usize,
    messages: usize,
    rounds: usize,
    say: &dyn Fn(&str),
) -> Result<Vec<EncryptedRun>> {
    let mut runs = Vec::new();
    for round in 1..=rounds {
        let mut order = [true, false];
        if round % 2 == 0 {
            order.reverse();
        }
        for archive_member in order {
            say(&format!(
                "round {round} of {rounds}, archive member {}",
                if archive_member { "on" } else { "off" }
            ));
            runs.push(one(opts, archive_member, senders, messages).await?);
        }
    }
    Ok(runs)
}

async fn one(
    opts: &LaunchOptions,
    archive_member: bool,
    senders: usize,
    messages: usize,
) -> Result<EncryptedRun> {
    let extra: Vec<String> = if archive_member {
        Vec::new()
    } else {
        vec!["--without-archive-member".into()]
    };
    let server =
        RunningServer::start_named(ServerKind::Archipel, opts, "localhost", &extra).await?;
    let url = server.base_url().as_str().trim_end_matches('/').to_owned();
    let mut clients = Vec::with_capacity(senders);
    for i in 0..senders {
        clients.push(register(&url, &format!("sender{i}")).await?);
    }
    for client in &clients {
        client.sync_once(SyncSettings::default()).await?;
    }
    let room_id = encrypted_room(&clients).await?;
    // Every sender knows every member and has shared its room key once.
    let rooms: Vec<Room> = clients
        .iter()
        .map(|c| c.get_room(&room_id).context("the room"))
        .collect::<Result<_>>()?;
    for room in &rooms {
        room.send(RoomMessageEventContent::text_plain("warming up"))
            .await?;
    }
    let total = senders * messages;
    let warm = senders;
    let bin = &opts.archipel_bin;
    wait_vault(&server, bin, warm, archive_member, Duration::from_secs(60)).await?;

    let before = server.work()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, room) in rooms.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..messages {
                room.send(RoomMessageEventContent::text_plain(format!(
                    "sender {i}, message {n}: the minutes of today's meeting"
                )))
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let sent = started.elapsed();
    // The server's work is counted until the vault holds every message:
    // captured, and with the archive member also decrypted.
    wait_vault(
        &server,
        bin,
        warm + total,
        archive_member,
        Duration::from_secs(600),
    )
    .await?;
    let decrypted = archive_member.then(|| started.elapsed());
    let work = server.work()?.since(before);
    let memory = server.memory()?;
    server.stop().await?;
    Ok(EncryptedRun {
        archive_member,
        messages: total,
        senders,
        sends_per_sec: total as f64 / sent.as_secs_f64(),
        cpu_us_per_message: work.cpu_secs * 1e6 / total as f64,
        all_decrypted_secs: decrypted.map(|d| d.as_secs_f64()),
        decrypted_per_sec: decrypted.map(|d| total as f64 / d.as_secs_f64()),
        peak_rss_mib: memory.peak_kib as f64 / 1024.0,
    })
}

async fn register(url: &str, name: &str) -> Result<Client> {
    let client = Client::builder()
        .homeserver_url(url)
        .request_config(
            RequestConfig::new()
                .disable_retry()
                .timeout(Duration::from_secs(120)),
        )
        .build()
        .await?;
    let mut request = register::v3::Request::new();
    request.username = Some(name.to_owned());
    request.password = Some(PASSWORD.to_owned());
    let session = match client.matrix_auth().register(request.clone()).await {
        Ok(_) => return Ok(client),
        Err(e) => e
            .as_uiaa_response()
            .context("registering: expected the sign-up flows")?
            .session
            .clone(),
    };
    let mut dummy = uiaa::Dummy::new();
    dummy.session = session;
    request.auth = Some(uiaa::AuthData::Dummy(dummy));
    client.matrix_auth().register(request).await?;
    Ok(client)
}

/// An encrypted private room made by the first client, which all join.
async fn encrypted_room(clients: &[Client]) -> Result<OwnedRoomId> {
    let mut request = create_room::v3::Request::new();
    request.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    request.invite = clients[1..]
        .iter()
        .filter_map(|c| c.user_id().map(UserId::to_owned))
        .collect();
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room_id = clients[0].create_room(request).await?.room_id().to_owned();
    for client in &clients[1..] {
        client.join_room_by_id(&room_id).await?;
    }
    for client in clients {
        client.sync_once(SyncSettings::default()).await?;
    }
    Ok(room_id)
}

/// Waits until the server's vault holds `count` encrypted messages, and
/// with `decrypted` a decryption record for each.
async fn wait_vault(
    server: &RunningServer,
    bin: &Path,
    count: usize,
    decrypted: bool,
    limit: Duration,
) -> Result<()> {
    let give_up = Instant::now() + limit;
    loop {
        let (done, pending) = encrypted_in_vault(server.data_dir(), bin)?;
        let held = if decrypted { done } else { done + pending };
        if held >= count as u64 {
            return Ok(());
        }
        if Instant::now() > give_up {
            let what = if decrypted { "decrypt" } else { "capture" };
            bail!("the vault did not {what} {count} messages within {limit:?}");
        }
        // Each look is a process that opens both databases: more often
        // would take the cores the server is measured on.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The encrypted messages in the vault: decrypted, and still pending.
fn encrypted_in_vault(data_dir: &Path, bin: &Path) -> Result<(u64, u64)> {
    let output = std::process::Command::new(bin)
        .args(["vault", "status", "--json", "--data-dir"])
        .arg(data_dir.join("data"))
        .output()?;
    if !output.status.success() {
        bail!(
            "vault status: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let status: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let count = |field: &str| status["encrypted"][field].as_u64().unwrap_or(0);
    Ok((count("decrypted"), count("undecrypted")))
}

pub fn render(runs: &[EncryptedRun]) -> String {
    let median = |on: bool, f: &dyn Fn(&EncryptedRun) -> Option<f64>| {
        let mut values: Vec<f64> = runs
            .iter()
            .filter(|r| r.archive_member == on)
            .filter_map(f)
            .collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut out = String::from(
        "Encrypted room, matrix-sdk senders (Archipel with its archive member vs without)\n\
         archive member | sends/s | CPU µs/msg | all decrypted (s) | decryptions/s | peak RSS MiB\n",
    );
    for r in runs {
        out.push_str(&format!(
            "{:>14} | {:>7.1} | {:>10.0} | {:>17} | {:>13} | {:>12.1}\n",
            if r.archive_member { "on" } else { "off" },
            r.sends_per_sec,
            r.cpu_us_per_message,
            r.all_decrypted_secs
                .map_or("-".into(), |s| format!("{s:.2}")),
            r.decrypted_per_sec
                .map_or("-".into(), |s| format!("{s:.1}")),
            r.peak_rss_mib
        ));
    }
    let (on_send, off_send) = (
        median(true, &|r| Some(r.sends_per_sec)),
        median(false, &|r| Some(r.sends_per_sec)),
    );
    let (on_cpu, off_cpu) = (
        median(true, &|r| Some(r.cpu_us_per_message)),
        median(false, &|r| Some(r.cpu_us_per_message)),
    );
    out.push_str(&format!(
        "Medians: {on_send:.1} sends/s with, {off_send:.1} without ({:+.1}% throughput); \
         CPU {on_cpu:.0} µs/msg with, {off_cpu:.0} without ({:+.1}%)\n",
        (on_send / off_send - 1.0) * 100.0,
        (on_cpu / off_cpu - 1.0) * 100.0
    ));
    out
}
