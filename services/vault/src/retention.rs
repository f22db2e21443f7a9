//! Retention: a policy maps the sender's role and the room's classification
//! to a valuation (keep permanently, or destroy after a term) and a transfer
//! term. Expired records are destroyed only through a destruction list that
//! one records manager proposes and another approves; legal holds keep
//! records off every list.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    Error, Refusal, Result, Vault, columns as cf,
    procedure::{Classification, Role},
    record::{Entry, EventEntry},
};

/// What happens to a record in the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "valuation")]
pub enum Valuation {
    /// "Blijvend te bewaren": kept, and transferred to the archive service
    /// after the transfer term.
    Permanent,
    /// "Te vernietigen": destroyed once this many years have passed.
    DestroyAfter { years: u32 },
}

/// One line of the policy: the first rule that matches a record applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RuleConfig", into = "RuleConfig")]
pub struct Rule {
    /// Matches any role when absent.
    pub role: Option<Role>,
    /// Matches any classification when absent.
    pub classification: Option<Classification>,
    pub valuation: Valuation,
}

/// A rule as written in the configuration file:
/// `{ role = "capstone", permanent = true }` or `{ destroy_after_years = 10 }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    classification: Option<Classification>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    permanent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    destroy_after_years: Option<u32>,
}

impl TryFrom<RuleConfig> for Rule {
    type Error = String;
    fn try_from(raw: RuleConfig) -> std::result::Result<Self, String> {
        let valuation = match (raw.permanent, raw.destroy_after_years) {
            (true, None) => Valuation::Permanent,
            (false, Some(years)) => Valuation::DestroyAfter { years },
            _ => {
                return Err(
                    "a retention rule says either `permanent = true` or `destroy_after_years = N`"
                        .into(),
                );
            }
        };
        Ok(Self {
            role: raw.role,
            classification: raw.classification,
            valuation,
        })
    }
}

impl From<Rule> for RuleConfig {
    fn from(rule: Rule) -> Self {
        Self {
            role: rule.role,
            classification: rule.classification,
            permanent: rule.valuation == Valuation::Permanent,
            destroy_after_years: match rule.valuation {
                Valuation::DestroyAfter { years } => Some(years),
                Valuation::Permanent => None,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicy {
    /// Years after which permanent records go to the archive service:
    /// 20 under the Archiefwet 1995, 10 under the new Archiefwet.
    pub transfer_years: u32,
    pub rules: Vec<Rule>,
}

impl Default for RetentionPolicy {
    /// Capstone officials' business records are permanent; other business
    /// records are destroyed after 10 years; private and party-political
    /// items, which are not government records, after 1 year.
    fn default() -> Self {
        let rule = |role, classification, valuation| Rule {
            role,
            classification,
            valuation,
        };
        Self {
            transfer_years: 20,
            rules: vec![
                rule(
                    None,
                    Some(Classification::Private),
                    Valuation::DestroyAfter { years: 1 },
                ),
                rule(
                    None,
                    Some(Classification::PartyPolitical),
                    Valuation::DestroyAfter { years: 1 },
                ),
                rule(Some(Role::Capstone), None, Valuation::Permanent),
                rule(None, None, Valuation::DestroyAfter { years: 10 }),
            ],
        }
    }
}

impl RetentionPolicy {
    /// Whether a permanent record this old (ms) is past the transfer term.
    pub(crate) fn due_for_transfer(&self, age_ms: u64) -> bool {
        age_ms >= u64::from(self.transfer_years) * YEAR_MS
    }

    pub fn valuation(&self, role: Role, classification: Classification) -> Valuation {
        self.rules
            .iter()
            .find(|r| {
                r.role.is_none_or(|x| x == role)
                    && r.classification.is_none_or(|x| x == classification)
            })
            .map_or(Valuation::Permanent, |r| r.valuation)
    }
}

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000 + 6 * 3600 * 1000;

/// A proposed or decided destruction list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestructionList {
    pub reference: String,
    /// Records expired as of `as_of_ms` and not under a hold, when proposed.
    pub records: Vec<u64>,
    pub as_of_ms: u64,
    pub proposed_by: String,
    pub proposed_ts: u64,
    pub approved_by: Option<String>,
    pub approved_ts: Option<u64>,
    /// Records left out at approval because a hold now covers them.
    pub held_back: Vec<u64>,
    /// Records left out at approval because the policy no longer has them
    /// expired (a new role or classification).
    #[serde(default)]
    pub kept: Vec<u64>,
}

/// How the archive stands against the policy.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetentionStatus {
    pub permanent: u64,
    /// Permanent records past the transfer term.
    pub due_for_transfer: u64,
    pub to_destroy_later: u64,
    /// Expired, and not under a legal hold.
    pub expired: u64,
    /// Expired but under a legal hold.
    pub held: u64,
    pub erased: u64,
    /// Of the expired: confirmed received by the archive service.
    pub transferred: u64,
}

const META_NEXT_LIST: &[u8] = b"next_destruction_list";

/// How far before its capture a peer's event may say it was sent and be
/// believed, for retention: a peer chooses `origin_server_ts` freely.
const PEER_CLOCK_TOLERANCE_MS: u64 = 24 * 3600 * 1000;

/// What the policy says of one record at some time.
enum Standing {
    Permanent { due_for_transfer: bool },
    Expired { held: bool },
    Later,
}

/// Looks up each sender's role and each room's classification once, and
/// judges records against a policy.
pub(crate) struct Judge<'a> {
    vault: &'a Vault,
    policy: &'a RetentionPolicy,
    holds: Vec<crate::procedure::Hold>,
    roles: HashMap<String, Role>,
    classifications: HashMap<String, Classification>,
}

impl<'a> Judge<'a> {
    pub(crate) fn new(vault: &'a Vault, policy: &'a RetentionPolicy) -> Result<Self> {
        Ok(Self {
            vault,
            policy,
            holds: vault.holds()?,
            roles: HashMap::new(),
            classifications: HashMap::new(),
        })
    }

    /// Where record `seq` (`captured_ts`, `event`) stands at `now_ms`,
    /// with the roles, classifications, holds and transfers as they are
    /// now: a record the archive service confirmed it received counts as
    /// expired.
    fn standing(
        &mut self,
        seq: u64,
        captured_ts: u64,
        event: &EventEntry,
        now_ms: u64,
    ) -> Result<Standing> {
        let age = now_ms.saturating_sub(self.vault.made_at(captured_ts, event));
        // A record the archive service holds may go from here.
        if self.vault.transferred(seq)?.is_some() {
            return Ok(Standing::Expired {
                held: self.held(event),
            });
        }
        Ok(match self.valuation(event)? {
            Valuation::Permanent => Standing::Permanent {
                due_for_transfer: self.policy.due_for_transfer(age),
            },
            Valuation::DestroyAfter { years } if age >= u64::from(years) * YEAR_MS => {
                Standing::Expired {
                    held: self.held(event),
                }
            }
            Valuation::DestroyAfter { .. } => Standing::Later,
        })
    }

    /// Whether a legal hold covers the record.
    pub(crate) fn held(&self, event: &EventEntry) -> bool {
        self.hold(event).is_some()
    }

    /// The legal hold that covers the record, if one does.
    pub(crate) fn hold(&self, event: &EventEntry) -> Option<&crate::procedure::Hold> {
        self.holds
            .iter()
            .find(|h| h.covers(&event.room_id, &event.sender))
    }

    /// What the policy makes of the record, by its sender's role and its
    /// room's classification now.
    pub(crate) fn valuation(&mut self, event: &EventEntry) -> Result<Valuation> {
        let role = match self.roles.get(&event.sender) {
            Some(&role) => role,
            None => *self
                .roles
                .entry(event.sender.clone())
                .or_insert(self.vault.role(&event.sender)?),
        };
        let classification = match self.classifications.get(&event.room_id) {
            Some(&class) => class,
            None => *self
                .classifications
                .entry(event.room_id.clone())
                .or_insert(self.vault.classification(&event.room_id)?),
        };
        Ok(self.policy.valuation(role, classification))
    }
}

impl Vault {
    /// When a record counts as made, for retention: the time the sender's
    /// server gave it if that is this node (a bridge may give a message its
    /// original time); a peer's time only as far as
    /// [`PEER_CLOCK_TOLERANCE_MS`] before the capture. Never after the
    /// capture.
    pub(crate) fn made_at(&self, captured_ts: u64, event: &EventEntry) -> u64 {
        let local = self
            .origin()
            .split('/')
            .next()
            .is_some_and(|server| event.sender.split_once(':').map(|(_, s)| s) == Some(server));
        let earliest = if local {
            0
        } else {
            captured_ts.saturating_sub(PEER_CLOCK_TOLERANCE_MS)
        };
        event
            .origin_server_ts
            .clamp(earliest, captured_ts.max(earliest))
    }

    /// Every event record with what the policy says of it at `now_ms`.
    fn evaluate(
        &self,
        policy: &RetentionPolicy,
        now_ms: u64,
    ) -> Result<(RetentionStatus, Vec<u64>)> {
        let mut judge = Judge::new(self, policy)?;
        let mut status = RetentionStatus::default();
        let mut expired = Vec::new();
        for seq in 0..self.log.size()? {
            let record = self.log.record(seq)?;
            let Entry::Event(event) = &record.entry else {
                continue;
            };
            if self.log.erasure_of(seq)?.is_some() {
                status.erased += 1;
                continue;
            }
            match judge.standing(seq, record.captured_ts, event, now_ms)? {
                Standing::Permanent { due_for_transfer } => {
                    status.permanent += 1;
                    status.due_for_transfer += u64::from(due_for_transfer);
                }
                Standing::Expired { held: true } => status.held += 1,
                Standing::Expired { held: false } => {
                    status.expired += 1;
                    status.transferred += u64::from(self.transferred(seq)?.is_some());
                    expired.push(seq);
                }
                Standing::Later => status.to_destroy_later += 1,
            }
        }
        Ok((status, expired))
    }

    pub fn retention_status(
        &self,
        policy: &RetentionPolicy,
        now_ms: u64,
    ) -> Result<RetentionStatus> {
        Ok(self.evaluate(policy, now_ms)?.0)
    }

    /// Lists every record expired at `now_ms` and not under a hold, for a
    /// records manager to propose for destruction.
    pub fn propose_destruction(
        &self,
        policy: &RetentionPolicy,
        now_ms: u64,
        actor: &str,
    ) -> Result<DestructionList> {
        self.require_records_manager(actor)?;
        let (_, records) = self.evaluate(policy, now_ms)?;
        if records.is_empty() {
            return Err(Refusal::NothingExpired.into());
        }
        let tree = self.store.tree(cf::LISTID_DESTRUCTIONLIST)?;
        self.with_steps(|steps| {
            let reference = steps.take_reference(META_NEXT_LIST, "DL")?;
            let list = DestructionList {
                reference: reference.clone(),
                records,
                as_of_ms: now_ms,
                proposed_by: actor.to_owned(),
                proposed_ts: steps.now(),
                approved_by: None,
                approved_ts: None,
                held_back: Vec::new(),
                kept: Vec::new(),
            };
            steps.batch.put_json(&tree, reference.as_bytes(), &list);
            steps.procedure(
                "propose_destruction",
                actor,
                &reference,
                &json!({ "records": list.records, "as_of_ms": now_ms }),
            );
            Ok(list)
        })
    }

    /// Every destruction list, oldest first.
    pub fn destruction_lists(&self) -> Result<Vec<DestructionList>> {
        let tree = self.store.tree(cf::LISTID_DESTRUCTIONLIST)?;
        tree.iter()
            .map(|row| Ok(tree.decode_json(&row?.1)?))
            .collect()
    }

    pub fn destruction_list(&self, reference: &str) -> Result<DestructionList> {
        self.store
            .tree(cf::LISTID_DESTRUCTIONLIST)?
            .get_json(reference.as_bytes())?
            .ok_or_else(|| Error::NotFound(format!("no destruction list {reference}")))
    }

    /// Approves a destruction list (a records manager other than the one who
    /// proposed it) and destroys its records, each judged again against
    /// `policy` with the roles, classifications and holds as they are now:
    /// one a hold now covers is held back, one no longer expired (its
    /// sender became a capstone official, say) is kept.
    pub fn approve_destruction(
        &self,
        reference: &str,
        actor: &str,
        policy: &RetentionPolicy,
    ) -> Result<DestructionList> {
        self.require_records_manager(actor)?;
        let mut list = self.destruction_list(reference)?;
        if let Some(by) = &list.approved_by {
            return Err(Refusal::AlreadyApproved {
                reference: reference.to_owned(),
                by: by.clone(),
            }
            .into());
        }
        if list.proposed_by == actor {
            return Err(Refusal::ProposerApproves {
                actor: actor.to_owned(),
                reference: reference.to_owned(),
            }
            .into());
        }
        if list.as_of_ms > crate::now_ms() {
            return Err(Refusal::NotYetDue {
                reference: reference.to_owned(),
            }
            .into());
        }
        let mut judge = Judge::new(self, policy)?;
        let mut destroy = Vec::new();
        for &seq in &list.records {
            let record = self.log.record(seq)?;
            let Entry::Event(event) = record.entry else {
                continue;
            };
            if self.log.erasure_of(seq)?.is_some() {
                continue;
            }
            match judge.standing(seq, record.captured_ts, &event, list.as_of_ms)? {
                Standing::Expired { held: false } => destroy.push((seq, event)),
                Standing::Expired { held: true } => list.held_back.push(seq),
                Standing::Permanent { .. } | Standing::Later => list.kept.push(seq),
            }
        }
        let lists = self.store.tree(cf::LISTID_DESTRUCTIONLIST)?;
        self.with_steps(|steps| {
            list.approved_by = Some(actor.to_owned());
            list.approved_ts = Some(steps.now());
            steps.batch.put_json(&lists, reference.as_bytes(), &list);
            steps.procedure(
                "approve_destruction",
                actor,
                reference,
                &json!({
                    "destroyed": destroy.len(),
                    "held_back": list.held_back,
                    "kept": list.kept,
                }),
            );
            for (seq, event) in &destroy {
                steps.erase(*seq, event, reference)?;
            }
            Ok(list)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_keeps_capstone_business_records() {
        let policy = RetentionPolicy::default();
        assert_eq!(
            policy.valuation(Role::Capstone, Classification::Business),
            Valuation::Permanent
        );
        assert_eq!(
            policy.valuation(Role::Official, Classification::Business),
            Valuation::DestroyAfter { years: 10 }
        );
        assert_eq!(
            policy.valuation(Role::Capstone, Classification::Private),
            Valuation::DestroyAfter { years: 1 }
        );
    }

    #[test]
    fn a_policy_reads_from_the_configuration_file() {
        let policy: RetentionPolicy = toml::from_str(
            r#"
            transfer_years = 10
            [[rules]]
            role = "capstone"
            permanent = true
            [[rules]]
            destroy_after_years = 7
            "#,
        )
        .expect("policy parses");
        assert_eq!(policy.transfer_years, 10);
        assert_eq!(
            policy.valuation(Role::Capstone, Classification::Business),
            Valuation::Permanent
        );
        assert_eq!(
            policy.valuation(Role::External, Classification::Business),
            Valuation::DestroyAfter { years: 7 }
        );
        let both = toml::from_str::<RetentionPolicy>(
            "[[rules]]\npermanent = true\ndestroy_after_years = 3\n",
        );
        assert!(both.is_err());
        let typo = toml::from_str::<RetentionPolicy>("[[rules]]\npermanant = true\n");
        assert!(
            typo.expect_err("unknown key")
                .to_string()
                .contains("permanant")
        );
    }
}
