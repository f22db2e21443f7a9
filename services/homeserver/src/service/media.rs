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
    thumbnailers: tokio::sync::Semaphore,
}

/// The thumbnail sizes made, as the spec suggests; a request gets the
/// smallest that covers it, or the largest.
pub const THUMBNAIL_SIZES: [(u32, u32); 5] =
    [(32, 32), (96, 96), (320, 240), (640, 480), (800, 600)];
/// Thumbnails made at a time; more requests wait their turn.
pub const THUMBNAILERS: usize = 2;
/// Images are scaled only up to this edge, in pixels...
pub const MAX_IMAGE_EDGE: u32 = 8192;
/// ... and this decoded size (a 12-megapixel photo takes 48 MiB).
pub const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

impl Media {
    pub fn new(store: Store, dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(dir.join("files"))
            .map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
        std::fs::create_dir_all(dir.join("thumbnails"))
            .map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
        let media = Self {
            tree: store.tree(cf::MEDIAID_META)?,
            store,
            dir,
            thumbnailers: tokio::sync::Semaphore::new(THUMBNAILERS),
        };
        media.collect_leftovers()?;
        Ok(media)
    }

    /// Removes what an interrupted write or deletion left: files still
    /// being written (`.partial`), and stored files and thumbnails whose
    /// metadata is gone (a deletion removes the metadata first). Nothing
    /// writes media while the node opens.
    fn collect_leftovers(&self) -> Result<()> {
        for folder in ["files", "thumbnails"] {
            let Ok(entries) = std::fs::read_dir(self.dir.join(folder)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    continue;
                };
                // A thumbnail is `{media_id}-{w}x{h}-{crop|scale}`.
                let media_id = match folder {
                    "files" => Some(name),
                    _ => name.rsplitn(3, '-').nth(2),
                };
                let leftover = name.ends_with(".partial")
                    || media_id.is_some_and(|id| {
                        valid_media_id(id) && !self.tree.contains(id.as_bytes()).unwrap_or(true)
                    });
                if leftover {
                    tracing::info!(file = %entry.path().display(), "removing a media file left by an interrupted write or deletion");
                    std::fs::remove_file(entry.path()).map_err(|e| {
                        Error::internal(format!("removing {}: {e}", entry.path().display()))
                    })?;
                }
            }
        }
        Ok(())
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
            .map(|id| self.tree.decode_str(&id))
            .transpose()?)
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

    /// A thumbnail of about `width`×`height` (`crop` fills the box), as PNG;
    /// the original when it is no image this node scales. The size is
    /// snapped to one of [`THUMBNAIL_SIZES`], so a file has at most ten
    /// cached thumbnails; at most [`THUMBNAILERS`] are made at a time, each
    /// from an image decoded within [`decode_bounded`]'s limits.
    pub async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        crop: bool,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let Some(meta) = self.meta(media_id)? else {
            return Ok(None);
        };
        let (width, height) = thumbnail_size(width, height);
        let cache = self.dir.join("thumbnails").join(format!(
            "{media_id}-{width}x{height}-{}",
            if crop { "crop" } else { "scale" }
        ));
        if let Ok(cached) = tokio::fs::read(&cache).await {
            return Ok(Some(("image/png".into(), cached)));
        }
        let permit = self.thumbnailers.acquire().await.map_err(Error::internal)?;
        let bytes = match tokio::fs::read(self.file_path(media_id)).await {
            Ok(bytes) => bytes,
            // Deleted while this request waited its turn.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::internal(format!("reading media: {e}"))),
        };
        let made = tokio::task::spawn_blocking(move || {
            let png = scale(&bytes, width, height, crop);
            if let Some(png) = &png {
                // A cache file is whole or absent: written aside, then renamed.
                let aside = cache.with_extension(format!("{}.partial", random_string(8)));
                if std::fs::write(&aside, png).is_ok() && std::fs::rename(&aside, &cache).is_err() {
                    let _ = std::fs::remove_file(&aside);
                }
            }
            png.ok_or(bytes)
        })
        .await
        .map_err(Error::internal)?;
        drop(permit);
        Ok(Some(match made {
            Ok(png) => ("image/png".into(), png),
            // Not an image this node scales: the original, as other servers do.
            Err(original) => (
                meta.content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
                original,
            ),
        }))
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
        // The metadata first: a file without it is never served and is
        // collected when the node next opens; metadata without its file
        // would stop the archive's capture of every event naming it.
        let mut batch = Batch::new();
        batch.delete(&self.tree, media_id.as_bytes());
        self.store.commit(batch)?;
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
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The size of [`THUMBNAIL_SIZES`] that a request for `width`×`height` gets.
fn thumbnail_size(width: u32, height: u32) -> (u32, u32) {
    THUMBNAIL_SIZES
        .into_iter()
        .find(|&(w, h)| w >= width && h >= height)
        .unwrap_or(THUMBNAIL_SIZES[THUMBNAIL_SIZES.len() - 1])
}

/// Decodes an image within [`MAX_IMAGE_EDGE`] and [`MAX_IMAGE_BYTES`]:
/// a small file that would decode to gigabytes is refused from its header.
fn decode_bounded(bytes: &[u8]) -> image::ImageResult<image::DynamicImage> {
    use image::ImageDecoder as _;
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_EDGE);
    limits.max_image_height = Some(MAX_IMAGE_EDGE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder()?;
    // Not every decoder keeps to `max_alloc`: the size is checked here.
    if decoder.total_bytes() > MAX_IMAGE_BYTES {
        return Err(image::ImageError::Limits(
            image::error::LimitError::from_kind(image::error::LimitErrorKind::InsufficientMemory),
        ));
    }
    image::DynamicImage::from_decoder(decoder)
}

/// A PNG thumbnail of `bytes`, or `None` if they are no image within bounds.
fn scale(bytes: &[u8], width: u32, height: u32, crop: bool) -> Option<Vec<u8>> {
    let image = decode_bounded(bytes).ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG whose header claims `width`×`height` RGBA pixels, with one
    /// small data chunk (far too short for them) and the end.
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        fn crc(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut chunk = b"IHDR".to_vec();
        chunk.extend(width.to_be_bytes());
        chunk.extend(height.to_be_bytes());
        chunk.extend([8, 6, 0, 0, 0]); // 8 bits, RGBA
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut add = |chunk: &[u8]| {
            png.extend(u32::try_from(chunk.len() - 4).expect("small").to_be_bytes());
            png.extend(chunk);
            png.extend(crc(chunk).to_be_bytes());
        };
        add(&chunk);
        // An empty zlib stream.
        add(b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01");
        add(b"IEND");
        png
    }

    #[test]
    fn images_that_would_decode_too_large_are_refused_from_their_header() {
        // 11000² RGBA is 484 MB decoded; 8000² RGBA (244 MB) is within the
        // edge but over the bytes.
        for (w, h) in [(11_000, 11_000), (9000, 1), (8000, 8000)] {
            match decode_bounded(&png_header(w, h)) {
                Err(image::ImageError::Limits(_)) => {}
                other => panic!("{w}×{h}: {:?}", other.map(|i| (i.width(), i.height()))),
            }
        }
        let mut small = Cursor::new(Vec::new());
        image::DynamicImage::new_rgb8(1200, 900)
            .write_to(&mut small, image::ImageFormat::Png)
            .expect("encode");
        let image = decode_bounded(small.get_ref()).expect("a photo decodes");
        assert_eq!((image.width(), image.height()), (1200, 900));
    }

    #[tokio::test]
    async fn leftovers_of_interrupted_writes_and_deletions_are_collected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &dir.path().join("db"),
            crate::columns::COLUMNS,
            &archipel_store::StoreOptions::default(),
        )
        .expect("store");
        let media = Media::new(store.clone(), dir.path().join("media")).expect("media");
        let owner = ruma::user_id!("@alice:localhost");
        let kept = media
            .create(owner, None, None, b"kept".to_vec())
            .await
            .expect("create");
        let root = dir.path().join("media");
        for leftover in [
            "files/AbC123.partial",
            "files/NoMetadata42",
            "thumbnails/NoMetadata42-96x96-crop",
            "thumbnails/x-32x32-scale.Zz9.partial",
        ] {
            std::fs::write(root.join(leftover), b"x").expect("write");
        }
        let kept_thumbnail = root.join(format!("thumbnails/{kept}-96x96-crop"));
        std::fs::write(&kept_thumbnail, b"x").expect("write");
        drop(media);

        let media = Media::new(store, root.clone()).expect("reopen");
        let left: Vec<String> = ["files", "thumbnails"]
            .iter()
            .flat_map(|folder| std::fs::read_dir(root.join(folder)).expect("read"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(kept_thumbnail.exists(), "{left:?}");
        assert!(media.meta(&kept).expect("meta").is_some());
    }

    #[test]
    fn thumbnail_sizes_snap_to_a_few() {
        assert_eq!(thumbnail_size(1, 1), (32, 32));
        assert_eq!(thumbnail_size(33, 10), (96, 96));
        assert_eq!(thumbnail_size(300, 200), (320, 240));
        assert_eq!(thumbnail_size(321, 100), (640, 480));
        assert_eq!(thumbnail_size(1600, 1600), (800, 600));
        assert_eq!(thumbnail_size(u32::MAX, 0), (800, 600));
    }
}
