//! Delivers the outgoing queue: each peer gets its events in stream order,
//! in transactions of at most 50, retried with exponential backoff while it
//! is away. A peer is tried again at once when it contacts this server.

use std::{collections::HashMap, sync::Arc, time::Duration};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId,
    api::federation::transactions::send_transaction_message,
};

use super::events::federation_events;
use crate::{Result, Services};

const BATCH: usize = 50;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(300);

/// Runs until the process ends.
pub async fn run(services: Arc<Services>) {
    let mut workers: HashMap<OwnedServerName, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        match services.rooms.queued_destinations() {
            Ok(destinations) => {
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

/// Sends the oldest queued events; false when there were none.
async fn send_batch(services: &Services, destination: &OwnedServerName) -> Result<bool> {
    let queued = services.rooms.queued_for(destination, BATCH)?;
    let (Some(first), Some(last)) = (queued.first(), queued.last()) else {
        return Ok(false);
    };
    // The same events always travel under the same ID, so a peer that
    // already applied a transaction recognises its retry.
    let txn_id = OwnedTransactionId::from(format!("{}-{}", first.0, last.0));
    let mut request = send_transaction_message::v1::Request::new(
        txn_id,
        services.server_name().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    request.pdus = federation_events(services, queued.iter().map(|(_, id)| id.clone()))?;
    let response = services.federation.send(destination, request).await?;
    for (event_id, result) in response.pdus {
        if let Err(why) = result {
            tracing::info!(%destination, %event_id, %why, "a peer refused an event");
        }
    }
    let counts: Vec<u64> = queued.iter().map(|(count, _)| *count).collect();
    services.rooms.dequeue(destination, &counts).await?;
    Ok(true)
}
