//! The admin socket: management commands carried out by a running node.
//!
//! A running node holds its database locked, so `archipel user ...`,
//! `archipel registration-token ...` and the vault commands that change the
//! archive cannot open it. They send the command to the node instead, over
//! `admin.sock` in the data folder: mode 0600 inside the 0700 data folder, so
//! only the node's own system user and root reach it. The node audits the
//! command (who, by Unix credentials; what, without secrets), carries it out
//! exactly as the CLI would on a stopped node, and answers with what the
//! command printed. One JSON line each way.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, anyhow};
use archipel_homeserver::Services;
use archipel_vault::Vault;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
};

use crate::{
    config::Config,
    node::{self, Node},
    users::{self, TokenCommand, UserCommand},
    vault_cli::{self, VaultCommand},
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
    ProvisionAdmins(Vec<crate::provision::apply::AdminEntry>),
    /// A vault checkpoint over every record so far, signed before an export
    /// that then follows the node's database.
    Checkpoint,
}

impl Request {
    /// What the vault's log records of the request, if it changes the
    /// node's accounts. Vault commands record their own steps; snapshots,
    /// checkpoints and lists change nothing.
    pub(crate) fn account_change(&self) -> Option<String> {
        match self {
            Self::User {
                command: UserCommand::List { .. },
                ..
            }
            | Self::Token(TokenCommand::List)
            | Self::Vault(_)
            | Self::BackupSnapshot
            | Self::Checkpoint => None,
            // Recorded per administrator created (`ensure_admins`).
            Self::ProvisionAdmins(_) => None,
            Self::User { .. } | Self::Token(_) => Some(self.describe()),
        }
    }
}

/// The local account a command came from, as the audit trail names it:
/// `root (uid 0)`.
pub fn local_actor(uid: Option<u32>) -> String {
    let Some(uid) = uid else {
        return "an unknown local account".into();
    };
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// The local account this process runs as, as [`local_actor`] names it:
/// the actor of a command the CLI carries out on a stopped node's data.
pub fn own_actor() -> String {
    local_actor(Some(nix::unistd::getuid().as_raw()))
}

/// Records in the vault's log that `command` (a request's
/// [`Request::account_change`]) was carried out by `actor`, or failed, so
/// the trail of who created, deactivated or reset whom is as
/// tamper-evident as the archive. Called by every path that carries out
/// such a command: the admin socket, and the CLI on a stopped node.
pub fn record_account_change(
    vault: &Vault,
    actor: &str,
    command: &str,
    done: &Result<()>,
) -> Result<()> {
    let error = done.as_ref().err().map(|e| format!("{e:#}"));
    vault
        .record_admin_command(actor, command, error.as_deref())
        .context("the command ran, but the vault could not record it")
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
struct Answer {
    output: String,
    error: Option<String>,
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
    let path = socket_path(config);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "the node is running, but its admin socket {} does not answer (is this the user the node runs as, or root?)",
            path.display()
        )
    })?;
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

/// What a running node needs to carry out admin commands.
pub struct Admin {
    config: Config,
    services: Arc<Services>,
    vault: Arc<Vault>,
    /// One command at a time: two erasures must not interleave their purges.
    busy: tokio::sync::Mutex<()>,
}

impl Admin {
    pub fn new(config: Config, services: Arc<Services>, vault: Arc<Vault>) -> Arc<Self> {
        Arc::new(Self {
            config,
            services,
            vault,
            busy: tokio::sync::Mutex::new(()),
        })
    }
}

impl Admin {
    /// A snapshot of the node for a backup. Admin commands (erasures
    /// among them) wait while it is made: a record erased in one of the
    /// copied databases is erased in both.
    pub async fn snapshot(self: &Arc<Self>) -> Result<crate::backup::Snapshot> {
        let _one_at_a_time = self.busy.lock().await;
        self.snapshot_holding_lock().await
    }

    /// [`Admin::snapshot`] for a caller that holds the admin lock already.
    async fn snapshot_holding_lock(self: &Arc<Self>) -> Result<crate::backup::Snapshot> {
        let admin = self.clone();
        tokio::task::spawn_blocking(move || {
            crate::backup::snapshot(&admin.config.node.data_dir, &admin.services, &admin.vault)
        })
        .await
        .map_err(|e| anyhow!("the snapshot stopped unexpectedly: {e}"))?
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Binds the admin socket: mode 0600, replacing a stale one left by a node
/// that did not stop cleanly (the database lock guarantees no other node
/// runs on this data).
pub fn bind(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("listening on the admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// Answers admin connections until `stop` turns true.
pub async fn serve(
    admin: Arc<Admin>,
    listener: UnixListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(answer(admin.clone(), stream));
                }
                Err(e) => tracing::warn!(error = %e, "admin socket: accepting a connection failed"),
            },
            _ = stop.changed() => break,
        }
    }
}

async fn answer(admin: Arc<Admin>, stream: UnixStream) {
    let peer = stream.peer_cred().ok();
    let (uid, pid) = (
        peer.map(|p| p.uid()),
        peer.and_then(|p| p.pid()).map(|p| p.to_string()),
    );
    let (reader, mut writer) = stream.into_split();
    let answer = match read_request(reader).await {
        Err(e) => {
            tracing::warn!(target: "archipel::audit", uid, pid, error = %e, "admin socket: refused a malformed request");
            Answer {
                output: String::new(),
                error: Some(format!("not an admin request this node understands: {e}")),
            }
        }
        Ok(request) => {
            let what = request.describe();
            let _one_at_a_time = admin.busy.lock().await;
            tracing::info!(target: "archipel::audit", uid, pid, command = %what, "admin command");
            let actor = local_actor(uid);
            let change = request.account_change();
            let (output, done) = execute(admin.clone(), request, &actor).await;
            let done = match change {
                None => done,
                Some(change) => {
                    let vault = admin.vault.clone();
                    tokio::task::spawn_blocking(move || {
                        let recorded = record_account_change(&vault, &actor, &change, &done);
                        done.and(recorded)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(anyhow!("recording the command stopped unexpectedly: {e}"))
                    })
                }
            };
            match &done {
                Ok(()) => {
                    tracing::info!(target: "archipel::audit", uid, pid, command = %what, "admin command done")
                }
                Err(e) => {
                    tracing::warn!(target: "archipel::audit", uid, pid, command = %what, error = %format!("{e:#}"), "admin command failed")
                }
            }
            Answer {
                output: String::from_utf8_lossy(&output).into_owned(),
                error: done.err().map(|e| format!("{e:#}")),
            }
        }
    };
    let mut reply = serde_json::to_vec(&answer).unwrap_or_default();
    reply.push(b'\n');
    if let Err(e) = writer.write_all(&reply).await {
        tracing::warn!(error = %e, "admin socket: the client left before the answer");
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

/// Carries out a request as the CLI would on a stopped node.
/// `actor` is who asked, for what the vault records of it.
async fn execute(admin: Arc<Admin>, request: Request, actor: &str) -> (Vec<u8>, Result<()>) {
    let mut out = Vec::new();
    let done = match request {
        Request::Vault(command) => {
            // The vault's work is blocking (RocksDB, file I/O, fsync).
            let ran = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let done = vault_cli::execute(
                    &admin.config,
                    &admin.services,
                    &admin.vault,
                    command,
                    &mut out,
                );
                (out, done)
            })
            .await;
            return ran.unwrap_or_else(|e| {
                (
                    Vec::new(),
                    Err(anyhow!("the command stopped unexpectedly: {e}")),
                )
            });
        }
        Request::User { command, password } => {
            users::execute_user(&admin.config, &admin.services, command, password, &mut out).await
        }
        Request::Token(command) => users::execute_token(&admin.services, command, &mut out).await,
        Request::ProvisionAdmins(admins) => crate::provision::apply::ensure_admins(
            &admin.config,
            &admin.services,
            &admin.vault,
            actor,
            admins,
        )
        .await
        .and_then(|changes| {
            for change in changes {
                out.extend(serde_json::to_vec(&change)?);
                out.push(b'\n');
            }
            Ok(())
        }),
        Request::Checkpoint => {
            let vault = admin.vault.clone();
            tokio::task::spawn_blocking(move || vault.checkpoint())
                .await
                .map_err(|e| anyhow!("the checkpoint stopped unexpectedly: {e}"))
                .and_then(|signed| Ok(signed?))
        }
        Request::BackupSnapshot => {
            // `answer` holds the admin lock for the whole request.
            admin.snapshot_holding_lock().await.and_then(|snapshot| {
                let vault_checkpoint = snapshot.vault_checkpoint.clone();
                let erasures = snapshot.erasures.clone();
                let made = SnapshotMade {
                    dir: snapshot.keep(),
                    vault_checkpoint,
                    erasures,
                };
                out.extend(serde_json::to_vec(&made)?);
                Ok(())
            })
        }
    };
    (out, done)
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
