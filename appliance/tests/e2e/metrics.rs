//! The management listener's `/metrics`, read by a real Prometheus
//! text-format parser.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    client::Api,
    harness::{TestServer, eventually},
};

/// The samples of a scrape, parsed as Prometheus parses them.
fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus' text format ({e}):\n{text}"))
}

/// The node's metrics now, with its own token.
pub async fn scrape(server: &TestServer) -> prometheus_parse::Scrape {
    let token = std::fs::read_to_string(server.data_dir().join("metrics.token"))
        .expect("the metrics token");
    let scraper =
        Api::new(server.console_url().expect("a management listener")).with_token(token.trim());
    scrape_with(&scraper).await
}

/// The value of the sample `name` whose labels include `labels`.
pub fn value(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.last().map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

async fn scrape_with(scraper: &Api) -> prometheus_parse::Scrape {
    let reply = scraper.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    parse(&reply.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_to_the_bearer_of_the_metrics_token() {
    let server = TestServer::start().await;
    let console = server
        .console_url()
        .expect("`archipel dev` serves a management listener")
        .to_owned();

    // Closed without the token: no header, a wrong token, another scheme.
    let anonymous = Api::new(&console);
    let refused = anonymous.get("/metrics").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers["www-authenticate"], "Bearer");
    assert_eq!(
        anonymous
            .with_token("not the token")
            .get("/metrics")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A path neither the console nor the metrics know.
    assert_eq!(
        anonymous.get("/no-such-page").await.status,
        StatusCode::NOT_FOUND
    );

    // The token is made at the first start, readable only by the node.
    let token_file = server.data_dir().join("metrics.token");
    let mode = std::fs::metadata(&token_file)
        .expect("the metrics token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).expect("read the token");
    let scraper = Api::new(&console).with_token(token.trim());

    // Some traffic: two accounts, a room, and a request with a method no
    // API knows, which must not make a series of its own.
    let api = Api::new(server.url());
    let alice = api.register("alice").await;
    api.register("bob").await;
    api.with_token(&alice.access_token)
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({ "name": "Metrics" }),
        )
        .await
        .ok();
    let odd = Method::from_bytes(b"BREW").expect("a method");
    api.request(odd, "/_matrix/client/versions", None).await;

    let scrape = eventually(
        "the room's events to be in the vault",
        Duration::from_secs(20),
        || {
            let scraper = scraper.clone();
            async move {
                let reply = scraper.get("/metrics").await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
                assert!(
                    reply.headers["content-type"]
                        .to_str()
                        .is_ok_and(|t| t.starts_with("text/plain; version=0.0.4")),
                    "{:?}",
                    reply.headers
                );
                let scrape = parse(&reply.text());
                let records = value(&scrape, "archipel_vault_records", &[])?;
                let lag = value(&scrape, "archipel_vault_capture_lag_events", &[])?;
                (records > 0.0 && lag == 0.0).then_some(scrape)
            }
        },
    )
    .await;

    assert_eq!(value(&scrape, "archipel_rooms", &[]), Some(1.0));
    // Both databases have a size on disk.
    for database in ["homeserver", "vault"] {
        let size = value(
            &scrape,
            "archipel_database_bytes",
            &[("database", database)],
        );
        assert!(
            size.is_some_and(|bytes| bytes > 0.0),
            "{database}: {size:?}"
        );
    }

    // A long poll waiting is a sync in flight.
    let waiting = {
        let alice = api.with_token(&alice.access_token);
        tokio::spawn(async move {
            let first = alice.get("/_matrix/client/v3/sync").await.json();
            let since = first["next_batch"]
                .as_str()
                .expect("a since token")
                .to_owned();
            alice
                .get(&format!(
                    "/_matrix/client/v3/sync?since={since}&timeout=30000"
                ))
                .await
        })
    };
    eventually("a sync in flight", Duration::from_secs(10), || async {
        (value(
            &scrape_with(&scraper).await,
            "archipel_sync_requests_in_flight",
            &[],
        ) >= Some(1.0))
        .then_some(())
    })
    .await;
    waiting.abort();

    // The accounts: alice, bob and the archive member.
    assert_eq!(
        value(&scrape, "archipel_users", &[("state", "active")]),
        Some(3.0)
    );
    assert_eq!(
        value(&scrape, "archipel_users", &[("state", "deactivated")]),
        Some(0.0)
    );
    // The client API's requests, by method and status.
    let created = value(
        &scrape,
        "archipel_http_requests_total",
        &[
            ("listener", "client"),
            ("method", "POST"),
            ("status", "200"),
        ],
    )
    .expect("the client API's POSTs are counted");
    assert!(created >= 3.0, "two registrations and a room: {created}");
    assert!(
        value(
            &scrape,
            "archipel_http_requests_total",
            &[("listener", "client"), ("method", "other")],
        )
        .is_some(),
        "an unknown method is counted as `other`"
    );
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.labels.get("method") != Some("BREW")),
        "no series for a client's own method"
    );
    assert!(
        value(
            &scrape,
            "archipel_http_request_duration_seconds",
            &[("listener", "client")],
        )
        .is_some_and(|count| count >= created),
        "every request is timed"
    );
    assert_eq!(
        value(
            &scrape,
            "archipel_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let started = value(&scrape, "archipel_start_time_seconds", &[]).expect("a start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    assert!(
        started <= now && now - started < 600.0,
        "{started} vs {now}"
    );
}
