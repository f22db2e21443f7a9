//! Federation with the allowlisted peer ministries: who may talk to us,
//! whose signing keys we trust, and the signed HTTPS client that talks to
//! them.
//!
//! Closed by default: with no `[federation] listen` this service refuses
//! every peer, and a server outside `peers` is refused in both directions
//! before anything is read or sent.

mod client;
mod edus;
mod keys;
pub mod witness;

use std::{collections::HashMap, sync::Arc};

use archipel_store::{Store, Tree};
use parking_lot::Mutex;
use ruma::{OwnedServerName, ServerName, signatures::Ed25519KeyPair};

pub use keys::ServerKeys;

use crate::{Error, FederationConfig, Result, columns as cf, counter::Counter};

pub struct Federation {
    config: FederationConfig,
    server_name: OwnedServerName,
    keypair: Arc<Ed25519KeyPair>,
    /// The HTTPS client, when federation is on.
    client: Option<reqwest::Client>,
    store: Store,
    counter: Arc<Counter>,
    servername_keys: Tree,
    servername_count_edu: Tree,
    ephemeral: Mutex<edus::Ephemeral>,
    recent: Mutex<edus::Recent>,
    /// Woken when an EDU is queued for a peer.
    outgoing: tokio::sync::Notify,
    keys: Mutex<HashMap<OwnedServerName, ServerKeys>>,
    /// Woken when a peer contacts this server: it is back.
    contacts: Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Notify>>>,
    /// Discovered base URLs (`.well-known/matrix/server`), per peer.
    destinations: Mutex<HashMap<OwnedServerName, client::Destination>>,
}

impl Federation {
    pub fn new(
        config: FederationConfig,
        store: &Store,
        counter: Arc<Counter>,
        server_name: OwnedServerName,
        keypair: Arc<Ed25519KeyPair>,
    ) -> Result<Self> {
        let client = if config.enabled() {
            Some(client::build(&config)?)
        } else {
            None
        };
        Ok(Self {
            servername_keys: store.tree(cf::SERVERNAME_KEYS)?,
            servername_count_edu: store.tree(cf::SERVERNAME_COUNT_EDU)?,
            ephemeral: Mutex::default(),
            recent: Mutex::default(),
            outgoing: tokio::sync::Notify::new(),
            counter,
            keys: Mutex::new(HashMap::new()),
            destinations: Mutex::new(HashMap::new()),
            contacts: Mutex::new(HashMap::new()),
            client,
            store: store.clone(),
            config,
            server_name,
            keypair,
        })
    }

    pub fn config(&self) -> &FederationConfig {
        &self.config
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// Whether `server` is an allowlisted peer (never true with federation off).
    pub fn allows(&self, server: &ServerName) -> bool {
        server != self.server_name && self.config.allows(server)
    }

    /// Refuses a server outside the allowlist, naming it.
    pub fn require_peer(&self, server: &ServerName) -> Result<()> {
        if self.allows(server) {
            Ok(())
        } else if !self.enabled() {
            Err(Error::forbidden(format!(
                "Federation is off on this server; {server} cannot be reached."
            )))
        } else {
            Err(Error::forbidden(format!(
                "{server} is not a federation peer of this server."
            )))
        }
    }

    /// Notified whenever `server` sends this server a signed request.
    pub fn contact(&self, server: &ServerName) -> Arc<tokio::sync::Notify> {
        self.contacts
            .lock()
            .entry(server.to_owned())
            .or_default()
            .clone()
    }

    /// Records that `server` reached this server (it is up).
    pub fn heard_from(&self, server: &ServerName) {
        if let Some(notify) = self.contacts.lock().get(server) {
            notify.notify_waiters();
        }
    }
}
