//! `archipel vault search`: the archive's messages, found.

use std::io::Write;

use anyhow::{Result, anyhow};
use archipel_search::Query;

use crate::{
    args::VaultCommand,
    ops::{self, Actor, Node},
};

pub fn search(
    node: Node<'_>,
    actor: &Actor,
    command: VaultCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let VaultCommand::Search {
        words,
        room,
        sender,
        from,
        until,
        msgtype,
        source,
        classification,
        limit,
        json,
    } = command
    else {
        unreachable!("only search commands come here");
    };
    let classification = classification
        .map(|c| c.parse().map_err(|e: String| anyhow!(e)))
        .transpose()?;
    // Bring the index up to the log first, showing how far on a terminal
    // (the first search after a restore reads the whole vault).
    super::with_progress(json, "indexing", |progress| {
        ops::search::catch_up(node, progress)
            .map_err(|e| archipel_vault::Error::Io(format!("{e:#}")))
    })?;
    let asked = ops::search::Asked {
        query: Query {
            text: words.join(" "),
            room,
            sender,
            from_ms: from,
            until_ms: until,
            msgtype,
            source,
            limit,
            ..Query::default()
        },
        classification,
    };
    let found = ops::search::search(node, actor, &asked)?;
    if json {
        for message in &found {
            say!(out, "{}", serde_json::to_string(message)?);
        }
        return Ok(());
    }
    if found.is_empty() {
        say!(out, "no message found");
        return Ok(());
    }
    for message in &found {
        let hit = &message.hit;
        let when = i64::try_from(hit.ts)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map_or_else(String::new, |t| {
                t.strftime("%Y-%m-%d %H:%M UTC").to_string()
            });
        say!(
            out,
            "#{} {when} {} {}: {}",
            hit.seq,
            hit.room,
            hit.sender,
            message.excerpt.replace('\n', " ")
        );
    }
    say!(out, "{} message(s)", found.len());
    Ok(())
}
