//! Archipel's Matrix homeserver: the client-server API on ruma types and axum.
//!
//! Layers, top to bottom:
//! - [`router`]: the axum router, one route per ruma endpoint type, and the
//!   tower layers (body limits, tracing, CORS, panics).
//! - `api`: stateless handlers, one file per endpoint group. A handler parses
//!   nothing itself: [`ruma_wrapper::Ruma`] hands it a typed, authenticated request.
//! - [`service`]: stateful logic, one module per domain, each owning its
//!   column families (declared in [`columns`]).
//! - `archipel_store`: RocksDB, which knows nothing about Matrix.

pub mod api;
pub mod appservice;
pub mod archive_member;
pub mod columns;
pub mod config;
mod counter;
mod error;
pub mod listen;
pub mod memory;
pub mod ops;
pub mod push;
pub mod router;
mod ruma_wrapper;
mod sender;
pub mod service;
pub mod signing_key;
pub mod tls;
pub mod url_preview;

use std::{path::Path, sync::Arc, time::Duration};

pub use config::{FederationConfig, HomeserverConfig, PeerConfig};
pub use error::{Error, Result};
pub use service::Services;

/// A running homeserver's shared state.
pub struct Homeserver {
    pub services: Arc<Services>,
}

impl Homeserver {
    /// Opens the homeserver over `store`, with its signing key and media in `data_dir`.
    pub fn open(
        config: HomeserverConfig,
        federation: FederationConfig,
        store: archipel_store::Store,
        data_dir: &Path,
    ) -> Result<Self> {
        let signing_key = signing_key::load_or_generate(&data_dir.join("signing.key"))?;
        let services = Services::build(
            config,
            federation,
            store,
            signing_key,
            data_dir.join("media"),
        )?;
        Ok(Self { services })
    }

    /// The axum router serving the client API.
    pub fn router(&self) -> axum::Router {
        router::build(self.services.clone())
    }

    /// The axum router serving the federation API.
    pub fn federation_router(&self) -> axum::Router {
        router::build_federation(self.services.clone())
    }

    /// Delivers events queued for peers (only with federation on).
    pub fn spawn_federation_sender(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.services
            .federation
            .enabled()
            .then(|| tokio::spawn(sender::run(self.services.clone())))
    }

    /// Delivers push notifications to the configured gateways (only with
    /// at least one gateway in `[homeserver.push]`).
    pub fn spawn_pusher(&self) -> Option<tokio::task::JoinHandle<()>> {
        (!self.services.config.push.gateways.is_empty())
            .then(|| tokio::spawn(push::run(self.services.clone())))
    }

    /// Makes each bridge's own user (`sender_localpart`), which bridges
    /// act as without registering it, as Synapse does.
    pub async fn register_appservice_senders(&self) -> Result<()> {
        for registration in self.services.appservices.all() {
            if !self.services.users.exists(&registration.sender)? {
                self.services
                    .users
                    .create_hashed(&registration.sender, None, false, None)
                    .await?;
                tracing::info!(appservice = %registration.id, user = %registration.sender, "registered a bridge's own user");
            }
        }
        Ok(())
    }

    /// Sends the bridges their transactions (only with a bridge installed).
    pub fn spawn_appservice_sender(&self) -> Option<tokio::task::JoinHandle<()>> {
        (!self.services.appservices.is_empty())
            .then(|| tokio::spawn(appservice::sender::run(self.services.clone())))
    }

    /// Background housekeeping: typing expiry, rate limiter cleanup.
    pub fn spawn_housekeeping(&self) -> tokio::task::JoinHandle<()> {
        let services = self.services.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = services.typing.expire() {
                    tracing::warn!(error = %e, "expiring typing notifications");
                }
                services.rate_limit.housekeeping();
            }
        })
    }
}
