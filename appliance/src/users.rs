//! `archipel user ...` and `archipel registration-token ...`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};

use crate::{
    admin::protocol as admin,
    args::{TokenCommand, UserCommand},
    config::Config,
    ops::{Actor, Node, Origin, accounts},
};

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
            // A bad name fails before the password is asked for.
            accounts::user_id(config, user)?;
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
        async |node, actor, command, out| {
            execute_user(node, actor, command, password.clone(), out).await
        },
    )
}

/// Runs a command on the node's data with `execute` (printing what it
/// reports and flushing the database), or on the running node. Either way
/// the operations record what they change in the vault's log.
fn on_node<C>(
    config: &Config,
    command: C,
    request: impl Fn(C) -> admin::Request,
    execute: impl AsyncFnOnce(Node<'_>, &Actor, C, &mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let rt = runtime()?;
    let _entered = rt.enter();
    admin::run_or_forward(config, command, &request, |node, command| {
        let services = &node.homeserver.services;
        let here = Node {
            config,
            services,
            vault: &node.vault,
        };
        let actor = Actor::this_process(Origin::CommandLine);
        let mut out = Vec::new();
        let done = rt.block_on(execute(here, &actor, command, &mut out));
        std::io::stdout().write_all(&out)?;
        done?;
        Ok(services.store.flush()?)
    })
}

/// Carries out a user command as `actor`, writing what it reports to `out`.
pub async fn execute_user(
    node: Node<'_>,
    actor: &Actor,
    command: UserCommand,
    password: Option<String>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let password = || password.clone().context("no password given");
    match command {
        UserCommand::Create { user, admin, .. } => {
            let id = accounts::create_user(node, actor, &user, password()?, admin).await?;
            writeln!(out, "created {id}")?;
        }
        UserCommand::List { json } => {
            for (id, account) in accounts::list_users(node)? {
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
            let id = accounts::deactivate_user(node, actor, &user).await?;
            writeln!(out, "deactivated {id}")?;
        }
        UserCommand::Passwd { user, .. } => {
            let id = accounts::set_password(node, actor, &user, password()?).await?;
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
        async |node, actor, command, out| execute_token(node, actor, command, out).await,
    )
}

/// Carries out a registration token command as `actor`, writing what it
/// reports to `out`.
pub async fn execute_token(
    node: Node<'_>,
    actor: &Actor,
    command: TokenCommand,
    out: &mut Vec<u8>,
) -> Result<()> {
    match command {
        TokenCommand::Create { token, uses } => {
            let token = accounts::create_token(node, actor, token, uses).await?;
            writeln!(out, "{}", token.token)?;
        }
        TokenCommand::List => {
            for token in accounts::list_tokens(node)? {
                let uses = token
                    .uses_allowed
                    .map_or("unlimited".to_owned(), |n| n.to_string());
                writeln!(out, "{}\tused {}/{}", token.token, token.completed, uses)?;
            }
        }
    }
    Ok(())
}
