//! The node's end of the admin socket: it audits each command, carries it
//! out one at a time, and answers.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result, anyhow};
use archipel_homeserver::Services;
use archipel_vault::Vault;
use tokio::{
    io::AsyncWriteExt,
    net::{UnixListener, UnixStream},
};

use super::protocol::{Answer, Request, SnapshotMade, read_request};
use crate::{
    config::Config,
    ops::{self, Actor, Node, Origin},
    users, vault_cli,
};

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

    /// The node the operations work on.
    pub(crate) fn node(&self) -> Node<'_> {
        Node {
            config: &self.config,
            services: &self.services,
            vault: &self.vault,
        }
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
            // Reading the status waits for nothing: the local console asks
            // for it every few seconds, a long command or not.
            let _one_at_a_time = match request {
                Request::Status => None,
                _ => Some(admin.busy.lock().await),
            };
            tracing::info!(target: "archipel::audit", uid, pid, command = %what, "admin command");
            let pid_number = peer.and_then(|p| p.pid());
            let (output, done) = execute(admin.clone(), request, uid, pid_number).await;
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

/// Carries out a request as the CLI would on a stopped node, for the
/// local account `uid` (process `pid`): the actor the operations record.
async fn execute(
    admin: Arc<Admin>,
    request: Request,
    uid: Option<u32>,
    pid: Option<i32>,
) -> (Vec<u8>, Result<()>) {
    let mut out = Vec::new();
    let node = admin.node();
    let actor = Actor::local(uid, Origin::AdminSocket { pid });
    let done = match request {
        Request::Vault(command) => {
            // The vault's work is blocking (RocksDB, file I/O, fsync).
            let ran = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let done = vault_cli::execute(admin.node(), &actor, command, &mut out);
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
            users::execute_user(node, &actor, command, password, &mut out).await
        }
        Request::Token(command) => users::execute_token(node, &actor, command, &mut out).await,
        Request::ProvisionAdmins(admins) => crate::provision::apply::ensure_admins(
            node,
            &Actor::local(uid, Origin::Provisioning),
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
        Request::Status => {
            tokio::task::block_in_place(|| ops::status::node_status(node)).and_then(|status| {
                out.extend(serde_json::to_vec(&status)?);
                Ok(())
            })
        }
        Request::LocalSignIn {
            user,
            password,
            code,
        } => ops::console::local_sign_in(node, &user, &password, &code)
            .await
            .map(|session| out.extend(session.into_bytes())),
        Request::Local { session, action } => {
            tokio::task::block_in_place(|| ops::console::local_action(&admin, &session, action))
                .map(|said| out.extend(said.into_bytes()))
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
