//! How the node is doing, read for the metrics, the web console's
//! dashboard and the local console: one reading, three renderings.

use std::sync::OnceLock;

use anyhow::Result;
use archipel_vault::witness::CosignedBy;
use serde::{Deserialize, Serialize};

use super::Node;
use crate::console::web::Texts;

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
    /// The newest complete verification of the vault.
    #[serde(default)]
    pub last_verify: Option<super::vault::LastVerify>,
    pub cosigned: Vec<CosignedBy>,
    /// Peers caught showing a log that does not extend the one this node
    /// co-signed.
    #[serde(default)]
    pub peers_rewrote: Vec<String>,
    /// Rooms the archive member was removed from (or could not join).
    #[serde(default)]
    pub coverage_gaps: u64,
    /// Whether backups are configured at all.
    #[serde(default)]
    pub backups_configured: bool,
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

/// Each configured peer, in the configuration's order, and the events
/// queued for it (counted up to [`QUEUE_COUNTED`]).
pub fn peer_queues(node: Node<'_>) -> Result<Vec<(String, u64)>> {
    node.config
        .federation
        .peers
        .iter()
        .map(|peer| {
            let queued = node
                .services
                .rooms
                .queue_len(&peer.server_name, QUEUE_COUNTED)?;
            Ok((peer.server_name.to_string(), queued as u64))
        })
        .collect()
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
    let peers = peer_queues(node)?;
    let log = node.vault.log();
    let witnessing = node.vault.witness_status()?;
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
        last_verify: super::vault::last_verify(&node.config.node.data_dir),
        peers_rewrote: witnessing
            .alarms()
            .map(|(origin, _)| {
                // A log's origin is `<server name>/archipel-vault`.
                origin
                    .strip_suffix(&archipel_vault::origin_for(""))
                    .unwrap_or(origin)
                    .to_owned()
            })
            .collect(),
        cosigned: witnessing.cosigned,
        coverage_gaps: node.vault.coverage_gaps()?.len() as u64,
        backups_configured: !node.config.backup.targets.is_empty(),
        backups: crate::backup::schedule::last_successes(&node.config.node.data_dir),
        certificate_expiry,
        database_bytes: node.services.store.approximate_size(),
        vault_bytes: node.vault.store().approximate_size(),
    })
}

/// Events waiting for the vault from which on capture is an alarm: the
/// pump moves 512 at a time, within milliseconds.
const CAPTURE_LAG_ALARM: u64 = 1000;

/// Something an operator must look at, as both consoles show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// Many events acknowledged to clients, not yet in the vault: capture
    /// does not keep up, or is stuck. (A few wait for the vault's next
    /// sync, within a second, all the time.)
    CaptureLag(u64),
    /// A witness's co-signature over this node's checkpoint does not
    /// verify.
    CosignatureFails(String),
    /// A peer showed a log that does not extend the one co-signed.
    PeerRewroteLog(String),
    /// Rooms whose encrypted messages the archive cannot read since.
    CoverageGaps(u64),
    /// The newest verification of the vault found problems.
    VaultDoesNotVerify(usize),
    /// The served certificate expires within 14 days.
    CertificateExpires(i64),
    /// Backups are configured, and none succeeded in two days.
    NoRecentBackup,
    /// More than 1000 events wait for a peer.
    PeerQueue(String, u64),
}

impl Alarm {
    /// The alarm in `texts`' language, with its figures: the web console
    /// shows it in the person's, the local console in English.
    pub fn text(&self, texts: Texts) -> String {
        match self {
            Self::CaptureLag(n) => texts.f(
                "{count} event(s) are waiting to be archived",
                &[("count", n)],
            ),
            Self::CosignatureFails(witness) => texts.f(
                "the co-signature of {peer} does not verify",
                &[("peer", witness)],
            ),
            Self::PeerRewroteLog(peer) => texts.f(
                "{peer} showed a log that does not extend the one this node co-signed",
                &[("peer", peer)],
            ),
            Self::CoverageGaps(n) => texts.f(
                "the archive member is out of {count} room(s): their encrypted messages are not decrypted",
                &[("count", n)],
            ),
            Self::VaultDoesNotVerify(n) => texts.f(
                "the vault's newest verification found {count} problem(s)",
                &[("count", n)],
            ),
            Self::CertificateExpires(at) => texts.f(
                "the certificate expires {at}",
                &[("at", &crate::console::web::when(*at))],
            ),
            Self::NoRecentBackup => texts
                .t("no backup succeeded in the last two days")
                .to_owned(),
            Self::PeerQueue(peer, n) => texts.f(
                "{count} events wait for {peer}",
                &[("count", n), ("peer", peer)],
            ),
        }
    }
}

impl NodeStatus {
    /// What needs looking at, at `now` (Unix seconds).
    pub fn alarms(&self, now: i64) -> Vec<Alarm> {
        let mut alarms = Vec::new();
        if self.capture_lag >= CAPTURE_LAG_ALARM {
            alarms.push(Alarm::CaptureLag(self.capture_lag));
        }
        for cosigned in self.cosigned.iter().filter(|c| !c.verifies) {
            alarms.push(Alarm::CosignatureFails(cosigned.witness.clone()));
        }
        for peer in &self.peers_rewrote {
            alarms.push(Alarm::PeerRewroteLog(peer.clone()));
        }
        if self.coverage_gaps > 0 {
            alarms.push(Alarm::CoverageGaps(self.coverage_gaps));
        }
        if let Some(last) = &self.last_verify
            && last.problems > 0
        {
            alarms.push(Alarm::VaultDoesNotVerify(last.problems));
        }
        if let Some(expiry) = self.certificate_expiry
            && expiry - now < 14 * 86_400
        {
            alarms.push(Alarm::CertificateExpires(expiry));
        }
        if self.backups_configured && self.backups.iter().all(|(_, at)| now - at > 2 * 86_400) {
            alarms.push(Alarm::NoRecentBackup);
        }
        for (peer, queued) in &self.peers {
            if *queued > 1000 {
                alarms.push(Alarm::PeerQueue(peer.clone(), *queued));
            }
        }
        alarms
    }
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

/// A bridge as the operator sees it.
#[derive(Clone, Debug, Serialize)]
pub struct BridgeStatus {
    pub id: String,
    /// Where transactions go; none for a bridge that takes none.
    pub url: Option<String>,
    /// The bridge's own user.
    pub sender: String,
    /// Events since its last transaction, not yet looked at (counted up
    /// to [`QUEUE_COUNTED`]).
    pub queued: u64,
    /// A transaction it has not taken yet, by its ID.
    pub in_flight: Option<String>,
    /// When it last took a transaction (ms since the Unix epoch).
    pub last_transaction_ms: Option<u64>,
}

/// Each installed bridge and how far it has been sent. Blocking (RocksDB).
pub fn bridges(node: Node<'_>) -> Result<Vec<BridgeStatus>> {
    let services = node.services;
    services
        .appservices
        .all()
        .iter()
        .map(|registration| {
            let state = services.appservice_state.get(&registration.id)?;
            let queued = if registration.url.is_some() {
                services
                    .rooms
                    .appservice_outbox(state.cursor, QUEUE_COUNTED)?
                    .len() as u64
            } else {
                0
            };
            Ok(BridgeStatus {
                id: registration.id.clone(),
                url: registration.url.clone(),
                sender: registration.sender.to_string(),
                queued,
                in_flight: state.in_flight.map(|f| f.txn_id),
                last_transaction_ms: state.last_success_ms,
            })
        })
        .collect()
}

/// Pings bridge `id` for the operator `actor`: how long it took to answer.
pub async fn ping_bridge(
    node: Node<'_>,
    actor: &super::Actor,
    id: &str,
) -> Result<std::time::Duration> {
    let pinged = async {
        let registration = node
            .services
            .appservices
            .by_id(id)
            .ok_or_else(|| anyhow::anyhow!("no bridge {id} is installed"))?;
        Ok(archipel_homeserver::appservice::ping(&registration, None).await?)
    }
    .await;
    super::audited(node, actor, "bridge ping", id, pinged)
}
