//! `archipel user ...` and `archipel registration-token ...`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use archipel_homeserver::Services;
use ruma::{OwnedUserId, UserId};

use crate::{
    admin::{
        audit::{own_actor, record_account_change},
        protocol as admin,
    },
    args::{TokenCommand, UserCommand},
    config::Config,
};

fn user_id(config: &Config, user: &str) -> Result<OwnedUserId> {
    let id = UserId::parse_with_server_name(user.to_lowercase(), &config.homeserver.server_name)
        .with_context(|| format!("`{user}` is not a valid user ID or localpart"))?;
    if id.server_name() != config.homeserver.server_name {
        bail!(
            "{id} is not a user of this server ({})",
            config.homeserver.server_name
        );
    }
    Ok(id)
}

fn read_password(from_stdin: bool) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to prompt for a password; pass --password-stdin and pipe it in");
        }
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let second =
            rpassword::prompt_password("Repeat password: ").context("reading the password")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    };
    if password.len() < 8 {
        bail!("the password must be at least 8 characters");
    }
    Ok(password)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Runs a user command: on the node itself when it is running (over its
/// admin socket), else on its data directly. A password is read here, on
/// the administrator's terminal, in both cases.
pub fn user_command(config: &Config, command: UserCommand) -> Result<()> {
    let password = match &command {
        UserCommand::Create {
            user,
            password_stdin,
            ..
        }
        | UserCommand::Passwd {
            user,
            password_stdin,
        } => {
            user_id(config, user)?;
            Some(read_password(*password_stdin)?)
        }
        UserCommand::List { .. } | UserCommand::Deactivate { .. } => None,
    };
    on_node(
        config,
        command,
        |command| admin::Request::User {
            command,
            password: password.clone(),
        },
        async |services, command, out| {
            execute_user(config, services, command, password.clone(), out).await
        },
    )
}

/// Runs a command on the node's data with `execute` (printing what it
/// reports and flushing the database), or on the running node.
/// A change to the accounts is recorded in the vault's log either way.
fn on_node<C: Clone>(
    config: &Config,
    command: C,
    request: impl Fn(C) -> admin::Request,
    execute: impl AsyncFnOnce(&Services, C, &mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let rt = runtime()?;
    let _entered = rt.enter();
    admin::run_or_forward(config, command, &request, |node, command| {
        let change = request(command.clone()).account_change();
        let services = &node.homeserver.services;
        let mut out = Vec::new();
        let done = rt.block_on(execute(services, command, &mut out));
        std::io::stdout().write_all(&out)?;
        if let Some(change) = change {
            record_account_change(&node.vault, &own_actor(), &change, &done)?;
        }
        done?;
        Ok(services.store.flush()?)
    })
}

/// Carries out a user command, writing what it reports to `out`.
pub async fn execute_user(
    config: &Config,
    services: &Services,
    command: UserCommand,
    password: Option<String>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let password = || password.clone().context("no password given");
    match command {
        UserCommand::Create { user, admin, .. } => {
            let id = user_id(config, &user)?;
            archipel_homeserver::ops::users::create_user(
                services,
                &id,
                Some(password()?),
                admin,
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating {id}: {e}"))?;
            writeln!(out, "created {id}")?;
        }
        UserCommand::List { json } => {
            for (id, account) in services.users.list()? {
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({ "user_id": id, "admin": account.admin, "deactivated": account.deactivated, "displayname": account.displayname })
                    )?;
                } else {
                    let flags = [
                        account.admin.then_some("admin"),
                        account.deactivated.then_some("deactivated"),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(",");
                    writeln!(out, "{id}\t{flags}")?;
                }
            }
        }
        UserCommand::Deactivate { user } => {
            let id = user_id(config, &user)?;
            if !services.users.exists(&id)? {
                bail!("{id} does not exist");
            }
            archipel_homeserver::ops::users::deactivate_user(services, &id)
                .await
                .map_err(|e| anyhow::anyhow!("deactivating {id}: {e}"))?;
            writeln!(out, "deactivated {id}")?;
        }
        UserCommand::Passwd { user, .. } => {
            let id = user_id(config, &user)?;
            if !services.users.is_active(&id)? {
                bail!("{id} does not exist or is deactivated");
            }
            services
                .users
                .set_password(&id, password()?)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Whoever signed in with the old password is signed out.
            archipel_homeserver::ops::users::end_sessions(services, &id, None)
                .await
                .map_err(|e| anyhow::anyhow!("ending {id}'s sessions: {e}"))?;
            writeln!(out, "password changed for {id}; its sessions ended")?;
        }
    }
    Ok(())
}

/// Runs a registration token command, on the running node if there is one.
pub fn token_command(config: &Config, command: TokenCommand) -> Result<()> {
    on_node(
        config,
        command,
        admin::Request::Token,
        async |services, command, out| execute_token(services, command, out).await,
    )
}

/// Carries out a registration token command, writing what it reports to `out`.
pub async fn execute_token(
    services: &Services,
    command: TokenCommand,
    out: &mut Vec<u8>,
) -> Result<()> {
    match command {
        TokenCommand::Create { token, uses } => {
            let token = services
                .users
                .create_registration_token(token, uses, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            writeln!(out, "{}", token.token)?;
        }
        TokenCommand::List => {
            for token in services.users.registration_tokens()? {
                let uses = token
                    .uses_allowed
                    .map_or("unlimited".to_owned(), |n| n.to_string());
                writeln!(out, "{}\tused {}/{}", token.token, token.completed, uses)?;
            }
        }
    }
    Ok(())
}
