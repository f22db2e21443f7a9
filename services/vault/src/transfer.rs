//! Transfers to the archive service (the Nationaal Archief's e-Depot), and
//! the statement of destruction that ends a record's life here.
//!
//! Making a SIP ([`Vault::transfer_sip`]) records a transfer with the
//! package's SHA-256 and the records it holds. When the archive service
//! confirms receipt, a records manager records that
//! ([`Vault::confirm_transfer`]): its records are marked transferred, and
//! from then on count as expired for retention, so that they can go on a
//! destruction list. An approved list's statement of destruction
//! (verklaring van vernietiging, Archiefbesluit 1995 art. 8) is signed by
//! the vault ([`Vault::destruction_statement`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    Error, Refusal, Result, Vault,
    checkpoint::sign_note,
    columns as cf,
    record::Entry,
    retention::{Judge, RetentionPolicy, Valuation},
};

const META_NEXT_TRANSFER: &[u8] = b"next_transfer";

/// A transfer: made, then confirmed by the archive service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub reference: String,
    pub records: Vec<u64>,
    /// Hex SHA-256 of the SIP container, as its pakbon names it.
    pub sip_sha256: String,
    pub made_by: String,
    pub made_ts: u64,
    pub confirmed_by: Option<String>,
    pub confirmed_ts: Option<u64>,
    /// The archive service's receipt, as the records manager gave it.
    pub receipt: Option<String>,
}

impl Vault {
    /// The transfer that took record `seq`, once confirmed.
    pub fn transferred(&self, seq: u64) -> Result<Option<String>> {
        let Some(bytes) = self.store.tree(cf::SEQ_TRANSFER)?.get(seq.to_be_bytes())? else {
            return Ok(None);
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::Corrupt(format!("the transfer of record {seq} is not text")))
    }

    /// Records a transfer of `records` in a SIP whose container hashes to
    /// `sip_sha256`; returns its reference (`TR-000001`).
    pub(crate) fn record_transfer(
        &self,
        records: &[u64],
        sip_sha256: &str,
        actor: &str,
    ) -> Result<Transfer> {
        let tree = self.store.tree(cf::TRANSFERID_TRANSFER)?;
        self.with_steps(|steps| {
            let reference = steps.take_reference(META_NEXT_TRANSFER, "TR")?;
            let transfer = Transfer {
                reference: reference.clone(),
                records: records.to_vec(),
                sip_sha256: sip_sha256.to_owned(),
                made_by: actor.to_owned(),
                made_ts: steps.now(),
                confirmed_by: None,
                confirmed_ts: None,
                receipt: None,
            };
            steps.batch.put_json(&tree, reference.as_bytes(), &transfer);
            steps.procedure(
                "prepare_transfer",
                actor,
                &reference,
                &json!({ "records": records.len(), "sip_sha256": sip_sha256 }),
            );
            Ok(transfer)
        })
    }

    /// Every transfer, oldest first.
    pub fn transfers(&self) -> Result<Vec<Transfer>> {
        let tree = self.store.tree(cf::TRANSFERID_TRANSFER)?;
        tree.iter()
            .map(|row| Ok(tree.decode_json(&row?.1)?))
            .collect()
    }

    pub fn transfer(&self, reference: &str) -> Result<Transfer> {
        self.store
            .tree(cf::TRANSFERID_TRANSFER)?
            .get_json(reference.as_bytes())?
            .ok_or_else(|| Error::NotFound(format!("no transfer {reference}")))
    }

    /// Records, as records manager `actor`, that the archive service
    /// confirmed receipt of transfer `reference` (`receipt`: its
    /// reference or message). Its records are marked transferred.
    pub fn confirm_transfer(
        &self,
        reference: &str,
        actor: &str,
        receipt: &str,
    ) -> Result<Transfer> {
        self.require_records_manager(actor)?;
        if receipt.trim().is_empty() {
            return Err(Error::Refused(
                "name the archive service's receipt (its reference or message)".into(),
            ));
        }
        let mut transfer = self.transfer(reference)?;
        if let Some(by) = &transfer.confirmed_by {
            return Err(Refusal::AlreadyConfirmed {
                reference: reference.to_owned(),
                by: by.clone(),
            }
            .into());
        }
        let transfers = self.store.tree(cf::TRANSFERID_TRANSFER)?;
        let marks = self.store.tree(cf::SEQ_TRANSFER)?;
        self.with_steps(|steps| {
            transfer.confirmed_by = Some(actor.to_owned());
            transfer.confirmed_ts = Some(steps.now());
            transfer.receipt = Some(receipt.trim().to_owned());
            steps
                .batch
                .put_json(&transfers, reference.as_bytes(), &transfer);
            for seq in &transfer.records {
                steps
                    .batch
                    .put(&marks, seq.to_be_bytes(), reference.as_bytes());
            }
            steps.procedure(
                "confirm_transfer",
                actor,
                reference,
                &json!({ "records": transfer.records.len(), "receipt": receipt.trim() }),
            );
            Ok(transfer)
        })
    }

    /// The statement of destruction of approved destruction list
    /// `reference`: what was destroyed, by category with its period and
    /// count, on whose proposal and approval, signed by the vault.
    pub fn destruction_statement(
        &self,
        reference: &str,
        policy: &RetentionPolicy,
        organisation: &str,
    ) -> Result<String> {
        let list = self.destruction_list(reference)?;
        let (Some(approved_by), Some(approved_ts)) = (&list.approved_by, list.approved_ts) else {
            return Err(Error::Refused(format!(
                "{reference} is not approved: nothing was destroyed yet"
            )));
        };
        let mut judge = Judge::new(self, policy)?;
        // Category -> (count, first, last send time).
        let mut categories: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let mut destroyed = 0;
        for &seq in &list.records {
            if list.held_back.contains(&seq) || list.kept.contains(&seq) {
                continue;
            }
            let Entry::Event(event) = self.log.record(seq)?.entry else {
                continue;
            };
            if self.log.erasure_of(seq)?.as_deref() != Some(reference) {
                continue;
            }
            let category = match self.transferred(seq)? {
                Some(transfer) => format!("overgebracht naar de archiefdienst ({transfer})"),
                None => match judge.valuation(&event)? {
                    Valuation::DestroyAfter { years } => {
                        format!("bewaartermijn van {years} jaar verstreken")
                    }
                    Valuation::Permanent => "bewaartermijn verstreken".to_owned(),
                },
            };
            let ts = event.origin_server_ts;
            let entry = categories.entry(category).or_insert((0, ts, ts));
            entry.0 += 1;
            entry.1 = entry.1.min(ts);
            entry.2 = entry.2.max(ts);
            destroyed += 1;
        }
        let day = |ms: u64| crate::export::woo::day_of(ms).to_string();
        let mut body = format!(
            "{origin} verklaring van vernietiging\n\
             lijst {reference}\n\
             zorgdrager {organisation}\n\
             grondslag Archiefwet 1995 art. 3; Archiefbesluit 1995 art. 6-8\n\
             voorgesteld {} door {}\n\
             vastgesteld {} door {approved_by}\n\
             vernietigd {destroyed} archiefstuk(ken)\n",
            crate::export::amsterdam_time(list.proposed_ts),
            list.proposed_by,
            crate::export::amsterdam_time(approved_ts),
            origin = self.origin,
        );
        for (category, (count, first, last)) in &categories {
            body.push_str(&format!(
                "categorie {category}: {count} archiefstuk(ken), {} tot en met {}\n",
                day(*first),
                day(*last)
            ));
        }
        if !list.held_back.is_empty() {
            body.push_str(&format!(
                "niet vernietigd wegens juridische bewaarplicht: {}\n",
                list.held_back.len()
            ));
        }
        if !list.kept.is_empty() {
            body.push_str(&format!(
                "niet vernietigd, niet meer vervallen: {}\n",
                list.kept.len()
            ));
        }
        Ok(sign_note(&self.origin, &body, &self.signer))
    }
}
