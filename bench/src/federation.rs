//! Federation between two Archipel nodes on loopback, over TLS with
//! certificates from a CA made for the run: how many events per second go
//! from node A to node B, and how long a message takes from a send on A to
//! the sync of a user on B.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::client::{Api, SyncResponse};
use crate::scenarios::percentile_ms;
use crate::servers::{LaunchOptions, RunningServer, ServerKind, free_port};

/// Long-poll timeout of the receiving user's /sync.
const SYNC_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, Serialize)]
pub struct FederationMetrics {
    pub messages: usize,
    pub senders: usize,
    /// Events per second from the first send on A until B's user has seen all.
    pub events_per_sec: f64,
    /// Sends per second accepted by A over the same run.
    pub sent_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_samples: usize,
}

/// Certificates for both nodes from a CA made for this run, written to `dir`.
fn certificates(dir: &Path) -> Result<()> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = params.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    let issuer = rcgen::Issuer::new(params, ca_key);
    for name in ["a.bench", "b.bench"] {
        let key = rcgen::KeyPair::generate()?;
        let certificate =
            rcgen::CertificateParams::new(vec![name.to_owned()])?.signed_by(&key, &issuer)?;
        std::fs::write(dir.join(format!("{name}.pem")), certificate.pem())?;
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
    }
    Ok(())
}

/// The `[federation]` file of `name`, listening on `port`, with `peer` at `peer_port`.
fn federation_file(
    dir: &Path,
    name: &str,
    port: u16,
    peer: &str,
    peer_port: u16,
) -> Result<String> {
    let path = dir.join(format!("{name}.toml"));
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            "[federation]\nlisten = \"127.0.0.1:{port}\"\ntls_certificate = \"{d}/{name}.pem\"\n\
             tls_private_key = \"{d}/{name}.key\"\nca_bundle = \"{d}/ca.pem\"\n\n\
             [[federation.peers]]\nserver_name = \"{peer}\"\naddress = \"127.0.0.1:{peer_port}\"\n"
        ),
    )?;
    Ok(path.display().to_string())
}

pub async fn run(
    opts: &LaunchOptions,
    messages: usize,
    senders: usize,
    samples: usize,
    progress: &dyn Fn(&str),
) -> Result<FederationMetrics> {
    let dir = tempfile::Builder::new()
        .prefix("archipel-bench-federation-")
        .tempdir_in(&opts.work_dir)?;
    certificates(dir.path())?;
    let (port_a, port_b) = (free_port()?, free_port()?);
    let file_a = federation_file(dir.path(), "a.bench", port_a, "b.bench", port_b)?;
    let file_b = federation_file(dir.path(), "b.bench", port_b, "a.bench", port_a)?;
    progress("starting a.bench and b.bench");
    let a = RunningServer::start_named(
        ServerKind::Archipel,
        opts,
        "a.bench",
        &["--federation".into(), file_a],
    )
    .await?;
    let b = RunningServer::start_named(
        ServerKind::Archipel,
        opts,
        "b.bench",
        &["--federation".into(), file_b],
    )
    .await?;
    let (api_a, api_b) = (
        Api::new(a.base_url().clone())?,
        Api::new(b.base_url().clone())?,
    );

    let mut writers = Vec::new();
    for n in 0..senders.max(1) {
        writers.push(
            api_a
                .register(&format!("sender{n}"), "bench-password")
                .await?,
        );
    }
    let reader = api_b.register("reader", "bench-password").await?;
    let mut invited: Vec<&str> = vec![reader.user_id.as_str()];
    invited.extend(writers[1..].iter().map(|w| w.user_id.as_str()));
    let room = api_a
        .create_room(&writers[0], "federation", &invited)
        .await?;
    api_b
        .join_via(&reader, &room, Some("a.bench"))
        .await
        .context("the user on b.bench joining the room on a.bench")?;
    for writer in &writers[1..] {
        api_a.join(writer, &room).await?;
    }
    let initial = api_b.sync_raw(&reader, None, None).await?;
    let mut since = SyncResponse::parse(&initial)?.next_batch;

    // Throughput: every sender sends its share at once. A delivers to B in
    // stream order, so B has everything once it has each sender's last.
    progress(&format!(
        "throughput: {messages} messages from {} senders on a.bench",
        writers.len()
    ));
    let per_sender = messages.div_ceil(writers.len());
    let total = per_sender * writers.len();
    let start = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for (n, writer) in writers.iter().enumerate() {
        let (api, writer, room) = (api_a.clone(), writer.clone(), room.clone());
        sends.spawn(async move {
            let mut last = String::new();
            for i in 0..per_sender {
                last = api
                    .send_text(&writer, &room, &format!("load {n}-{i}"))
                    .await?;
            }
            anyhow::Ok(last)
        });
    }
    let mut last_events = Vec::new();
    while let Some(done) = sends.join_next().await {
        last_events.push(done??);
    }
    let sent = start.elapsed();
    for event_id in &last_events {
        while !api_b.has_event(&reader, &room, event_id).await? {
            if start.elapsed() > Duration::from_secs(600) {
                bail!("{event_id} had not reached b.bench after 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let received = start.elapsed();
    let events_per_sec = total as f64 / received.as_secs_f64();
    let sent_per_sec = total as f64 / sent.as_secs_f64();
    progress(&format!(
        "  {events_per_sec:.1} events/s arrived on b.bench ({sent_per_sec:.1}/s accepted by a.bench)"
    ));
    let body = api_b.sync_raw(&reader, Some(&since), Some(0)).await?;
    since = SyncResponse::parse(&body)?.next_batch;

    // Latency: one message at a time while B's user long-polls.
    progress(&format!("latency: {samples} samples"));
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples + 5 {
        let marker = format!("probe {i}");
        let (api, reader_c, since_c, wanted) =
            (api_b.clone(), reader.clone(), since.clone(), marker.clone());
        let watcher = tokio::spawn(async move {
            let mut since = since_c;
            loop {
                let body = api
                    .sync_raw(&reader_c, Some(&since), Some(SYNC_TIMEOUT_MS))
                    .await?;
                let seen_at = Instant::now();
                let sync = SyncResponse::parse(&body)?;
                since = sync.next_batch.clone();
                if sync.contains_message_body(&wanted) {
                    return anyhow::Ok((seen_at, since));
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let begin = Instant::now();
        api_a.send_text(&writers[0], &room, &marker).await?;
        let (seen_at, next) = tokio::time::timeout(Duration::from_secs(60), watcher)
            .await
            .context("a probe never reached b.bench")???;
        since = next;
        // The first few warm up connections and caches.
        if i >= 5 {
            latencies.push(seen_at.saturating_duration_since(begin));
        }
    }
    let metrics = FederationMetrics {
        messages: total,
        senders: writers.len(),
        events_per_sec,
        sent_per_sec,
        latency_p50_ms: percentile_ms(&latencies, 50.0),
        latency_p99_ms: percentile_ms(&latencies, 99.0),
        latency_samples: latencies.len(),
    };
    a.stop().await?;
    b.stop().await?;
    Ok(metrics)
}

pub fn render(m: &FederationMetrics) -> String {
    format!(
        "Federation, Archipel a.bench -> b.bench (TLS on loopback, every event archived on both)\n\
         Throughput, {} messages from {} senders: {:.1} events/s arrived on B ({:.1}/s accepted by A)\n\
         Send on A to sync on B, {} samples: p50 {:.1} ms, p99 {:.1} ms\n",
        m.messages,
        m.senders,
        m.events_per_sec,
        m.sent_per_sec,
        m.latency_samples,
        m.latency_p50_ms,
        m.latency_p99_ms
    )
}
