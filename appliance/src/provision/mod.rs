//! `archipel provision ...`: check a provisioning file, apply it (see
//! [`apply`]), and make password hashes for it. The file's own schema is `archipel-provisioning`; its
//! `[backup]` and `[retention]` tables are the node configuration's
//! `[backup]` and `[vault.retention]`, so they are checked by parsing them
//! exactly as the node will.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use archipel_provisioning::{Problem, Problems, Provisioning};
use clap::Subcommand;

use crate::config::Config;

pub mod apply;

#[derive(Subcommand)]
pub enum ProvisionCommand {
    /// Check a provisioning file: every mistake is named with its field and
    /// line; exits non-zero if there is any.
    Check {
        file: PathBuf,
        /// Print the problems as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply a provisioning file: write the node's configuration, TLS and
    /// CA files, the host name, network and time servers, make the
    /// archive's key once, and create the administrators that do not exist
    /// yet. Checks everything before writing anything; applying the same
    /// file again changes nothing.
    Apply {
        file: PathBuf,
        /// The root of the system to provision (a folder, for images and tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the argon2id hash of a password for `admins[].password_hash`
    /// (reads the password from the terminal, or one line from stdin).
    HashPassword,
}

pub fn run(command: ProvisionCommand) -> Result<()> {
    match command {
        ProvisionCommand::Check { file, json } => {
            let checked = check(&file);
            match (&checked, json) {
                (Ok(p), false) => println!(
                    "{}: OK (server {}, {}, {})",
                    file.display(),
                    p.server.name.get_ref(),
                    count(p.admins.len(), "administrator"),
                    count(p.federation.peers.len(), "federation peer")
                ),
                (Ok(_), true) => println!("{}", serde_json::json!({"ok": true, "problems": []})),
                (Err(problems), true) => {
                    let list: Vec<_> = problems
                        .problems
                        .iter()
                        .map(|p| serde_json::json!({"field": p.field, "line": p.line, "message": p.message}))
                        .collect();
                    println!("{}", serde_json::json!({"ok": false, "problems": list}));
                }
                (Err(problems), false) => eprintln!("{problems}"),
            }
            match checked {
                Ok(_) => Ok(()),
                Err(problems) => bail!(
                    "{}: {} problem(s); nothing was applied",
                    file.display(),
                    problems.problems.len()
                ),
            }
        }
        ProvisionCommand::Apply { file, root, json } => {
            let changes = apply::apply(&file, &root)?;
            let changed = changes
                .iter()
                .filter(|c| c.outcome != apply::Outcome::Unchanged)
                .count();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "changed": changed, "changes": changes })
                );
            } else {
                for change in &changes {
                    let outcome = match change.outcome {
                        apply::Outcome::Created => "created",
                        apply::Outcome::Changed => "changed",
                        apply::Outcome::Unchanged => "unchanged",
                    };
                    println!("{outcome:>9}  {}", change.what);
                }
                match changed {
                    0 => println!("{}: applied; nothing to change", file.display()),
                    n => println!("{}: applied; {n} change(s)", file.display()),
                }
            }
            Ok(())
        }
        ProvisionCommand::HashPassword => {
            let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                let first = rpassword::prompt_password("Password: ")?;
                if rpassword::prompt_password("Repeat password: ")? != first {
                    bail!("the passwords do not match");
                }
                first
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\n', '\r']).to_owned()
            };
            if password.chars().count() < 12 {
                bail!("an administrator's password needs at least 12 characters");
            }
            let hash = archipel_homeserver::service::users::password_hash(&password)
                .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
            println!("{hash}");
            Ok(())
        }
    }
}

/// `1 administrator`, `2 administrators`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Reads each bridge's registration as the node will, and all of them
/// together (no ID or token twice).
fn bridges(provisioning: &Provisioning, file: &Path, text: &str, problems: &mut Vec<Problem>) {
    let Ok(server_name) =
        <&ruma::ServerName>::try_from(provisioning.server.name.get_ref().as_str())
    else {
        return;
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let mut paths = Vec::new();
    for (n, bridge) in provisioning.bridges.iter().enumerate() {
        let path = base.join(bridge.registration.get_ref());
        if !path.is_file() {
            // The schema check names a missing file.
            continue;
        }
        match archipel_homeserver::appservice::Registration::load(&path, server_name) {
            Ok(_) => paths.push(path),
            Err(e) => problems.push(Problem {
                field: format!("bridges[{n}].registration"),
                line: Some(archipel_provisioning::line_of(
                    text,
                    bridge.registration.span().start,
                )),
                message: e,
            }),
        }
    }
    if let Err(e) = archipel_homeserver::appservice::Appservices::load(&paths, server_name) {
        problems.push(Problem {
            field: "bridges".into(),
            line: None,
            message: e,
        });
    }
}

/// Checks `file` whole: its schema, then its `[backup]` and `[retention]`
/// as the node's configuration reads them, then the configuration apply
/// would write.
pub fn check(file: &Path) -> Result<Provisioning, Problems> {
    checked(file).map(|(provisioning, _)| provisioning)
}

/// [`check`], with what applying the file would write.
fn checked(file: &Path) -> Result<(Provisioning, apply::Plan), Problems> {
    let provisioning = archipel_provisioning::check(file)?;
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut problems = Vec::new();
    // Each table alone, in the configuration the node will read.
    for (name, table) in [
        ("backup", &provisioning.backup),
        ("retention", &provisioning.retention),
        ("organisation", &provisioning.organisation),
    ] {
        let Some(table) = table else { continue };
        let mut vault = toml::Table::new();
        vault.insert("key_file".into(), "/etc/archipel/vault.key".into());
        let mut root = toml::Table::new();
        if name == "backup" {
            root.insert("backup".into(), toml::Value::Table(table.get_ref().clone()));
        } else {
            vault.insert(name.into(), toml::Value::Table(table.get_ref().clone()));
        }
        root.insert("vault".into(), toml::Value::Table(vault));
        let rendered = toml::to_string(&root).unwrap_or_default();
        if let Err(e) = Config::parse(&rendered, Path::new(name)) {
            // The gist is the last line (a parse error first quotes the
            // rendered text, whose lines mean nothing here).
            let message = e.to_string();
            let gist = message.lines().last().unwrap_or_default().trim();
            let gist = gist.strip_prefix(&format!("{name}: ")).unwrap_or(gist);
            problems.push(Problem {
                field: name.to_owned(),
                line: Some(archipel_provisioning::line_of(&text, table.span().start)),
                message: gist.replace(&format!("vault.{name}"), name),
            });
        }
    }
    // Last, the node's configuration as apply renders it: what the node
    // would refuse across tables is refused here.
    bridges(&provisioning, file, &text, &mut problems);
    if problems.is_empty() {
        let base = file.parent().unwrap_or(Path::new("."));
        match apply::plan(&provisioning, text.as_bytes(), base) {
            Ok(plan) => return Ok((provisioning, plan)),
            Err(e) => problems.push(Problem {
                field: String::new(),
                line: None,
                message: format!("{e:#}"),
            }),
        }
    }
    Err(Problems {
        file: file.to_owned(),
        problems,
    })
}
