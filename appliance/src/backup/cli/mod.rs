//! `archipel backup ...`: create, list, verify, restore and prune backups.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};

use crate::config::Config;

mod create;
mod inspect;
pub(crate) use inspect::check as check_backup;
mod progress;
mod prune;
mod restore;
mod targets;

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
            create::create(&config, &targets, &recipient, json)
        }
        BackupCommand::List { targets, json } => inspect::list(
            &targets::open_targets(node_config.as_ref(), &targets, false)?,
            json,
        ),
        BackupCommand::Verify {
            name,
            targets,
            key,
            json,
        } => {
            let target = targets::one_target(node_config.as_ref(), &targets)?;
            inspect::verify(node_config.as_ref(), &target, name.as_deref(), &key, json)
        }
        BackupCommand::Restore {
            name,
            targets,
            key,
            to,
            json,
        } => {
            let target = targets::one_target(node_config.as_ref(), &targets)?;
            restore::restore(
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
        } => prune::prune(node_config.as_ref(), &targets, dry_run, json),
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

pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
