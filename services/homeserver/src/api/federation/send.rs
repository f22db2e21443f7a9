//! `PUT /_matrix/federation/v1/send/{txnId}`: a peer's transaction of events.

use std::{collections::BTreeMap, sync::Arc};

use ruma::api::federation::transactions::send_transaction_message;

use crate::ops::edu;
use crate::ops::peer_event::ingest;
use crate::{Error, Result, Services, ruma_wrapper::Ruma};

/// The spec's limits on one transaction.
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;

pub async fn send_transaction(
    services: Arc<Services>,
    request: Ruma<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response> {
    let origin = request.origin().to_owned();
    let body = request.body;
    if body.origin != origin {
        return Err(Error::forbidden(format!(
            "The transaction claims to come from {}, but {origin} signed it.",
            body.origin
        )));
    }
    if body.pdus.len() > MAX_PDUS || body.edus.len() > MAX_EDUS {
        return Err(Error::too_large(format!(
            "A transaction holds at most {MAX_PDUS} events and {MAX_EDUS} EDUs."
        )));
    }
    let mut results = BTreeMap::new();
    for raw in &body.pdus {
        match ingest(&services, &origin, raw).await {
            Ok((event_id, result)) => {
                results.insert(event_id, result);
            }
            // An event too broken to have an ID gets no entry; the rest go on.
            Err(e) => tracing::info!(%origin, error = %e, "refused an event in a transaction"),
        }
    }
    // Events are idempotent; EDUs are not, so a retried transaction's EDUs
    // are applied once.
    let txn_id = body.transaction_id.as_str();
    if services.federation.is_new_transaction(&origin, txn_id) {
        for raw in &body.edus {
            if let Err(e) = edu::receive(&services, &origin, raw).await {
                tracing::warn!(%origin, error = %e, "an EDU could not be applied");
            }
        }
        services.federation.applied(&origin, txn_id);
    }
    Ok(send_transaction_message::v1::Response::new(results))
}
