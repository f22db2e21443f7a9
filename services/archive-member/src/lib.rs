//! The archive member's end-to-end encrypted device.
//!
//! The node's archive member (`@archive:<server>`) is in every room with a
//! local member; this crate is its device. To the homeserver it is an
//! ordinary Matrix client: it uploads device and one-time keys, makes and
//! uploads its own cross-signing identity and signs its device with it (so
//! clients that share keys only with devices their owner verified share
//! with it too), and syncs to receive to-device messages. Clients send it
//! the room keys of every encrypted room it is in; the vault asks it for
//! the key that decrypts a record ([`ArchiveMember::session_key`]).
//!
//! The Olm and Megolm state is kept by matrix-sdk-crypto's `OlmMachine` in
//! its SQLite store, every secret in it sealed with a key the node derives
//! from the vault key. The device never sends a message, never claims
//! one-time keys, and neither asks for room keys nor answers anyone who
//! asks (matrix-sdk-crypto is built without automatic key forwarding).
//!
//! Deliberately knows nothing about the homeserver or the vault: it talks
//! to the node's client API through a [`Transport`] the appliance provides
//! (the router, in process), and hands the room keys it receives to
//! whoever runs [`ArchiveMember::run`].

mod requests;
mod transport;

use std::{path::Path, time::Duration};

use matrix_sdk_crypto::{
    DecryptionSettings, EncryptionSyncChanges, OlmMachine, TrustRequirement,
    store::types::RoomKeyInfo,
};
use matrix_sdk_sqlite::SqliteCryptoStore;
use ruma::{
    DeviceId, OwnedDeviceId, OwnedRoomId, RoomId, UserId,
    api::client::{filter::FilterDefinition, keys::upload_signing_keys, sync::sync_events},
};

pub use matrix_sdk_crypto;
pub use requests::Connection;
pub use transport::{Transport, TransportFuture};

/// What went wrong with the archive member's device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the archive member's crypto store in {path}: {source}")]
    OpenStore {
        path: String,
        source: matrix_sdk_sqlite::OpenStoreError,
    },
    #[error("the archive member's crypto store: {0}")]
    Store(#[from] matrix_sdk_crypto::CryptoStoreError),
    #[error("the archive member's device: {0}")]
    Olm(#[from] matrix_sdk_crypto::OlmError),
    #[error("copying the archive member's crypto store {0}")]
    Copy(String),
    #[error("an encrypted attachment: {0}")]
    Attachment(String),
    #[error("the archive member's request {endpoint}: {message}")]
    Request {
        endpoint: &'static str,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The crypto store, opened, before the device is started.
pub struct DeviceStore {
    store: SqliteCryptoStore,
    device_id: OwnedDeviceId,
}

impl DeviceStore {
    /// Opens (or creates) the store in `dir`. A new store gets a new device
    /// ID: a device's keys never change, so a device made again (its store
    /// lost) must not pose as the old one.
    pub async fn open(dir: &Path, key: &[u8; 32]) -> Result<Self> {
        let store = SqliteCryptoStore::open_with_key(dir, Some(key))
            .await
            .map_err(|source| Error::OpenStore {
                path: dir.display().to_string(),
                source,
            })?;
        use matrix_sdk_crypto::store::CryptoStore;
        let device_id = match store
            .load_account()
            .await
            .map_err(|e| Error::Store(matrix_sdk_crypto::CryptoStoreError::backend(e)))?
        {
            Some(account) => account.device_id().to_owned(),
            None => DeviceId::new(),
        };
        Ok(Self { store, device_id })
    }

    /// The device this store belongs to: the node signs it in with this ID.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }
}

/// The file the crypto store keeps in its folder (matrix-sdk-sqlite's name).
const STORE_FILE: &str = "matrix-sdk-crypto.sqlite3";

/// Copies the crypto store in `dir` into the new folder `dest`, consistent
/// even while the device writes to it (SQLite's `VACUUM INTO`): for
/// backups. Its secrets stay sealed with the store key. Nothing to copy
/// (and `Ok(false)`) when `dir` holds no store.
pub fn copy_store(dir: &Path, dest: &Path) -> Result<bool> {
    let source = dir.join(STORE_FILE);
    if !source.is_file() {
        return Ok(false);
    }
    let failed = |e: &dyn std::fmt::Display| Error::Copy(format!("{}: {e}", source.display()));
    std::fs::create_dir_all(dest).map_err(|e| failed(&e))?;
    let connection =
        rusqlite::Connection::open_with_flags(&source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| failed(&e))?;
    let target = dest.join(STORE_FILE);
    connection
        .execute("VACUUM INTO ?1", [target.to_string_lossy()])
        .map_err(|e| failed(&e))?;
    Ok(true)
}

/// The archive member's device, started.
pub struct ArchiveMember {
    machine: OlmMachine,
    connection: Connection,
}

/// How long one sync waits for something to arrive.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before trying again after a failed request.
const RETRY: Duration = Duration::from_secs(5);
/// The pause after a sync before the next one. What arrives meanwhile
/// (several senders' room keys as their sessions rotate) comes in one
/// response, and the device's store saves it in one transaction: each
/// transaction copies the Olm account and commits to SQLite, which costs
/// more than taking in one room key.
const PACE: Duration = Duration::from_millis(500);

impl ArchiveMember {
    /// Starts the device of `user_id` over `store`: uploads its keys and, the
    /// first time, its cross-signing identity. `transport` carries requests
    /// to the node's client API, with `access_token` (the node signed the
    /// device in).
    pub async fn start(
        user_id: &UserId,
        store: DeviceStore,
        access_token: String,
        transport: Box<dyn Transport>,
    ) -> Result<Self> {
        // Built without automatic room key forwarding: the device neither
        // asks for keys nor answers anyone who asks.
        let machine = OlmMachine::with_store(user_id, &store.device_id, store.store, None).await?;
        let member = Self {
            machine,
            connection: Connection::new(transport, access_token),
        };
        member.connection.send_outgoing(&member.machine).await?;
        if !member.machine.cross_signing_status().await.has_master {
            member.bootstrap_cross_signing().await?;
        }
        tracing::info!(user = %user_id, device = %member.machine.device_id(), "archive member's device started");
        Ok(member)
    }

    pub fn user_id(&self) -> &UserId {
        self.machine.user_id()
    }

    pub fn device_id(&self) -> &DeviceId {
        self.machine.device_id()
    }

    /// The device's Ed25519 and Curve25519 keys, as clients see them.
    pub fn identity_keys(&self) -> matrix_sdk_crypto::olm::IdentityKeys {
        self.machine.identity_keys()
    }

    /// Makes the account's cross-signing identity and signs the device with
    /// it. The homeserver takes a first identity without authentication.
    async fn bootstrap_cross_signing(&self) -> Result<()> {
        let requests = self.machine.bootstrap_cross_signing(false).await?;
        if let Some(upload) = requests.upload_keys_req {
            self.connection.send_request(&self.machine, upload).await?;
        }
        let keys = requests.upload_signing_keys_req;
        let mut upload = upload_signing_keys::v3::Request::new();
        upload.master_key = keys.master_key.map(|key| key.to_raw());
        upload.self_signing_key = keys.self_signing_key.map(|key| key.to_raw());
        upload.user_signing_key = keys.user_signing_key.map(|key| key.to_raw());
        self.connection
            .send_ruma("upload signing keys", upload)
            .await?;
        self.connection
            .send_ruma("upload signatures", requests.upload_signatures_req)
            .await?;
        tracing::info!(user = %self.user_id(), "archive member's cross-signing identity made");
        Ok(())
    }

    /// Syncs for ever, handing every batch of room keys that arrives to
    /// `received`, pausing [`PACE`] between syncs. A failed sync is logged
    /// and tried again.
    pub async fn run(&self, received: impl Fn(Vec<RoomKeyInfo>)) {
        loop {
            match self.sync_once().await {
                Ok(keys) if keys.is_empty() => {}
                Ok(keys) => received(keys),
                Err(e) => {
                    tracing::warn!(error = %e, "archive member's sync failed; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
            tokio::time::sleep(PACE).await;
        }
    }

    /// One long-poll sync: to-device messages (the room keys), device list
    /// changes and key counts, nothing of the rooms themselves (the vault
    /// has every event already). Returns the room keys that arrived.
    pub async fn sync_once(&self) -> Result<Vec<RoomKeyInfo>> {
        let since = self.machine.store().next_batch_token().await?;
        let mut request = sync_events::v3::Request::new();
        request.filter = Some(sync_events::v3::Filter::FilterDefinition(no_rooms()));
        request.timeout = since.is_some().then_some(SYNC_TIMEOUT);
        request.since = since;
        let response = self.connection.send_ruma("sync", request).await?;
        let (_, keys) = self
            .machine
            .receive_sync_changes(
                EncryptionSyncChanges {
                    to_device_events: response.to_device.events,
                    changed_devices: &response.device_lists,
                    one_time_keys_counts: &response.device_one_time_keys_count,
                    unused_fallback_keys: response.device_unused_fallback_key_types.as_deref(),
                    next_batch_token: Some(response.next_batch),
                },
                &DecryptionSettings {
                    sender_device_trust_requirement: TrustRequirement::Untrusted,
                },
            )
            .await?;
        self.connection.send_outgoing(&self.machine).await?;
        Ok(keys)
    }

    /// The Megolm session key that decrypts messages of session
    /// `session_id` in `room_id` from `message_index` on (or from the first
    /// index the device holds, if later), as the JSON of a key export
    /// (`ExportedRoomKey`) as a value. `None` where the device does not
    /// hold the session.
    pub async fn session_key(
        &self,
        room_id: &RoomId,
        session_id: &str,
        message_index: u32,
    ) -> Result<Option<serde_json::Value>> {
        let Some(session) = self
            .machine
            .store()
            .get_inbound_group_session(room_id, session_id)
            .await?
        else {
            return Ok(None);
        };
        let export = session
            .export_at_index(session.first_known_index().max(message_index))
            .await;
        Ok(Some(
            serde_json::to_value(&export).expect("key exports serialize"),
        ))
    }
}

impl ArchiveMember {
    /// Downloads the encrypted file `file` (an `EncryptedFile` of a
    /// decrypted message: its `url`, key, IV and hashes) through the
    /// homeserver, which fetches a peer's media over federation, checks its
    /// SHA-256 and decrypts it into `dest` (matrix-sdk-crypto's
    /// `AttachmentDecryptor`: AES-256-CTR). `dest` holds plaintext: the
    /// caller seals it and removes it.
    pub async fn download_attachment(&self, file: &serde_json::Value, dest: &Path) -> Result<()> {
        use ruma::api::client::authenticated_media::get_content;
        let failed = |e: &dyn std::fmt::Display| Error::Attachment(e.to_string());
        let file: ruma::events::room::EncryptedFile =
            serde_json::from_value(file.clone()).map_err(|e| failed(&e))?;
        let (server, media_id) = file.url.parts().map_err(|e| failed(&e))?;
        let request = get_content::v1::Request::new(media_id.to_owned(), server.to_owned());
        let response = self.connection.send_ruma("media download", request).await?;
        let dest = dest.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut input = std::io::Cursor::new(response.file);
            let mut decryptor =
                matrix_sdk_crypto::AttachmentDecryptor::new(&mut input, file.into())
                    .map_err(|e| failed(&e))?;
            let mut output = std::fs::File::create(&dest).map_err(|e| failed(&e))?;
            // The hash is checked at the end: a mismatch fails the copy.
            std::io::copy(&mut decryptor, &mut output).map_err(|e| failed(&e))?;
            Ok(())
        })
        .await
        .map_err(|e| failed(&e))?
    }
}

/// The archive member's sync asks for no rooms, presence or account data.
fn no_rooms() -> FilterDefinition {
    let mut filter = FilterDefinition::empty();
    filter.room.rooms = Some(Vec::<OwnedRoomId>::new());
    filter.presence.not_types = vec!["*".into()];
    filter.account_data.not_types = vec!["*".into()];
    filter
}
