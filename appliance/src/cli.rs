//! The command line.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::{
    args::{TokenCommand, UserCommand, VaultCommand},
    backup, config, provision, serve, users, vault_cli,
};

/// Archipel: a sovereign chat-and-archive appliance (Matrix homeserver,
/// archive vault, encrypted backups, admin console) in one binary.
#[derive(Parser)]
#[command(name = "archipel", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a production node from a TOML configuration file.
    Run {
        /// Path to the configuration file (see `appliance/archipel.example.toml`).
        #[arg(
            long,
            short,
            env = "ARCHIPEL_CONFIG",
            default_value = "/etc/archipel/archipel.toml"
        )]
        config: PathBuf,
    },
    /// Run a local development node: plain HTTP on loopback, data in a folder, no configuration needed.
    Dev(config::DevOptions),
    /// Manage local user accounts (on a running node too).
    User {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Issue and list registration tokens (m.login.registration_token).
    RegistrationToken {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The archive vault: status, verification, proofs, originals.
    Vault {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Encrypted backups: create, list, verify, restore, prune.
    Backup {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: backup::cli::BackupCommand,
    },
    /// The console on the machine's own screen (tty1 on the appliance):
    /// the node's status and log without signing in, and an operator's
    /// actions (a setup link, verifying the vault, restart, reboot) behind
    /// their password and authenticator code.
    LocalConsole {
        #[command(flatten)]
        target: Target,
    },
    /// What users reported to the operators (events and rooms), newest
    /// first; on a running node too.
    Reports {
        #[command(flatten)]
        target: Target,
        /// One JSON object per line instead of the table.
        #[arg(long)]
        json: bool,
        /// How many to show.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
    },
    /// The provisioning file a new appliance is set up from: check it.
    Provision {
        #[command(subcommand)]
        command: provision::ProvisionCommand,
    },
    /// Check a configuration file and print the effective settings.
    CheckConfig {
        #[arg(long, short, default_value = "/etc/archipel/archipel.toml")]
        config: PathBuf,
    },
}

/// Which node's data a management command works on.
#[derive(Args, Clone)]
pub struct Target {
    /// Configuration file of the node.
    #[arg(long, short, global = true, conflicts_with = "data_dir")]
    pub config: Option<PathBuf>,
    /// Data folder of a development node.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

impl Target {
    /// The configuration of the node the command works on.
    fn load(&self) -> Result<config::Config> {
        match (&self.config, &self.data_dir) {
            (Some(path), _) => config::Config::load(path),
            (None, Some(dir)) => config::Config::for_data_dir(dir),
            (None, None) => config::Config::load(std::path::Path::new(config::DEFAULT_PATH)),
        }
    }
}

impl Cli {
    /// Whether the command runs a node (rather than printing and exiting).
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Run { .. } | Command::Dev(_))
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => {
            let config = config::Config::load(&config)?;
            serve::run(config)
        }
        Command::Dev(args) => serve::run(config::Config::dev(&args)?),
        Command::User { target, command } => users::user_command(&target.load()?, command),
        Command::RegistrationToken { target, command } => {
            users::token_command(&target.load()?, command)
        }
        Command::Vault {
            command: VaultCommand::Keygen { file },
            ..
        } => vault_cli::keygen(&file),
        Command::Vault {
            command:
                VaultCommand::VerifyExport {
                    dir,
                    verifier_key,
                    json,
                },
            ..
        } => vault_cli::verify_export(&dir, verifier_key.as_deref(), json),
        Command::Vault {
            command:
                VaultCommand::VerifyWoo {
                    dir,
                    verifier_key,
                    json,
                },
            ..
        } => vault_cli::verify_woo(&dir, verifier_key.as_deref(), json),
        Command::Vault { target, command } => vault_cli::run(&target.load()?, command),
        Command::Backup { target, command } => {
            let config = if target.config.is_some() || target.data_dir.is_some() {
                Some(target.load()?)
            } else if std::path::Path::new(config::DEFAULT_PATH).exists() {
                Some(config::Config::load(std::path::Path::new(
                    config::DEFAULT_PATH,
                ))?)
            } else {
                None
            };
            backup::cli::run(config, command)
        }
        Command::Provision { command } => provision::run(command),
        Command::LocalConsole { target } => crate::local_console::run(target.load()?),
        Command::Reports {
            target,
            json,
            limit,
        } => crate::reports::list(&target.load()?, json, limit),
        Command::CheckConfig { config } => {
            let config = config::Config::load(&config)?;
            println!("{}: OK", config.source.display());
            println!("  server name:   {}", config.homeserver.server_name);
            println!("  data dir:      {}", config.node.data_dir.display());
            println!("  client listen: {}", config.node.listen);
            Ok(())
        }
    }
}
