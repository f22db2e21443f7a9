//! `archipel vault ...`: the archive from the command line. One file per
//! group of commands; [`execute`] dispatches, the same on a stopped node's
//! data and on a running node (over its admin socket).

use std::{io::IsTerminal, io::Write};

use anyhow::{Context, Result, bail};
use archipel_vault::seal::VaultKey;

use crate::{
    admin::protocol as admin,
    args::VaultCommand,
    config::Config,
    node,
    ops::{Actor, Node, Origin},
};

/// `println!` into a command's output: the terminal, or the answer a running
/// node sends back over its admin socket.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => { writeln!($out, $($arg)*)? };
}

mod export;
mod import;
mod procedure;
mod records;
mod retention;
mod search;
mod status;
mod transfer;
mod woo;

pub use export::verify_export;
pub use woo::verify as verify_woo;

pub fn keygen(file: &std::path::Path) -> Result<()> {
    if file.exists() {
        bail!(
            "{} exists; a vault key is never overwritten",
            file.display()
        );
    }
    VaultKey::load_or_generate(file)?;
    println!(
        "wrote a new vault key to {} (mode 0600); keep an offline copy: without it nothing archived can be read",
        file.display()
    );
    Ok(())
}

/// Runs a vault command on the node's data. A command that changes the
/// vault goes to the node itself when it is running (over its admin socket);
/// one that only reads follows the running node's database.
pub fn run(config: &Config, mut command: VaultCommand) -> Result<()> {
    let actor = Actor::this_process(Origin::CommandLine);
    // The running node reads the files and writes the folder: name them
    // from the root.
    match &mut command {
        VaultCommand::Import {
            command: crate::args::ImportCommand::Whatsapp { export: file, .. },
        }
        | VaultCommand::Woo {
            command: crate::args::WooCommand::Package { plan: file, .. },
        } => {
            *file = std::fs::canonicalize(&*file)
                .with_context(|| format!("{}: cannot be read", file.display()))?;
        }
        _ => {}
    }
    if let VaultCommand::Woo {
        command: crate::args::WooCommand::Package { out, .. },
    }
    | VaultCommand::Transfer {
        command: crate::args::TransferCommand::Sip { out, .. },
    } = &mut command
    {
        *out = std::path::absolute(&*out)
            .with_context(|| format!("{}: not a usable folder name", out.display()))?;
    }
    let execute_here = |node: &node::Node, command| {
        let here = Node {
            config,
            services: &node.homeserver.services,
            vault: &node.vault,
        };
        execute(here, &actor, command, &mut std::io::stdout().lock())
    };
    if command.reads_only() {
        if matches!(command, VaultCommand::Export { .. }) {
            // An export is proven against a checkpoint of every record so
            // far, which only the vault's owner can sign.
            admin::run_or_forward(
                config,
                (),
                |()| admin::Request::Checkpoint,
                |node, ()| Ok(node.vault.checkpoint()?),
            )?;
        }
        execute_here(&node::open_for_reading(config)?, command)
    } else {
        admin::run_or_forward(config, command, admin::Request::Vault, execute_here)
    }
}

/// Carries out a vault command as `actor`, writing what it reports to
/// `out`.
pub fn execute(
    node: Node<'_>,
    actor: &Actor,
    command: VaultCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let vault = node.vault;
    match command {
        VaultCommand::Status { json } => status::status(vault, json, out),
        VaultCommand::Verify { json } => status::verify(node, json, out),
        VaultCommand::List { room, json } => records::list(vault, room, json, out),
        VaultCommand::Prove { record, json } => records::prove(vault, &record, json, out),
        VaultCommand::Show { record } => records::show(vault, &record, out),
        VaultCommand::RecordsManager { command } => procedure::managers(node, actor, command, out),
        VaultCommand::Delegate { user, delegate } => {
            procedure::delegate(node, actor, &user, &delegate, out)
        }
        VaultCommand::Requests { json } => procedure::requests(vault, json, out),
        VaultCommand::Hold { command } => procedure::hold(vault, command, out),
        VaultCommand::Procedure { json } => procedure::steps(vault, json, out),
        VaultCommand::Retention { command } => retention::retention(node, actor, command, out),
        VaultCommand::Export {
            room,
            user,
            from,
            until,
            out: folder,
            json,
        } => {
            let scope = archipel_vault::export::ExportScope {
                room,
                user,
                from_ms: from,
                until_ms: until,
            };
            export::export(vault, scope, &folder, json, out)
        }
        VaultCommand::VerifyExport {
            dir,
            verifier_key,
            json,
        } => verify_export(&dir, verifier_key.as_deref(), json),
        VaultCommand::Import { command } => import::import(node, actor, command, out),
        VaultCommand::Woo { command } => woo::woo(node, actor, command, out),
        VaultCommand::Transfer { command } => transfer::transfer(node, actor, command, out),
        VaultCommand::VerifyWoo {
            dir,
            verifier_key,
            json,
        } => woo::verify(&dir, verifier_key.as_deref(), json),
        command @ VaultCommand::Search { .. } => search::search(node, actor, command, out),
        VaultCommand::Keygen { file } => keygen(&file),
    }
}

/// Prints the verdict of an offline check of an export or a package (not
/// with `--json`), and fails unless it proved its content: with no
/// problem, against a key from a trusted source.
fn verdict(
    json: bool,
    what: &str,
    proven: &str,
    key_from_it: bool,
    problems: &[String],
) -> Result<()> {
    if !json {
        if problems.is_empty() && key_from_it {
            println!(
                "NOT PROVEN: the {what} is consistent with its own verifier key, which anyone can replace"
            );
        } else if problems.is_empty() {
            println!("OK: {proven}");
        } else {
            println!("FAILED: {} problem(s)", problems.len());
            for problem in problems {
                println!("  {problem}");
            }
        }
    }
    if !problems.is_empty() {
        bail!("the {what} does not verify: {} problem(s)", problems.len())
    }
    if key_from_it {
        bail!(
            "nothing is proven without a trusted key: pass --verifier-key as `archipel vault status` on the node prints it"
        )
    }
    Ok(())
}

/// Runs `work`, showing its `(done, total)` reports as a progress bar on a
/// terminal (not with `--json`).
fn with_progress<T>(
    json: bool,
    what: &str,
    work: impl FnOnce(&mut dyn FnMut(u64, u64)) -> archipel_vault::Result<T>,
) -> archipel_vault::Result<T> {
    if json || !std::io::stderr().is_terminal() {
        return work(&mut |_, _| {});
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} records ({{per_sec}}, {{eta}} left)"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let out = work(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    out
}
