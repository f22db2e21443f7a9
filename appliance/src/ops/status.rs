//! How the node is doing, read for the metrics, the web console's
//! dashboard and the local console: one reading, three renderings.

use std::sync::OnceLock;

use anyhow::Result;
use archipel_vault::witness::CosignedBy;
use serde::{Deserialize, Serialize};

use super::Node;

/// How many days the messages-per-day figures cover.
pub const CHART_DAYS: u64 = 30;

/// Queues are counted up to this many: beyond it, "at least".
pub const QUEUE_COUNTED: usize = 100_000;

/// When this process started serving (Unix seconds).
static STARTED: OnceLock<i64> = OnceLock::new();

/// Notes that the node started serving now.
pub fn started() {
    STARTED.get_or_init(|| jiff::Timestamp::now().as_second());
}

/// One reading of the node's state. Counts, not content: an operator
/// sees nothing archived here.
#[derive(Serialize, Deserialize)]
pub struct NodeStatus {
    pub version: String,
    pub server_name: String,
    /// When the node started (Unix seconds).
    pub started: i64,
    /// Where the web console is reached, if it is on.
    pub console_url: Option<String>,
    pub users_active: u64,
    pub users_deactivated: u64,
    pub server_admins: u64,
    pub rooms: u64,
    pub syncing: u64,
    /// Each configured peer and the events queued for it.
    pub peers: Vec<(String, u64)>,
    pub vault_records: u64,
    /// Messages archived on each of the last [`CHART_DAYS`] days, oldest
    /// first.
    pub messages_per_day: Vec<u64>,
    /// Events acknowledged to clients, not yet durable in the vault.
    pub capture_lag: u64,
    /// The newest signed checkpoint's size, and who co-signed which size.
    pub checkpoint: Option<u64>,
    pub cosigned: Vec<CosignedBy>,
    /// Each backup target and when its newest scheduled backup was
    /// written (Unix seconds).
    pub backups: Vec<(String, i64)>,
    /// When the served certificate expires (Unix seconds); none without
    /// `[tls]` or before ACME issued one.
    pub certificate_expiry: Option<i64>,
    /// Approximate bytes of the homeserver's and the vault's databases.
    pub database_bytes: u64,
    pub vault_bytes: u64,
}

/// Reads the node's state. Blocking (RocksDB): call it off the async
/// workers.
pub fn node_status(node: Node<'_>) -> Result<NodeStatus> {
    let (mut users_active, mut users_deactivated, mut server_admins) = (0, 0, 0);
    for (_, account) in super::accounts::list_users(node)? {
        if account.deactivated {
            users_deactivated += 1;
        } else {
            users_active += 1;
            server_admins += u64::from(account.admin);
        }
    }
    let mut peers = Vec::new();
    for peer in &node.config.federation.peers {
        let queued = node
            .services
            .rooms
            .queue_len(&peer.server_name, QUEUE_COUNTED)?;
        peers.push((peer.server_name.to_string(), queued as u64));
    }
    let log = node.vault.log();
    let certificate_expiry = match crate::tls::certificate_expiry(node.config) {
        Ok(expiry) => expiry,
        // The reading still answers; the log says why this figure is missing.
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "reading the certificate's expiry");
            None
        }
    };
    Ok(NodeStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        server_name: node.config.homeserver.server_name.to_string(),
        started: STARTED.get().copied().unwrap_or_default(),
        console_url: super::console::console_url(node),
        users_active,
        users_deactivated,
        server_admins,
        rooms: node.services.rooms.room_count()? as u64,
        syncing: node.services.syncing.now() as u64,
        peers,
        vault_records: log.size()?,
        messages_per_day: node.vault.messages_per_day(CHART_DAYS)?,
        capture_lag: node.services.rooms.outbox_len(QUEUE_COUNTED)? as u64,
        checkpoint: log.latest_checkpoint()?.map(|c| c.size),
        cosigned: node.vault.witness_status()?.cosigned,
        backups: crate::backup::schedule::last_successes(&node.config.node.data_dir),
        certificate_expiry,
        database_bytes: node.services.store.approximate_size(),
        vault_bytes: node.vault.store().approximate_size(),
    })
}

/// The newest lines of the node's journal (archipel.service), for both
/// consoles' log pages.
pub fn journal() -> Vec<String> {
    match std::process::Command::new("journalctl")
        .args([
            "-u",
            "archipel.service",
            "-n",
            "200",
            "--no-pager",
            "-o",
            "short",
        ])
        .output()
    {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(ToOwned::to_owned)
            .collect(),
        Err(e) => vec![format!("the journal cannot be read here: {e}")],
    }
}
