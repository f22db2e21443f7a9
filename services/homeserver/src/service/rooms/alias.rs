//! Room aliases and the public room directory.

use archipel_store::{Batch, key};
use ruma::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, RoomId};

use super::Rooms;
use crate::{Error, Result};

impl Rooms {
    pub fn resolve_alias(&self, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>> {
        let bytes = self.alias_roomid.get(alias.as_bytes())?;
        Ok(bytes
            .map(|b| self.alias_roomid.decode_str(&b))
            .transpose()?)
    }

    pub async fn set_alias(&self, alias: &RoomAliasId, room_id: &RoomId) -> Result<()> {
        if alias.server_name() != self.server_name {
            return Err(Error::invalid_param("Aliases must be on this server."));
        }
        if self.resolve_alias(alias)?.is_some() {
            return Err(Error::Matrix {
                status: http::StatusCode::CONFLICT,
                kind: ruma::api::error::ErrorKind::Unknown,
                message: "Alias already exists.".into(),
            });
        }
        let mut batch = Batch::new();
        batch.put(&self.alias_roomid, alias.as_bytes(), room_id.as_bytes());
        self.store.commit_async(batch).await?;
        Ok(())
    }

    pub async fn remove_alias(&self, alias: &RoomAliasId) -> Result<()> {
        let mut batch = Batch::new();
        batch.delete(&self.alias_roomid, alias.as_bytes());
        self.store.commit_async(batch).await?;
        Ok(())
    }

    pub fn aliases_of(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let mut out = Vec::new();
        for row in self.alias_roomid.iter() {
            let (k, v) = row?;
            if &*v == room_id.as_bytes() {
                out.push(self.alias_roomid.decode_str(&k)?);
            }
        }
        Ok(out)
    }

    pub async fn set_published(&self, room_id: &RoomId, published: bool) -> Result<()> {
        let mut batch = Batch::new();
        if published {
            batch.put(&self.roomid_published, room_id.as_bytes(), b"");
        } else {
            batch.delete(&self.roomid_published, room_id.as_bytes());
        }
        self.store.commit_async(batch).await?;
        Ok(())
    }

    pub fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self.roomid_published.contains(room_id.as_bytes())?)
    }

    pub fn published_rooms(&self) -> Result<Vec<OwnedRoomId>> {
        let mut out = Vec::new();
        for row in self.roomid_published.scan_prefix(key::key::<0>([])) {
            let (k, _) = row?;
            out.push(self.roomid_published.decode_str(&k)?);
        }
        Ok(out)
    }
}
