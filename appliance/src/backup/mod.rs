//! Backups of this node: what goes into one, from which snapshot, to where.
//!
//! `archipel-backup` makes the archive (tar, zstd, age, a signed manifest)
//! and talks to the targets; this module decides the rest:
//!
//! - **A snapshot** of the running node, one point in time: with the
//!   vault's appends held off, a checkpoint is signed over its whole log,
//!   then the homeserver's database is checkpointed (RocksDB) and its media
//!   hard-linked, then the vault's. Every event in the homeserver's copy is
//!   either in the vault's copy or still in the copied capture outbox, so a
//!   restored node archives it again on start; the vault's copy is exactly
//!   the signed checkpoint the manifest records. The snapshot lives in
//!   `.backup-snapshot-*` inside the data folder (same file system: hard
//!   links, no copied bytes) and is removed when the backup is written.
//!   Erasures wait for it (they take the same admin lock), so a record is
//!   never erased in one copy and not the other.
//!   The archive member's crypto store (its room keys) is copied after the
//!   vault, by SQLite's `VACUUM INTO`.
//! - **The sources**: the snapshot, the node key (`signing.key`), its
//!   server name, the vault key of a development node, and on a production
//!   node the configuration and the files that make the node's identity
//!   (vault key, federation certificate and key, CA bundle) under `config/`.
//! - **The targets** of `[backup]` and the encryption for each.

pub mod cli;
pub mod schedule;
mod write;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use archipel_backup::{DirTarget, Encryption, S3Config, S3Target, SecretString, Source, Target};
use serde::Deserialize;

use crate::config::Config;

/// `[backup]`: where backups go, encrypted to whom, how often, and how many
/// are kept.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// age X25519 recipients (`age1...`) every backup is encrypted to. Their
    /// identities (private keys) are kept off the node.
    pub recipients: Vec<String>,
    /// Where backups are written (`[[backup.targets]]`).
    pub targets: Vec<TargetConfig>,
    pub schedule: ScheduleConfig,
    pub keep: KeepConfig,
}

/// One place backups go: a directory (a mounted disk or USB stick) or an
/// S3-compatible bucket.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// How the CLI names it (`--target NAME`).
    pub name: String,
    pub directory: Option<PathBuf>,
    pub s3: Option<S3TargetConfig>,
    /// Encrypt backups to this target with the passphrase in this file
    /// instead of the recipients: an offline recovery copy that opens
    /// without any key file.
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3TargetConfig {
    /// e.g. `https://s3.example.internal`; leave out for AWS itself.
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    /// Objects go under this prefix (e.g. `archipel/bzk`).
    #[serde(default)]
    pub prefix: String,
    pub access_key_id: String,
    /// A file holding the secret access key (never the key itself here).
    pub secret_access_key_file: PathBuf,
    /// Plain HTTP, only for a server on loopback.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// When `archipel run` makes backups: at `at` in `time_zone`, and every
/// `every_hours` after it through the day.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Hours between backups: 1, 2, 3, 4, 6, 8, 12 or 24; 0 turns scheduled
    /// backups off (`archipel backup create` still works).
    pub every_hours: u32,
    /// Time of day, `HH:MM`.
    pub at: String,
    /// The time zone `at` and the retention's days, weeks and months are in.
    pub time_zone: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            every_hours: 24,
            at: "02:00".into(),
            time_zone: "Europe/Amsterdam".into(),
        }
    }
}

/// Which backups pruning keeps: the newest of each of the last `daily`
/// days, `weekly` weeks and `monthly` months that have one, and the
/// `last` newest. The newest backup is always kept.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepConfig {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Default for KeepConfig {
    fn default() -> Self {
        Self {
            last: 0,
            daily: 7,
            weekly: 4,
            monthly: 12,
        }
    }
}

impl KeepConfig {
    pub fn policy(&self) -> archipel_backup::RetentionPolicy {
        archipel_backup::RetentionPolicy {
            keep_last: self.last,
            keep_daily: self.daily,
            keep_weekly: self.weekly,
            keep_monthly: self.monthly,
        }
    }
}

impl BackupConfig {
    /// Checks everything that can be checked without touching a target.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.recipients.is_empty() {
            Encryption::to_recipients(&self.recipients)
                .map_err(|e| format!("`backup.recipients`: {e}"))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, target) in self.targets.iter().enumerate() {
            let at = format!("`backup.targets[{i}]`");
            if target.name.is_empty() || target.name.contains('/') || target.name.starts_with('.') {
                return Err(format!(
                    "{at}.name `{}`: a plain name, without `/` and not starting with `.`",
                    target.name
                ));
            }
            if !names.insert(&target.name) {
                return Err(format!("{at}: the name `{}` is used twice", target.name));
            }
            match (&target.directory, &target.s3) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "{at} ({}): give exactly one of `directory` and `s3`",
                        target.name
                    ));
                }
            }
            if target.passphrase_file.is_none() && self.recipients.is_empty() {
                return Err(format!(
                    "{at} ({}): backups need `backup.recipients` (age1... keys) or a `passphrase_file` for this target",
                    target.name
                ));
            }
        }
        let schedule = &self.schedule;
        if schedule.every_hours != 0 && 24 % schedule.every_hours != 0 {
            return Err(format!(
                "`backup.schedule.every_hours` = {}: one of 1, 2, 3, 4, 6, 8, 12, 24 (or 0 for no schedule)",
                schedule.every_hours
            ));
        }
        schedule::parse_time_of_day(&schedule.at)
            .map_err(|e| format!("`backup.schedule.at`: {e}"))?;
        jiff::tz::TimeZone::get(&schedule.time_zone).map_err(|e| {
            format!(
                "`backup.schedule.time_zone` = `{}`: {e}",
                schedule.time_zone
            )
        })?;
        Ok(())
    }

    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.schedule.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// An opened target and how backups to it are encrypted.
pub struct OpenTarget {
    pub name: String,
    pub target: Box<dyn Target>,
    /// The passphrase file of a recovery-copy target.
    pub passphrase_file: Option<PathBuf>,
}

impl TargetConfig {
    pub fn open(&self) -> Result<OpenTarget> {
        let target: Box<dyn Target> = match (&self.directory, &self.s3) {
            (Some(directory), _) => Box::new(DirTarget::new(directory)?),
            (None, Some(s3)) => {
                let secret = read_secret(&s3.secret_access_key_file)?;
                let mut config = S3Config::new(&s3.bucket, &s3.access_key_id, secret);
                config.endpoint.clone_from(&s3.endpoint);
                config.region.clone_from(&s3.region);
                config.prefix.clone_from(&s3.prefix);
                config.allow_http = s3.allow_http;
                Box::new(S3Target::new(&config)?)
            }
            (None, None) => bail!("target `{}` has no `directory` or `s3`", self.name),
        };
        Ok(OpenTarget {
            name: self.name.clone(),
            target,
            passphrase_file: self.passphrase_file.clone(),
        })
    }
}

/// A secret from a file, one line, without its line break.
pub fn read_secret(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(secret)
}

/// How a backup to `target` is encrypted: its passphrase, or `recipients`.
pub fn encryption(target: &OpenTarget, recipients: &[String]) -> Result<Encryption> {
    match &target.passphrase_file {
        Some(path) => Ok(Encryption::to_passphrase(SecretString::from(read_secret(
            path,
        )?))),
        None if recipients.is_empty() => bail!(
            "no recipients to encrypt to: set `backup.recipients` in the configuration or give --recipient age1..."
        ),
        None => Ok(Encryption::to_recipients(recipients)?),
    }
}

/// The name of snapshot folders in the data folder.
const SNAPSHOT_PREFIX: &str = ".backup-snapshot-";

/// A point-in-time copy of the node's databases and media inside its data
/// folder, removed when dropped.
pub struct Snapshot {
    dir: Option<PathBuf>,
    /// The vault's signed checkpoint note the copy holds exactly.
    pub vault_checkpoint: String,
    /// The vault's erasure ledger as of the copy (JSON): a restore of an
    /// older backup erases again what this lists.
    pub erasures: String,
}

impl Snapshot {
    /// Takes over a snapshot folder made by the running node.
    pub fn adopt(dir: PathBuf, vault_checkpoint: String, erasures: String) -> Self {
        Self {
            dir: Some(dir),
            vault_checkpoint,
            erasures,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new(""))
    }

    /// Hands the folder to someone else (the CLI, over the admin socket).
    pub fn keep(mut self) -> PathBuf {
        self.dir.take().unwrap_or_default()
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a backup snapshot");
        }
    }
}

/// Makes a snapshot of an open node. The caller holds off erasures (the
/// admin lock on a running node; nothing else runs on a stopped one).
pub fn snapshot(
    data_dir: &Path,
    services: &archipel_homeserver::Services,
    vault: &archipel_vault::Vault,
) -> Result<Snapshot> {
    let dir = tempfile::Builder::new()
        .prefix(SNAPSHOT_PREFIX)
        .tempdir_in(data_dir)
        .with_context(|| format!("creating a snapshot folder in {}", data_dir.display()))?
        .keep();
    let mut snapshot = Snapshot::adopt(dir, String::new(), String::new());
    let made = vault.frozen(|frozen| -> Result<(String, String)> {
        // Only the errors' own messages: their sources repeat them.
        services
            .snapshot(&snapshot.dir().join("homeserver"))
            .map_err(|e| anyhow::anyhow!("copying the homeserver's database: {e}"))?;
        frozen
            .copy_to(&snapshot.dir().join("vault"))
            .map_err(|e| anyhow::anyhow!("copying the vault: {e}"))?;
        let ledger = vault
            .erasure_ledger()
            .map_err(|e| anyhow::anyhow!("reading the vault's erasures: {e}"))?;
        Ok((frozen.checkpoint.clone(), serde_json::to_string(&ledger)?))
    });
    (snapshot.vault_checkpoint, snapshot.erasures) = made.context("holding the vault still")??;
    // After the vault: every encrypted event it holds has had its chance to
    // bring its room key into the device's store first.
    archipel_archive_member::copy_store(
        &data_dir.join(crate::archive_device::STORE_DIR),
        &snapshot.dir().join(crate::archive_device::STORE_DIR),
    )
    .context("copying the archive member's crypto store")?;
    Ok(snapshot)
}

/// Removes snapshot folders a backup that stopped halfway left behind.
pub fn remove_stale_snapshots(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(SNAPSHOT_PREFIX))
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Files of a production node's identity and configuration, outside the
/// data folder, as `(name under config/, path)`.
fn config_files(config: &Config) -> Vec<(&'static str, PathBuf)> {
    if config.dev {
        return Vec::new();
    }
    let mut files = vec![("archipel.toml", config.source.clone())];
    let optional = [
        ("vault.key", &config.vault.key_file),
        ("federation.crt", &config.federation.tls_certificate),
        ("federation.key", &config.federation.tls_private_key),
        ("ca-bundle.pem", &config.federation.ca_bundle),
    ];
    for (name, path) in optional {
        if let Some(path) = path {
            files.push((name, path.clone()));
        }
    }
    files
}

/// What goes into a backup of `config`'s node from `snapshot`, and the
/// facts the manifest records beside it.
pub fn sources(config: &Config, snapshot: &Snapshot) -> (Vec<Source>, BTreeMap<String, String>) {
    let data_dir = &config.node.data_dir;
    let snap = snapshot.dir();
    let mut sources = vec![
        Source::new("db", snap.join("homeserver/db")),
        Source::new("media", snap.join("homeserver/media")),
        Source::new("vault/db", snap.join("vault/db")),
        Source::new("vault/media", snap.join("vault/media")),
        Source::new("signing.key", data_dir.join("signing.key")),
        Source::new("server_name", data_dir.join("server_name")),
    ];
    if data_dir.join("vault.key").is_file() {
        sources.push(Source::new("vault.key", data_dir.join("vault.key")));
    }
    let device_store = snap.join(crate::archive_device::STORE_DIR);
    if device_store.is_dir() {
        sources.push(Source::new(crate::archive_device::STORE_DIR, device_store));
    }
    let mut metadata = BTreeMap::new();
    metadata.insert(
        VAULT_CHECKPOINT.to_owned(),
        snapshot.vault_checkpoint.clone(),
    );
    metadata.insert(VAULT_ERASURES.to_owned(), snapshot.erasures.clone());
    for (name, path) in config_files(config) {
        let absolute = std::path::absolute(&path).unwrap_or(path);
        metadata.insert(format!("config/{name}"), absolute.display().to_string());
        sources.push(Source::new(format!("config/{name}"), absolute));
    }
    (sources, metadata)
}

/// The manifest's record of the vault's signed checkpoint.
pub const VAULT_CHECKPOINT: &str = "vault_checkpoint";
/// The manifest's copy of the vault's erasure ledger (JSON: event IDs and
/// decision references).
pub const VAULT_ERASURES: &str = "vault_erasures";

/// Checks the vault in a restored or unpacked backup (`root/vault/db`):
/// its log recomputes and matches every checkpoint signed by `node_key`,
/// and it holds exactly the checkpoint the manifest recorded.
pub fn check_vault(
    root: &Path,
    node_key: &ed25519_dalek::VerifyingKey,
    manifest_checkpoint: &str,
) -> std::result::Result<String, String> {
    let store = archipel_store::Store::open(
        &root.join("vault/db"),
        archipel_vault::columns::COLUMNS,
        &archipel_store::StoreOptions::default(),
    )
    .map_err(|e| format!("the vault's database does not open: {e}"))?;
    let log = archipel_vault::log::Log::open(&store).map_err(|e| e.to_string())?;
    let report =
        archipel_vault::verify::verify(&log, &root.join("vault/media"), node_key, |_, _| {})
            .map_err(|e| format!("the vault cannot be verified: {e}"))?;
    if !report.ok() {
        let findings: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
        return Err(format!(
            "the vault's log does not verify: {}",
            findings.join("; ")
        ));
    }
    if manifest_checkpoint.is_empty() {
        return if report.log_size == 0 {
            Ok("the vault is empty".into())
        } else {
            Err("the manifest records no vault checkpoint, but the vault holds records".into())
        };
    }
    let checkpoint = archipel_vault::checkpoint::Checkpoint::open(manifest_checkpoint, node_key)
        .map_err(|e| format!("the manifest's vault checkpoint: {e}"))?;
    if report.log_size != checkpoint.size {
        return Err(format!(
            "the manifest's vault checkpoint signs {} records, the vault holds {}",
            checkpoint.size, report.log_size
        ));
    }
    if report.root != checkpoint.root {
        return Err("the vault's root differs from the manifest's checkpoint".into());
    }
    Ok(format!(
        "vault log verified: {} records, root {} as in the manifest's checkpoint",
        report.log_size,
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, report.root)
    ))
}
