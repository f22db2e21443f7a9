//! S3-compatible object storage, through the `object_store` crate.
//!
//! An object larger than one part is a multipart upload: parts go up in the
//! background (a few at a time) while the backup produces the next, and the
//! object appears only when the upload is completed; a writer dropped before
//! commit aborts the upload. A smaller object is one PUT, atomic by itself.
//!
//! The library is synchronous (tar, zstd and age are `Write` pipelines), so
//! the target owns a small tokio runtime and blocks on it. Call it from a
//! plain thread (in an async program: `spawn_blocking`), never from inside
//! an async task.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore as _, ObjectStoreExt as _, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::runtime::{Handle, Runtime};

use super::{ObjectInfo, ObjectWriter, Target};
use crate::error::{Error, Result};

/// Where and how to reach the bucket. Its `Debug` shows no secret key.
#[derive(Clone)]
pub struct S3Config {
    /// e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`;
    /// `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Objects are stored under `prefix/` (empty: the bucket's root).
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow plain HTTP (a loopback test server); off for anything else.
    pub allow_http: bool,
    /// Size of one multipart part; S3 requires at least 5 MiB.
    pub part_size: usize,
    /// Parts uploaded at once.
    pub upload_concurrency: usize,
    /// How long one request may take before it is retried or fails.
    pub request_timeout: Duration,
    /// Retries of a failed request before the backup fails.
    pub max_retries: usize,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .field("part_size", &self.part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl S3Config {
    pub fn new(
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".to_owned(),
            bucket: bucket.into(),
            prefix: String::new(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            allow_http: false,
            part_size: 16 << 20,
            upload_concurrency: 4,
            request_timeout: Duration::from_secs(300),
            max_retries: 4,
        }
    }
}

pub struct S3Target {
    store: Arc<AmazonS3>,
    runtime: Runtime,
    prefix: Option<Path>,
    description: String,
    part_size: usize,
    upload_concurrency: usize,
}

/// S3 refuses parts under 5 MiB except the last.
const MINIMUM_PART: usize = 5 << 20;

impl S3Target {
    pub fn new(config: &S3Config) -> Result<Self> {
        let prefix = config.prefix.trim_matches('/');
        let description = if prefix.is_empty() {
            format!("s3://{}", config.bucket)
        } else {
            format!("s3://{}/{prefix}", config.bucket)
        };
        let invalid = |message: String| Error::TargetConfig {
            target: description.clone(),
            message,
        };
        if config.part_size < MINIMUM_PART {
            return Err(invalid(format!(
                "part size {} is below the S3 minimum of 5 MiB",
                config.part_size
            )));
        }
        let retry = RetryConfig {
            max_retries: config.max_retries,
            retry_timeout: config.request_timeout.saturating_mul(2),
            ..RetryConfig::default()
        };
        let client = ClientOptions::new()
            .with_allow_http(config.allow_http)
            .with_timeout(config.request_timeout)
            .with_connect_timeout(Duration::from_secs(10));
        let mut builder = AmazonS3Builder::new()
            .with_region(&config.region)
            .with_bucket_name(&config.bucket)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_allow_http(config.allow_http)
            .with_retry(retry)
            .with_client_options(client);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|error| invalid(error.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("archipel-backup-s3")
            .enable_all()
            .build()
            .map_err(|error| invalid(format!("starting the I/O runtime: {error}")))?;
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(Path::parse(prefix).map_err(|error| invalid(format!("prefix: {error}")))?)
        };
        Ok(Self {
            store: Arc::new(store),
            runtime,
            prefix,
            description,
            part_size: config.part_size,
            upload_concurrency: config.upload_concurrency.max(1),
        })
    }

    fn location(&self, name: &str) -> Result<Path> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::target(
                &self.description,
                name,
                "naming",
                io::Error::other("not a valid object name"),
            ));
        }
        Ok(match &self.prefix {
            Some(prefix) => prefix.clone().join(name),
            None => Path::from(name),
        })
    }
}

fn to_io(error: object_store::Error) -> io::Error {
    match error {
        object_store::Error::NotFound { .. } => {
            io::Error::new(io::ErrorKind::NotFound, error.to_string())
        }
        other => io::Error::other(other.to_string()),
    }
}

impl Target for S3Target {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn list(&self) -> Result<Vec<ObjectInfo>> {
        let listing = self
            .runtime
            .block_on(self.store.list_with_delimiter(self.prefix.as_ref()))
            .map_err(|error| Error::target(&self.description, "", "listing", to_io(error)))?;
        let mut objects: Vec<ObjectInfo> = listing
            .objects
            .into_iter()
            .filter_map(|meta| {
                Some(ObjectInfo {
                    name: meta.location.filename()?.to_owned(),
                    size: meta.size,
                })
            })
            .filter(|object| !object.name.starts_with('.'))
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(S3Writer {
            store: Arc::clone(&self.store),
            runtime: self.runtime.handle().clone(),
            location: self.location(name)?,
            name: name.to_owned(),
            target: self.description.clone(),
            part_size: self.part_size,
            upload_concurrency: self.upload_concurrency,
            buffer: Vec::new(),
            upload: None,
        }))
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let location = self.location(name)?;
        let result = self
            .runtime
            .block_on(self.store.get(&location))
            .map_err(|error| Error::target(&self.description, name, "opening", to_io(error)))?;
        Ok(Box::new(S3Reader {
            runtime: self.runtime.handle().clone(),
            stream: result.into_stream(),
            current: Bytes::new(),
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        let location = self.location(name)?;
        self.runtime
            .block_on(self.store.delete(&location))
            .map_err(|error| Error::target(&self.description, name, "deleting", to_io(error)))
    }
}

struct S3Writer {
    store: Arc<AmazonS3>,
    runtime: Handle,
    location: Path,
    name: String,
    target: String,
    part_size: usize,
    upload_concurrency: usize,
    /// Bytes not yet handed to an upload: until the first part is full we do
    /// not know whether a single PUT will do.
    buffer: Vec<u8>,
    upload: Option<WriteMultipart>,
}

impl S3Writer {
    fn send_part(&mut self) -> io::Result<()> {
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => {
                let started = self
                    .runtime
                    .block_on(self.store.put_multipart(&self.location))
                    .map_err(to_io)?;
                self.upload
                    .insert(WriteMultipart::new_with_chunk_size(started, self.part_size))
            }
        };
        self.runtime
            .block_on(upload.wait_for_capacity(self.upload_concurrency))
            .map_err(to_io)?;
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_size));
        // Spawning the part's upload needs the runtime's context.
        let _context = self.runtime.enter();
        upload.put(Bytes::from(part));
        Ok(())
    }
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let taken = data.len().min(self.part_size - self.buffer.len());
        self.buffer.extend_from_slice(&data[..taken]);
        if self.buffer.len() == self.part_size {
            self.send_part()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let failed = |error| Error::target(&self.target, &self.name, "writing", to_io(error));
        let result = match self.upload.take() {
            Some(mut upload) => {
                let _context = self.runtime.enter();
                upload.put(Bytes::from(std::mem::take(&mut self.buffer)));
                self.runtime.block_on(upload.finish()).map(drop)
            }
            None => {
                let payload = PutPayload::from(Bytes::from(std::mem::take(&mut self.buffer)));
                self.runtime
                    .block_on(self.store.put(&self.location, payload))
                    .map(drop)
            }
        };
        result.map_err(failed)
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            // Not committed: abort, so no parts linger in the bucket.
            let _ = self.runtime.block_on(upload.abort());
        }
    }
}

/// A GET's body stream as a blocking reader.
struct S3Reader {
    runtime: Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(chunk) => self.current = chunk.map_err(to_io)?,
                None => return Ok(0),
            }
        }
        let taken = self.current.len().min(out.len());
        out[..taken].copy_from_slice(&self.current.split_to(taken));
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_hides_the_secret_key() {
        let config = super::S3Config::new("archief", "AKIAEXAMPLE", "geheim-sleutel-123");
        let shown = format!("{config:?}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
        assert!(!shown.contains("geheim-sleutel-123"), "{shown}");
    }
}
