//! Chats kept outside the homeserver brought into the vault: WhatsApp
//! exports, read by `archipel_vault::import::whatsapp` and recorded with
//! their provenance (the file, its hash, who imported it, whose chat it
//! is and what they declared of it).

use std::path::Path;

use anyhow::{Context, Result, bail};
use archipel_vault::import::{
    Imported, Provenance,
    whatsapp::{Export, Owner},
};
use jiff::tz::TimeZone;

use super::{Actor, Node, accounts, audited};

/// What to import, and whose it is.
pub struct WhatsappImport<'a> {
    /// The export: its ZIP archive, or the chat's text.
    pub export: &'a Path,
    /// A user of this node (a localpart or a user ID).
    pub owner: &'a str,
    /// The owner's name as the chat shows it.
    pub owner_name: Option<&'a str>,
    pub declaration: &'a str,
    /// The chat's name, if not the export's.
    pub chat: Option<&'a str>,
    /// The time zone of the owner's phone (IANA name).
    pub time_zone: &'a str,
}

/// Imports a WhatsApp export as `actor`: all of it or, if a line cannot be
/// read, nothing. Its messages the vault holds already are not added again.
pub fn whatsapp(node: Node<'_>, actor: &Actor, import: &WhatsappImport<'_>) -> Result<Imported> {
    let file = import
        .export
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let imported = (|| {
        let owner = accounts::user_id(node.config, import.owner)?;
        if !node.services.users.exists(&owner)? {
            bail!("{owner} is not a user of this node");
        }
        if import.declaration.trim().is_empty() {
            bail!("the owner's declaration is empty: say what they declared of the export");
        }
        let time_zone = TimeZone::get(import.time_zone).with_context(|| {
            format!(
                "{:?} is not a time zone (e.g. Europe/Amsterdam)",
                import.time_zone
            )
        })?;
        // The node reads the file as its own user, not the caller's.
        if let Err(e) = std::fs::File::open(import.export)
            && e.kind() == std::io::ErrorKind::PermissionDenied
        {
            bail!(
                "the node may not read {}: it reads imports as its own user; make the file readable to it",
                import.export.display()
            );
        }
        let scratch = node.config.node.data_dir.join("imports");
        let mut export = Export::read(import.export, &scratch)?;
        if let Some(chat) = import.chat {
            chat.clone_into(&mut export.title);
        }
        let owner = Owner {
            user_id: owner.as_str(),
            name: import.owner_name,
            time_zone: &time_zone,
        };
        let server_name = node.config.homeserver.server_name.as_str();
        let room = export.room_id(&owner, server_name);
        let provenance = Provenance {
            source: "whatsapp".into(),
            file_name: export.file_name.clone(),
            file_sha256: export.sha256.clone(),
            importer: actor.name().to_owned(),
            owner: owner.user_id.to_owned(),
            declaration: import.declaration.trim().to_owned(),
        };
        let events = export.events(&owner, server_name);
        Ok(node.vault.import(&provenance, &room, &events)?)
    })();
    let object = format!("{file} for {}", import.owner);
    audited(node, actor, "vault import whatsapp", &object, imported)
}
