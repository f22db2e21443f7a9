//! The operators' pages: the dashboard, accounts and registration
//! tokens. Counts and accounts only: nothing archived is shown here.

use std::sync::Arc;

use archipel_homeserver::service::users::Account;
use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::Response,
};
use ruma::OwnedUserId;
use serde::Deserialize;

use super::{Nav, Posted, Refusal, Role, Signed, Texts, blocking, render, when};
use crate::{
    console::Console,
    ops::{self, status::NodeStatus},
};

/// One day's bar in the dashboard's chart.
struct Bar {
    x: u64,
    y: u64,
    height: u64,
    title: String,
}

const CHART_HEIGHT: u64 = 100;
const BAR_WIDTH: u64 = 18;

/// The bars of messages per day, oldest left, scaled to the busiest day.
fn bars(counts: &[u64]) -> Vec<Bar> {
    let busiest = counts.iter().copied().max().unwrap_or(0).max(1);
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    let days = counts.len();
    counts
        .iter()
        .enumerate()
        .map(|(i, &count)| {
            let height = count * CHART_HEIGHT / busiest;
            let ago = i64::try_from(days - 1 - i).unwrap_or(0);
            let day = today
                .checked_sub(jiff::Span::new().days(ago))
                .map(|d| d.to_string())
                .unwrap_or_default();
            Bar {
                x: i as u64 * (BAR_WIDTH + 2),
                y: CHART_HEIGHT - height,
                height,
                title: format!("{day}: {count} message(s)"),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    nav: Option<Nav>,
    t: Texts,
    bars: Vec<Bar>,
    messages_total: u64,
    chart_width: u64,
    status: NodeStatus,
    database: String,
    vault: String,
    uptime: String,
    certificate: String,
    backups: Vec<(String, String)>,
    alarms: Vec<String>,
    last_verify: String,
}

/// `GET /dashboard`.
pub async fn dashboard(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let status = blocking(|| ops::status::node_status(console.node()))?;
    let certificate = match status.certificate_expiry {
        Some(expiry) => format!("expires {}", when(expiry)),
        None => "none served (no [tls], or not issued yet)".to_owned(),
    };
    let backups = status
        .backups
        .iter()
        .map(|(target, at)| (target.clone(), when(*at)))
        .collect();
    let uptime = super::duration(jiff::Timestamp::now().as_second() - status.started);
    let bars = bars(&status.messages_per_day);
    let alarms = status
        .alarms(jiff::Timestamp::now().as_second())
        .iter()
        .map(|alarm| alarm.text(signed.texts))
        .collect();
    let last_verify = match &status.last_verify {
        None => signed.texts.t("never").to_owned(),
        Some(last) if last.problems == 0 => signed.texts.f(
            "{at}: verified, {records} records",
            &[("at", &when(last.at)), ("records", &last.records)],
        ),
        Some(last) => signed.texts.f(
            "{at}: {count} problem(s)",
            &[("at", &when(last.at)), ("count", &last.problems)],
        ),
    };
    Ok(render(&DashboardPage {
        last_verify,
        nav: Some(signed.nav()),
        t: signed.texts,
        messages_total: status.messages_per_day.iter().sum(),
        chart_width: bars.len() as u64 * (BAR_WIDTH + 2),
        bars,
        database: indicatif::HumanBytes(status.database_bytes).to_string(),
        vault: indicatif::HumanBytes(status.vault_bytes).to_string(),
        status,
        uptime,
        certificate,
        backups,
        alarms,
    }))
}

/// An account as the users pages and the rights overview show it.
pub(super) struct UserRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) admin: bool,
    pub(super) deactivated: bool,
    pub(super) records_manager: bool,
    pub(super) auditor: bool,
    pub(super) authenticator: bool,
}

impl UserRow {
    /// Holds a role in the console.
    pub(super) fn has_role(&self) -> bool {
        self.admin || self.records_manager || self.auditor
    }
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    nav: Option<Nav>,
    t: Texts,
    query: String,
    users: Vec<UserRow>,
    more: bool,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
}

const USERS_SHOWN: usize = 200;

pub(super) fn user_row(
    console: &Console,
    id: &OwnedUserId,
    account: &Account,
) -> anyhow::Result<UserRow> {
    Ok(UserRow {
        id: id.to_string(),
        name: account.displayname.clone().unwrap_or_default(),
        admin: account.admin,
        deactivated: account.deactivated,
        records_manager: console.node().vault.is_records_manager(id.as_str())?,
        auditor: console.sessions.is_auditor(id)?,
        authenticator: console.sessions.has_factor(id)?,
    })
}

/// `GET /users?q=`: the accounts, found by ID or display name.
pub async fn users(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Query(search): Query<Search>,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let page = blocking(|| users_page(&console, &signed, &search.q, None))?;
    Ok(render(&page))
}

fn users_page(
    console: &Console,
    signed: &Signed,
    query: &str,
    notice: Option<String>,
) -> anyhow::Result<UsersPage> {
    let needle = query.trim().to_lowercase();
    let mut users = Vec::new();
    let mut more = false;
    for (id, account) in ops::accounts::list_users(console.node())? {
        let name = account.displayname.as_deref().unwrap_or_default();
        if !needle.is_empty()
            && !id.as_str().contains(&needle)
            && !name.to_lowercase().contains(&needle)
        {
            continue;
        }
        if users.len() == USERS_SHOWN {
            more = true;
            break;
        }
        users.push(user_row(console, &id, &account)?);
    }
    Ok(UsersPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        query: query.to_owned(),
        users,
        more,
        notice,
    })
}

#[derive(Deserialize)]
pub struct NewUser {
    user: String,
}

/// `POST /users`: creates an account with a one-time password, shown
/// once for the operator to hand over.
pub async fn create_user(
    State(console): State<Arc<Console>>,
    posted: Posted<NewUser>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::Operator)?;
    let password = archipel_homeserver::service::users::random_string(20);
    let created = ops::accounts::create_user(
        console.node(),
        &signed.actor(),
        form.user.trim(),
        password.clone(),
        false,
    )
    .await;
    let notice = match created {
        Ok(id) => signed.texts.f(
            "Created {id}. Its password, shown only now: {password} — hand it over in person; they choose their own at their first sign-in in a Matrix client.",
            &[("id", &id), ("password", &password)],
        ),
        Err(e) => signed
            .texts
            .f("Not created: {error}", &[("error", &signed.texts.error(&e))]),
    };
    let page = blocking(|| users_page(&console, &signed, "", Some(notice)))?;
    Ok(render(&page))
}

struct DeviceRow {
    id: String,
    name: String,
    last_seen: String,
}

#[derive(Template)]
#[template(path = "console/user.html")]
struct UserPage {
    nav: Option<Nav>,
    t: Texts,
    user: UserRow,
    devices: Vec<DeviceRow>,
    notice: Option<String>,
    myself: bool,
}

/// `GET /users/{user}`: one account, its devices and roles, and what an
/// operator can do to it.
pub async fn user(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(user): Path<String>,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let page = blocking(|| user_page(&console, &signed, &user, None))?;
    Ok(render(&page))
}

fn user_page(
    console: &Console,
    signed: &Signed,
    user: &str,
    notice: Option<String>,
) -> anyhow::Result<UserPage> {
    let node = console.node();
    let id = ops::accounts::user_id(node.config, user)?;
    let account = node
        .services
        .users
        .account(&id)?
        .ok_or_else(|| anyhow::anyhow!("{id} does not exist"))?;
    let devices = node
        .services
        .users
        .devices(&id)?
        .into_iter()
        .map(|device| DeviceRow {
            id: device.device_id.to_string(),
            name: device.display_name.unwrap_or_default(),
            last_seen: match (device.last_seen_ts, device.last_seen_ip) {
                (Some(ts), Some(ip)) => {
                    format!("{} from {ip}", when(i64::try_from(ts / 1000).unwrap_or(0)))
                }
                (Some(ts), None) => when(i64::try_from(ts / 1000).unwrap_or(0)),
                (None, _) => "never".to_owned(),
            },
        })
        .collect();
    Ok(UserPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        myself: id == signed.user,
        user: user_row(console, &id, &account)?,
        devices,
        notice,
    })
}

/// The user page again after an action, with what it did.
fn after(
    console: &Console,
    signed: &Signed,
    user: &str,
    done: anyhow::Result<String>,
) -> Result<Response, Refusal> {
    let notice = match done {
        Ok(notice) => notice,
        Err(e) => signed
            .texts
            .f("Not done: {error}", &[("error", &signed.texts.error(&e))]),
    };
    let page = blocking(|| user_page(console, signed, user, Some(notice)))?;
    Ok(render(&page))
}

/// An operator's dangerous action on `user`'s account: the role, and a
/// fresh code (else to enter one, then back to the account's page).
fn account_action<T>(posted: Posted<T>, user: &str) -> Result<(Signed, T), Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::Operator)?;
    signed.require_privilege(&format!("/users/{user}"))?;
    Ok((signed, form))
}

#[derive(Deserialize)]
pub struct Confirm {
    #[serde(default)]
    confirm: String,
}

/// `POST /users/{user}/deactivate`: with the user ID typed to confirm, and
/// a fresh code; never one's own account.
pub async fn deactivate(
    State(console): State<Arc<Console>>,
    Path(user): Path<String>,
    posted: Posted<Confirm>,
) -> Result<Response, Refusal> {
    let (signed, form) = account_action(posted, &user)?;
    let node = console.node();
    let id = ops::accounts::user_id(node.config, &user)
        .map_err(|e| Refusal::BadRequest(format!("{e:#}")))?;
    let done = if id == signed.user {
        Err(anyhow::anyhow!(
            signed
                .texts
                .t("you cannot deactivate your own account")
                .to_owned()
        ))
    } else if form.confirm.trim() != id.as_str() {
        Err(anyhow::anyhow!(
            signed
                .texts
                .f("type the user ID ({id}) to confirm", &[("id", &id)])
        ))
    } else {
        ops::accounts::deactivate_user(node, &signed.actor(), id.as_str())
            .await
            .map(|id| {
                signed.texts.f(
                    "{id} is deactivated: signed out everywhere, out of every room.",
                    &[("id", &id)],
                )
            })
    };
    after(&console, &signed, &user, done)
}

/// `POST /users/{user}/password`: a new one-time password, shown once;
/// every session of the account ends.
pub async fn reset_password(
    State(console): State<Arc<Console>>,
    Path(user): Path<String>,
    posted: Posted<Confirm>,
) -> Result<Response, Refusal> {
    let (signed, _) = account_action(posted, &user)?;
    let password = archipel_homeserver::service::users::random_string(20);
    let done = ops::accounts::set_password(console.node(), &signed.actor(), &user, password.clone())
        .await
        .map(|id| {
            signed.texts.f(
                "{id}'s new password, shown only now: {password} — every session of the account has ended.",
                &[("id", &id), ("password", &password)],
            )
        });
    after(&console, &signed, &user, done)
}

/// `POST /users/{user}/devices/{device}/remove`: signs the device out and
/// forgets it (a lost phone), with a fresh code.
pub async fn remove_device(
    State(console): State<Arc<Console>>,
    Path((user, device)): Path<(String, String)>,
    posted: Posted<super::Nothing>,
) -> Result<Response, Refusal> {
    let (signed, _) = account_action(posted, &user)?;
    let done = ops::accounts::remove_device(console.node(), &signed.actor(), &user, &device)
        .await
        .map(|id| {
            signed.texts.f(
                "{id}'s device {device} is signed out and forgotten.",
                &[("id", &id), ("device", &device)],
            )
        });
    after(&console, &signed, &user, done)
}

#[derive(Deserialize)]
pub struct AdminForm {
    admin: String,
}

/// `POST /users/{user}/admin`: makes the account an operator (a server
/// administrator), or not; never takes one's own.
pub async fn set_admin(
    State(console): State<Arc<Console>>,
    Path(user): Path<String>,
    posted: Posted<AdminForm>,
) -> Result<Response, Refusal> {
    let (signed, form) = account_action(posted, &user)?;
    let admin = form.admin == "yes";
    let node = console.node();
    let done = match ops::accounts::user_id(node.config, &user) {
        Ok(id) if id == signed.user && !admin => Err(anyhow::anyhow!(
            signed
                .texts
                .t("you cannot take your own operator role")
                .to_owned()
        )),
        Ok(_) => ops::accounts::set_admin(node, &signed.actor(), &user, admin)
            .await
            .map(|id| {
                if admin {
                    signed.texts.f("{id} is an operator.", &[("id", &id)])
                } else {
                    signed
                        .texts
                        .f("{id} is no longer an operator.", &[("id", &id)])
                }
            }),
        Err(e) => Err(e),
    };
    after(&console, &signed, &user, done)
}

#[derive(Deserialize)]
pub struct AuditorForm {
    auditor: String,
}

/// `POST /users/{user}/auditor`: makes the account an auditor, or not.
pub async fn set_auditor(
    State(console): State<Arc<Console>>,
    Path(user): Path<String>,
    posted: Posted<AuditorForm>,
) -> Result<Response, Refusal> {
    let (signed, form) = account_action(posted, &user)?;
    let node = console.node();
    let auditor = form.auditor == "yes";
    let done = ops::accounts::user_id(node.config, &user).and_then(|id| {
        tokio::task::block_in_place(|| {
            ops::console::set_auditor(node, &signed.actor(), &id, auditor)
        })
        .map(|()| {
            if auditor {
                signed.texts.f("{id} is an auditor.", &[("id", &id)])
            } else {
                signed
                    .texts
                    .f("{id} is no longer an auditor.", &[("id", &id)])
            }
        })
    });
    after(&console, &signed, &user, done)
}

/// `POST /users/{user}/authenticator`: forgets the account's
/// authenticator (a lost phone); they enrol a new one at their next
/// sign-in.
pub async fn reset_authenticator(
    State(console): State<Arc<Console>>,
    Path(user): Path<String>,
    posted: Posted<Confirm>,
) -> Result<Response, Refusal> {
    let (signed, _) = account_action(posted, &user)?;
    let node = console.node();
    let done = ops::accounts::user_id(node.config, &user).and_then(|id| {
        tokio::task::block_in_place(|| {
            ops::console::reset_authenticator(node, &signed.actor(), &id)
        })
        .map(|()| {
            signed.texts.f(
                "{id}'s authenticator is forgotten; they enrol a new one at their next sign-in.",
                &[("id", &id)],
            )
        })
    });
    after(&console, &signed, &user, done)
}

struct TokenRow {
    /// The first characters only: the token is a secret.
    start: String,
    uses: String,
    expires: String,
    valid: bool,
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
struct TokensPage {
    nav: Option<Nav>,
    t: Texts,
    tokens: Vec<TokenRow>,
    notice: Option<String>,
}

fn tokens_page(
    console: &Console,
    signed: &Signed,
    notice: Option<String>,
) -> anyhow::Result<TokensPage> {
    let now = archipel_homeserver::service::users::now_ms();
    let tokens = ops::accounts::list_tokens(console.node())?
        .into_iter()
        .map(|token| TokenRow {
            start: token.token.chars().take(4).collect(),
            uses: match token.uses_allowed {
                Some(allowed) => format!("{} of {allowed}", token.completed),
                None => format!("{} (unlimited)", token.completed),
            },
            expires: token
                .expiry_time
                .map(|ms| when(i64::try_from(ms / 1000).unwrap_or(0)))
                .unwrap_or_else(|| "never".to_owned()),
            valid: token.is_valid(now),
        })
        .collect();
    Ok(TokensPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        tokens,
        notice,
    })
}

/// `GET /tokens`: the registration tokens.
pub async fn tokens(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let page = blocking(|| tokens_page(&console, &signed, None))?;
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct NewToken {
    #[serde(default)]
    uses: String,
}

/// `POST /tokens`: a new registration token, shown once.
pub async fn create_token(
    State(console): State<Arc<Console>>,
    posted: Posted<NewToken>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::Operator)?;
    let uses = match form.uses.trim() {
        "" => None,
        n => match n.parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(Refusal::BadRequest(
                    signed
                        .texts
                        .t("The number of uses is a whole number above 0, or empty for unlimited.")
                        .into(),
                ));
            }
        },
    };
    let notice =
        match ops::accounts::create_token(console.node(), &signed.actor(), None, uses).await {
            Ok(token) => signed.texts.f(
                "New registration token, shown only now: {token}",
                &[("token", &token.token)],
            ),
            Err(e) => signed.texts.f(
                "Not created: {error}",
                &[("error", &signed.texts.error(&e))],
            ),
        };
    let page = blocking(|| tokens_page(&console, &signed, Some(notice)))?;
    Ok(render(&page))
}

#[derive(Template)]
#[template(path = "console/rooms.html")]
struct RoomsPage {
    nav: Option<Nav>,
    t: Texts,
    query: String,
    rooms: Vec<ops::rooms::RoomSummary>,
    more: bool,
}

const ROOMS_SHOWN: usize = 200;

/// `GET /rooms?q=`: the rooms this server knows, by ID or name: their
/// metadata, never their messages.
pub async fn rooms(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Query(search): Query<Search>,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let (rooms, more) = blocking(|| ops::rooms::find(console.node(), &search.q, ROOMS_SHOWN))?;
    Ok(render(&RoomsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        query: search.q,
        rooms,
        more,
    }))
}

#[derive(Template)]
#[template(path = "console/room.html")]
struct RoomPage {
    nav: Option<Nav>,
    t: Texts,
    room: ops::rooms::RoomDetails,
    /// The room's members from this server, who can be made its admin.
    local_members: Vec<String>,
    notice: Option<String>,
}

/// `GET /rooms/{room}`: one room's metadata and members.
pub async fn room(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(room): Path<String>,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    Ok(render(&room_page(&console, &signed, &room, None)?))
}

fn room_page(
    console: &Console,
    signed: &Signed,
    room: &str,
    notice: Option<String>,
) -> Result<RoomPage, Refusal> {
    let node = console.node();
    let room = blocking(|| ops::rooms::details(node, room)).map_err(|_| {
        Refusal::NotFound(
            signed
                .texts
                .t("This server does not know that room.")
                .into(),
        )
    })?;
    let ours = format!(":{}", node.config.homeserver.server_name);
    let local_members = room
        .members
        .iter()
        .filter(|(user, membership)| membership == "join" && user.ends_with(&ours))
        .map(|(user, _)| user.clone())
        .collect();
    Ok(RoomPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        room,
        local_members,
        notice,
    })
}

#[derive(Deserialize)]
pub struct NewRoomAdmin {
    user: String,
}

/// `POST /rooms/{room}/admin`: hands admin of the room to one of its
/// members, with a fresh code.
pub async fn make_room_admin(
    State(console): State<Arc<Console>>,
    Path(room): Path<String>,
    posted: Posted<NewRoomAdmin>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::Operator)?;
    signed.require_privilege(&format!("/rooms/{room}"))?;
    let node = console.node();
    let notice = match ops::rooms::make_admin(node, &signed.actor(), &room, form.user.trim()).await
    {
        Ok(said) => said,
        Err(e) => signed.texts.f(
            "Not changed: {error}",
            &[("error", &signed.texts.error(&e))],
        ),
    };
    Ok(render(&room_page(&console, &signed, &room, Some(notice))?))
}

/// A backup target as the backups page shows it.
struct TargetRow {
    failed: bool,
    /// A recovery copy, whose passphrase the node holds: the console can
    /// check its backups.
    verifiable: bool,
    name: String,
    place: String,
    last: String,
    last_success: String,
    backup: String,
    problem: String,
}

#[derive(Template)]
#[template(path = "console/backups.html")]
struct BackupsPage {
    nav: Option<Nav>,
    t: Texts,
    schedule: String,
    last_run: String,
    /// When the run in progress started, if one runs.
    running: Option<String>,
    targets: Vec<TargetRow>,
    notice: Option<String>,
}

/// `GET /backups`: the targets, the schedule, and the newest run's
/// outcome for each target.
pub async fn backups(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    Ok(render(&backups_page(&console, &signed, None)))
}

/// `POST /backups/run`: a backup to every target now, in the background.
pub async fn run_backup(
    State(console): State<Arc<Console>>,
    posted: Posted<super::Nothing>,
) -> Result<Response, Refusal> {
    let Posted { signed, .. } = posted;
    signed.require(Role::Operator)?;
    let started =
        tokio::task::block_in_place(|| ops::backups::start(console.admin(), &signed.actor()));
    let notice = match started {
        Ok(_) => signed
            .texts
            .t("The backup has started; this page shows its outcome once it is done.")
            .to_owned(),
        Err(e) => signed.texts.f(
            "Not started: {error}",
            &[("error", &signed.texts.error(&e))],
        ),
    };
    Ok(render(&backups_page(&console, &signed, Some(notice))))
}

/// `POST /backups/{target}/verify`: the newest backup of a recovery-copy
/// target, decrypted and checked end to end (it takes as long as reading
/// the backup).
pub async fn verify_backup(
    State(console): State<Arc<Console>>,
    Path(target): Path<String>,
    posted: Posted<super::Nothing>,
) -> Result<Response, Refusal> {
    let Posted { signed, .. } = posted;
    signed.require(Role::Operator)?;
    let admin = console.admin().clone();
    let actor = signed.actor();
    let checking = target.clone();
    let checked =
        tokio::task::spawn_blocking(move || ops::backups::verify(&admin, &actor, &checking))
            .await
            .map_err(|e| Refusal::Internal(anyhow::anyhow!("the check stopped: {e}")))?;
    let notice = match checked {
        Ok(said) => said,
        Err(e) => signed.texts.f(
            "{target} does not verify: {error}",
            &[("target", &target), ("error", &signed.texts.error(&e))],
        ),
    };
    Ok(render(&backups_page(&console, &signed, Some(notice))))
}

fn backups_page(console: &Console, signed: &Signed, notice: Option<String>) -> BackupsPage {
    let config = &console.node().config;
    let status = crate::backup::schedule::read_status(&config.node.data_dir);
    let schedule = &config.backup.schedule;
    let schedule = if schedule.every_hours == 0 || config.backup.targets.is_empty() {
        signed.texts.t("No scheduled backups.").to_owned()
    } else {
        signed.texts.f(
            "Every {hours} hour(s) from {at} ({zone}).",
            &[
                ("hours", &schedule.every_hours.to_string()),
                ("at", &schedule.at),
                ("zone", &schedule.time_zone),
            ],
        )
    };
    let targets = config
        .backup
        .targets
        .iter()
        .map(|target| {
            let outcome = status
                .as_ref()
                .and_then(|s| s.targets.iter().find(|t| t.target == target.name));
            TargetRow {
                failed: outcome.is_some_and(|t| !t.ok),
                verifiable: target.passphrase_file.is_some(),
                name: target.name.clone(),
                place: target_place(target),
                last: match outcome {
                    Some(t) if t.ok => "written".to_owned(),
                    Some(_) => "failed".to_owned(),
                    None => "not yet".to_owned(),
                },
                last_success: outcome
                    .and_then(|t| t.last_success)
                    .map(|at| when(at.as_second()))
                    .unwrap_or_else(|| "never".to_owned()),
                backup: outcome.and_then(|t| t.backup.clone()).unwrap_or_default(),
                problem: outcome.and_then(|t| t.error.clone()).unwrap_or_default(),
            }
        })
        .collect();
    BackupsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        schedule,
        last_run: status
            .map(|s| format!("{} – {}", s.started, s.finished))
            .unwrap_or_else(|| signed.texts.t("none yet").to_owned()),
        running: crate::backup::schedule::running_since().map(|at| when(at.as_second())),
        targets,
        notice,
    }
}

/// Where a backup target is, for people.
fn target_place(target: &crate::backup::TargetConfig) -> String {
    match (&target.directory, &target.s3) {
        (Some(dir), _) => dir.display().to_string(),
        (None, Some(s3)) => format!("S3 {} / {}", s3.bucket, s3.prefix),
        (None, None) => String::new(),
    }
}

struct ContentsRow {
    target: String,
    place: String,
    complete: usize,
    newest: String,
    newest_size: String,
    incomplete: usize,
    problem: String,
}

#[derive(Template)]
#[template(path = "console/backup_contents.html")]
struct ContentsPage {
    nav: Option<Nav>,
    t: Texts,
    rows: Vec<ContentsRow>,
}

/// `GET /backups/contents`: what each target holds, from its listing (no
/// key: a full check decrypts, on the command line).
pub async fn backup_contents(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let admin = console.admin().clone();
    let listed = tokio::task::spawn_blocking(move || ops::backups::contents(&admin))
        .await
        .map_err(|e| Refusal::Internal(anyhow::anyhow!("listing the targets stopped: {e}")))?;
    let targets = &console.node().config.backup.targets;
    let rows = listed
        .into_iter()
        .zip(targets)
        .map(|(contents, target)| {
            let place = target_place(target);
            match contents.listed {
                Ok(backups) => {
                    let newest = backups.iter().rev().find(|b| b.complete);
                    ContentsRow {
                        target: contents.target,
                        place,
                        complete: backups.iter().filter(|b| b.complete).count(),
                        newest: newest
                            .map(|b| when(b.created().as_second()))
                            .unwrap_or_else(|| signed.texts.t("none").to_owned()),
                        newest_size: newest
                            .and_then(|b| b.archive_size)
                            .map(|size| indicatif::HumanBytes(size).to_string())
                            .unwrap_or_default(),
                        incomplete: backups.iter().filter(|b| !b.complete).count(),
                        problem: String::new(),
                    }
                }
                Err(e) => ContentsRow {
                    target: contents.target,
                    place,
                    complete: 0,
                    newest: String::new(),
                    newest_size: String::new(),
                    incomplete: 0,
                    problem: format!("{e:#}"),
                },
            }
        })
        .collect();
    Ok(render(&ContentsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        rows,
    }))
}

struct ReportRow {
    time: String,
    reporter: String,
    room: String,
    event: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "console/reports.html")]
struct ReportsPage {
    nav: Option<Nav>,
    t: Texts,
    reports: Vec<ReportRow>,
}

const REPORTS_SHOWN: usize = 200;

struct PeerRow {
    name: String,
    address: String,
    pinned_keys: usize,
    queued: String,
    /// This node's newest checkpoint the peer co-signed.
    cosigned: String,
    cosigned_verifies: bool,
    /// The peer's newest checkpoint this node co-signed.
    witnessed: String,
    alarm: Option<String>,
}

#[derive(Template)]
#[template(path = "console/federation.html")]
struct FederationPage {
    nav: Option<Nav>,
    t: Texts,
    listener: Option<String>,
    peers: Vec<PeerRow>,
}

/// `GET /federation`: the allowlisted peers, their queues, and the
/// checkpoints witnessed each way.
pub async fn federation(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let node = console.node();
    let federation = &node.config.federation;
    let (queues, witnessing) = blocking(|| {
        Ok((
            ops::status::peer_queues(node)?,
            node.vault.witness_status()?,
        ))
    })?;
    let texts = signed.texts;
    let peers = federation
        .peers
        .iter()
        .zip(queues)
        .map(|(peer, (_, queued))| {
            let name = peer.server_name.to_string();
            let cosigned = witnessing.cosigned.iter().find(|c| c.witness == name);
            let origin = archipel_vault::origin_for(&name);
            let witnessed = witnessing.witnessed.iter().find(|w| w.origin == origin);
            PeerRow {
                address: peer.address.map_or_else(
                    || texts.t("found through .well-known").to_owned(),
                    |a| a.to_string(),
                ),
                pinned_keys: peer.keys.len(),
                queued: if queued >= ops::status::QUEUE_COUNTED as u64 {
                    format!("{queued}+")
                } else {
                    queued.to_string()
                },
                cosigned: cosigned.map_or_else(
                    || texts.t("not yet").to_owned(),
                    |c| {
                        let at = c
                            .time
                            .map(|t| when(i64::try_from(t).unwrap_or(i64::MAX)))
                            .unwrap_or_default();
                        format!("{} {} {at}", c.size, texts.t("records,"))
                    },
                ),
                cosigned_verifies: cosigned.is_none_or(|c| c.verifies),
                witnessed: witnessed.map_or_else(
                    || texts.t("not yet").to_owned(),
                    |w| {
                        let at = when(i64::try_from(w.at / 1000).unwrap_or(i64::MAX));
                        format!("{} {} {at}", w.size, texts.t("records,"))
                    },
                ),
                alarm: witnessed.and_then(|w| w.alarm.as_ref()).map(|a| {
                    format!(
                        "{} ({})",
                        a.reason,
                        when(i64::try_from(a.at / 1000).unwrap_or(i64::MAX))
                    )
                }),
                name,
            }
        })
        .collect();
    Ok(render(&FederationPage {
        nav: Some(signed.nav()),
        t: texts,
        listener: federation.listen.map(|l| l.to_string()),
        peers,
    }))
}

#[derive(Template)]
#[template(path = "console/configuration.html")]
struct ConfigurationPage {
    nav: Option<Nav>,
    t: Texts,
    source: String,
    effective: String,
}

/// `GET /configuration`: the settings the node runs with, defaults filled
/// in, read-only. Secrets written inline (a TURN secret) show as hidden;
/// the others live in files named here.
pub async fn configuration(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let config = console.node().config;
    Ok(render(&ConfigurationPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        source: config.source.display().to_string(),
        effective: format!("{config:#?}"),
    }))
}

/// `GET /reports`: what users reported to the operators (Element's
/// "Report"), newest first.
pub async fn reports(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let reports = blocking(|| Ok(console.node().services.reports.newest(REPORTS_SHOWN)?))?
        .into_iter()
        .map(|report| ReportRow {
            time: when(i64::try_from(report.ts / 1000).unwrap_or(0)),
            reporter: report.reporter.to_string(),
            room: report.room_id.to_string(),
            event: report.event_id.map(|e| e.to_string()).unwrap_or_default(),
            reason: report.reason.unwrap_or_default(),
        })
        .collect();
    Ok(render(&ReportsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        reports,
    }))
}

#[derive(Template)]
#[template(path = "console/log.html")]
struct LogPage {
    nav: Option<Nav>,
    t: Texts,
    lines: Vec<String>,
}

/// `GET /log`: the newest lines of the node's journal.
pub async fn log(signed: Signed) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    let lines = tokio::task::spawn_blocking(ops::status::journal)
        .await
        .map_err(|e| Refusal::Internal(e.into()))?;
    Ok(render(&LogPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        lines,
    }))
}

struct BridgeRow {
    id: String,
    url: String,
    sender: String,
    queued: String,
    /// Empty while nothing waits for the bridge to take it.
    waiting: String,
    last: String,
    pingable: bool,
}

#[derive(Template)]
#[template(path = "console/bridges.html")]
struct BridgesPage {
    nav: Option<Nav>,
    t: Texts,
    bridges: Vec<BridgeRow>,
    notice: Option<String>,
}

fn bridges_page(
    console: &Console,
    signed: &Signed,
    notice: Option<String>,
) -> anyhow::Result<BridgesPage> {
    let texts = signed.texts;
    let bridges = ops::status::bridges(console.node())?
        .into_iter()
        .map(|bridge| BridgeRow {
            pingable: bridge.url.is_some(),
            url: bridge
                .url
                .unwrap_or_else(|| texts.t("none: it is sent nothing").to_owned()),
            sender: bridge.sender,
            queued: if bridge.queued >= ops::status::QUEUE_COUNTED as u64 {
                format!("{}+", bridge.queued)
            } else {
                bridge.queued.to_string()
            },
            waiting: bridge
                .in_flight
                .map(|txn| {
                    texts.f(
                        "transaction {txn} not taken yet; tried again with growing pauses",
                        &[("txn", &txn)],
                    )
                })
                .unwrap_or_default(),
            last: bridge.last_transaction_ms.map_or_else(
                || texts.t("never").to_owned(),
                |ms| when(i64::try_from(ms / 1000).unwrap_or(i64::MAX)),
            ),
            id: bridge.id,
        })
        .collect();
    Ok(BridgesPage {
        nav: Some(signed.nav()),
        t: texts,
        bridges,
        notice,
    })
}

/// `GET /bridges`: the bridges the node serves, and how far each has
/// taken its events.
pub async fn bridges(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::Operator)?;
    Ok(render(&blocking(|| bridges_page(&console, &signed, None))?))
}

/// `POST /bridges/{id}/ping`: asks the bridge to answer, as it asks itself
/// when it starts.
pub async fn ping_bridge(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    posted: Posted<super::Nothing>,
) -> Result<Response, Refusal> {
    let Posted { signed, .. } = posted;
    signed.require(Role::Operator)?;
    let pinged = ops::status::ping_bridge(console.node(), &signed.actor(), &id).await;
    let notice = match pinged {
        Ok(took) => signed.texts.f(
            "{id} answered in {ms} ms.",
            &[("id", &id), ("ms", &took.as_millis().to_string())],
        ),
        Err(e) => signed.texts.f(
            "{id} did not answer: {error}",
            &[("id", &id), ("error", &signed.texts.error(&e))],
        ),
    };
    Ok(render(&blocking(|| {
        bridges_page(&console, &signed, Some(notice))
    })?))
}
