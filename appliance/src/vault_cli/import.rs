//! `archipel vault import ...`: chats kept outside the homeserver.

use std::io::Write;

use anyhow::Result;

use crate::{
    args::ImportCommand,
    ops::{self, Actor, Node},
};

pub fn import(
    node: Node<'_>,
    actor: &Actor,
    command: ImportCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let ImportCommand::Whatsapp {
        export,
        owner,
        owner_name,
        declaration,
        chat,
        time_zone,
        json,
    } = command;
    let imported = ops::imports::whatsapp(
        node,
        actor,
        &ops::imports::WhatsappImport {
            export: &export,
            owner: &owner,
            owner_name: owner_name.as_deref(),
            declaration: &declaration,
            chat: chat.as_deref(),
            time_zone: &time_zone,
        },
    )?;
    if json {
        say!(out, "{}", serde_json::to_string(&imported)?);
    } else if imported.added == 0 {
        say!(
            out,
            "nothing new: the vault holds all {} event(s) of {} already ({})",
            imported.known,
            export.display(),
            imported.room_id
        );
    } else {
        say!(
            out,
            "imported {} record(s) into {} ({} already in the vault); provenance in record {}",
            imported.added,
            imported.room_id,
            imported.known,
            imported.step.map_or_else(String::new, |s| s.to_string())
        );
    }
    Ok(())
}
