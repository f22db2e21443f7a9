//! The capture pump: moves events from the homeserver's archive outbox into
//! the vault, in stream order, and discards what the vault holds.
//!
//! The outbox entry is written in the event's own batch, so an acknowledged
//! event is durable before the pump ever sees it; a crash anywhere here
//! only means the entry is read again, and the vault skips what it has.
//!
//! The vault's batches are written unsynced and made durable together, at
//! most every [`SYNC_EVERY`]: the outbox entries are discarded only after
//! that sync. Each fsync of the vault's log is a disk flush the clients'
//! own fsyncs queue behind; one for many batches keeps capture further out
//! of the send path's way.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use archipel_homeserver::{Services, service::rooms::media_references};
use archipel_store::Written;
use archipel_vault::{CapturedEvent, MediaSource, Vault};
use ruma::MxcUri;
use serde_json::value::RawValue;
use tokio::sync::watch;

/// Events moved per vault batch.
const BATCH: usize = 512;

/// Bytes of referenced media per vault batch, beyond its first event: the
/// vault reads each file once, in chunks, but sealing and syncing them is
/// the batch's time. Files the vault holds already count too.
const BATCH_MEDIA_BYTES: u64 = 256 * 1024 * 1024;

/// How long the pump lets new events gather after it wakes.
const COALESCE: Duration = Duration::from_millis(20);

/// How long captured events may wait for the vault's fsync (and their
/// outbox entries for their discard).
const SYNC_EVERY: Duration = Duration::from_millis(250);

/// Vault batches written but not yet synced, and the capture cursor they
/// bring the vault to.
struct Unsynced {
    written: Option<Written>,
    cursor: u64,
    since: Option<Instant>,
    /// Told after each sync: the decryption of encrypted events follows the
    /// vault's syncs, so that it too takes many events at a time.
    synced: Arc<tokio::sync::Notify>,
}

impl Unsynced {
    fn new(synced: Arc<tokio::sync::Notify>) -> Self {
        Self {
            written: None,
            cursor: 0,
            since: None,
            synced,
        }
    }

    fn add(&mut self, written: Written, cursor: u64) {
        self.written = Some(written);
        self.cursor = cursor;
        self.since.get_or_insert_with(Instant::now);
    }

    fn due(&self) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= SYNC_EVERY)
    }

    /// Syncs the vault, then discards the outbox entries it now holds.
    async fn sync(&mut self, services: &Services, vault: &Arc<Vault>) -> Result<()> {
        let Some(written) = self.written.take() else {
            return Ok(());
        };
        self.since = None;
        let writer = vault.clone();
        // Whatever the vault lost if this fails, the outbox still has.
        tokio::task::spawn_blocking(move || writer.sync(written)).await??;
        self.synced.notify_one();
        services.rooms.discard_captured(self.cursor)?;
        Ok(())
    }
}

/// Moves captured events into the vault until `stop` turns true, then
/// drains what is visible and signs a final checkpoint. `captured` is told
/// after each sync of the vault (the decryption of encrypted events waits
/// on it).
pub async fn run(
    services: Arc<Services>,
    vault: Arc<Vault>,
    captured: Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = services.counter.watch();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut unsynced = Unsynced::new(captured);
    if let Err(e) = clear_taken(&services, &vault) {
        tracing::warn!(error = %format!("{e:#}"), "clearing outbox entries the vault already holds");
    }
    loop {
        // Read before draining: the stop comes only after every request has
        // finished, so a drain that starts after it sees every event. (Read
        // after, a drain that started just before the last commit would end
        // the loop with that event still in the outbox.)
        let stopping = *stop.borrow_and_update();
        let drained = drain(&services, &vault, &mut unsynced).await;
        let synced = if stopping || unsynced.due() {
            unsynced.sync(&services, &vault).await
        } else {
            Ok(())
        };
        match drained.and_then(|more| synced.map(|()| more)) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) if stopping => {
                tracing::error!(error = %format!("{e:#}"), "archiving the last events; they stay in the outbox for the next start");
                break;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "archiving captured events; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if stopping {
            break;
        }
        tokio::select! {
            _ = changes.changed() => {
                // Let a burst gather: one vault batch for many events costs
                // far less than one each, and archiving may lag by this much.
                tokio::time::sleep(COALESCE).await;
            }
            _ = tick.tick() => {
                if let Err(e) = unsynced.sync(&services, &vault).await {
                    tracing::error!(error = %format!("{e:#}"), "syncing the vault; the events stay in the outbox");
                }
                sign(&vault, Vault::tick, "signing a vault checkpoint").await;
            }
            _ = stop.changed() => {}
        }
    }
    sign(
        &vault,
        Vault::checkpoint,
        "signing the final vault checkpoint",
    )
    .await;
}

/// Runs a checkpoint step (`Vault::tick` or `Vault::checkpoint`) off the
/// async threads and logs its failure as `what`.
async fn sign(vault: &Arc<Vault>, step: fn(&Vault) -> archipel_vault::Result<()>, what: &str) {
    let vault = vault.clone();
    match tokio::task::spawn_blocking(move || step(&vault)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "{what}"),
        Err(e) => tracing::error!(error = %e, "{what}"),
    }
}

/// Drops the outbox entries a crash left behind after the vault took them
/// (their discard is not synced).
fn clear_taken(services: &Services, vault: &Vault) -> Result<()> {
    let cursor = vault.log().capture_cursor()?;
    services.rooms.discard_captured(cursor)?;
    Ok(())
}

/// The bridge whose user sent `event`, if one did: its provenance in the
/// vault.
fn bridge_of(services: &Services, event: &serde_json::value::RawValue) -> Option<String> {
    if services.appservices.is_empty() {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Sender {
        sender: ruma::OwnedUserId,
    }
    let sender = serde_json::from_str::<Sender>(event.get()).ok()?.sender;
    services
        .appservices
        .all()
        .iter()
        .find(|registration| registration.is_user(&sender))
        .map(|registration| registration.id.clone())
}

/// Moves one batch into the vault, unsynced. Returns whether there may be
/// more.
async fn drain(services: &Services, vault: &Arc<Vault>, unsynced: &mut Unsynced) -> Result<bool> {
    let cursor = vault.log().capture_cursor()?;
    let visible = services.counter.visible();
    let entries = services.rooms.captured(cursor, visible, BATCH)?;
    if entries.is_empty() {
        return Ok(false);
    }
    let mut full = entries.len() == BATCH;
    let mut events = Vec::with_capacity(entries.len());
    let mut media_bytes = 0;
    for entry in entries {
        if media_bytes >= BATCH_MEDIA_BYTES {
            // The rest is read again for the next batch.
            full = true;
            break;
        }
        let (media, bytes) = local_media(services, &entry.event)?;
        media_bytes += bytes;
        let bridge = bridge_of(services, &entry.event);
        events.push(CapturedEvent {
            position: entry.position,
            event: entry.event,
            media,
            soft_failed: entry.soft_failed,
            bridge,
        });
    }
    let writer = vault.clone();
    let (cursor, written) =
        tokio::task::spawn_blocking(move || writer.capture_unsynced(events)).await??;
    unsynced.add(written, cursor);
    Ok(full)
}

/// The local media files an event references, and their total size.
/// Media of other servers arrives with federation.
fn local_media(services: &Services, event: &RawValue) -> Result<(Vec<MediaSource>, u64)> {
    let mut out = Vec::new();
    let mut bytes = 0;
    // Most events reference nothing: parse only those whose text could
    // (`mxc` written out, or JSON escapes that could spell it).
    let text = event.get();
    if !(text.contains("mxc") || text.contains("\\u") || text.contains("\\/")) {
        return Ok((out, bytes));
    }
    let event: serde_json::Value = serde_json::from_str(text)?;
    for uri in media_references(&event) {
        let Ok((server, media_id)) = <&MxcUri>::from(uri.as_str()).parts() else {
            continue;
        };
        if server != services.server_name() || out.iter().any(|m: &MediaSource| m.mxc == uri) {
            continue;
        }
        match services.media.file(media_id)? {
            Some((meta, path)) => {
                bytes += meta.size;
                out.push(MediaSource {
                    mxc: uri,
                    path,
                    decrypted: false,
                });
            }
            None => {
                tracing::warn!(%uri, "an archived event references media this server does not have")
            }
        }
    }
    Ok((out, bytes))
}
