//! Woo requests: the documents a selection holds, as a plan for the Woo
//! officer to assess, and the package made from the assessed plan
//! (`archipel_vault::export::woo`). Both are recorded in the audit trail:
//! a package is archived content leaving the vault.

use std::path::Path;

use anyhow::{Context, Result, bail};
use archipel_search::{MAX_HITS, Query};
use archipel_vault::export::woo::{PlannedDocument, WooPlan, WooSelection, WooSummary};

use super::{Actor, Node, audited, search};

/// What a plan is for.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub matter: String,
    /// Only days with a message holding these words (empty: every day).
    pub words: String,
    pub room: Option<String>,
    pub from_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

const PLAN_HEADER: &str = "\
# Woo plan: one document per conversation per day. For each document, set
# `judgement` to \"openbaar\", \"deels openbaar\", \"niet openbaar\" or
# \"reeds openbaar\" and, where it applies:
#   grounds = [\"5.1.2e\"]   the grounds for a document withheld whole
#   link = \"https://...\"   where a document already public was published
#   explanation = \"...\"    the productierapport's Toelichting
#   suspended = true       opgeschort: a third party objects
# and a redaction for each passage to remove, with its ground:
#   [[documents.redactions]]
#   passage = \"06-12345678\"
#   ground = \"5.1.2e\"
#   message = \"$event_id\"  (optional: only in this message)
# Then: archipel vault woo package <this file> --out <new folder>
";

/// A plan for `request`: its documents, for the Woo officer to assess.
pub fn plan(node: Node<'_>, actor: &Actor, request: &Request) -> Result<String> {
    let planned = (|| {
        let records = if request.words.trim().is_empty() {
            None
        } else {
            let asked = search::Asked {
                query: Query {
                    text: request.words.clone(),
                    room: request.room.clone(),
                    from_ms: request.from_ms,
                    until_ms: request.until_ms,
                    limit: MAX_HITS,
                    ..Query::default()
                },
                classification: None,
            };
            let found = search::search(node, actor, &asked)?;
            if found.len() >= MAX_HITS {
                bail!(
                    "the words are in {MAX_HITS} messages or more: narrow the selection by room or period"
                );
            }
            Some(found.iter().map(|f| f.hit.seq).collect())
        };
        let candidates = node.vault.woo_candidates(&WooSelection {
            room: request.room.clone(),
            from_ms: request.from_ms,
            until_ms: request.until_ms,
            records,
        })?;
        if candidates.is_empty() {
            bail!("the selection holds no messages: nothing to plan");
        }
        let plan = WooPlan {
            matter: request.matter.trim().to_owned(),
            decision: String::new(),
            documents: candidates
                .into_iter()
                .map(|c| PlannedDocument {
                    id: c.id,
                    conversation: match c.room_name {
                        Some(name) => format!("{name} ({})", c.room_id),
                        None => c.room_id,
                    },
                    date: c.date,
                    messages: Some(c.messages),
                    ..PlannedDocument::default()
                })
                .collect(),
        };
        Ok(format!("{PLAN_HEADER}\n{}", toml::to_string(&plan)?))
    })();
    audited(node, actor, "vault woo plan", &describe(request), planned)
}

fn describe(request: &Request) -> String {
    let mut parts = vec![format!("matter {}", request.matter.trim())];
    if !request.words.trim().is_empty() {
        parts.push(format!("words {:?}", request.words));
    }
    if let Some(room) = &request.room {
        parts.push(format!("room {room}"));
    }
    for (name, ms) in [("from", request.from_ms), ("until", request.until_ms)] {
        if let Some(ms) = ms {
            parts.push(format!("{name} {}", super::utc(ms)));
        }
    }
    parts.join(", ")
}

/// Reads a plan the Woo officer filled in.
pub fn read_plan(path: &Path) -> Result<WooPlan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the plan {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("the plan {} does not read", path.display()))
}

/// Makes the package `plan` describes into the new folder `out`, as
/// `actor`: the vault first signs a checkpoint of everything so far.
pub fn package(node: Node<'_>, actor: &Actor, plan: &WooPlan, out: &Path) -> Result<WooSummary> {
    let made = (|| {
        let Some(organisation) = &node.config.vault.organisation else {
            bail!(
                "the vault's organisation is not set: add [vault.organisation] with its name and identifier (its TOOI URI) to the configuration"
            );
        };
        node.vault.checkpoint()?;
        let existed = out.exists();
        let summary = node
            .vault
            .woo_package(plan, organisation, actor.name(), out, |_, _| {});
        if summary.is_err() && !existed {
            // Nothing half-made is left in a folder the package made.
            let _ = std::fs::remove_dir_all(out);
        }
        Ok(summary?)
    })();
    let what = format!(
        "matter {}: {} document(s) into {}",
        plan.matter.trim(),
        plan.documents.len(),
        out.display()
    );
    audited(node, actor, "vault woo package", &what, made)
}
