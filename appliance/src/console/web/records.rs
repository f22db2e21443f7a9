//! The records pages: the audit trail, and exclusion requests (asked for
//! by the sender, decided by a different records manager).

use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{Path, State},
    response::Response,
};
use serde::Deserialize;
use serde_json::Value;

use super::{Nav, Posted, Refusal, Role, Signed, Texts, blocking, render, when};
use crate::{console::Console, ops};

/// One step of the audit trail.
struct Step {
    seq: u64,
    time: String,
    actor: String,
    action: String,
    object: String,
    origin: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    nav: Option<Nav>,
    t: Texts,
    steps: Vec<Step>,
}

const STEPS_SHOWN: usize = 500;

/// `GET /audit`: who did what, newest first (the newest 500): each administrative action
/// (from every console, the command line, provisioning and the Matrix
/// admin API) and each step of the vault's procedures, as the vault's
/// log holds them. Reasons and notes stay sealed in the log.
pub async fn audit(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require_any_role()?;
    let steps = blocking(|| Ok(console.node().vault.newest_procedure_steps(STEPS_SHOWN)?))?;
    let steps = steps
        .iter()
        .map(|step| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let details = &step["details"];
            let admin = step["action"] == "admin_command";
            Step {
                seq: step["seq"].as_u64().unwrap_or_default(),
                time: when(i64::try_from(step["ts"].as_u64().unwrap_or(0) / 1000).unwrap_or(0)),
                actor: text(&step["actor"]),
                action: if admin {
                    text(&details["action"])
                } else {
                    text(&step["action"])
                },
                object: if admin {
                    text(&details["object"])
                } else {
                    text(&step["subject"])
                },
                origin: text(&details["origin"]),
                outcome: match (admin, details["error"].as_str()) {
                    (true, Some(error)) => format!("failed: {error}"),
                    _ => "done".to_owned(),
                },
            }
        })
        .collect();
    Ok(render(&AuditPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        steps,
    }))
}

/// An exclusion request as the requests page lists it.
struct RequestRow {
    reference: String,
    requester: String,
    events: usize,
    reason: String,
    ground: String,
    requested: String,
    status: String,
    open: bool,
    /// The person signed in may decide on it.
    decidable: bool,
}

/// A message an open request would exclude, shown to who decides.
struct Message {
    sender: String,
    time: String,
    body: String,
}

struct OpenRequest {
    row: RequestRow,
    messages: Vec<Message>,
}

#[derive(Template)]
#[template(path = "console/requests.html")]
struct RequestsPage {
    nav: Option<Nav>,
    t: Texts,
    records_manager: bool,
    open: Vec<OpenRequest>,
    mine: Vec<RequestRow>,
    decided: Vec<RequestRow>,
    notice: Option<String>,
}

/// `GET /requests`: one's own exclusion requests and the form to make
/// one; for records managers, the open requests with the messages they
/// would exclude, to decide on.
pub async fn requests(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    let page = blocking(|| requests_page(&console, &signed, None))?;
    Ok(render(&page))
}

fn requests_page(
    console: &Console,
    signed: &Signed,
    notice: Option<String>,
) -> anyhow::Result<RequestsPage> {
    let me = signed.user.as_str();
    let mut open = Vec::new();
    let mut mine = Vec::new();
    let mut decided = Vec::new();
    for request in console.node().vault.requests()?.into_iter().rev() {
        let row = RequestRow {
            reference: request.reference.clone(),
            requester: request.requester.clone(),
            events: request.events.len(),
            reason: request.reason.clone(),
            ground: request.ground.clone().unwrap_or_default(),
            requested: when(i64::try_from(request.requested_ts / 1000).unwrap_or(0)),
            status: match &request.decision {
                None => "open".to_owned(),
                Some(decision) => format!(
                    "{} by {}",
                    if decision.approved {
                        "approved"
                    } else {
                        "rejected"
                    },
                    decision.by
                ),
            },
            open: request.decision.is_none(),
            decidable: signed.records_manager
                && request.decision.is_none()
                && request.requester != me,
        };
        if request.requester == me {
            mine.push(row);
        } else if signed.records_manager {
            if row.open {
                // Who decides sees what they decide on: the messages.
                let messages = request
                    .records
                    .iter()
                    .map(|&seq| message(console, seq))
                    .collect::<anyhow::Result<_>>()?;
                open.push(OpenRequest { row, messages });
            } else {
                decided.push(row);
            }
        }
    }
    Ok(RequestsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        records_manager: signed.records_manager,
        open,
        mine,
        decided,
        notice,
    })
}

fn message(console: &Console, seq: u64) -> anyhow::Result<Message> {
    // Erased since the request (by another one), say: shown as such.
    let event = match console.node().vault.open_event(seq) {
        Ok(event) => event,
        Err(e) => {
            return Ok(Message {
                sender: String::new(),
                time: String::new(),
                body: format!("(record {seq}: {e})"),
            });
        }
    };
    let content = &event["content"];
    let body = content["body"]
        .as_str()
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| format!("({})", event["type"].as_str().unwrap_or("event")));
    Ok(Message {
        sender: event["sender"].as_str().unwrap_or_default().to_owned(),
        time: when(
            i64::try_from(event["origin_server_ts"].as_u64().unwrap_or(0) / 1000).unwrap_or(0),
        ),
        body,
    })
}

#[derive(Deserialize)]
pub struct NewRequest {
    events: String,
    reason: String,
    #[serde(default)]
    ground: String,
}

/// `POST /requests`: asks for one's own messages (or, as a delegate,
/// someone else's) to be excluded from the archive as private or
/// party-political.
pub async fn request(
    State(console): State<Arc<Console>>,
    posted: Posted<NewRequest>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    let events: Vec<String> = form
        .events
        .split_whitespace()
        .map(ToOwned::to_owned)
        .collect();
    let ground = Some(form.ground.trim()).filter(|g| !g.is_empty());
    let done = tokio::task::block_in_place(|| {
        ops::vault::request_exclusion(
            console.node(),
            &signed.actor(),
            &events,
            signed.user.as_str(),
            &form.reason,
            ground,
        )
    });
    let notice = match done {
        Ok(request) => signed.texts.f(
            "Requested as {reference}. A records manager other than you decides on it.",
            &[("reference", &request.reference)],
        ),
        Err(e) => signed.texts.f(
            "Not requested: {error}",
            &[("error", &signed.texts.error(&e))],
        ),
    };
    let page = blocking(|| requests_page(&console, &signed, Some(notice)))?;
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct Decision {
    decision: String,
    #[serde(default)]
    note: String,
}

/// `POST /requests/{reference}/decide`: a records manager approves (the
/// messages are erased from the archive and the node) or rejects a
/// request someone else made. Needs a fresh code.
pub async fn decide(
    State(console): State<Arc<Console>>,
    Path(reference): Path<String>,
    posted: Posted<Decision>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::RecordsManager)?;
    signed.require_privilege("/requests")?;
    let approve = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(Refusal::BadRequest("Choose approve or reject.".into())),
    };
    let note = Some(form.note.trim()).filter(|n| !n.is_empty());
    let done = tokio::task::block_in_place(|| {
        ops::vault::decide(
            console.node(),
            &signed.actor(),
            &reference,
            approve,
            signed.user.as_str(),
            note,
        )
    });
    let notice = match done {
        Ok((request, purged)) if approve => signed.texts.f(
            "{reference} approved: {count} message(s) erased from the archive, {purged} copy(ies) on the node purged.",
            &[
                ("reference", &request.reference),
                ("count", &request.records.len()),
                ("purged", &purged),
            ],
        ),
        Ok((request, _)) => signed
            .texts
            .f("{reference} rejected.", &[("reference", &request.reference)]),
        Err(e) => signed
            .texts
            .f("Not decided: {error}", &[("error", &signed.texts.error(&e))]),
    };
    let page = blocking(|| requests_page(&console, &signed, Some(notice)))?;
    Ok(render(&page))
}

#[derive(Template)]
#[template(path = "console/rights.html")]
struct RightsPage {
    nav: Option<Nav>,
    t: Texts,
    holders: Vec<super::operator::UserRow>,
}

/// `GET /rights`: everyone who holds a role in the console, for the
/// periodic review of special rights (BIO2 8.02.01).
pub async fn rights(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require_any_role()?;
    let holders = blocking(|| {
        let mut holders = Vec::new();
        for (id, account) in ops::accounts::list_users(console.node())? {
            let row = super::operator::user_row(&console, &id, &account)?;
            if row.has_role() {
                holders.push(row);
            }
        }
        Ok(holders)
    })?;
    Ok(render(&RightsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        holders,
    }))
}
