//! Search over the archive for records managers: the index of the vault's
//! messages (`archipel_search`, in `search/` of the data folder), caught up
//! with the log before each search and after each erasure, and every
//! search recorded in the audit trail with what was asked.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use archipel_search::{CatchUp, Hit, Query, Search};
use archipel_vault::procedure::Classification;
use serde::Serialize;

use super::{Actor, Node, audited};

/// The most characters of a message's text a result shows.
const EXCERPT: usize = 300;

/// The node's index, opened once per process (its writer holds a lock).
pub fn index(node: Node<'_>) -> Result<Arc<Search>> {
    static OPEN: Mutex<Option<(PathBuf, Arc<Search>)>> = Mutex::new(None);
    let dir = node.config.node.data_dir.join("search");
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((path, search)) = open.as_ref()
        && *path == dir
    {
        return Ok(search.clone());
    }
    // Its writer takes turns with password hashes: a node's peak memory is
    // its rest and one of them.
    let search = Arc::new(
        Search::open(&dir)
            .with_context(|| format!("opening the search index in {}", dir.display()))?
            .sharing_memory_with(archipel_homeserver::memory::large_work),
    );
    *open = Some((dir, search.clone()));
    Ok(search)
}

/// Brings the index up to the vault's log: new messages in, erased ones
/// out. `progress` hears `(records read, records to read)`.
pub fn catch_up(node: Node<'_>, progress: impl FnMut(u64, u64)) -> Result<CatchUp> {
    Ok(index(node)?.catch_up(node.vault, progress)?)
}

/// What a records manager looks for.
#[derive(Clone, Debug, Default)]
pub struct Asked {
    pub query: Query,
    /// Only rooms of this classification.
    pub classification: Option<Classification>,
}

impl Asked {
    /// What was asked, for the audit trail.
    fn describe(&self) -> String {
        let q = &self.query;
        let mut parts = vec![format!("{:?}", q.text)];
        for (name, value) in [
            ("room", &q.room),
            ("sender", &q.sender),
            ("type", &q.msgtype),
            ("source", &q.source),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name} {value}"));
            }
        }
        if let Some(from) = q.from_ms {
            parts.push(format!("from {}", super::utc(from)));
        }
        if let Some(until) = q.until_ms {
            parts.push(format!("until {}", super::utc(until)));
        }
        if let Some(classification) = self.classification {
            parts.push(format!("classification {classification}"));
        }
        parts.join(", ")
    }
}

/// A message found, with the start of its text.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    #[serde(flatten)]
    pub hit: Hit,
    /// The start of its text (empty if it has none).
    pub excerpt: String,
}

/// Searches the archive as `actor`; recorded, done or refused.
pub fn search(node: Node<'_>, actor: &Actor, asked: &Asked) -> Result<Vec<Found>> {
    let found = (|| {
        let index = index(node)?;
        index.catch_up(node.vault, |_, _| {})?;
        let mut query = asked.query.clone();
        if let Some(wanted) = asked.classification {
            let classified = node.vault.classified_rooms()?;
            let rooms = |keep: &dyn Fn(Classification) -> bool| {
                classified
                    .iter()
                    .filter(|(_, c)| keep(*c))
                    .map(|(room, _)| room.clone())
                    .collect::<Vec<_>>()
            };
            if wanted == Classification::Business {
                query.not_rooms = rooms(&|c| c != Classification::Business);
            } else {
                query.rooms = Some(rooms(&|c| c == wanted));
            }
        }
        index
            .search(&query)?
            .into_iter()
            .map(|hit| {
                let text = archipel_search::message_text(node.vault, hit.seq)?.unwrap_or_default();
                let mut excerpt: String = text.chars().take(EXCERPT).collect();
                if excerpt.len() < text.len() {
                    excerpt.push('…');
                }
                Ok(Found { hit, excerpt })
            })
            .collect::<Result<Vec<_>>>()
    })();
    audited(node, actor, "vault search", &asked.describe(), found)
}
