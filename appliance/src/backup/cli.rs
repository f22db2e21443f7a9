//! `archipel backup ...`: create, list, verify, restore and prune backups.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, anyhow, bail};
use archipel_backup::{
    BackupName, CheckedBackup, CreateOptions, DecryptionKey, PartsCheck, Phase, Progress, S3Config,
    S3Target, SecretString, Unlock,
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{OpenTarget, Snapshot, TargetConfig, VAULT_CHECKPOINT};
use crate::{admin, config::Config, node};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Back up the node now, running or stopped: to every configured target,
    /// or to the ones named with --target.
    Create {
        #[command(flatten)]
        targets: TargetArgs,
        /// Encrypt to this age recipient (age1...) instead of
        /// `backup.recipients`; may be repeated.
        #[arg(long, value_name = "AGE1...")]
        recipient: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the backups in a target (no key needed).
    List {
        #[command(flatten)]
        targets: TargetArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt a backup and check every file's hash, the manifest's
    /// signature and the vault's log, restoring nothing.
    Verify {
        /// The backup's name (archipel-YYYYMMDDTHHMMSSZ); default: the newest.
        name: Option<String>,
        #[command(flatten)]
        targets: TargetArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a node's data folder from a backup, on new hardware too:
    /// everything is unpacked and checked in a temporary folder beside the
    /// destination and switched into place only when all checks pass.
    Restore {
        /// The backup's name; default: the newest.
        name: Option<String>,
        #[command(flatten)]
        targets: TargetArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The new data folder: must not exist, or be empty.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the backups the retention policy (`[backup.keep]`) no longer
    /// keeps, and leftovers of failed runs.
    Prune {
        #[command(flatten)]
        targets: TargetArgs,
        /// Show what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an age identity (the private key that opens backups; keep it off
    /// the node) and print its recipient for `backup.recipients`.
    Keygen {
        /// Where to write the identity (mode 0600; must not exist).
        file: PathBuf,
    },
}

/// Which target(s) a command works on.
#[derive(Args)]
pub struct TargetArgs {
    /// A target named in `[[backup.targets]]`, a directory (a path with a
    /// `/`), or `s3://bucket/prefix` (credentials from AWS_ACCESS_KEY_ID
    /// and AWS_SECRET_ACCESS_KEY). Default: the configured targets.
    #[arg(long, value_name = "NAME|DIR|s3://BUCKET/PREFIX")]
    target: Vec<String>,
    /// The S3 endpoint for an s3:// target, e.g. https://s3.example.internal.
    #[arg(long, env = "ARCHIPEL_S3_ENDPOINT", value_name = "URL")]
    s3_endpoint: Option<String>,
    /// The S3 region for an s3:// target.
    #[arg(long, env = "ARCHIPEL_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
}

/// What opens a backup.
#[derive(Args)]
pub struct KeyArgs {
    /// An age identity file (AGE-SECRET-KEY-1...).
    #[arg(long, short, value_name = "FILE", conflicts_with = "passphrase")]
    identity: Option<PathBuf>,
    /// The backup is a passphrase recovery copy: read the passphrase from
    /// ARCHIPEL_BACKUP_PASSPHRASE or the terminal.
    #[arg(long)]
    passphrase: bool,
    /// The node's public key (base64), which the backup must be signed
    /// with: `backup create` prints it, keep it with the identity. Needed
    /// where the node's own data is not at hand (new hardware): a backup
    /// is never trusted on its own word.
    #[arg(long, value_name = "BASE64")]
    node_key: Option<String>,
}

/// Runs a backup command; `node` is the configuration given with
/// --config/--data-dir, or the installed one if there is one.
pub fn run(node_config: Option<Config>, command: BackupCommand) -> Result<()> {
    match command {
        BackupCommand::Create {
            targets,
            recipient,
            json,
        } => {
            let config = node_config.ok_or_else(|| {
                anyhow!("which node? give --config FILE or --data-dir DIR (no /etc/archipel/archipel.toml here)")
            })?;
            create(&config, &targets, &recipient, json)
        }
        BackupCommand::List { targets, json } => {
            list(&open_targets(node_config.as_ref(), &targets, false)?, json)
        }
        BackupCommand::Verify {
            name,
            targets,
            key,
            json,
        } => {
            let target = one_target(node_config.as_ref(), &targets)?;
            verify(node_config.as_ref(), &target, name.as_deref(), &key, json)
        }
        BackupCommand::Restore {
            name,
            targets,
            key,
            to,
            json,
        } => {
            let target = one_target(node_config.as_ref(), &targets)?;
            restore(
                node_config.as_ref(),
                &target,
                name.as_deref(),
                &key,
                &to,
                json,
            )
        }
        BackupCommand::Prune {
            targets,
            dry_run,
            json,
        } => prune(node_config.as_ref(), &targets, dry_run, json),
        BackupCommand::Keygen { file } => keygen(&file),
    }
}

fn keygen(file: &Path) -> Result<()> {
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::OpenOptionsExt;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    writeln!(
        out,
        "# Archipel backup identity: opens backups encrypted to\n# {recipient}\n{}",
        identity.to_string().expose_secret()
    )?;
    out.sync_all()?;
    println!("{recipient}");
    eprintln!(
        "wrote the identity to {}; keep it off the node, and put the line above in `backup.recipients`",
        file.display()
    );
    Ok(())
}

/// The targets `args` names, or else every configured one.
fn open_targets(
    config: Option<&Config>,
    args: &TargetArgs,
    for_create: bool,
) -> Result<Vec<OpenTarget>> {
    let configured: &[TargetConfig] = config.map_or(&[], |c| &c.backup.targets);
    if args.target.is_empty() {
        if configured.is_empty() {
            bail!(
                "no backup target: name one with --target (a directory, or s3://bucket/prefix){}",
                if for_create {
                    ", or configure `[[backup.targets]]`"
                } else {
                    ""
                }
            );
        }
        return configured.iter().map(TargetConfig::open).collect();
    }
    args.target
        .iter()
        .map(|spec| resolve_target(spec, configured, args))
        .collect()
}

fn one_target(config: Option<&Config>, args: &TargetArgs) -> Result<OpenTarget> {
    let mut targets = open_targets(config, args, false)?;
    if targets.len() > 1 {
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        bail!(
            "several targets ({}): choose one with --target",
            names.join(", ")
        );
    }
    Ok(targets.remove(0))
}

fn resolve_target(
    spec: &str,
    configured: &[TargetConfig],
    args: &TargetArgs,
) -> Result<OpenTarget> {
    if let Some(target) = configured.iter().find(|t| t.name == spec) {
        return target.open();
    }
    if let Some(rest) = spec.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let variable = |name: &str| {
            std::env::var(name).map_err(|_| anyhow!("{spec}: set {name} for the S3 credentials"))
        };
        let mut config = S3Config::new(
            bucket,
            variable("AWS_ACCESS_KEY_ID")?,
            variable("AWS_SECRET_ACCESS_KEY")?,
        );
        config.endpoint.clone_from(&args.s3_endpoint);
        config.region.clone_from(&args.s3_region);
        config.prefix = prefix.trim_end_matches('/').to_owned();
        config.allow_http = args.s3_endpoint.as_deref().is_some_and(is_loopback_http);
        return Ok(OpenTarget {
            name: spec.to_owned(),
            target: Box::new(S3Target::new(&config)?),
            passphrase_file: None,
        });
    }
    if spec.contains('/') || spec.starts_with('.') {
        return Ok(OpenTarget {
            name: spec.to_owned(),
            target: Box::new(archipel_backup::DirTarget::new(spec)?),
            passphrase_file: None,
        });
    }
    let names: Vec<&str> = configured.iter().map(|t| t.name.as_str()).collect();
    bail!(
        "no target named `{spec}` in `[[backup.targets]]` ({}); a directory needs a `/` (./{spec})",
        if names.is_empty() {
            "none configured".to_owned()
        } else {
            format!("configured: {}", names.join(", "))
        }
    )
}

/// Plain HTTP is allowed only to a server on this machine.
fn is_loopback_http(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .and_then(|host| host.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
        || endpoint.starts_with("http://localhost")
}

/// A progress bar with throughput on a terminal; nothing otherwise.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(json: bool, label: &str) -> Self {
        if json || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_owned());
        Self(Some(bar))
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn begin(&self, phase: Phase, total_bytes: u64) {
        if let Some(bar) = &self.0 {
            let verb = match phase {
                Phase::Create => "backing up",
                Phase::Verify => "verifying",
                Phase::Restore => "restoring",
            };
            bar.set_message(format!("{verb} {}", bar.message()));
            bar.set_length(total_bytes);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }
}

/// A snapshot of the node: made here if it is stopped, by the node itself
/// (over its admin socket) if it runs.
fn take_snapshot(config: &Config) -> Result<Snapshot> {
    match node::open(config) {
        Ok(node) => super::snapshot(
            &config.node.data_dir,
            &node.homeserver.services,
            &node.vault,
        ),
        Err(e) if e.is::<node::Running>() => {
            let answer = admin::ask(config, &admin::Request::BackupSnapshot)?;
            let made: admin::SnapshotMade = serde_json::from_str(&answer)
                .context("the node's answer to the snapshot request")?;
            Ok(Snapshot::adopt(
                made.dir,
                made.vault_checkpoint,
                made.erasures,
            ))
        }
        Err(e) => Err(e),
    }
}

/// One target's outcome of `create`.
pub struct Written {
    pub target: String,
    pub outcome: Result<(archipel_backup::BackupInfo, f64)>,
}

/// Writes one backup of `snapshot` to each target, one after the other. A
/// failing target does not stop the others.
pub fn write_backups(
    config: &Config,
    snapshot: &Snapshot,
    targets: &[OpenTarget],
    recipients: &[String],
    progress: &dyn Fn(&str) -> Box<dyn Progress>,
) -> Vec<Written> {
    let (sources, mut metadata) = super::sources(config, snapshot);
    let signing_key = node::node_signing_key(&config.node.data_dir);
    if let Ok(key) = &signing_key {
        metadata.insert(NODE_KEY.into(), B64.encode(key.verifying_key().as_bytes()));
    }
    targets
        .iter()
        .map(|target| {
            let outcome = (|| {
                let signing_key = signing_key
                    .as_ref()
                    .map_err(|e| anyhow!("the node key: {e:#}"))?
                    .clone();
                let mut options = CreateOptions::new(
                    config.homeserver.server_name.as_str(),
                    signing_key,
                    super::encryption(target, recipients)?,
                );
                options.metadata.clone_from(&metadata);
                let started = Instant::now();
                let bar = progress(&target.name);
                let info =
                    archipel_backup::create(&sources, &options, target.target.as_ref(), &*bar)?;
                Ok((info, started.elapsed().as_secs_f64()))
            })();
            Written {
                target: target.name.clone(),
                outcome,
            }
        })
        .collect()
}

/// The manifest's record of the node's public key (base64), which signs the
/// manifest and the vault's checkpoints.
const NODE_KEY: &str = "node_key";

fn create(config: &Config, args: &TargetArgs, recipients: &[String], json: bool) -> Result<()> {
    let targets = open_targets(Some(config), args, true)?;
    let recipients = if recipients.is_empty() {
        config.backup.recipients.clone()
    } else {
        archipel_backup::Encryption::to_recipients(recipients)?;
        recipients.to_vec()
    };
    let snapshot = take_snapshot(config)?;
    let written = write_backups(config, &snapshot, &targets, &recipients, &|name| {
        Box::new(Bar::new(json, name))
    });
    drop(snapshot);
    let mut failed = 0;
    let mut results = Vec::new();
    for Written { target, outcome } in written {
        match outcome {
            Ok((info, seconds)) => {
                let files = info
                    .manifest
                    .entries
                    .iter()
                    .filter(|e| e.kind == archipel_backup::EntryKind::File)
                    .count();
                let bytes = info.manifest.total_bytes;
                let node_key = info.manifest.metadata.get(NODE_KEY);
                if json {
                    results.push(json!({
                        "target": target, "ok": true, "name": info.name.as_str(),
                        "files": files, "bytes": bytes, "archive_size": info.archive_size,
                        "seconds": seconds,
                        "vault_checkpoint": info.manifest.metadata.get(VAULT_CHECKPOINT),
                        "node_key": node_key,
                    }));
                } else {
                    println!(
                        "{} written to {target}: {files} files, {} read, {} stored, in {seconds:.1} s ({}/s)\n  \
                         signed by the node key {} (a restore on new hardware needs it: --node-key)",
                        info.name,
                        human_bytes(bytes),
                        human_bytes(info.archive_size),
                        human_bytes((bytes as f64 / seconds.max(1e-3)) as u64),
                        node_key.map_or("?", String::as_str),
                    );
                }
            }
            Err(e) => {
                failed += 1;
                if json {
                    results.push(json!({"target": target, "ok": false, "error": format!("{e:#}")}));
                } else {
                    eprintln!("backup to {target} FAILED: {e:#}");
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if failed > 0 {
        bail!("{failed} of {} backups failed", results.len().max(failed));
    }
    Ok(())
}

fn list(targets: &[OpenTarget], json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for target in targets {
        let backups = archipel_backup::list(target.target.as_ref())?;
        if json {
            rows.extend(backups.iter().map(|b| {
                json!({
                    "target": target.name, "name": b.name.as_str(),
                    "created": b.created().to_string(), "complete": b.complete,
                    "archive_size": b.archive_size,
                })
            }));
            continue;
        }
        println!("{} ({}):", target.name, target.target.describe());
        if backups.is_empty() {
            println!("  no backups");
        }
        for backup in &backups {
            println!(
                "  {}  {:>10}  {}",
                backup.name,
                backup.archive_size.map_or("-".into(), human_bytes),
                if backup.complete {
                    "complete"
                } else {
                    "INCOMPLETE (a failed or running backup)"
                }
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// The backup `name`, or the newest complete one.
fn choose(target: &OpenTarget, name: Option<&str>) -> Result<BackupName> {
    if let Some(name) = name {
        return Ok(BackupName::parse(name)?);
    }
    archipel_backup::list(target.target.as_ref())?
        .into_iter()
        .rev()
        .find(|b| b.complete)
        .map(|b| b.name)
        .ok_or_else(|| anyhow!("{}: no complete backup", target.target.describe()))
}

fn decryption_key(args: &KeyArgs) -> Result<DecryptionKey> {
    if args.passphrase {
        let passphrase = match std::env::var("ARCHIPEL_BACKUP_PASSPHRASE") {
            Ok(passphrase) => passphrase,
            Err(_) => rpassword::prompt_password("Backup passphrase: ")
                .context("reading the passphrase")?,
        };
        return Ok(DecryptionKey::from_passphrase(SecretString::from(
            passphrase,
        )));
    }
    let Some(path) = &args.identity else {
        bail!(
            "give the age identity that opens the backup (--identity FILE), or --passphrase for a recovery copy"
        );
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    DecryptionKey::parse_identity_file(&text).with_context(|| format!("{}", path.display()))
}

/// What the manifest says about the node, checked against what this
/// machine knows of it.
struct Opened {
    name: BackupName,
    node_key: ed25519_dalek::VerifyingKey,
    vault_checkpoint: String,
    server_name: String,
    /// What [`Opened::check_vault`] found, for the report.
    vault_said: std::sync::Mutex<String>,
}

impl Opened {
    /// The check of the vault unpacked under `root` (by verify or restore).
    fn check_vault(&self, root: &Path) -> std::result::Result<(), String> {
        let said = super::check_vault(root, &self.node_key, &self.vault_checkpoint)?;
        *self.vault_said.lock().unwrap_or_else(|p| p.into_inner()) = said;
        Ok(())
    }

    fn vault_said(self) -> String {
        self.vault_said
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn open_manifest(
    config: Option<&Config>,
    target: &OpenTarget,
    name: Option<&str>,
    key: &DecryptionKey,
    pinned: Option<&str>,
) -> Result<Opened> {
    let name = choose(target, name)?;
    let manifest =
        archipel_backup::read_manifest(target.target.as_ref(), &name, &Unlock::new(key))?;
    let node_key = manifest
        .metadata
        .get(NODE_KEY)
        .and_then(|text| B64.decode(text).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| anyhow!("backup {name}: the manifest does not name the node's key"))?;
    // The backup must be the node's own: the key given, or the one in the
    // node's data. Anyone who can write to a target can sign a backup and
    // name their own key in it.
    let known = match pinned {
        Some(text) => Some(
            B64.decode(text.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
                .ok_or_else(|| anyhow!("--node-key {text}: not an ed25519 public key in base64"))?,
        ),
        None => config
            .and_then(|c| node::node_signing_key(&c.node.data_dir).ok())
            .map(|k| k.verifying_key()),
    };
    match known {
        Some(known) if known != node_key => bail!(
            "backup {name} was made by another node (key {}), not this one ({})",
            B64.encode(node_key.as_bytes()),
            B64.encode(known.as_bytes())
        ),
        Some(_) => {}
        None => bail!(
            "backup {name} says it was signed by the node key {}; without the node's data \
             here, give the key you trust with --node-key (`backup create` printed it)",
            B64.encode(node_key.as_bytes())
        ),
    }
    Ok(Opened {
        name,
        node_key,
        vault_checkpoint: manifest
            .metadata
            .get(VAULT_CHECKPOINT)
            .cloned()
            .unwrap_or_default(),
        server_name: manifest.server_name,
        vault_said: std::sync::Mutex::default(),
    })
}

fn checked_json(checked: &CheckedBackup, target: &OpenTarget, vault: &str) -> Value {
    json!({
        "target": target.name, "name": checked.name.as_str(),
        "server_name": checked.manifest.server_name,
        "created": checked.manifest.created.to_string(),
        "files": checked.files, "bytes": checked.bytes, "archive_size": checked.archive_size,
        "signer": checked.signer, "vault": vault,
        "vault_checkpoint": checked.manifest.metadata.get(VAULT_CHECKPOINT),
    })
}

fn verify(
    config: Option<&Config>,
    target: &OpenTarget,
    name: Option<&str>,
    key: &KeyArgs,
    json: bool,
) -> Result<()> {
    let pinned = key.node_key.as_deref();
    let key = decryption_key(key)?;
    let opened = open_manifest(config, target, name, &key, pinned)?;
    let check = |root: &Path| opened.check_vault(root);
    // The vault's database can be large: unpack it beside the node's data
    // (same encrypted disk) rather than in a memory-backed /tmp.
    let scratch_in = config
        .map(|c| c.node.data_dir.clone())
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let parts = PartsCheck {
        parts: &["vault/db", "vault/media"],
        scratch_in: &scratch_in,
        check: &check,
    };
    let bar = Bar::new(json, opened.name.as_str());
    let checked = archipel_backup::verify_parts(
        target.target.as_ref(),
        &opened.name,
        &Unlock::new(&key).trusting(&opened.node_key),
        &parts,
        &bar,
    );
    bar.finish();
    let checked = checked?;
    let vault = opened.vault_said();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checked_json(&checked, target, &vault))?
        );
    } else {
        println!(
            "{} in {}: OK\n  {} files, {} (every hash checked), signed by the node key {}\n  {vault}",
            checked.name,
            target.name,
            checked.files,
            human_bytes(checked.bytes),
            checked.signer
        );
    }
    Ok(())
}

fn restore(
    config: Option<&Config>,
    target: &OpenTarget,
    name: Option<&str>,
    key: &KeyArgs,
    to: &Path,
    json: bool,
) -> Result<()> {
    let pinned = key.node_key.as_deref();
    let key = decryption_key(key)?;
    let opened = open_manifest(config, target, name, &key, pinned)?;
    let check = |root: &Path| {
        let server_name = std::fs::read_to_string(root.join("server_name")).unwrap_or_default();
        if server_name.trim() != opened.server_name {
            return Err(format!(
                "the restored server_name file says `{}`, the manifest `{}`",
                server_name.trim(),
                opened.server_name
            ));
        }
        opened.check_vault(root)
    };
    let bar = Bar::new(json, opened.name.as_str());
    let checked = archipel_backup::restore(
        target.target.as_ref(),
        &opened.name,
        &Unlock::new(&key).trusting(&opened.node_key),
        to,
        Some(&check),
        &bar,
    );
    bar.finish();
    let checked = checked?;
    let reapplied = reapply_newer_erasures(target, &opened, &key, to)?;
    let vault = opened.vault_said();
    let config_files: Vec<(&String, &String)> = checked
        .manifest
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("config/"))
        .collect();
    if json {
        let mut value = checked_json(&checked, target, &vault);
        value["restored_to"] = json!(to.display().to_string());
        value["erasures_reapplied"] = json!(reapplied);
        value["config_files"] = json!(
            config_files
                .iter()
                .map(|(k, v)| json!({"restored": to.join(k).display().to_string(), "was": v}))
                .collect::<Vec<_>>()
        );
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} restored into {}: {} files, {}; server name {}\n  {vault}",
        checked.name,
        to.display(),
        checked.files,
        human_bytes(checked.bytes),
        checked.manifest.server_name
    );
    if reapplied > 0 {
        println!(
            "  {reapplied} record(s) erased after this backup was made: erased again (the homeserver's copies are purged when the node starts)"
        );
    }
    if config_files.is_empty() {
        println!(
            "  start it with: archipel dev --data-dir {} --server-name {}",
            to.display(),
            checked.manifest.server_name
        );
    } else {
        println!("  the node's configuration and identity files, to put back in place:");
        for (restored, was) in config_files {
            println!("    {} -> {was}", to.join(restored).display());
        }
    }
    Ok(())
}

/// Erases again, in the vault restored into `to`, what was erased after
/// the restored backup was made: the newest complete backup on the target
/// (made by the same node) carries the ledger of every erasure up to it.
/// Returns how many records it erased.
fn reapply_newer_erasures(
    target: &OpenTarget,
    restored: &Opened,
    key: &DecryptionKey,
    to: &Path,
) -> Result<usize> {
    let newest = choose(target, None)?;
    if newest == restored.name {
        return Ok(0);
    }
    let manifest = archipel_backup::read_manifest(
        target.target.as_ref(),
        &newest,
        &Unlock::new(key).trusting(&restored.node_key),
    )
    .with_context(|| format!("reading the erasures of the newest backup {newest}"))?;
    let ledger: Vec<archipel_vault::procedure::ErasedEvent> =
        match manifest.metadata.get(super::VAULT_ERASURES) {
            Some(text) => serde_json::from_str(text)
                .with_context(|| format!("backup {newest}: its erasure ledger"))?,
            None => return Ok(0),
        };
    if ledger.is_empty() {
        return Ok(0);
    }
    let store = archipel_store::Store::open(
        &to.join("vault/db"),
        archipel_vault::columns::COLUMNS,
        &archipel_store::StoreOptions::default(),
    )?;
    let key_file = to.join("vault.key");
    if !key_file.is_file() {
        bail!(
            "{} erasure(s) were decided after backup {}, but the restored data has no vault.key to apply them with: put the vault key at {} and restore again",
            ledger.len(),
            restored.name,
            key_file.display()
        );
    }
    let vault = archipel_vault::Vault::open(
        store,
        &to.join("vault"),
        archipel_vault::seal::VaultKey::load(&key_file)?,
        node::node_signing_key(to)?,
        archipel_vault::origin_for(&restored.server_name),
        archipel_vault::CheckpointPolicy::default(),
    )?;
    let reapplied = vault.reapply_erasures(&ledger, &format!("restore (ledger of {newest})"))?;
    vault.checkpoint()?;
    Ok(reapplied)
}

fn prune(config: Option<&Config>, args: &TargetArgs, dry_run: bool, json: bool) -> Result<()> {
    let backup = config.map(|c| c.backup.clone()).unwrap_or_default();
    let policy = backup.keep.policy();
    let time_zone = backup.time_zone();
    let mut reports = Vec::new();
    for target in open_targets(config, args, false)? {
        let report = archipel_backup::prune(
            target.target.as_ref(),
            &policy,
            &time_zone,
            jiff::Timestamp::now(),
            dry_run,
        )?;
        if json {
            reports.push(json!({"target": target.name, "dry_run": dry_run, "report": report}));
            continue;
        }
        let verb = if dry_run { "would delete" } else { "deleted" };
        println!(
            "{}: kept {}, {verb} {}, {verb} {} leftovers of failed runs",
            target.name,
            report.kept.len(),
            report.deleted.len(),
            report.leftovers.len()
        );
        for name in &report.deleted {
            println!("  {verb} {name}");
        }
        for name in &report.leftovers {
            println!("  {verb} leftover {name}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
