//! The measured workloads. Every scenario drives the server only through the
//! Matrix client-server API and runs identically against each server.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::client::{Api, Session, SyncResponse};
use crate::report::ServerMetrics;

const PASSWORD: &str = "archipel-bench-password";

/// Long-poll timeout for the send-to-sync latency scenario.
const SYNC_TIMEOUT_MS: u64 = 30_000;

/// Rooms for the initial-sync scenario are prepared by this many parallel tasks.
const SETUP_CONCURRENCY: usize = 4;

/// Workload sizes, shared by both servers.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Sizes {
    /// Messages sent one after another by a single client.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub sequential_messages: usize,

    /// Number of concurrent clients, each with its own user and access token.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub clients: usize,

    /// Messages sent by each concurrent client.
    #[arg(long, default_value_t = 150, value_name = "N")]
    pub messages_per_client: usize,

    /// Whether concurrent clients share one room or each send into their own.
    #[arg(long, value_enum, default_value_t = RoomLayout::Shared)]
    pub concurrent_rooms: RoomLayout,

    /// Number of send-to-sync latency samples.
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub latency_samples: usize,

    /// Pause between issuing the long-poll /sync and sending the message, so
    /// the server is already waiting when the event arrives.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub sync_settle_ms: u64,

    /// Rooms the initial-sync user is a member of.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub rooms: usize,

    /// Messages posted in each of those rooms.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub messages_per_room: usize,

    /// Timed initial syncs (each from a fresh login); the median is reported.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub initial_sync_reps: usize,

    /// Untimed warm-up operations before each timed scenario.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub warmup: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoomLayout {
    /// All clients send into one shared room.
    Shared,
    /// Each client sends into a room of its own.
    PerClient,
}

impl Sizes {
    /// Messages the two send scenarios send.
    pub fn messages_sent(&self) -> usize {
        self.sequential_messages + self.clients * self.messages_per_client
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.sequential_messages > 0,
            "--sequential-messages must be > 0"
        );
        ensure!(self.clients > 0, "--clients must be > 0");
        ensure!(
            self.messages_per_client > 0,
            "--messages-per-client must be > 0"
        );
        ensure!(self.latency_samples > 0, "--latency-samples must be > 0");
        ensure!(self.rooms > 0, "--rooms must be > 0");
        ensure!(
            self.initial_sync_reps > 0,
            "--initial-sync-reps must be > 0"
        );
        Ok(())
    }
}

/// The accounts every scenario draws from.
pub struct Users {
    /// Sends messages (sequential and latency scenarios) and hosts rooms.
    alice: Session,
    /// Long-polls /sync in the latency scenario.
    bob: Session,
    /// Member of many rooms; her initial sync is timed.
    carol: Session,
    carol_name: String,
    /// One user per concurrent client.
    senders: Vec<Session>,
}

/// The two send scenarios (sequential, then concurrent) on fresh users.
pub async fn run_sends(
    api: &Api,
    sizes: &Sizes,
    metrics: &mut ServerMetrics,
    progress: &dyn Fn(&str),
) -> Result<Users> {
    progress("registering users");
    let users = register_users(api, sizes).await?;

    progress(&format!(
        "sequential send: {} messages",
        sizes.sequential_messages
    ));
    let rate = sequential_send(api, sizes, &users).await?;
    progress(&format!("  {rate:.1} msgs/s"));
    metrics.sequential_msgs_per_sec = Some(rate);

    progress(&format!(
        "concurrent send: {} clients x {} messages ({})",
        sizes.clients,
        sizes.messages_per_client,
        match sizes.concurrent_rooms {
            RoomLayout::Shared => "one shared room",
            RoomLayout::PerClient => "one room per client",
        },
    ));
    let rate = concurrent_send(api, sizes, &users).await?;
    progress(&format!("  {rate:.1} msgs/s"));
    metrics.concurrent_msgs_per_sec = Some(rate);
    Ok(users)
}

/// The latency and initial sync scenarios, after [`run_sends`].
pub async fn run_reads(
    api: &Api,
    sizes: &Sizes,
    metrics: &mut ServerMetrics,
    progress: &dyn Fn(&str),
    users: &Users,
) -> Result<()> {
    progress(&format!(
        "send-to-sync latency: {} samples",
        sizes.latency_samples
    ));
    let latency = send_to_sync_latency(api, sizes, users).await?;
    let (p50, p99, max) = (
        percentile_ms(&latency, 50.0),
        percentile_ms(&latency, 99.0),
        percentile_ms(&latency, 100.0),
    );
    progress(&format!(
        "  p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    ));
    metrics.latency_p50_ms = Some(p50);
    metrics.latency_p99_ms = Some(p99);
    metrics.latency_max_ms = Some(max);

    progress(&format!(
        "initial sync: preparing {} rooms x {} messages",
        sizes.rooms, sizes.messages_per_room
    ));
    prepare_rooms(api, sizes, users).await?;
    progress(&format!(
        "initial sync: {} timed repetitions",
        sizes.initial_sync_reps
    ));
    let (times, bytes) = initial_sync(api, sizes, users).await?;
    let median = percentile_ms(&times, 50.0);
    progress(&format!(
        "  median {median:.1} ms ({} KiB response)",
        bytes / 1024
    ));
    metrics.initial_sync_median_ms = Some(median);
    metrics.initial_sync_bytes = Some(bytes);
    Ok(())
}

async fn register_users(api: &Api, sizes: &Sizes) -> Result<Users> {
    let alice = api.register("bench_alice", PASSWORD).await?;
    let bob = api.register("bench_bob", PASSWORD).await?;
    let carol_name = "bench_carol".to_string();
    let carol = api.register(&carol_name, PASSWORD).await?;
    let mut senders = Vec::with_capacity(sizes.clients);
    for i in 0..sizes.clients {
        senders.push(api.register(&format!("bench_sender{i}"), PASSWORD).await?);
    }
    Ok(Users {
        alice,
        bob,
        carol,
        carol_name,
        senders,
    })
}

/// One client, one room, each send waits for the previous one.
async fn sequential_send(api: &Api, sizes: &Sizes, users: &Users) -> Result<f64> {
    let room = api.create_room(&users.alice, "sequential", &[]).await?;
    for i in 0..sizes.warmup {
        api.send_text(&users.alice, &room, &format!("warm-up {i}"))
            .await?;
    }
    let start = Instant::now();
    for i in 0..sizes.sequential_messages {
        api.send_text(&users.alice, &room, &format!("sequential {i}"))
            .await?;
    }
    Ok(rate(sizes.sequential_messages, start.elapsed()))
}

/// `clients` users sending at the same time, each sequentially on its own
/// connection, into one shared room or one room each.
async fn concurrent_send(api: &Api, sizes: &Sizes, users: &Users) -> Result<f64> {
    let rooms = match sizes.concurrent_rooms {
        RoomLayout::Shared => {
            let invite: Vec<&str> = users.senders.iter().map(|s| s.user_id.as_str()).collect();
            let room = api.create_room(&users.alice, "concurrent", &invite).await?;
            for sender in &users.senders {
                api.join(sender, &room).await?;
            }
            vec![room; users.senders.len()]
        }
        RoomLayout::PerClient => {
            let mut rooms = Vec::with_capacity(users.senders.len());
            for (i, sender) in users.senders.iter().enumerate() {
                rooms.push(
                    api.create_room(sender, &format!("concurrent {i}"), &[])
                        .await?,
                );
            }
            rooms
        }
    };

    // Warm-up, so every client already holds an open connection.
    let warmup_per_client = sizes.warmup.div_ceil(users.senders.len()).max(1);
    run_senders(api, users, &rooms, warmup_per_client, "warm-up").await?;

    let start = Instant::now();
    run_senders(api, users, &rooms, sizes.messages_per_client, "concurrent").await?;
    let elapsed = start.elapsed();
    Ok(rate(sizes.clients * sizes.messages_per_client, elapsed))
}

async fn run_senders(
    api: &Api,
    users: &Users,
    rooms: &[String],
    per_client: usize,
    label: &str,
) -> Result<()> {
    let mut tasks = JoinSet::new();
    for (i, (sender, room)) in users.senders.iter().zip(rooms).enumerate() {
        let (api, sender, room, label) =
            (api.clone(), sender.clone(), room.clone(), label.to_string());
        tasks.spawn(async move {
            for n in 0..per_client {
                api.send_text(&sender, &room, &format!("{label} {i}/{n}"))
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("sender task panicked")??;
    }
    Ok(())
}

/// Bob long-polls /sync; Alice sends. Each sample is the time from the start
/// of Alice's send until Bob's /sync returns holding that message.
async fn send_to_sync_latency(api: &Api, sizes: &Sizes, users: &Users) -> Result<Vec<Duration>> {
    let (alice, bob) = (&users.alice, &users.bob);
    let room = api
        .create_room(alice, "latency", &[bob.user_id.as_str()])
        .await?;
    api.join(bob, &room).await?;
    let initial = api.sync_raw(bob, None, None).await?;
    let mut since = SyncResponse::parse(&initial)?.next_batch;

    let settle = Duration::from_millis(sizes.sync_settle_ms);
    let mut samples = Vec::with_capacity(sizes.latency_samples);
    for i in 0..sizes.warmup + sizes.latency_samples {
        let marker = format!("latency probe {i}");
        // A JoinSet aborts the long-poll if this function bails out early.
        let mut watcher = JoinSet::new();
        watcher.spawn(wait_for_message(
            api.clone(),
            bob.clone(),
            since.clone(),
            marker.clone(),
        ));
        tokio::time::sleep(settle).await;
        let start = Instant::now();
        api.send_text(alice, &room, &marker).await?;
        let (seen_at, next_batch) = tokio::time::timeout(
            Duration::from_millis(2 * SYNC_TIMEOUT_MS),
            watcher.join_next(),
        )
        .await
        .map_err(|_| anyhow!("message {i} never showed up in /sync"))?
        .ok_or_else(|| anyhow!("sync task vanished"))?
        .context("sync task panicked")??;
        since = next_batch;
        if i >= sizes.warmup {
            samples.push(seen_at.saturating_duration_since(start));
        }
    }
    Ok(samples)
}

/// Long-polls /sync from `since` until a message with body `marker` arrives.
/// Returns when it was seen and the token to continue from.
async fn wait_for_message(
    api: Api,
    who: Session,
    mut since: String,
    marker: String,
) -> Result<(Instant, String)> {
    loop {
        let body = api
            .sync_raw(&who, Some(&since), Some(SYNC_TIMEOUT_MS))
            .await?;
        let seen_at = Instant::now();
        let sync = SyncResponse::parse(&body)?;
        since = sync.next_batch.clone();
        if sync.contains_message_body(&marker) {
            return Ok((seen_at, since));
        }
    }
}

/// Gives Carol `rooms` rooms (created by Alice, joined by Carol) with a few
/// of Alice's messages in each.
async fn prepare_rooms(api: &Api, sizes: &Sizes, users: &Users) -> Result<()> {
    let mut tasks = JoinSet::new();
    for worker in 0..SETUP_CONCURRENCY.min(sizes.rooms) {
        let (api, alice, carol) = (api.clone(), users.alice.clone(), users.carol.clone());
        let (rooms, messages) = (sizes.rooms, sizes.messages_per_room);
        tasks.spawn(async move {
            for r in (worker..rooms).step_by(SETUP_CONCURRENCY) {
                let room = api
                    .create_room(&alice, &format!("room {r}"), &[carol.user_id.as_str()])
                    .await?;
                api.join(&carol, &room).await?;
                for m in 0..messages {
                    api.send_text(&alice, &room, &format!("room {r} message {m}"))
                        .await?;
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("room setup task panicked")??;
    }
    Ok(())
}

/// Times full initial syncs of Carol, each from a fresh login so that no
/// server-side cache of an identical earlier request can answer it.
/// Returns the durations and the size of the last response body.
async fn initial_sync(api: &Api, sizes: &Sizes, users: &Users) -> Result<(Vec<Duration>, u64)> {
    let mut times = Vec::with_capacity(sizes.initial_sync_reps);
    let mut devices = HashSet::from([users.carol.device_id.clone()]);
    let mut bytes = 0;
    for rep in 0..sizes.initial_sync_reps {
        let session = api.login(&users.carol_name, PASSWORD).await?;
        ensure!(
            devices.insert(session.device_id.clone()),
            "login {rep} reused device {} instead of creating a new one",
            session.device_id
        );
        let start = Instant::now();
        let body = api.sync_raw(&session, None, None).await?;
        times.push(start.elapsed());

        let sync = SyncResponse::parse(&body)?;
        // Carol is in no other rooms, so the count must match exactly.
        if sync.rooms.join.len() != sizes.rooms {
            bail!(
                "initial sync {rep} of {} listed {} joined rooms, expected {}",
                users.carol.user_id,
                sync.rooms.join.len(),
                sizes.rooms
            );
        }
        bytes = body.len() as u64;
    }
    Ok((times, bytes))
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// Nearest-rank percentile of `samples`, in milliseconds.
pub fn percentile_ms(samples: &[Duration], pct: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples = ms(&[5, 1, 4, 2, 3]);
        assert_eq!(percentile_ms(&samples, 50.0), 3.0);
        assert_eq!(percentile_ms(&samples, 100.0), 5.0);
        assert_eq!(percentile_ms(&samples, 0.0), 1.0);

        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_ms(&ms(&hundred), 99.0), 99.0);
        assert_eq!(percentile_ms(&ms(&hundred), 50.0), 50.0);
    }

    #[test]
    fn rate_is_per_second() {
        assert_eq!(rate(300, Duration::from_secs(2)), 150.0);
    }
}
