//! Delivers the outgoing queues: each peer gets its events and EDUs in
//! stream order, in transactions of at most 50 events and 100 EDUs, retried
//! with exponential backoff while it is away. A peer is tried again at once
//! when it contacts this server.

use std::{collections::HashMap, sync::Arc, time::Duration};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId,
    api::federation::transactions::send_transaction_message, serde::Raw,
};

use super::events::federation_events;
use crate::{Result, Services};

const BATCH: usize = 50;
const EDU_BATCH: usize = 100;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(300);

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
            Ok(false) => return,
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

/// Sends the oldest queued events and EDUs; false when there were none.
async fn send_batch(services: &Services, destination: &OwnedServerName) -> Result<bool> {
    let queued = services.rooms.queued_for(destination, BATCH)?;
    let edus = services.federation.queued_edus(destination, EDU_BATCH)?;
    let ephemeral = services
        .federation
        .take_ephemeral(destination, EDU_BATCH - edus.len());
    let counts: Vec<u64> = queued.iter().map(|(count, _)| *count).collect();
    let edu_counts: Vec<u64> = edus.iter().map(|(count, _)| *count).collect();
    let (Some(first), Some(last)) = (
        counts.iter().chain(&edu_counts).min(),
        counts.iter().chain(&edu_counts).max(),
    ) else {
        if ephemeral.is_empty() {
            return Ok(false);
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
    let pdus = federation_events(services, queued.iter().map(|(_, id)| id.clone()))?;
    let all_edus = edus
        .into_iter()
        .map(|(_, edu)| edu)
        .chain(ephemeral)
        .collect();
    send(services, destination, txn_id, pdus, all_edus).await?;
    services.rooms.dequeue(destination, &counts).await?;
    services
        .federation
        .dequeue_edus(destination, &edu_counts)
        .await?;
    Ok(true)
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
