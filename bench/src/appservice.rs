//! An application service (a bridge) on loopback: how many events per
//! second Archipel delivers to it in transactions, and how long a message
//! takes from the start of its send until the transaction that carries it
//! arrives.
//!
//! The bench plays the bridge: it serves `PUT /_matrix/app/v1/transactions`
//! itself, registers its bot through the application service API, and has
//! it join the room ordinary users write in (a portal room).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::{Json, Router, extract::State, routing::put};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::Api;
use crate::scenarios::percentile_ms;
use crate::servers::{LaunchOptions, RunningServer, ServerKind, free_port};

const AS_TOKEN: &str = "bench_as_token_0123456789abcdef0123456789";
const HS_TOKEN: &str = "bench_hs_token_0123456789abcdef0123456789";

#[derive(Debug, Clone, Serialize)]
pub struct AppserviceMetrics {
    pub messages: usize,
    pub senders: usize,
    /// Events per second from the first send until the bridge had all.
    pub events_per_sec: f64,
    pub transactions: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_samples: usize,
}

/// When each message body first arrived at the bridge, and how many
/// transactions came.
#[derive(Default)]
struct Arrivals {
    at: HashMap<String, Instant>,
    transactions: usize,
}

async fn transaction(
    State(arrivals): State<Arc<Mutex<Arrivals>>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let now = Instant::now();
    let mut arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
    arrivals.transactions += 1;
    for event in body["events"].as_array().into_iter().flatten() {
        if let Some(text) = event["content"]["body"].as_str() {
            arrivals.at.entry(text.to_owned()).or_insert(now);
        }
    }
    Json(json!({}))
}

async fn arrived(arrivals: &Arc<Mutex<Arrivals>>, body: &str, limit: Duration) -> Result<Instant> {
    let start = Instant::now();
    loop {
        if let Some(at) = arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .at
            .get(body)
        {
            return Ok(*at);
        }
        if start.elapsed() > limit {
            bail!("{body:?} never reached the bridge");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn run(
    opts: &LaunchOptions,
    messages: usize,
    senders: usize,
    samples: usize,
    progress: &dyn Fn(&str),
) -> Result<AppserviceMetrics> {
    let dir = tempfile::Builder::new()
        .prefix("archipel-bench-appservice-")
        .tempdir_in(&opts.work_dir)?;
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let port = free_port()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .context("the bridge's listener")?;
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
        .with_state(arrivals.clone());
    let served = tokio::spawn(async move { axum::serve(listener, app).await });
    let registration = dir.path().join("bench.yaml");
    std::fs::write(
        &registration,
        format!(
            "id: bench\nurl: http://127.0.0.1:{port}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\n\
             sender_localpart: benchbridge\nrate_limited: false\nnamespaces:\n  users:\n  \
             - exclusive: true\n    regex: '@bench_.*:localhost'\n"
        ),
    )?;
    progress("starting Archipel with the bridge installed");
    let server = RunningServer::start_named(
        ServerKind::Archipel,
        opts,
        "localhost",
        &["--appservice".into(), registration.display().to_string()],
    )
    .await?;
    let api = Api::new(server.base_url().clone())?;
    let http = reqwest::Client::new();
    let base = server.base_url().as_str().trim_end_matches('/').to_owned();
    let bot = "@bench_bot:localhost";
    let as_bot = |path: &str| format!("{base}{path}?user_id=%40bench_bot%3Alocalhost");
    http.post(as_bot("/_matrix/client/v3/register"))
        .bearer_auth(AS_TOKEN)
        .json(&json!({"type": "m.login.application_service", "username": "bench_bot", "inhibit_login": true}))
        .send()
        .await?
        .error_for_status()
        .context("registering the bridge's bot")?;
    let mut writers = Vec::new();
    for n in 0..senders.max(1) {
        writers.push(
            api.register(&format!("sender{n}"), "bench-password")
                .await?,
        );
    }
    let mut invited: Vec<&str> = vec![bot];
    invited.extend(writers[1..].iter().map(|w| w.user_id.as_str()));
    let room = api.create_room(&writers[0], "portal", &invited).await?;
    for writer in &writers[1..] {
        api.join(writer, &room).await?;
    }
    let room_path = room.replace('!', "%21").replace(':', "%3A");
    http.post(as_bot(&format!("/_matrix/client/v3/join/{room_path}")))
        .bearer_auth(AS_TOKEN)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()
        .context("the bot joining the room")?;

    progress(&format!(
        "throughput: {messages} messages from {} senders",
        writers.len()
    ));
    let per_sender = messages.div_ceil(writers.len());
    let total = per_sender * writers.len();
    let start = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for (n, writer) in writers.iter().enumerate() {
        let (api, writer, room) = (api.clone(), writer.clone(), room.clone());
        sends.spawn(async move {
            for i in 0..per_sender {
                api.send_text(&writer, &room, &format!("load {n}-{i}"))
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = sends.join_next().await {
        done??;
    }
    for n in 0..writers.len() {
        arrived(
            &arrivals,
            &format!("load {n}-{}", per_sender - 1),
            Duration::from_secs(600),
        )
        .await?;
    }
    let received = start.elapsed();
    let events_per_sec = total as f64 / received.as_secs_f64();
    progress(&format!(
        "  {events_per_sec:.1} events/s reached the bridge"
    ));

    progress(&format!("latency: {samples} samples"));
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples + 5 {
        let marker = format!("probe {i}");
        let begin = Instant::now();
        api.send_text(&writers[0], &room, &marker).await?;
        let at = arrived(&arrivals, &marker, Duration::from_secs(60)).await?;
        // The first few warm up connections and caches.
        if i >= 5 {
            latencies.push(at.saturating_duration_since(begin));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let transactions = arrivals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .transactions;
    served.abort();
    server.stop().await?;
    Ok(AppserviceMetrics {
        messages: total,
        senders: writers.len(),
        events_per_sec,
        transactions,
        latency_p50_ms: percentile_ms(&latencies, 50.0),
        latency_p99_ms: percentile_ms(&latencies, 99.0),
        latency_samples: latencies.len(),
    })
}

pub fn render(m: &AppserviceMetrics) -> String {
    format!(
        "Application service on loopback (Archipel dev, every event archived)\n\
         Throughput, {} messages from {} senders: {:.1} events/s reached the bridge ({} transactions in all)\n\
         Start of a send to its transaction at the bridge, {} samples: p50 {:.1} ms, p99 {:.1} ms\n",
        m.messages,
        m.senders,
        m.events_per_sec,
        m.transactions,
        m.latency_samples,
        m.latency_p50_ms,
        m.latency_p99_ms
    )
}
