//! The operations layer: each administrative action is one function here,
//! called with who is acting. The command line (on a stopped node's data,
//! or through the admin socket of a running one) and the web console call
//! these functions; none of them changes the node another way.
//!
//! An operation that changes something records it in the vault's log,
//! done or failed ([`audited`]): the actor, the action, its object and
//! where the request came from, never a secret. Reads are not recorded.
//! Operations return what they did as data; their callers render it.

use std::{fmt, sync::Arc};

use anyhow::{Context, Result};
use archipel_homeserver::Services;
use archipel_vault::{Vault, procedure::AdminAction};

use crate::config::Config;

pub mod accounts;
pub mod backups;
pub mod console;
pub mod exports;
pub mod imports;
pub mod rooms;
pub mod search;
pub mod status;
pub mod transfers;
pub mod vault;
pub mod woo;

/// The node an operation works on: open here (its data) or running (the
/// admin socket's end).
#[derive(Clone, Copy)]
pub struct Node<'a> {
    pub config: &'a Config,
    pub services: &'a Arc<Services>,
    pub vault: &'a Arc<Vault>,
}

/// Who carries out an action, as the audit trail names them.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The person or account: `root (uid 0)`.
    name: String,
    origin: Origin,
}

/// Where an action was asked for.
#[derive(Clone, Debug)]
pub enum Origin {
    /// The command line, working on a stopped node's data.
    CommandLine,
    /// The command line, through a running node's admin socket.
    AdminSocket { pid: Option<i32> },
    /// The provisioning file, applied at boot or by hand.
    Provisioning,
    /// The Matrix admin API on the client listener, by a signed-in server
    /// administrator.
    MatrixAdminApi,
    /// The web console, by a person signed in from `address`.
    WebConsole { address: String },
    /// The console on the machine's own screen, by a signed-in operator.
    LocalConsole,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CommandLine => f.write_str("command line on the node's data"),
            Self::AdminSocket { pid: Some(pid) } => write!(f, "admin socket (pid {pid})"),
            Self::AdminSocket { pid: None } => f.write_str("admin socket"),
            Self::Provisioning => f.write_str("provisioning file"),
            Self::MatrixAdminApi => f.write_str("Matrix admin API"),
            Self::WebConsole { address } => write!(f, "web console from {address}"),
            Self::LocalConsole => f.write_str("local console"),
        }
    }
}

impl Actor {
    /// The local account `uid`, as the audit trail names it:
    /// `root (uid 0)`.
    pub fn local(uid: Option<u32>, origin: Origin) -> Self {
        let name = match uid {
            None => "an unknown local account".to_owned(),
            Some(uid) => match nix::unistd::User::from_uid(uid.into()) {
                Ok(Some(user)) => format!("{} (uid {uid})", user.name),
                _ => format!("uid {uid}"),
            },
        };
        Self { name, origin }
    }

    /// A person signed in with their account (`@alice:example.org`).
    pub fn person(user: &str, origin: Origin) -> Self {
        Self {
            name: user.to_owned(),
            origin,
        }
    }

    /// The local account this process runs as.
    pub fn this_process(origin: Origin) -> Self {
        Self::local(Some(nix::unistd::getuid().as_raw()), origin)
    }

    /// Who acted, without where from.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A time in ms since the Unix epoch, as UTC.
fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| ms.to_string(), |t| t.to_string())
}

/// Records in the vault's log that `actor` did `action` to `object`, with
/// the outcome of `done`, and returns `done`. A failure to record fails
/// the operation too: an action the trail does not show must not look
/// done.
pub fn audited<T>(
    node: Node<'_>,
    actor: &Actor,
    action: &str,
    object: &str,
    done: Result<T>,
) -> Result<T> {
    let error = done.as_ref().err().map(|e| format!("{e:#}"));
    let origin = actor.origin.to_string();
    let record = AdminAction {
        actor: &actor.name,
        origin: &origin,
        action,
        object,
        error: error.as_deref(),
    };
    // RocksDB and an fsync: off the async workers.
    tokio::task::block_in_place(|| node.vault.record_admin_action(&record))
        .context("the action ran, but the vault could not record it")?;
    done
}

/// The vault as the homeserver's trail of admin API actions: a server
/// administrator's action there is recorded as the operations' are, with
/// their Matrix user ID as the actor.
pub struct VaultTrail(pub Arc<Vault>);

impl archipel_homeserver::service::AdminTrail for VaultTrail {
    fn record(
        &self,
        admin: &ruma::UserId,
        action: &str,
        object: &str,
        error: Option<&str>,
    ) -> std::result::Result<(), String> {
        let origin = Origin::MatrixAdminApi.to_string();
        self.0
            .record_admin_action(&AdminAction {
                actor: admin.as_str(),
                origin: &origin,
                action,
                object,
                error,
            })
            .map_err(|e| e.to_string())
    }
}
