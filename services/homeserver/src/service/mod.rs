//! Stateful services, one per domain, each owning its column families.
//!
//! Services do not call each other; an API handler that needs two of them
//! calls both. The dependency graph stays a tree.

pub mod account_data;
pub mod appservice_state;
pub mod e2ee;
pub mod federation;
pub mod filters;
pub mod key_backup;
pub mod key_changes;
pub mod media;
pub mod presence;
pub mod pushers;
pub mod rate_limit;
pub mod receipts;
pub mod reports;
pub mod rooms;
pub mod sliding_sync;
pub mod typing;
pub mod uiaa;
pub mod users;

use std::{path::PathBuf, sync::Arc};

use archipel_store::Store;

use crate::{FederationConfig, HomeserverConfig, Result, counter::Counter};

/// Everything a request handler can use.
pub struct Services {
    pub config: HomeserverConfig,
    /// The installed bridges, from their registration files.
    pub appservices: crate::appservice::Appservices,
    /// How far each bridge has been sent.
    pub appservice_state: appservice_state::AppserviceState,
    pub store: Store,
    pub counter: Arc<Counter>,
    pub signing_key: Arc<ruma::signatures::Ed25519KeyPair>,
    pub users: users::Users,
    pub rooms: rooms::Rooms,
    pub federation: federation::Federation,
    pub account_data: account_data::AccountData,
    pub receipts: receipts::Receipts,
    pub reports: reports::Reports,
    pub typing: typing::Typing,
    pub sliding_sync: sliding_sync::Connections,
    pub presence: presence::Presence,
    pub pushers: pushers::Pushers,
    pub e2ee: e2ee::E2ee,
    pub key_backup: key_backup::KeyBackup,
    pub media: media::Media,
    pub filters: filters::Filters,
    pub rate_limit: rate_limit::RateLimiter,
    pub uiaa: uiaa::Uiaa,
    pub previews: crate::url_preview::Cache,
    /// The node's witness of peers' vault checkpoints, once installed.
    pub witness: std::sync::OnceLock<Arc<dyn federation::witness::Witness>>,
    /// The node's archive member, unless turned off (see [`crate::archive_member`]).
    pub archive_member: Option<ruma::OwnedUserId>,
    /// Where rooms the archive member could not join are recorded, once installed.
    pub refused_joins: std::sync::OnceLock<Arc<dyn crate::archive_member::RefusedJoins>>,
    /// Sync requests being answered now, long polls included.
    pub syncing: InFlight,
    /// Where actions through the admin API are recorded, once installed
    /// (the node's vault).
    pub admin_trail: std::sync::OnceLock<Arc<dyn AdminTrail>>,
}

/// Where the node records what a server administrator did through the
/// admin API (the vault's log, in the appliance), beside the audit log.
pub trait AdminTrail: Send + Sync {
    /// `admin` did `action` to `object` (never a secret); `error` says why
    /// it failed, if it did. Blocking: the record is written durably.
    fn record(
        &self,
        admin: &ruma::UserId,
        action: &str,
        object: &str,
        error: Option<&str>,
    ) -> std::result::Result<(), String>;
}

/// How many requests of a kind are being answered now, for the node's
/// metrics: each holds an [`InFlightGuard`] while it runs.
#[derive(Default)]
pub struct InFlight(std::sync::atomic::AtomicUsize);

/// One request counted in an [`InFlight`] until it is dropped.
pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlightGuard(self)
    }

    pub fn now(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Services {
    pub fn build(
        config: HomeserverConfig,
        federation: FederationConfig,
        store: Store,
        signing_key: ruma::signatures::Ed25519KeyPair,
        media_dir: PathBuf,
    ) -> Result<Arc<Self>> {
        let counter = Arc::new(Counter::open(store.clone())?);
        let signing_key = Arc::new(signing_key);
        let users = users::Users::new(store.clone(), config.refreshable_token_lifetime_secs)?;
        let archive_member = if config.archive_member.enabled {
            let user_id = ruma::UserId::parse_with_server_name(
                config.archive_member.localpart.as_str(),
                &config.server_name,
            )
            .map_err(|e| {
                crate::Error::internal(format!(
                    "[homeserver.archive_member] localpart {:?}: {e}",
                    config.archive_member.localpart
                ))
            })?;
            users.ensure_node_owned(&user_id, &config.archive_member.display_name)?;
            Some(user_id)
        } else {
            None
        };
        let appservices =
            crate::appservice::Appservices::load(&config.appservices, &config.server_name)
                .map_err(crate::Error::internal)?;
        let rooms = rooms::Rooms::new(
            store.clone(),
            counter.clone(),
            config.server_name.clone(),
            signing_key.clone(),
            config.archive_capture,
            !appservices.is_empty(),
            federation.peer_names(),
        )?;
        let key_changes = rooms.key_changes();
        Ok(Arc::new(Self {
            users,
            archive_member,
            rooms,
            appservice_state: appservice_state::AppserviceState::new(&store)?,
            appservices,
            federation: federation::Federation::new(
                federation,
                &store,
                counter.clone(),
                config.server_name.clone(),
                signing_key.clone(),
            )?,
            account_data: account_data::AccountData::new(store.clone(), counter.clone())?,
            receipts: receipts::Receipts::new(store.clone(), counter.clone())?,
            reports: reports::Reports::new(store.clone())?,
            typing: typing::Typing::new(counter.clone()),
            sliding_sync: sliding_sync::Connections::new(store.clone())?,
            presence: presence::Presence::new(store.clone(), counter.clone())?,
            pushers: pushers::Pushers::new(store.clone())?,
            e2ee: e2ee::E2ee::new(store.clone(), counter.clone(), key_changes)?,
            key_backup: key_backup::KeyBackup::new(store.clone())?,
            media: media::Media::new(store.clone(), media_dir)?,
            filters: filters::Filters::new(store.clone())?,
            rate_limit: rate_limit::RateLimiter::new(&config.rate_limit),
            uiaa: uiaa::Uiaa::default(),
            previews: Default::default(),
            witness: std::sync::OnceLock::new(),
            refused_joins: std::sync::OnceLock::new(),
            syncing: InFlight::default(),
            admin_trail: std::sync::OnceLock::new(),
            signing_key,
            counter,
            store,
            config,
        }))
    }

    pub fn server_name(&self) -> &ruma::ServerName {
        &self.config.server_name
    }

    /// Writes a consistent copy of the homeserver's data for a backup: the
    /// database under `dest/db` (a RocksDB checkpoint), then the media files
    /// it refers to under `dest/media` (hard links).
    pub fn snapshot(&self, dest: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dest)
            .map_err(|e| crate::Error::internal(format!("creating {}: {e}", dest.display())))?;
        self.store.checkpoint(&dest.join("db"))?;
        self.media.link_files(&dest.join("media"))?;
        Ok(())
    }

    /// Whether a user ID belongs to this server.
    pub fn is_local(&self, user: &ruma::UserId) -> bool {
        user.server_name() == self.config.server_name
    }
}
