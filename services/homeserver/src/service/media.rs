//! Media repository: uploaded files on disk, their metadata in the store.

use std::{
    io::{Cursor, Write},
    path::{Path, PathBuf},
};

use archipel_store::{Batch, Store, Tree};
use ruma::{OwnedUserId, ServerName, UserId};
use serde::{Deserialize, Serialize};

use crate::{
    Error, Result, columns as cf,
    service::users::{now_ms, random_string},
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MediaMeta {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    /// None for a copy of a peer's media.
    #[serde(default)]
    pub uploader: Option<OwnedUserId>,
    pub created_ts: u64,
}

pub struct Media {
    store: Store,
    tree: Tree,
    dir: PathBuf,
}

/// Largest thumbnail edge a client can ask for.
const MAX_THUMBNAIL_EDGE: u32 = 1600;

impl Media {
    pub fn new(store: Store, dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(dir.join("files"))
            .map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
        std::fs::create_dir_all(dir.join("thumbnails"))
            .map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
        Ok(Self {
            tree: store.tree(cf::MEDIAID_META)?,
            store,
            dir,
        })
    }

    fn file_path(&self, media_id: &str) -> PathBuf {
        self.dir.join("files").join(media_id)
    }

    /// Stores a new file durably and returns its media ID.
    pub async fn create(
        &self,
        uploader: &UserId,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: Vec<u8>,
    ) -> Result<String> {
        self.store_new(Some(uploader), content_type, filename, bytes, None)
            .await
    }

    /// Writes a new file durably, then its metadata (and, for a copy of a
    /// peer's media, where it came from) in one batch; returns its media ID.
    async fn store_new(
        &self,
        uploader: Option<&UserId>,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: Vec<u8>,
        copy_of: Option<(&ServerName, &str)>,
    ) -> Result<String> {
        let media_id = random_string(24);
        let path = self.file_path(&media_id);
        let size = bytes.len() as u64;
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::internal(format!("writing media file: {e}")))?;
        let meta = MediaMeta {
            content_type,
            filename,
            size,
            uploader: uploader.map(UserId::to_owned),
            created_ts: now_ms(),
        };
        let mut batch = Batch::new();
        batch.put_json(&self.tree, media_id.as_bytes(), &meta);
        if let Some((server, remote_id)) = copy_of {
            batch.put(
                &self.tree,
                remote_key(server, remote_id),
                media_id.as_bytes(),
            );
        }
        self.store.commit_async(batch).await?;
        Ok(media_id)
    }

    /// The local copy of a peer's media `mxc://server/media_id`, if fetched before.
    pub fn remote_copy(&self, server: &ServerName, media_id: &str) -> Result<Option<String>> {
        if !valid_media_id(media_id) {
            return Ok(None);
        }
        Ok(self
            .tree
            .get(remote_key(server, media_id))?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    /// Keeps a copy of a peer's media; returns the copy's local media ID.
    pub async fn store_remote(
        &self,
        server: &ServerName,
        media_id: &str,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: Vec<u8>,
    ) -> Result<String> {
        if !valid_media_id(media_id) {
            return Err(Error::invalid_param("Invalid media ID."));
        }
        self.store_new(
            None,
            content_type,
            filename,
            bytes,
            Some((server, media_id)),
        )
        .await
    }

    pub fn meta(&self, media_id: &str) -> Result<Option<MediaMeta>> {
        if !valid_media_id(media_id) {
            return Ok(None);
        }
        Ok(self.tree.get_json(media_id.as_bytes())?)
    }

    /// A stored file's metadata and where its bytes are, for a reader that
    /// streams them (the archive's capture), or `None` if there is no such
    /// media.
    pub fn file(&self, media_id: &str) -> Result<Option<(MediaMeta, PathBuf)>> {
        Ok(self
            .meta(media_id)?
            .map(|meta| (meta, self.file_path(media_id))))
    }

    pub async fn read(&self, media_id: &str) -> Result<Option<(MediaMeta, Vec<u8>)>> {
        let Some(meta) = self.meta(media_id)? else {
            return Ok(None);
        };
        let bytes = tokio::fs::read(self.file_path(media_id))
            .await
            .map_err(|e| Error::internal(format!("reading media: {e}")))?;
        Ok(Some((meta, bytes)))
    }

    /// A thumbnail no larger than `width`×`height` (`crop` fills the box), as PNG or JPEG.
    pub async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        crop: bool,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let Some((meta, bytes)) = self.read(media_id).await? else {
            return Ok(None);
        };
        let (width, height) = (
            width.clamp(1, MAX_THUMBNAIL_EDGE),
            height.clamp(1, MAX_THUMBNAIL_EDGE),
        );
        let cache = self.dir.join("thumbnails").join(format!(
            "{media_id}-{width}x{height}-{}",
            if crop { "crop" } else { "scale" }
        ));
        if let Ok(cached) = tokio::fs::read(&cache).await {
            return Ok(Some(("image/png".into(), cached)));
        }
        let result = tokio::task::spawn_blocking(move || -> Option<Vec<u8>> {
            let image = image::load_from_memory(&bytes).ok()?;
            let thumb = if crop {
                image.resize_to_fill(width, height, image::imageops::FilterType::Triangle)
            } else if image.width() <= width && image.height() <= height {
                image
            } else {
                image.thumbnail(width, height)
            };
            let mut out = Cursor::new(Vec::new());
            thumb.write_to(&mut out, image::ImageFormat::Png).ok()?;
            Some(out.into_inner())
        })
        .await
        .map_err(Error::internal)?;
        match result {
            Some(png) => {
                let _ = tokio::fs::write(&cache, &png).await;
                Ok(Some(("image/png".into(), png)))
            }
            // Not an image we can scale: serve the original, as other servers do.
            None => {
                let (_, bytes) = self
                    .read(media_id)
                    .await?
                    .unwrap_or((meta.clone(), Vec::new()));
                Ok(Some((
                    meta.content_type
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    bytes,
                )))
            }
        }
    }

    /// Hard-links every stored file under `dest/files` for a backup (not
    /// thumbnails: they are made again on demand). Run after the database's
    /// checkpoint: every file the checkpoint knows was complete before its
    /// metadata was written, so it is there.
    pub fn link_files(&self, dest: &Path) -> Result<u64> {
        Ok(archipel_store::link_tree(
            &self.dir.join("files"),
            &dest.join("files"),
            &|path| path.extension().is_none_or(|e| e != "partial"),
        )?)
    }

    /// Deletes the local copy of a peer's media `mxc://server/media_id`, if
    /// it was fetched, with its thumbnails (the archive's erasure
    /// procedure). Idempotent.
    pub fn delete_remote_copy(&self, server: &ServerName, media_id: &str) -> Result<()> {
        let Some(copy) = self.remote_copy(server, media_id)? else {
            return Ok(());
        };
        self.delete(&copy)?;
        let mut batch = Batch::new();
        batch.delete(&self.tree, remote_key(server, media_id));
        self.store.commit(batch)?;
        Ok(())
    }

    /// Deletes a file, its thumbnails and its metadata (the archive's
    /// erasure procedure). Idempotent.
    pub fn delete(&self, media_id: &str) -> Result<()> {
        if !valid_media_id(media_id) {
            return Ok(());
        }
        let remove = |path: PathBuf| match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::internal(format!("deleting {}: {e}", path.display())))
            }
            _ => Ok(()),
        };
        remove(self.file_path(media_id))?;
        let thumbnails = self.dir.join("thumbnails");
        if let Ok(entries) = std::fs::read_dir(&thumbnails) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| name.starts_with(&format!("{media_id}-")))
                {
                    remove(entry.path())?;
                }
            }
        }
        let mut batch = Batch::new();
        batch.delete(&self.tree, media_id.as_bytes());
        self.store.commit(batch)?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Where the local copy of a peer's media is recorded: never a media ID
/// (those have no `/`).
fn remote_key(server: &ServerName, media_id: &str) -> Vec<u8> {
    format!("remote/{server}/{media_id}").into_bytes()
}

fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("partial");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
