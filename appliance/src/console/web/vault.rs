//! The records managers' pages for the vault's procedures: legal holds,
//! room classification and people's roles, and retention with its
//! destruction lists (proposed by one records manager, approved by
//! another). Each step names the signed-in records manager.

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{Path, State},
    response::Response,
};
use serde::Deserialize;

use super::{Nav, Nothing, Posted, Refusal, Role, Signed, Texts, blocking, render, when};
use crate::{console::Console, ops};

fn ms(ms: u64) -> String {
    when(i64::try_from(ms / 1000).unwrap_or(0))
}

/// What a records manager's action did, for the page that follows it.
fn notice<T>(done: anyhow::Result<T>, said: impl FnOnce(T) -> String) -> String {
    match done {
        Ok(value) => said(value),
        Err(e) => {
            let texts = Texts::current();
            texts.f("Not done: {error}", &[("error", &texts.error(&e))])
        }
    }
}

struct HoldRow {
    reference: String,
    scope: String,
    reason: String,
    placed: String,
    released: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "console/holds.html")]
struct HoldsPage {
    nav: Option<Nav>,
    t: Texts,
    holds: Vec<HoldRow>,
    notice: Option<String>,
}

fn holds_page(
    console: &Console,
    signed: &Signed,
    notice: Option<String>,
) -> anyhow::Result<HoldsPage> {
    let holds = console
        .node()
        .vault
        .holds()?
        .into_iter()
        .rev()
        .map(|hold| HoldRow {
            active: hold.active(),
            reference: hold.reference,
            scope: hold.scope.to_string(),
            reason: hold.reason,
            placed: format!("{} by {}", ms(hold.placed_ts), hold.placed_by),
            released: match (hold.released_ts, hold.released_by) {
                (Some(ts), Some(by)) => format!("{} by {by}", ms(ts)),
                _ => String::new(),
            },
        })
        .collect();
    Ok(HoldsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        holds,
        notice,
    })
}

/// `GET /holds`: the legal holds, and the form to place one.
pub async fn holds(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::RecordsManager)?;
    Ok(render(&blocking(|| holds_page(&console, &signed, None))?))
}

#[derive(Deserialize)]
pub struct NewHold {
    scope: String,
    subject: String,
    reason: String,
}

/// `POST /holds`: places a legal hold on a room or a person: nothing
/// they cover is erased or destroyed until it is released.
pub async fn place_hold(
    State(console): State<Arc<Console>>,
    posted: Posted<NewHold>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::RecordsManager)?;
    let subject = form.subject.trim().to_owned();
    let scope = match form.scope.as_str() {
        "room" => archipel_vault::procedure::HoldScope::Room(subject),
        "user" => archipel_vault::procedure::HoldScope::User(subject),
        _ => {
            return Err(Refusal::BadRequest(
                "A hold covers a room or a user.".into(),
            ));
        }
    };
    let done = tokio::task::block_in_place(|| {
        ops::vault::place_hold(
            console.node(),
            &signed.actor(),
            scope,
            &form.reason,
            signed.user.as_str(),
        )
    });
    let notice = notice(done, |hold| {
        signed.texts.f(
            "{reference} placed on {scope}.",
            &[("reference", &hold.reference), ("scope", &hold.scope)],
        )
    });
    Ok(render(&blocking(|| {
        holds_page(&console, &signed, Some(notice))
    })?))
}

/// `POST /holds/{reference}/release`: needs a fresh code.
pub async fn release_hold(
    State(console): State<Arc<Console>>,
    Path(reference): Path<String>,
    posted: Posted<Nothing>,
) -> Result<Response, Refusal> {
    let Posted { signed, .. } = posted;
    signed.require(Role::RecordsManager)?;
    signed.require_privilege("/holds")?;
    let done = tokio::task::block_in_place(|| {
        ops::vault::release_hold(
            console.node(),
            &signed.actor(),
            &reference,
            signed.user.as_str(),
        )
    });
    let notice = notice(done, |hold| {
        signed
            .texts
            .f("{reference} released.", &[("reference", &hold.reference)])
    });
    Ok(render(&blocking(|| {
        holds_page(&console, &signed, Some(notice))
    })?))
}

#[derive(Template)]
#[template(path = "console/classification.html")]
struct ClassificationPage {
    nav: Option<Nav>,
    t: Texts,
    records_managers: Vec<String>,
    notice: Option<String>,
}

fn classification_page(
    console: &Console,
    signed: &Signed,
    notice: Option<String>,
) -> anyhow::Result<ClassificationPage> {
    Ok(ClassificationPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        records_managers: console.node().vault.records_managers()?,
        notice,
    })
}

/// `GET /classification`: the forms that classify a room and give a
/// person their role, which decide how long their records are kept.
pub async fn classification(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::RecordsManager)?;
    Ok(render(&blocking(|| {
        classification_page(&console, &signed, None)
    })?))
}

/// A classification page's change: `value` parsed, `change` carried out
/// with it, the page again with what `said` of it (or why not).
fn classification_change<T: std::str::FromStr<Err = String> + Copy>(
    console: &Console,
    signed: &Signed,
    value: &str,
    change: impl FnOnce(T) -> anyhow::Result<()>,
    said: impl FnOnce(T) -> String,
) -> Result<Response, Refusal> {
    let done = value
        .parse()
        .map_err(anyhow::Error::msg)
        .and_then(|value| tokio::task::block_in_place(|| change(value)).map(|()| value));
    let notice = notice(done, said);
    Ok(render(&blocking(|| {
        classification_page(console, signed, Some(notice))
    })?))
}

#[derive(Deserialize)]
pub struct RoomClass {
    room: String,
    classification: String,
}

/// `POST /classification/room`.
pub async fn classify_room(
    State(console): State<Arc<Console>>,
    posted: Posted<RoomClass>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::RecordsManager)?;
    let room = form.room.trim();
    classification_change(
        &console,
        &signed,
        &form.classification,
        |class| {
            let by = signed.user.as_str();
            ops::vault::classify_room(console.node(), &signed.actor(), room, class, by)
        },
        |class: archipel_vault::procedure::Classification| {
            signed.texts.f(
                "{room} is classified {class}.",
                &[("room", &room), ("class", &class)],
            )
        },
    )
}

#[derive(Deserialize)]
pub struct PersonRole {
    user: String,
    role: String,
}

/// `POST /classification/role`.
pub async fn set_role(
    State(console): State<Arc<Console>>,
    posted: Posted<PersonRole>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::RecordsManager)?;
    let user = form.user.trim();
    classification_change(
        &console,
        &signed,
        &form.role,
        |role| {
            let by = signed.user.as_str();
            ops::vault::set_role(console.node(), &signed.actor(), user, role, by)
        },
        |role: archipel_vault::procedure::Role| {
            signed.texts.f(
                "{user}'s role is {role}.",
                &[("user", &user), ("role", &role)],
            )
        },
    )
}

struct ListRow {
    reference: String,
    records: usize,
    as_of: String,
    proposed: String,
    approved: String,
    /// The person signed in may approve it.
    approvable: bool,
}

struct TransferRow {
    reference: String,
    records: usize,
    made: String,
    /// Empty while the archive service's receipt is awaited.
    confirmed: String,
}

#[derive(Template)]
#[template(path = "console/retention.html")]
struct RetentionPage {
    nav: Option<Nav>,
    t: Texts,
    status: archipel_vault::retention::RetentionStatus,
    transfer_years: u32,
    lists: Vec<ListRow>,
    transfers: Vec<TransferRow>,
    notice: Option<String>,
}

fn retention_page(
    console: &Console,
    signed: &Signed,
    notice: Option<String>,
) -> anyhow::Result<RetentionPage> {
    let policy = &console.node().config.vault.retention;
    let status = console
        .node()
        .vault
        .retention_status(policy, archipel_vault::now_ms())?;
    let lists = console
        .node()
        .vault
        .destruction_lists()?
        .into_iter()
        .rev()
        .map(|list| ListRow {
            approvable: list.approved_by.is_none() && list.proposed_by != signed.user.as_str(),
            reference: list.reference,
            records: list.records.len(),
            as_of: ms(list.as_of_ms),
            proposed: format!("{} by {}", ms(list.proposed_ts), list.proposed_by),
            approved: match (list.approved_ts, list.approved_by) {
                (Some(ts), Some(by)) => format!(
                    "{} by {by}: {} held back, {} kept",
                    ms(ts),
                    list.held_back.len(),
                    list.kept.len()
                ),
                _ => String::new(),
            },
        })
        .collect();
    let transfers = console
        .node()
        .vault
        .transfers()?
        .into_iter()
        .rev()
        .map(|transfer| TransferRow {
            reference: transfer.reference,
            records: transfer.records.len(),
            made: format!("{} by {}", ms(transfer.made_ts), transfer.made_by),
            confirmed: match (
                transfer.confirmed_ts,
                transfer.confirmed_by,
                transfer.receipt,
            ) {
                (Some(ts), Some(by), Some(receipt)) => {
                    format!("{} by {by}: {receipt}", ms(ts))
                }
                _ => String::new(),
            },
        })
        .collect();
    Ok(RetentionPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        status,
        transfer_years: policy.transfer_years,
        lists,
        transfers,
        notice,
    })
}

/// `GET /retention`: how the archive stands against the retention policy,
/// and the destruction lists.
pub async fn retention(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::RecordsManager)?;
    Ok(render(&blocking(|| {
        retention_page(&console, &signed, None)
    })?))
}

#[derive(Deserialize)]
pub struct Proposal {
    /// `YYYY-MM-DD`: what will have expired by then; empty for today. A
    /// list for a later date waits for it before it can be approved.
    #[serde(default)]
    as_of: String,
}

/// `POST /retention`: proposes the destruction of what has expired.
pub async fn propose(
    State(console): State<Arc<Console>>,
    posted: Posted<Proposal>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::RecordsManager)?;
    let as_of = super::day_start(&form.as_of, signed.texts)?.unwrap_or_else(archipel_vault::now_ms);
    let done = tokio::task::block_in_place(|| {
        ops::vault::propose_destruction(
            console.node(),
            &signed.actor(),
            as_of,
            signed.user.as_str(),
        )
    });
    let notice = notice(done, |list| {
        signed.texts.f(
            "{reference} proposes {count} expired record(s) for destruction; another records manager must approve it.",
            &[("reference", &list.reference), ("count", &list.records.len())],
        )
    });
    Ok(render(&blocking(|| {
        retention_page(&console, &signed, Some(notice))
    })?))
}

/// `POST /retention/{reference}/approve`: destroys the list's records.
/// Needs a fresh code.
pub async fn approve(
    State(console): State<Arc<Console>>,
    Path(reference): Path<String>,
    posted: Posted<Nothing>,
) -> Result<Response, Refusal> {
    let Posted { signed, .. } = posted;
    signed.require(Role::RecordsManager)?;
    signed.require_privilege("/retention")?;
    let done = tokio::task::block_in_place(|| {
        ops::vault::approve_destruction(
            console.node(),
            &signed.actor(),
            &reference,
            signed.user.as_str(),
        )
    });
    let notice = notice(done, |(list, purged)| {
        signed.texts.f(
            "{reference} approved: {destroyed} record(s) destroyed ({purged} copies on the node purged), {held} held back by a legal hold, {kept} kept.",
            &[
                ("reference", &list.reference),
                ("destroyed", &(list.records.len() - list.held_back.len() - list.kept.len())),
                ("purged", &purged),
                ("held", &list.held_back.len()),
                ("kept", &list.kept.len()),
            ],
        )
    });
    Ok(render(&blocking(|| {
        retention_page(&console, &signed, Some(notice))
    })?))
}

struct GapRow {
    record: u64,
    room: String,
    sender: String,
    device: String,
    sent: String,
}

#[derive(Template)]
#[template(path = "console/gaps.html")]
struct GapsPage {
    nav: Option<Nav>,
    t: Texts,
    /// What the archive does not hold readable, or cannot vouch for.
    alarms: Vec<String>,
    decrypted: u64,
    undecrypted: u64,
    gaps: Vec<GapRow>,
    capture_lag: u64,
}

/// How many undecrypted events the page names one by one.
const GAPS_SHOWN: usize = 100;

/// `GET /gaps`: where the archive is incomplete or cannot vouch for a
/// peer: rooms the archive member was removed from, encrypted events whose
/// room key never reached it, peers caught rewriting their logs, and
/// events still waiting to be archived. Senders, rooms and times only,
/// never content.
pub async fn gaps(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require_any_role()?;
    let node = console.node();
    let texts = signed.texts;
    let (coverage, witnessing, decrypted, undecrypted, pending, capture_lag) = blocking(|| {
        let vault = node.vault;
        Ok((
            vault.coverage_gaps()?,
            vault.witness_status()?,
            vault.decryption_count()?,
            vault.pending_decryption_count()?,
            vault.pending_decryptions(None, GAPS_SHOWN)?,
            node.services.rooms.outbox_len(ops::status::QUEUE_COUNTED)? as u64,
        ))
    })?;
    let mut alarms = Vec::new();
    for gap in coverage {
        let at = ms(gap.since_ts);
        alarms.push(if gap.membership == "refused" {
            texts.f(
                "The archive member could not join {room} after {by} did ({at}): encrypted messages there are not decrypted.",
                &[("room", &gap.room_id), ("by", &gap.by), ("at", &at)],
            )
        } else {
            texts.f(
                "The archive member was removed from {room} by {by} ({at}): encrypted messages there since are not decrypted.",
                &[("room", &gap.room_id), ("by", &gap.by), ("at", &at)],
            )
        });
    }
    for (peer, alarm) in witnessing.alarms() {
        alarms.push(texts.f(
            "{peer} showed a log that does not extend the one this node co-signed ({at}): {reason}",
            &[
                ("peer", &peer),
                ("at", &ms(alarm.at)),
                ("reason", &alarm.reason),
            ],
        ));
    }
    for cosigned in witnessing.cosigned.iter().filter(|c| !c.verifies) {
        alarms.push(texts.f(
            "The co-signature of {witness} over this node's checkpoint at {size} records does not verify.",
            &[("witness", &cosigned.witness), ("size", &cosigned.size)],
        ));
    }
    let gaps = pending
        .into_iter()
        .map(|gap| GapRow {
            record: gap.seq,
            sent: ms(gap.origin_server_ts),
            room: gap.room_id,
            sender: gap.sender,
            device: gap.device_id.unwrap_or_default(),
        })
        .collect();
    Ok(render(&GapsPage {
        nav: Some(signed.nav()),
        t: texts,
        alarms,
        decrypted,
        undecrypted,
        gaps,
        capture_lag,
    }))
}

#[derive(Deserialize)]
pub struct Receipt {
    /// The archive service's receipt: its reference or message.
    #[serde(default)]
    receipt: String,
}

/// `POST /retention/transfers/{reference}/confirm`: records that the
/// archive service confirmed receipt of a transfer; its records may then
/// be destroyed here. Needs a fresh code.
pub async fn confirm_transfer(
    State(console): State<Arc<Console>>,
    Path(reference): Path<String>,
    posted: Posted<Receipt>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::RecordsManager)?;
    signed.require_privilege("/retention")?;
    let done = tokio::task::block_in_place(|| {
        ops::transfers::confirm(
            console.node(),
            &signed.actor(),
            &reference,
            &form.receipt,
            signed.user.as_str(),
        )
    });
    let notice = notice(done, |transfer| {
        signed.texts.f(
            "{reference} confirmed: the archive service holds its {count} record(s); they may now go on a destruction list.",
            &[
                ("reference", &transfer.reference),
                ("count", &transfer.records.len()),
            ],
        )
    });
    Ok(render(&blocking(|| {
        retention_page(&console, &signed, Some(notice))
    })?))
}

/// `GET /retention/{reference}/statement`: the signed statement of
/// destruction of an approved list, as a text file.
pub async fn statement(
    State(console): State<Arc<Console>>,
    Path(reference): Path<String>,
    signed: Signed,
) -> Result<Response, Refusal> {
    use axum::response::IntoResponse;
    signed.require(Role::RecordsManager)?;
    let text = blocking(|| {
        Ok(ops::transfers::statement(
            console.node(),
            &signed.actor(),
            &reference,
        ))
    })?
    .map_err(|e| Refusal::BadRequest(signed.texts.error(&e)))?;
    let name: String = reference
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"verklaring-van-vernietiging-{name}.txt\""),
            ),
        ],
        text,
    )
        .into_response())
}
