//! The node's metrics in Prometheus' text format: what the listeners
//! served, counted as requests pass, and what the node holds, read when
//! Prometheus scrapes.
//!
//! Every label takes values from a small fixed set (a listener's name, a
//! known HTTP method or `other`, a status code, a configured backup
//! target), so no client can grow the set of series.

use std::{
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::ops::Node;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseLabels {
    database: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// How many entries of a queue (the capture outbox, a peer's federation
/// queue) a scrape counts at most: it stays cheap however far the queue
/// has fallen behind.
/// The node's metrics, shared by the listeners (which count) and the
/// management listener (which renders).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<ListenerLabels, Histogram>,
    users: Family<StateLabels, Gauge>,
    rooms: Gauge,
    syncing: Gauge,
    federation_queues: Family<PeerLabels, Gauge>,
    vault_records: Gauge,
    capture_lag: Gauge,
    database_bytes: Family<DatabaseLabels, Gauge>,
    backup_success: Family<TargetLabels, Gauge>,
    certificate_expiry: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("archipel");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by listener, method and status",
            requests.clone(),
        );
        let durations = Family::<ListenerLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response's head, by listener (a long poll counts its wait)",
            durations.clone(),
        );
        let users = Family::<StateLabels, Gauge>::default();
        registry.register("users", "Local accounts, by state", users.clone());
        let rooms = Gauge::default();
        registry.register("rooms", "Rooms this server knows", rooms.clone());
        let syncing = Gauge::default();
        registry.register(
            "sync_requests_in_flight",
            "Sync requests being answered now, long polls included",
            syncing.clone(),
        );
        let federation_queues = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "federation_queue_events",
            "Events waiting to be sent to each federation peer",
            federation_queues.clone(),
        );
        let vault_records = Gauge::default();
        registry.register(
            "vault_records",
            "Records in the vault's log",
            vault_records.clone(),
        );
        let capture_lag = Gauge::default();
        registry.register(
            "vault_capture_lag_events",
            "Events acknowledged to clients and not yet durable in the vault",
            capture_lag.clone(),
        );
        let database_bytes = Family::<DatabaseLabels, Gauge>::default();
        registry.register(
            "database_bytes",
            "Approximate size on disk of the homeserver's and the vault's databases",
            database_bytes.clone(),
        );
        let backup_success = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the newest scheduled backup to each target was written",
            backup_success.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the certificate the node serves expires (0 without [tls], or before ACME issued one)",
            certificate_expiry.clone(),
        );
        let started = Gauge::<i64>::default();
        started.set(unix_seconds(SystemTime::now()));
        registry.register(
            "start_time_seconds",
            "When the node started, in seconds since the epoch",
            started,
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running version", build);
        Arc::new(Self {
            registry,
            requests,
            durations,
            users,
            rooms,
            syncing,
            federation_queues,
            vault_records,
            capture_lag,
            database_bytes,
            backup_success,
            certificate_expiry,
        })
    }

    /// The metrics now, in Prometheus' text format. Reads the node's
    /// stores: call off the async workers.
    pub fn render(&self, node: Node<'_>) -> anyhow::Result<String> {
        let status = crate::ops::status::node_status(node)?;
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.users
            .get_or_create(&StateLabels { state: "active" })
            .set(gauge(status.users_active));
        self.users
            .get_or_create(&StateLabels {
                state: "deactivated",
            })
            .set(gauge(status.users_deactivated));
        self.rooms.set(gauge(status.rooms));
        self.syncing.set(gauge(status.syncing));
        for (peer, queued) in status.peers {
            self.federation_queues
                .get_or_create(&PeerLabels { peer })
                .set(gauge(queued));
        }
        self.vault_records.set(gauge(status.vault_records));
        self.capture_lag.set(gauge(status.capture_lag));
        self.database_bytes
            .get_or_create(&DatabaseLabels {
                database: "homeserver",
            })
            .set(gauge(status.database_bytes));
        self.database_bytes
            .get_or_create(&DatabaseLabels { database: "vault" })
            .set(gauge(status.vault_bytes));
        for (target, at) in status.backups {
            self.backup_success
                .get_or_create(&TargetLabels { target })
                .set(at);
        }
        self.certificate_expiry
            .set(status.certificate_expiry.unwrap_or(0));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Middleware that counts and times each request the listener named in
/// its state answers:
/// `axum::middleware::from_fn_with_state((metrics, "client"), count)`.
pub async fn count(
    State((metrics, listener)): State<(Arc<Metrics>, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let method = known_method(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            listener,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .durations
        .get_or_create(&ListenerLabels { listener })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// A method's label: one of the methods the APIs use, or `other`.
fn known_method(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::HEAD => "HEAD",
        _ => "other",
    }
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
