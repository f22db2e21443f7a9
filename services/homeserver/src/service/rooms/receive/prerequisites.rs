//! The first step for a peer's event: everything it follows (prev events)
//! and is authorized by (auth events) must be here before it is checked.

use ruma::OwnedEventId;

use super::super::{Pdu, Rooms};
use crate::Result;

impl Rooms {
    /// The prev and auth events of `pdu` this server lacks, each once.
    pub(super) fn missing_prerequisites(&self, pdu: &Pdu) -> Result<Vec<OwnedEventId>> {
        let mut missing = Vec::new();
        for id in pdu.prev_events.iter().chain(&pdu.auth_events) {
            if !self.eventid_pdu.contains(id.as_bytes())? && !missing.contains(id) {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }
}
