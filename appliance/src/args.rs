//! The management commands' arguments: data only. The command line parses
//! them (clap), and a command sent to a running node crosses its admin
//! socket as them (serde); what each command does lives with its group
//! (`vault_cli/`, `users.rs`).

use std::path::PathBuf;

use archipel_vault::export;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

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
    /// List exclusion requests and their decisions.
    Requests {
        #[arg(long)]
        json: bool,
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
    /// Search the archive's messages (recorded in the audit trail):
    /// words, found by their Dutch stem, `"a phrase"`, `-without`; and
    /// filters. Prints each message's record, time, room, sender and the
    /// start of its text.
    #[command(
        after_help = "Examples:\n  archipel vault search besluit begroting --from 2026-01-01\n  archipel vault search --source whatsapp --sender @jan:bzk.example\n  archipel vault search '\"kabinet besluit\"' --classification business --json"
    )]
    Search {
        /// The words to look for; none: every message of the filters,
        /// newest first.
        words: Vec<String>,
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        /// Only messages of this sender.
        #[arg(long)]
        sender: Option<String>,
        /// From this date or time (dates are midnight, Europe/Amsterdam).
        #[arg(long, value_parser = export::parse_time)]
        from: Option<u64>,
        /// Until (not including) this date or time.
        #[arg(long, value_parser = export::parse_time)]
        until: Option<u64>,
        /// Only this message type: m.text, m.image, m.file, m.audio, m.video, m.notice.
        #[arg(long = "type")]
        msgtype: Option<String>,
        /// Only messages from this source: matrix, an import's (whatsapp), or
        /// a bridge's ID (telegram).
        #[arg(long)]
        source: Option<String>,
        /// Only rooms of this classification: business, private, party-political.
        #[arg(long)]
        classification: Option<String>,
        /// At most this many messages.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Transfers to the archive service (the Nationaal Archief's
    /// e-Depot): a SIP with MDTO metadata, and the transfers made. A
    /// records manager records the archive service's receipt in the web
    /// console; the records may then go on a destruction list.
    Transfer {
        #[command(subcommand)]
        command: TransferCommand,
    },
    /// Woo requests: the documents a selection holds, and the package
    /// for the decision (redacted PDFs, productierapport, redaction log,
    /// DiWoo metadata, a signed manifest).
    Woo {
        #[command(subcommand)]
        command: WooCommand,
    },
    /// Check a Woo package offline: every document and list as made, every
    /// record it shows proven in the signed log. Exits non-zero on any
    /// problem.
    VerifyWoo {
        dir: PathBuf,
        /// The node's verifier key (`archipel vault status` prints it), from a
        /// source you trust.
        #[arg(long)]
        verifier_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Bring chats kept outside the homeserver into the archive, as
    /// records like its own, with where they came from.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Create a new vault key file (mode 0600) for provisioning.
    Keygen {
        /// Where to write the key; refuses to overwrite.
        file: PathBuf,
    },
}

#[derive(Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferCommand {
    /// Make a SIP of the selected messages into a new folder: a tar
    /// container (a folder per archive, conversation and message, each
    /// with its MDTO sidecar; every file with its own, with PRONOM format
    /// and SHA-256) and its pakbon. Valuation and retention period come
    /// from the retention policy; a legal hold is a restriction on use.
    #[command(
        after_help = "Examples:\n  archipel vault transfer sip --due --out /var/lib/archipel/transfer-2026\n  archipel vault transfer sip --room '!abc:bzk.example' --until 2006-01-01 --out sip"
    )]
    Sip {
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        /// Messages from this date or time (dates are midnight, Europe/Amsterdam).
        #[arg(long, value_parser = export::parse_time)]
        from: Option<u64>,
        /// Until (not including) this date or time.
        #[arg(long, value_parser = export::parse_time)]
        until: Option<u64>,
        /// Only permanent records past the policy's transfer term.
        #[arg(long)]
        due: bool,
        /// The top aggregation at the archive service the delivery goes to,
        /// as agreed with it (named in the pakbon).
        #[arg(long)]
        target: Option<String>,
        /// A new folder for the SIP and its pakbon.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The transfers made, and whether the archive service confirmed them.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WooCommand {
    /// Print a plan for a Woo request: the documents the selection holds
    /// (one per conversation per day), for the Woo officer to assess. Fill
    /// in each document's judgement and redactions, then run `woo package`.
    #[command(
        after_help = "Examples:\n  archipel vault woo plan --matter WOO-2026-014 --room '!abc:bzk.example' --from 2026-01-01 --until 2026-04-01 > plan.toml\n  archipel vault woo plan --matter WOO-2026-014 stikstof --from 2026-01-01 > plan.toml"
    )]
    Plan {
        /// The request's matter number (the productierapport's `Matter`).
        #[arg(long)]
        matter: String,
        /// Only days holding a message with these words (a search; recorded
        /// in the audit trail).
        words: Vec<String>,
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        /// Days from this date or time (dates are midnight, Europe/Amsterdam).
        #[arg(long, value_parser = export::parse_time)]
        from: Option<u64>,
        /// Until (not including) this date or time.
        #[arg(long, value_parser = export::parse_time)]
        until: Option<u64>,
    },
    /// Make the package a plan describes into a new folder. The plan is
    /// checked whole first: an unknown document, a judgement without its
    /// grounds or a passage that is not in its document refuses it all.
    Package {
        /// The plan, as `woo plan` printed it and the Woo officer filled in.
        plan: PathBuf,
        /// A new folder for the package.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportCommand {
    /// A WhatsApp chat export ("Export chat", with or without media): the
    /// ZIP archive, or the chat's .txt, from Android or iOS, in Dutch or
    /// English. A line that cannot be read refuses the whole file, with
    /// its line number; importing the same file again adds nothing.
    #[command(
        after_help = "Example:\n  archipel vault import whatsapp 'WhatsApp Chat with Piet.zip' \\\n    --owner @jan:bzk.example --owner-name 'Jan de Vries' \\\n    --declaration 'Exported from my work phone on 2026-12-01; complete and unaltered.'"
    )]
    Whatsapp {
        /// The export: `WhatsApp Chat with ….zip` or its `.txt`.
        export: PathBuf,
        /// Whose phone the chat comes from: a user of this node.
        #[arg(long)]
        owner: String,
        /// The owner's name as the chat shows it; their messages are then
        /// archived as sent by the owner. Without it every author is only
        /// a name.
        #[arg(long)]
        owner_name: Option<String>,
        /// What the owner declared of the export (that it is theirs,
        /// complete, unaltered), kept with it.
        #[arg(long)]
        declaration: String,
        /// The chat's name, if not the one in the export's file name.
        #[arg(long)]
        chat: Option<String>,
        /// The time zone of the owner's phone (the export has local times).
        #[arg(long, default_value = "Europe/Amsterdam")]
        time_zone: String,
        /// Print what was imported as JSON.
        #[arg(long)]
        json: bool,
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
    /// Show a destruction list.
    Show { reference: String },
    /// Print the signed statement of destruction (verklaring van
    /// vernietiging) of an approved destruction list: what was destroyed,
    /// by category with its period and count, proposed and approved by
    /// whom. Recorded in the audit trail.
    Statement { reference: String },
}

#[derive(Args, Serialize, Deserialize)]
#[group(required = true, multiple = false)]
pub struct RecordRef {
    /// The Matrix event ID (`$...`).
    #[arg(long)]
    pub event: Option<String>,
    /// The record's sequence number in the log.
    #[arg(long)]
    pub seq: Option<u64>,
}

impl VaultCommand {
    /// Commands that only read, and so also work while the node runs.
    pub(crate) fn reads_only(&self) -> bool {
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
                | Self::Transfer {
                    command: TransferCommand::List { .. }
                }
        )
    }
}

#[derive(Clone, Subcommand, Serialize, Deserialize)]
pub enum UserCommand {
    /// Create a user. The password is read from a prompt, or from stdin with --password-stdin.
    Create {
        /// Localpart (`alice`) or full user ID (`@alice:example.org`).
        user: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a server administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List local users.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Deactivate a user: leaves all rooms, ends all sessions, keeps their history.
    Deactivate { user: String },
    /// Set a user's password (prompt, or --password-stdin).
    Passwd {
        user: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Clone, Subcommand, Serialize, Deserialize)]
pub enum TokenCommand {
    /// Issue a registration token.
    Create {
        /// The token text (random if omitted).
        #[arg(long)]
        token: Option<String>,
        /// How many registrations it allows (unlimited if omitted).
        #[arg(long)]
        uses: Option<u32>,
    },
    /// List registration tokens.
    List,
}
