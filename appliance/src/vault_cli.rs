//! `archipel vault ...`: the archive from the command line.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{Context, Result, bail};
use archipel_vault::{
    checkpoint::{Checkpoint, verifier_key},
    export,
    merkle::{self, Hash},
    procedure::{Classification, HoldScope, Role},
    seal::VaultKey,
    verify,
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{admin, config::Config, erasure, node};

/// `println!` into a command's output: the terminal, or the answer a running
/// node sends back over its admin socket.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => { writeln!($out, $($arg)*)? };
}

#[derive(Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultCommand {
    /// Show the log's size, newest checkpoint and the key that signs it.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Recompute the log from the stored records and check every signed
    /// checkpoint. Names every missing, altered or misplaced record and any
    /// truncation; exits non-zero if anything is wrong.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// List archived records (metadata only: the content stays sealed).
    List {
        /// Only records of this room.
        #[arg(long)]
        room: Option<String>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the inclusion proof of one record against the newest checkpoint.
    Prove {
        #[command(flatten)]
        record: RecordRef,
        #[arg(long)]
        json: bool,
    },
    /// Print the original of an archived event (needs the vault key).
    Show {
        #[command(flatten)]
        record: RecordRef,
    },
    /// Make a user a records manager (who decides on requests), or stop them
    /// being one. An action of the node's operator.
    RecordsManager {
        #[command(subcommand)]
        command: ManagerCommand,
    },
    /// Let DELEGATE request exclusions on USER's behalf (operator action).
    Delegate { user: String, delegate: String },
    /// Set a user's role: capstone (minister, state secretary,
    /// secretary-general: kept permanently), official, external.
    Role {
        user: String,
        role: Role,
        /// The records manager doing this.
        #[arg(long)]
        by: String,
    },
    /// Classify a room: business (the default), private, party-political.
    Classify {
        room: String,
        classification: Classification,
        #[arg(long)]
        by: String,
    },
    /// Ask for messages to be excluded from the archive as private or
    /// party-political. Only their sender (or a delegate) may ask.
    RequestExclusion {
        /// An event to exclude; repeat for several.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// The sender, or their delegate.
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
        /// A Woo ground code, e.g. 5.1.2e.
        #[arg(long)]
        ground: Option<String>,
    },
    /// List exclusion requests and their decisions.
    Requests {
        #[arg(long)]
        json: bool,
    },
    /// Decide on an exclusion request (a records manager who is neither the
    /// requester nor the sender). Approval erases the content for good.
    Decide {
        /// The request's reference, e.g. EX-000001.
        reference: String,
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        #[arg(long)]
        reject: bool,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Legal holds: while one covers a room or user, nothing of it is erased.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Retention: what the policy (`[vault.retention]`) says of the archive,
    /// and destruction lists of expired records.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Every procedure step in the log (needs the vault key).
    Procedure {
        #[arg(long)]
        json: bool,
    },
    /// Export conversations: one HTML page per conversation to read, JSON
    /// Lines with each record's inclusion proof to check, attachments.
    Export {
        /// Every record of this room.
        #[arg(long, required_unless_present = "user", conflicts_with = "user")]
        room: Option<String>,
        /// Every record this user sent.
        #[arg(long)]
        user: Option<String>,
        /// From this date or time (dates are midnight, Europe/Amsterdam).
        #[arg(long, value_parser = export::parse_time)]
        from: Option<u64>,
        /// Until (not including) this date or time.
        #[arg(long, value_parser = export::parse_time)]
        until: Option<u64>,
        /// A new folder for the export.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check an export offline: every record proven in the signed log, every
    /// event shown exactly as archived. Exits non-zero on any problem.
    VerifyExport {
        dir: PathBuf,
        /// The node's verifier key (`archipel vault status` prints it), from a
        /// source you trust. Without it the export is checked against its own
        /// copy, which proves nothing, and the command fails.
        #[arg(long)]
        verifier_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create a new vault key file (mode 0600) for provisioning.
    Keygen {
        /// Where to write the key; refuses to overwrite.
        file: PathBuf,
    },
}

#[derive(Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagerCommand {
    Add { user: String },
    Remove { user: String },
    List,
}

#[derive(Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldCommand {
    /// Place a hold on a room or on a user.
    Place {
        #[arg(long, required_unless_present = "user", conflicts_with = "user")]
        room: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
    /// Release a hold.
    Release {
        reference: String,
        #[arg(long)]
        by: String,
    },
    /// List holds.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionCommand {
    /// Count records by valuation: permanent (and due for transfer), expired,
    /// held, to be destroyed later.
    Status {
        /// Evaluate as of this date instead of now (for planning).
        #[arg(long, value_parser = export::parse_time)]
        as_of: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Propose a destruction list of every expired record not under a hold.
    Propose {
        #[arg(long)]
        by: String,
        /// Propose as of a later date (the list can be approved from then on).
        #[arg(long, value_parser = export::parse_time)]
        as_of: Option<u64>,
    },
    /// Approve a destruction list (another records manager than the proposer)
    /// and destroy its records.
    Approve {
        reference: String,
        #[arg(long)]
        by: String,
    },
    /// Show a destruction list.
    Show { reference: String },
}

/// The actor of actions taken by whoever administers the node.
const OPERATOR: &str = "operator";

#[derive(Args, Serialize, Deserialize)]
#[group(required = true, multiple = false)]
pub struct RecordRef {
    /// The Matrix event ID (`$...`).
    #[arg(long)]
    event: Option<String>,
    /// The record's sequence number in the log.
    #[arg(long)]
    seq: Option<u64>,
}

pub fn verify_export(dir: &std::path::Path, key: Option<&str>, json: bool) -> Result<()> {
    let report = export::check::verify_export(dir, key)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} record(s) checked against the checkpoint of {} records",
            dir.display(),
            report.records,
            report.checkpoint_size
        );
        if report.ok() && report.key_from_export {
            println!(
                "NOT PROVEN: the export is consistent with its own verifier key, which anyone can replace"
            );
        } else if report.ok() {
            println!(
                "OK: every record is in the signed log, every event is shown as archived, and nothing was left out or changed"
            );
        } else {
            println!("FAILED: {} problem(s)", report.problems.len());
            for problem in &report.problems {
                println!("  {problem}");
            }
        }
    }
    if !report.ok() {
        bail!(
            "the export does not verify: {} problem(s)",
            report.problems.len()
        )
    }
    if report.key_from_export {
        bail!(
            "nothing is proven without a trusted key: pass --verifier-key as `archipel vault status` on the node prints it"
        )
    }
    Ok(())
}

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

impl VaultCommand {
    /// Commands that only read, and so also work while the node runs.
    fn reads_only(&self) -> bool {
        matches!(
            self,
            Self::Status { .. }
                | Self::Verify { .. }
                | Self::List { .. }
                | Self::Prove { .. }
                | Self::Show { .. }
                | Self::Requests { .. }
                | Self::Procedure { .. }
                | Self::Hold {
                    command: HoldCommand::List { .. }
                }
                | Self::Retention {
                    command: RetentionCommand::Status { .. } | RetentionCommand::Show { .. }
                }
                | Self::RecordsManager {
                    command: ManagerCommand::List
                }
                | Self::Export { .. }
        )
    }
}

/// Runs a vault command on the node's data. A command that changes the
/// vault goes to the node itself when it is running (over its admin socket);
/// one that only reads follows the running node's database.
pub fn run(config: &Config, command: VaultCommand) -> Result<()> {
    let execute_here = |node: &node::Node, command| {
        execute(
            config,
            &node.homeserver.services,
            &node.vault,
            command,
            &mut std::io::stdout().lock(),
        )
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

/// Carries out a vault command, writing what it reports to `out`.
pub fn execute(
    config: &Config,
    services: &archipel_homeserver::Services,
    vault: &archipel_vault::Vault,
    command: VaultCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let log = vault.log();
    match command {
        VaultCommand::Status { json } => {
            let size = log.size()?;
            let latest = log.latest_checkpoint()?;
            let verifier = verifier_key(vault.origin(), &vault.verifying_key());
            if json {
                let checkpoint = latest
                    .as_ref()
                    .map(|c| json!({ "size": c.size, "note": c.note }));
                say!(
                    out,
                    "{}",
                    json!({
                        "origin": vault.origin(),
                        "records": size,
                        "root": B64.encode(log.root(size)?),
                        "capture_cursor": log.capture_cursor()?,
                        "latest_checkpoint": checkpoint,
                        "verifier_key": verifier,
                        "encrypted": encryption_status(vault)?,
                    })
                );
            } else {
                say!(out, "origin:        {}", vault.origin());
                say!(out, "records:       {size}");
                say!(out, "root:          {}", B64.encode(log.root(size)?));
                match latest {
                    Some(c) => say!(out, "checkpoint:    signed at {} records", c.size),
                    None => say!(out, "checkpoint:    none signed yet"),
                }
                say!(out, "verifier key:  {verifier}");
                print_encryption(out, &encryption_status(vault)?)?;
            }
            Ok(())
        }
        VaultCommand::Verify { json } => {
            let media_dir = config.node.data_dir.join("vault").join("media");
            let mut report = with_progress(json, "verifying", |progress| {
                verify::verify(log, &media_dir, &vault.verifying_key(), progress)
            })?;
            let mismatches = vault.verify_decryptions(&report.decryptions)?;
            report.findings.extend(mismatches);
            let witnessing = vault.witness_status()?;
            let encryption = encryption_status(vault)?;
            if json {
                let mut value = serde_json::to_value(&report)?;
                value["witnessing"] = serde_json::to_value(&witnessing)?;
                value["encrypted"] = serde_json::to_value(&encryption)?;
                say!(out, "{value}");
            } else {
                print_report(out, vault.origin(), &report)?;
                print_encryption(out, &encryption)?;
                print_witnessing(out, &witnessing)?;
            }
            if report.ok() {
                Ok(())
            } else {
                bail!(
                    "vault verification failed: {} problem(s)",
                    report.findings.len()
                )
            }
        }
        VaultCommand::Prove { record, json } => {
            let seq = resolve(log, &record)?;
            let latest = log
                .latest_checkpoint()?
                .context("no checkpoint signed yet: nothing to prove against")?;
            let checkpoint = Checkpoint::open(&latest.note, &vault.verifying_key())
                .context("the newest checkpoint does not verify; run `archipel vault verify`")?;
            if seq >= checkpoint.size {
                bail!(
                    "record {seq} came after the newest checkpoint ({} records); it is in the next one",
                    checkpoint.size
                );
            }
            let leaf = log.leaf_hash(seq)?;
            let proof = log.inclusion_proof(seq, checkpoint.size)?;
            let valid =
                merkle::verify_inclusion(seq, checkpoint.size, &leaf, &proof, &checkpoint.root);
            if json {
                say!(
                    out,
                    "{}",
                    json!({
                        "seq": seq,
                        "leaf_hash": B64.encode(leaf),
                        "tree_size": checkpoint.size,
                        "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                        "checkpoint": latest.note,
                        "valid": valid,
                    })
                );
            } else {
                say!(out, "record {seq}, leaf hash {}", B64.encode(leaf));
                say!(
                    out,
                    "inclusion proof in the tree of {} records:",
                    checkpoint.size
                );
                for hash in &proof {
                    say!(out, "  {}", B64.encode(hash));
                }
                say!(out, "checkpoint:\n{}", latest.note.trim_end());
                say!(
                    out,
                    "{}",
                    if valid {
                        "proof verifies"
                    } else {
                        "PROOF DOES NOT VERIFY"
                    }
                );
            }
            if !valid {
                bail!(
                    "the inclusion proof of record {seq} does not verify; run `archipel vault verify`"
                );
            }
            Ok(())
        }
        VaultCommand::List { room, json } => {
            for seq in 0..log.size()? {
                let record = log.record(seq)?;
                let Some(event) = record.event() else {
                    continue;
                };
                if room.as_ref().is_some_and(|r| *r != event.room_id) {
                    continue;
                }
                if json {
                    say!(
                        out,
                        "{}",
                        json!({
                            "seq": seq,
                            "event_id": event.event_id,
                            "room_id": event.room_id,
                            "sender": event.sender,
                            "type": event.event_type,
                            "origin_server_ts": event.origin_server_ts,
                            "redacts": event.redacts,
                            "media": event.media.len(),
                            "soft_failed": event.soft_failed,
                        })
                    );
                } else {
                    say!(
                        out,
                        "{seq:>8}  {}  {}  {}  {}",
                        event.event_id,
                        event.room_id,
                        event.sender,
                        event.event_type
                    );
                }
            }
            Ok(())
        }
        VaultCommand::Show { record } => {
            let seq = resolve(log, &record)?;
            let event = vault.open_event(seq)?;
            say!(out, "{}", serde_json::to_string_pretty(&event)?);
            if let Some(decryption) = vault.decryption_of(seq)? {
                let decrypted = vault.open_decryption(decryption)?;
                let plaintext: serde_json::Value = serde_json::from_str(&decrypted.plaintext)
                    .context("the decrypted plaintext is not JSON")?;
                say!(out, "decrypted by record {decryption}:");
                say!(out, "{}", serde_json::to_string_pretty(&plaintext)?);
                for copy in vault.log().record(decryption)?.media() {
                    say!(
                        out,
                        "attachment {} decrypted and archived: {} bytes, SHA-256 {}",
                        copy.mxc,
                        copy.size,
                        copy.sha256.as_deref().unwrap_or("-")
                    );
                }
            } else if let Some(gap) = vault.pending_decryption(seq)? {
                say!(
                    out,
                    "not decrypted: the archive member never received the room key \
                     (session {}, from device {})",
                    gap.session_id,
                    gap.device_id.as_deref().unwrap_or("unknown")
                );
            }
            Ok(())
        }
        VaultCommand::RecordsManager { command } => match command {
            ManagerCommand::Add { user } => {
                vault.set_records_manager(&user, true, OPERATOR)?;
                say!(out, "{user} is a records manager");
                Ok(())
            }
            ManagerCommand::Remove { user } => {
                vault.set_records_manager(&user, false, OPERATOR)?;
                say!(out, "{user} is no longer a records manager");
                Ok(())
            }
            ManagerCommand::List => {
                for user in vault.records_managers()? {
                    say!(out, "{user}");
                }
                Ok(())
            }
        },
        VaultCommand::Delegate { user, delegate } => {
            vault.add_delegate(&user, &delegate, OPERATOR)?;
            say!(out, "{delegate} may now request exclusions for {user}");
            Ok(())
        }
        VaultCommand::Role { user, role, by } => {
            vault.set_role(&user, role, &by)?;
            say!(out, "{user} is now {role}");
            Ok(())
        }
        VaultCommand::Classify {
            room,
            classification,
            by,
        } => {
            vault.classify_room(&room, classification, &by)?;
            say!(out, "{room} is now classified {classification}");
            Ok(())
        }
        VaultCommand::RequestExclusion {
            events,
            by,
            reason,
            ground,
        } => {
            let request = vault.request_exclusion(&events, &by, &reason, ground.as_deref())?;
            say!(
                out,
                "{}: exclusion of {} record(s) requested by {by}; a records manager must decide",
                request.reference,
                request.records.len()
            );
            Ok(())
        }
        VaultCommand::Requests { json } => {
            for request in vault.requests()? {
                if json {
                    say!(out, "{}", serde_json::to_string(&request)?);
                } else {
                    let state = match &request.decision {
                        None => "pending".to_owned(),
                        Some(d) if d.approved => format!("approved by {}", d.by),
                        Some(d) => format!("rejected by {}", d.by),
                    };
                    say!(
                        out,
                        "{}  {}  {} record(s)  {state}  reason: {}",
                        request.reference,
                        request.requester,
                        request.records.len(),
                        request.reason
                    );
                }
            }
            Ok(())
        }
        VaultCommand::Decide {
            reference,
            approve,
            reject: _,
            by,
            note,
        } => {
            let request = vault.decide(&reference, approve, &by, note.as_deref())?;
            if approve {
                let purged = erasure::complete_purges(services, vault)?;
                say!(
                    out,
                    "{reference} approved by {by}: {} record(s) erased ({purged} homeserver copies purged); the log still verifies",
                    request.records.len()
                );
            } else {
                say!(out, "{reference} rejected by {by}: nothing erased");
            }
            Ok(())
        }
        VaultCommand::Hold { command } => match command {
            HoldCommand::Place {
                room,
                user,
                reason,
                by,
            } => {
                let scope = match (room, user) {
                    (Some(room), _) => HoldScope::Room(room),
                    (None, Some(user)) => HoldScope::User(user),
                    (None, None) => bail!("name a --room or a --user"),
                };
                let hold = vault.place_hold(scope, &reason, &by)?;
                say!(
                    out,
                    "{}: legal hold on {} placed by {by}",
                    hold.reference,
                    hold.scope
                );
                Ok(())
            }
            HoldCommand::Release { reference, by } => {
                let hold = vault.release_hold(&reference, &by)?;
                say!(
                    out,
                    "{}: legal hold on {} released by {by}",
                    hold.reference,
                    hold.scope
                );
                Ok(())
            }
            HoldCommand::List { json } => {
                for hold in vault.holds()? {
                    if json {
                        say!(out, "{}", serde_json::to_string(&hold)?);
                    } else {
                        say!(
                            out,
                            "{}  {}  {}  placed by {}  reason: {}",
                            hold.reference,
                            hold.scope,
                            if hold.active() { "active" } else { "released" },
                            hold.placed_by,
                            hold.reason
                        );
                    }
                }
                Ok(())
            }
        },
        VaultCommand::Retention { command } => {
            let policy = &config.vault.retention;
            match command {
                RetentionCommand::Status { as_of, json } => {
                    let status = vault
                        .retention_status(policy, as_of.unwrap_or_else(archipel_vault::now_ms))?;
                    if json {
                        say!(out, "{}", serde_json::to_string(&status)?);
                    } else {
                        say!(out, "permanent:             {}", status.permanent);
                        say!(
                            out,
                            "  due for transfer:    {} (after {} years)",
                            status.due_for_transfer,
                            policy.transfer_years
                        );
                        say!(out, "to destroy later:      {}", status.to_destroy_later);
                        say!(out, "expired:               {}", status.expired);
                        say!(out, "expired but held:      {}", status.held);
                        say!(out, "erased:                {}", status.erased);
                    }
                    Ok(())
                }
                RetentionCommand::Propose { by, as_of } => {
                    let list = vault.propose_destruction(
                        policy,
                        as_of.unwrap_or_else(archipel_vault::now_ms),
                        &by,
                    )?;
                    say!(
                        out,
                        "{}: {} expired record(s) proposed for destruction by {by}; another records manager must approve",
                        list.reference,
                        list.records.len()
                    );
                    Ok(())
                }
                RetentionCommand::Approve { reference, by } => {
                    let list = vault.approve_destruction(&reference, &by, policy)?;
                    let purged = erasure::complete_purges(services, vault)?;
                    say!(
                        out,
                        "{reference} approved by {by}: {} record(s) destroyed ({purged} homeserver copies purged), {} held back by a legal hold, {} kept (no longer expired under the current roles and policy)",
                        list.records.len() - list.held_back.len() - list.kept.len(),
                        list.held_back.len(),
                        list.kept.len()
                    );
                    Ok(())
                }
                RetentionCommand::Show { reference } => {
                    say!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&vault.destruction_list(&reference)?)?
                    );
                    Ok(())
                }
            }
        }
        VaultCommand::Procedure { json } => {
            for step in vault.procedure_steps()? {
                if json {
                    say!(out, "{step}");
                } else {
                    say!(
                        out,
                        "{:>8}  {}  {}  {}  {}",
                        step["seq"],
                        step["action"].as_str().unwrap_or_default(),
                        step["actor"].as_str().unwrap_or("-"),
                        step["subject"].as_str().unwrap_or_default(),
                        step["details"]
                    );
                }
            }
            Ok(())
        }
        VaultCommand::Export {
            room,
            user,
            from,
            until,
            out: folder,
            json,
        } => {
            let scope = export::ExportScope {
                room,
                user,
                from_ms: from,
                until_ms: until,
            };
            let summary = with_progress(json, "exporting", |progress| {
                vault.export(&scope, &folder, progress)
            })?;
            if json {
                say!(out, "{}", serde_json::to_string(&summary)?);
            } else {
                say!(
                    out,
                    "exported {} record(s) in {} conversation(s) ({} erased, {} attachment(s)) to {}",
                    summary.records,
                    summary.conversations,
                    summary.erased,
                    summary.attachments,
                    folder.display()
                );
            }
            Ok(())
        }
        VaultCommand::VerifyExport {
            dir,
            verifier_key,
            json,
        } => verify_export(&dir, verifier_key.as_deref(), json),
        VaultCommand::Keygen { file } => keygen(&file),
    }
}

fn resolve(log: &archipel_vault::log::Log, record: &RecordRef) -> Result<u64> {
    match (&record.event, record.seq) {
        (Some(event_id), _) => log
            .seq_of_event(event_id)?
            .with_context(|| format!("event {event_id} is not in the vault")),
        (None, Some(seq)) => Ok(seq),
        (None, None) => bail!("name a record with --event or --seq"),
    }
}

fn print_report(out: &mut dyn Write, origin: &str, report: &verify::Report) -> Result<()> {
    say!(
        out,
        "{origin}: {} records, root {}",
        report.records,
        B64.encode::<Hash>(report.root)
    );
    match report.latest_checkpoint {
        Some(size) => say!(
            out,
            "checked {} signed checkpoint(s); the newest covers {size} records",
            report.checkpoints_checked
        ),
        None => say!(out, "no signed checkpoint covers the log yet"),
    }
    if report.ok() {
        say!(
            out,
            "OK: every record is present, unaltered and in place; the records reproduce every checkpoint"
        );
        return Ok(());
    }
    say!(out, "FAILED: {} problem(s)", report.findings.len());
    const SHOWN: usize = 200;
    for finding in report.findings.iter().take(SHOWN) {
        say!(out, "  {finding}");
    }
    if report.findings.len() > SHOWN {
        say!(
            out,
            "  ... and {} more (use --json for all)",
            report.findings.len() - SHOWN
        );
    }
    Ok(())
}

/// Encrypted events in the vault: how many are decrypted, and the ones
/// whose room key never reached the archive member (the gaps).
#[derive(serde::Serialize)]
struct EncryptionStatus {
    decrypted: u64,
    undecrypted: u64,
    /// The first gaps, oldest first.
    gaps: Vec<archipel_vault::decryption::PendingDecryption>,
    /// Rooms the archive member was removed from: nothing said there since
    /// is decrypted.
    removed_from: Vec<archipel_vault::coverage::CoverageGap>,
}

/// How many gaps `vault status` and `vault verify` name one by one.
const GAPS_SHOWN: usize = 50;

fn encryption_status(vault: &archipel_vault::Vault) -> Result<EncryptionStatus> {
    Ok(EncryptionStatus {
        decrypted: vault.decryption_count()?,
        undecrypted: vault.pending_decryption_count()?,
        gaps: vault.pending_decryptions(None, GAPS_SHOWN)?,
        removed_from: vault.coverage_gaps()?,
    })
}

fn print_encryption(out: &mut dyn Write, status: &EncryptionStatus) -> Result<()> {
    for gap in &status.removed_from {
        let when = archipel_vault::export::amsterdam_time(gap.since_ts);
        if gap.membership == "refused" {
            say!(
                out,
                "ALARM: the archive member could not join {} after {} did, at {when}: \
                 encrypted messages there are not decrypted",
                gap.room_id,
                gap.by
            );
        } else {
            say!(
                out,
                "ALARM: the archive member was removed from {} by {} ({}) at {when}: \
                 encrypted messages there since are not decrypted",
                gap.room_id,
                gap.by,
                gap.membership
            );
        }
    }
    if status.decrypted == 0 && status.undecrypted == 0 {
        return Ok(());
    }
    say!(
        out,
        "encrypted:     {} decrypted, {} without their room key",
        status.decrypted,
        status.undecrypted
    );
    for gap in &status.gaps {
        say!(
            out,
            "  GAP: record {} ({}) in {} from {} (device {}), sent {}",
            gap.seq,
            gap.event_id,
            gap.room_id,
            gap.sender,
            gap.device_id.as_deref().unwrap_or("unknown"),
            archipel_vault::export::amsterdam_time(gap.origin_server_ts)
        );
    }
    if status.undecrypted > status.gaps.len() as u64 {
        say!(
            out,
            "  ... and {} more (use --json for the first {GAPS_SHOWN})",
            status.undecrypted - status.gaps.len() as u64
        );
    }
    Ok(())
}

fn print_witnessing(out: &mut dyn Write, status: &archipel_vault::witness::Status) -> Result<()> {
    if status.cosigned.is_empty() {
        say!(out, "witnesses: no peer has co-signed a checkpoint yet");
    }
    for c in &status.cosigned {
        if c.verifies {
            say!(
                out,
                "witness {}: co-signed the checkpoint at {} records",
                c.witness,
                c.size
            );
        } else {
            say!(
                out,
                "witness {}: the kept cosignature of the checkpoint at {} records does not verify",
                c.witness,
                c.size
            );
        }
    }
    for w in &status.witnessed {
        match &w.alarm {
            None => say!(
                out,
                "witnessing {}: co-signed up to {} records, consistent",
                w.origin,
                w.size
            ),
            Some(alarm) => say!(out, "ALARM witnessing {}: {}", w.origin, alarm.reason),
        }
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
