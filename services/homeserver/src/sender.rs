//! Delivers the outgoing queues: each peer gets its events and EDUs in
//! stream order, in transactions of at most 50 events, 100 EDUs and 3 MiB, retried
//! with exponential backoff while it is away. A peer is tried again at once
//! when it contacts this server.

use std::{collections::HashMap, sync::Arc, time::Duration};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId,
    api::federation::transactions::send_transaction_message, serde::Raw,
};

use serde_json::value::to_raw_value;

use crate::{Result, Services};

const BATCH: usize = 50;
const EDU_BATCH: usize = 100;
/// A transaction's size, with room to spare below the 4 MiB a node accepts.
pub const TRANSACTION_BYTES: usize = 3 * 1024 * 1024;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(300);
/// How long a worker waits for an event being written before it leaves the
/// queue to the next scan.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

/// Runs until the process ends.
pub async fn run(services: Arc<Services>) {
    let mut workers: HashMap<OwnedServerName, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        match services.rooms.queued_destinations() {
            Ok(mut destinations) => {
                destinations.extend(services.federation.edu_destinations());
                for destination in destinations {
                    if workers
                        .get(&destination)
                        .is_none_or(|worker| worker.is_finished())
                    {
                        let worker = tokio::spawn(deliver(services.clone(), destination.clone()));
                        workers.insert(destination, worker);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the outgoing queue"),
        }
        tokio::select! {
            () = services.rooms.outgoing.notified() => {}
            () = services.federation.outgoing().notified() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Empties `destination`'s queue, then ends.
async fn deliver(services: Arc<Services>, destination: OwnedServerName) {
    let mut retry = FIRST_RETRY;
    loop {
        match send_batch(&services, &destination).await {
            Ok(true) => retry = FIRST_RETRY,
            Ok(false) => match services.rooms.queue_waits_at(&destination) {
                // The next event is still being written: it goes when it is on disk.
                Ok(Some(count)) => {
                    if !services.counter.wait_visible(count, IN_FLIGHT_WAIT).await {
                        return;
                    }
                }
                _ => return,
            },
            Err(e) => {
                tracing::warn!(%destination, error = %e, retry_in = ?retry, "a peer did not take its events");
                let contact = services.federation.contact(&destination);
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = contact.notified() => {}
                }
                retry = (retry * 2).min(LAST_RETRY);
            }
        }
    }
}

/// Sends the oldest queued events and EDUs, as many as fit in
/// [`TRANSACTION_BYTES`]; false when there were none. An item too large
/// for any transaction is set aside (logged) rather than blocking the
/// queue behind it for ever.
async fn send_batch(services: &Services, destination: &OwnedServerName) -> Result<bool> {
    let queued = services.rooms.queued_for(destination, BATCH)?;
    let edus = services.federation.queued_edus(destination, EDU_BATCH)?;
    let mut budget = TRANSACTION_BYTES;
    let (mut counts, mut pdus, mut too_large) = (Vec::new(), Vec::new(), Vec::new());
    for (count, event_id) in queued {
        let json = services.rooms.federation_json(&event_id)?;
        let Some(raw) = json.map(|json| to_raw_value(&json)).transpose()? else {
            counts.push(count);
            continue;
        };
        match fits(&mut budget, raw.get().len()) {
            Fit::Yes => {
                counts.push(count);
                pdus.push(raw);
            }
            Fit::Never => {
                tracing::warn!(%destination, %event_id, bytes = raw.get().len(), "an event too large for any transaction is not sent");
                too_large.push(count);
            }
            Fit::NotNow => break,
        }
    }
    let (mut edu_counts, mut all_edus, mut edus_too_large) = (Vec::new(), Vec::new(), Vec::new());
    for (count, edu) in edus {
        let bytes = serde_json::to_string(&edu)?.len();
        match fits(&mut budget, bytes) {
            Fit::Yes => {
                edu_counts.push(count);
                all_edus.push(edu);
            }
            Fit::Never => {
                tracing::warn!(%destination, kind = %edu["edu_type"], bytes, "an EDU too large for any transaction is not sent");
                edus_too_large.push(count);
            }
            Fit::NotNow => break,
        }
    }
    if !too_large.is_empty() || !edus_too_large.is_empty() {
        services.rooms.dequeue(destination, &too_large).await?;
        services
            .federation
            .dequeue_edus(destination, &edus_too_large)
            .await?;
    }
    // Ephemeral EDUs (typing, receipts, presence) are small; they take what room is left.
    let ephemeral = services
        .federation
        .take_ephemeral(destination, EDU_BATCH - all_edus.len());
    let (Some(first), Some(last)) = (
        counts.iter().chain(&edu_counts).min(),
        counts.iter().chain(&edu_counts).max(),
    ) else {
        if ephemeral.is_empty() {
            return Ok(!too_large.is_empty() || !edus_too_large.is_empty());
        }
        send(
            services,
            destination,
            ephemeral_txn_id(),
            Vec::new(),
            ephemeral,
        )
        .await?;
        return Ok(true);
    };
    // The same queue entries always travel under the same ID, so a peer
    // that already applied a transaction recognises its retry.
    let txn_id = format!("{first}-{last}-{}", counts.len() + edu_counts.len());
    all_edus.extend(ephemeral);
    send(services, destination, txn_id, pdus, all_edus).await?;
    services.rooms.dequeue(destination, &counts).await?;
    services
        .federation
        .dequeue_edus(destination, &edu_counts)
        .await?;
    Ok(true)
}

enum Fit {
    Yes,
    /// Not in this transaction: the next one.
    NotNow,
    /// Larger than any transaction may be.
    Never,
}

/// Whether an item of `bytes` fits in what is left of a transaction's
/// `budget`, and takes its share if so.
fn fits(budget: &mut usize, bytes: usize) -> Fit {
    // Commas and keys around each item.
    let bytes = bytes + 64;
    if bytes > TRANSACTION_BYTES {
        Fit::Never
    } else if bytes > *budget {
        Fit::NotNow
    } else {
        *budget -= bytes;
        Fit::Yes
    }
}

/// A fresh ID for a transaction of ephemeral EDUs only.
fn ephemeral_txn_id() -> String {
    format!("e{}", crate::service::users::random_string(12))
}

async fn send(
    services: &Services,
    destination: &OwnedServerName,
    txn_id: String,
    pdus: Vec<Box<serde_json::value::RawValue>>,
    edus: Vec<serde_json::Value>,
) -> Result<()> {
    let mut request = send_transaction_message::v1::Request::new(
        OwnedTransactionId::from(txn_id),
        services.server_name().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    request.pdus = pdus;
    request.edus = edus
        .iter()
        .map(|edu| Ok(Raw::from_json(serde_json::value::to_raw_value(edu)?)))
        .collect::<Result<_>>()?;
    let response = services.federation.send(destination, request).await?;
    for (event_id, result) in response.pdus {
        if let Err(why) = result {
            tracing::info!(%destination, %event_id, %why, "a peer refused an event");
        }
    }
    Ok(())
}
