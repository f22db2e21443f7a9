//! Simplified sliding sync (MSC4186), as Element X uses it, on Archipel and
//! Synapse in turn: one user in `rooms` rooms. Timed: the first response
//! (the 20 newest rooms), the complete room list (grown in pages of 100,
//! as Element X grows it), and the latency from a send until the user's
//! long poll returns the message. Memory: the server's peak RSS.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{Api, Session};
use crate::scenarios::percentile_ms;
use crate::servers::{LaunchOptions, RunningServer, ServerKind};

/// Rooms Element X shows first, and the page it grows its list by.
const FIRST_PAGE: usize = 20;
const PAGE: usize = 100;
/// Repetitions of the first-response and complete-list timings.
const REPETITIONS: usize = 5;
/// Room creations in flight at once while setting up.
const CREATING_AT_ONCE: usize = 8;
const POLL_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, Serialize)]
pub struct SlidingMetrics {
    pub server: String,
    pub rooms: usize,
    /// Median time of a new connection's first response (20 rooms).
    pub first_response_ms: f64,
    /// Median time until a new connection has every room.
    pub complete_list_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_samples: usize,
    pub peak_rss_mib: f64,
}

/// Element X's room list request (matrix-sdk-ui's RoomListService).
fn room_list(conn_id: &str, end: usize) -> Value {
    json!({
        "conn_id": conn_id,
        "lists": { "all_rooms": {
            "ranges": [[0, end]],
            "timeline_limit": 1,
            "required_state": [
                ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                ["m.room.member", "$ME"], ["m.room.topic", ""], ["m.room.avatar", ""],
                ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
                ["m.room.join_rules", ""], ["m.room.tombstone", ""], ["m.room.create", ""],
                ["m.room.history_visibility", ""], ["m.space.parent", "*"], ["m.space.child", "*"]
            ],
        }},
        "extensions": {
            "account_data": { "enabled": true },
            "receipts": { "enabled": true, "rooms": ["*"] },
            "typing": { "enabled": true },
        },
    })
}

pub async fn run(
    opts: &LaunchOptions,
    kinds: &[ServerKind],
    rooms: usize,
    samples: usize,
    progress: &dyn Fn(&str),
) -> Result<Vec<SlidingMetrics>> {
    let mut out = Vec::new();
    for &kind in kinds {
        let say = |msg: &str| progress(&format!("{kind}: {msg}"));
        say("starting");
        let server = RunningServer::start(kind, opts).await?;
        let measured = measure(&server, kind, rooms, samples, &say).await;
        if measured.is_err() {
            eprint!("{}", server.log_tail());
        }
        server.stop().await?;
        out.push(measured?);
    }
    Ok(out)
}

async fn measure(
    server: &RunningServer,
    kind: ServerKind,
    rooms: usize,
    samples: usize,
    say: &dyn Fn(&str),
) -> Result<SlidingMetrics> {
    let api = Api::new(server.base_url().clone())?;
    let user = api.register("reader", "bench-password").await?;
    say(&format!("creating {rooms} rooms"));
    let started = Instant::now();
    let mut created = Vec::with_capacity(rooms);
    for batch in (0..rooms).collect::<Vec<_>>().chunks(CREATING_AT_ONCE) {
        let mut set = tokio::task::JoinSet::new();
        for &n in batch {
            let (api, user) = (api.clone(), user.clone());
            set.spawn(async move { api.create_room(&user, &format!("room {n}"), &[]).await });
        }
        while let Some(room) = set.join_next().await {
            created.push(room??);
        }
    }
    say(&format!(
        "created in {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    let mut first = Vec::new();
    let mut complete = Vec::new();
    for rep in 0..REPETITIONS {
        let t = Instant::now();
        let body = api
            .sliding_sync_raw(
                &user,
                None,
                0,
                &room_list(&format!("first{rep}"), FIRST_PAGE - 1),
            )
            .await?;
        first.push(t.elapsed());
        let reply: Value = serde_json::from_slice(&body)?;
        let got = reply["rooms"].as_object().map_or(0, |r| r.len());
        if got != FIRST_PAGE.min(rooms) {
            bail!("the first response held {got} rooms, not {FIRST_PAGE}");
        }

        let t = Instant::now();
        let all = complete_list(&api, &user, &format!("all{rep}"), rooms).await?;
        complete.push(t.elapsed());
        if all != rooms {
            bail!("the complete list held {all} rooms, not {rooms}");
        }
    }
    say(&format!(
        "first response {:.1} ms, complete list {:.1} ms (medians)",
        median_ms(&mut first),
        median_ms(&mut complete)
    ));

    let latencies = latency(&api, &user, &created[0], samples).await?;
    let memory = server.memory()?;
    Ok(SlidingMetrics {
        server: kind.name().to_owned(),
        rooms,
        first_response_ms: median_ms(&mut first),
        complete_list_ms: median_ms(&mut complete),
        latency_p50_ms: percentile_ms(&latencies, 50.0),
        latency_p99_ms: percentile_ms(&latencies, 99.0),
        latency_samples: latencies.len(),
        peak_rss_mib: memory.peak_kib as f64 / 1024.0,
    })
}

/// Grows a new connection's list a page at a time until it has every
/// room; the number of rooms it was sent.
async fn complete_list(api: &Api, user: &Session, conn_id: &str, rooms: usize) -> Result<usize> {
    let mut seen = HashSet::new();
    let mut pos: Option<String> = None;
    let mut end = FIRST_PAGE - 1;
    loop {
        let body = api
            .sliding_sync_raw(user, pos.as_deref(), 0, &room_list(conn_id, end))
            .await?;
        let reply: Value = serde_json::from_slice(&body)?;
        if let Some(sent) = reply["rooms"].as_object() {
            seen.extend(sent.keys().cloned());
        }
        pos = reply["pos"].as_str().map(str::to_owned);
        let count = reply["lists"]["all_rooms"]["count"].as_u64().unwrap_or(0) as usize;
        if end + 1 >= count.max(rooms) {
            return Ok(seen.len());
        }
        end = (end + PAGE).min(count.max(rooms) - 1);
    }
}

/// A long poll waits on the connection; a message is sent into `room`;
/// a sample is the time from the send until the poll returned it.
async fn latency(api: &Api, user: &Session, room: &str, samples: usize) -> Result<Vec<Duration>> {
    let body = room_list("live", FIRST_PAGE - 1);
    let reply: Value = serde_json::from_slice(&api.sliding_sync_raw(user, None, 0, &body).await?)?;
    let mut pos = reply["pos"].as_str().context("pos")?.to_owned();
    let mut out = Vec::with_capacity(samples);
    for n in 0..samples {
        let poll = {
            let (api, user, body, from) = (api.clone(), user.clone(), body.clone(), pos.clone());
            tokio::spawn(async move {
                api.sliding_sync_raw(&user, Some(&from), POLL_TIMEOUT_MS, &body)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        let event_id = api.send_text(user, room, &format!("live {n}")).await?;
        let mut reply: Value = serde_json::from_slice(&poll.await??)?;
        loop {
            pos = reply["pos"].as_str().context("pos")?.to_owned();
            let holds = reply["rooms"][room]["timeline"]
                .as_array()
                .is_some_and(|t| t.iter().any(|e| e["event_id"] == event_id.as_str()));
            if holds {
                break;
            }
            reply = serde_json::from_slice(
                &api.sliding_sync_raw(user, Some(&pos), POLL_TIMEOUT_MS, &body)
                    .await?,
            )?;
        }
        out.push(start.elapsed());
    }
    Ok(out)
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

pub fn render(metrics: &[SlidingMetrics]) -> String {
    let find = |name: &str| metrics.iter().find(|m| m.server == name);
    let (a, s) = (find("Archipel"), find("Synapse"));
    let rooms = metrics.first().map_or(0, |m| m.rooms);
    let mut out = format!(
        "Sliding sync (MSC4186), one user in {rooms} rooms\n\
         metric                      | Archipel | Synapse | ratio\n"
    );
    type Row = (&'static str, fn(&SlidingMetrics) -> f64);
    let rows: [Row; 5] = [
        ("first response, 20 rooms ms", |m| m.first_response_ms),
        ("complete room list ms", |m| m.complete_list_ms),
        ("send-to-sync p50 ms", |m| m.latency_p50_ms),
        ("send-to-sync p99 ms", |m| m.latency_p99_ms),
        ("peak RSS MiB", |m| m.peak_rss_mib),
    ];
    for (label, value) in rows {
        let (av, sv) = (a.map(value), s.map(value));
        let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let ratio = match (av, sv) {
            (Some(av), Some(sv)) if av > 0.0 => format!("{:.1}x", sv / av),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "{label:<27} | {:>8} | {:>7} | {ratio:>5}\n",
            cell(av),
            cell(sv)
        ));
    }
    out.push_str("Ratio: Synapse / Archipel (above 1, Archipel is faster or smaller).\n");
    out
}
