//! The admin socket's protocol: one JSON request line from the CLI, one
//! JSON answer line from the node; and the CLI's side of it.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt};

use crate::{
    args::{TokenCommand, UserCommand, VaultCommand},
    config::Config,
    node::{self, Node},
};

/// The socket's name in the data folder.
pub const SOCKET: &str = "admin.sock";

/// The largest request accepted (a command line, not data).
const MAX_REQUEST: u64 = 64 << 10;

/// How long a connection may take to send its request line.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A management command sent to a running node.
#[derive(Serialize, Deserialize)]
pub enum Request {
    Vault(VaultCommand),
    /// A user command, with the password already read on the administrator's
    /// terminal.
    User {
        command: UserCommand,
        password: Option<String>,
    },
    Token(TokenCommand),
    /// A snapshot for a backup the CLI writes (`archipel backup create`).
    BackupSnapshot,
    /// The administrators of a provisioning file (`archipel provision apply`).
    ProvisionAdmins(Vec<AdminEntry>),
    /// A vault checkpoint over every record so far, signed before an export
    /// that then follows the node's database.
    Checkpoint,
    /// How the node is doing, for the local console's status screen: a
    /// [`crate::ops::status::NodeStatus`] as JSON.
    Status,
    /// An operator signs in at the machine's own screen with their
    /// password and a code from their authenticator; the answer is a
    /// session for [`Request::Local`].
    LocalSignIn {
        user: String,
        password: String,
        code: String,
    },
    /// An action from the local console, by the operator its session
    /// names.
    Local {
        session: String,
        action: LocalAction,
    },
}

/// What an operator does from the local console.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalAction {
    /// A one-time link for a new operator's account in the web console.
    SetupLink,
    /// Check every record and checkpoint of the vault.
    VerifyVault,
    /// A backup to every target, now.
    BackupNow,
    /// Restart the node (recorded here; the local console asks systemd).
    Restart,
    /// Reboot the machine (likewise).
    Reboot,
}

/// The answer to [`Request::BackupSnapshot`]: the snapshot folder, now the
/// asker's to read and remove.
#[derive(Serialize, Deserialize)]
pub struct SnapshotMade {
    pub dir: PathBuf,
    pub vault_checkpoint: String,
    #[serde(default)]
    pub erasures: String,
}

impl Request {
    /// What the audit log says of the request: never a password or a token.
    pub fn describe(&self) -> String {
        match self {
            Self::Vault(command) => {
                // The vault seals reasons and notes; the journal gets none.
                let mut shown = serde_json::to_value(command).unwrap_or_default();
                withhold_free_text(&mut shown);
                format!("vault {shown}")
            }
            Self::User { command, .. } => match command {
                UserCommand::Create { user, admin, .. } => {
                    format!("user create {user}{}", if *admin { " (admin)" } else { "" })
                }
                UserCommand::List { .. } => "user list".into(),
                UserCommand::Deactivate { user } => format!("user deactivate {user}"),
                UserCommand::Passwd { user, .. } => format!("user passwd {user}"),
            },
            Self::Token(TokenCommand::Create { uses, .. }) => {
                format!("registration-token create (uses: {uses:?})")
            }
            Self::Token(TokenCommand::List) => "registration-token list".into(),
            Self::BackupSnapshot => "backup create (snapshot)".into(),
            Self::Checkpoint => "vault checkpoint (for an export)".into(),
            Self::Status => "status".into(),
            Self::LocalSignIn { user, .. } => format!("local console sign-in {user}"),
            Self::Local { action, .. } => format!("local console {action:?}"),
            Self::ProvisionAdmins(admins) => format!(
                "provision apply: administrators {}",
                admins
                    .iter()
                    .map(|a| a.user.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The node's answer: what the command printed, and its error if it failed.
#[derive(Serialize, Deserialize)]
pub(super) struct Answer {
    pub(super) output: String,
    pub(super) error: Option<String>,
}

/// Where a node with this configuration listens for admin commands.
pub fn socket_path(config: &Config) -> PathBuf {
    config.node.data_dir.join(SOCKET)
}

/// Sends `request` to the running node, prints what it reports, and fails if
/// the command failed there.
pub fn forward(config: &Config, request: &Request) -> Result<()> {
    let output = ask(config, request)?;
    print!("{output}");
    std::io::stdout().flush()?;
    Ok(())
}

/// Sends `request` to the running node and returns what it answered.
pub fn ask(config: &Config, request: &Request) -> Result<String> {
    ask_within(config, request, None)
}

/// [`ask`], giving up after `timeout` if the node has not answered.
pub fn ask_within(
    config: &Config,
    request: &Request,
    timeout: Option<std::time::Duration>,
) -> Result<String> {
    let path = socket_path(config);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "the node is running, but its admin socket {} does not answer (is this the user the node runs as, or root?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(timeout)?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .context("sending the command to the node")?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .context("reading the node's answer")?;
    let answer: Answer = serde_json::from_str(&reply)
        .context("the node closed the admin connection without an answer")?;
    match answer.error {
        Some(error) => {
            print!("{}", answer.output);
            std::io::stdout().flush()?;
            Err(anyhow!(error))
        }
        None => Ok(answer.output),
    }
}

/// Reads one request line from `reader`: at most [`MAX_REQUEST`] bytes,
/// within [`REQUEST_TIMEOUT`].
pub async fn read_request(reader: impl AsyncRead + Unpin) -> Result<Request> {
    let mut line = Vec::new();
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        tokio::io::BufReader::new(reader)
            .take(MAX_REQUEST)
            .read_until(b'\n', &mut line),
    )
    .await
    .map_err(|_| anyhow!("no request within {} s", REQUEST_TIMEOUT.as_secs()))??;
    Ok(serde_json::from_slice(&line)?)
}

/// Replaces what a person wrote (reasons, notes) in a command's JSON.
fn withhold_free_text(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                if matches!(key.as_str(), "reason" | "note") && !value.is_null() {
                    *value = serde_json::Value::String("(withheld)".into());
                } else {
                    withhold_free_text(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(withhold_free_text),
        _ => {}
    }
}

/// Runs `command` on the node's data with `run`; if the node is running
/// (its database locked), sends it there as `request(command)` instead.
pub fn run_or_forward<C>(
    config: &Config,
    command: C,
    request: impl FnOnce(C) -> Request,
    run: impl FnOnce(&Node, C) -> Result<()>,
) -> Result<()> {
    match node::open(config) {
        Ok(node) => run(&node, command),
        Err(e) if e.is::<node::Running>() => forward(config, &request(command)),
        Err(e) => Err(e),
    }
}

/// One administrator from the file, as the node creates it.
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminEntry {
    pub user: String,
    pub password_hash: Option<String>,
    pub setup_token: Option<String>,
}
