//! The web console: pages rendered on the node (askama templates compiled
//! into the binary), forms without scripts, one session cookie.
//!
//! What guards every page:
//! - a session ([`Signed`]): signed in with the account's password and a
//!   code from its authenticator; the person's roles are read at each
//!   request, so a role taken away is gone at the next click;
//! - a role per page ([`Signed::require`]): operators (server
//!   administrators), records managers (the vault's list) and auditors
//!   (read-only);
//! - on every form, the session's CSRF token ([`Posted`]), and on every
//!   request that is not a GET, an `Origin` that is the console's own
//!   ([`same_origin`]);
//! - a fresh code before dangerous actions ([`Signed::require_privilege`]);
//! - headers that keep the pages in their own frame and origin, with a
//!   Content-Security-Policy that allows no script at all ([`headers`]).
//!
//! Every change goes through the operations layer (`crate::ops`) with the
//! signed-in person as the actor, so it is in the vault's log.

use std::sync::Arc;

use askama::Template;
use axum::{
    Router,
    extract::{FromRequest, FromRequestParts, Request},
    handler::Handler,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::MethodRouter,
};
use ruma::OwnedUserId;
use serde::{Deserialize, de::DeserializeOwned};

use super::Console;
use crate::ops::{Actor, Origin};
use crate::sessions::{Session, now};
pub use i18n::{Lang, Texts};

mod exports;
mod i18n;
mod imports;
mod operator;
mod records;
mod search;
mod sign_in;
mod vault;

/// A route of the console, as the route table lists it.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// Served without a session (the sign-in pages and the style sheet).
    pub public: bool,
}

/// The router and the table of its routes, built together so that the
/// table cannot miss a route.
struct Routes {
    router: Router<Arc<Console>>,
    table: Vec<Route>,
}

impl Routes {
    fn get<H: Handler<T, Arc<Console>>, T: 'static>(
        self,
        path: &'static str,
        public: bool,
        handler: H,
    ) -> Self {
        self.add("GET", path, public, axum::routing::get(handler))
    }

    fn post<H: Handler<T, Arc<Console>>, T: 'static>(
        self,
        path: &'static str,
        public: bool,
        handler: H,
    ) -> Self {
        self.add("POST", path, public, axum::routing::post(handler))
    }

    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        public: bool,
        handler: MethodRouter<Arc<Console>>,
    ) -> Self {
        self.table.push(Route {
            method,
            path,
            public,
        });
        self.router = self.router.route(path, handler);
        self
    }
}

fn routes() -> Routes {
    let routes = Routes {
        router: Router::new(),
        table: Vec::new(),
    };
    // Public: the style sheet and the ways in.
    routes
        .get("/static/console.css", true, style_sheet)
        .get("/sign-in", true, sign_in::form)
        .post("/sign-in", true, sign_in::password)
        .get("/sign-in/code", true, sign_in::code_form)
        .post("/sign-in/code", true, sign_in::code)
        .get("/sign-in/enrol", true, sign_in::enrol_form)
        .post("/sign-in/enrol", true, sign_in::enrol)
        .get("/setup/{token}", true, sign_in::open_setup_link)
        .get("/setup", true, sign_in::setup_form)
        .post("/setup", true, sign_in::setup)
        // Everyone signed in.
        .post("/sign-out", false, sign_in::sign_out)
        .post("/language", false, choose_language)
        .get("/reauth", false, sign_in::reauth_form)
        .post("/reauth", false, sign_in::reauth)
        .get("/", false, home)
        // Operators.
        .get("/dashboard", false, operator::dashboard)
        .get("/users", false, operator::users)
        .post("/users", false, operator::create_user)
        .get("/users/{user}", false, operator::user)
        .post("/users/{user}/deactivate", false, operator::deactivate)
        .post("/users/{user}/password", false, operator::reset_password)
        .post(
            "/users/{user}/devices/{device}/remove",
            false,
            operator::remove_device,
        )
        .post("/users/{user}/admin", false, operator::set_admin)
        .post("/users/{user}/auditor", false, operator::set_auditor)
        .post(
            "/users/{user}/authenticator",
            false,
            operator::reset_authenticator,
        )
        .get("/rooms", false, operator::rooms)
        .get("/rooms/{room}", false, operator::room)
        .post("/rooms/{room}/admin", false, operator::make_room_admin)
        .get("/reports", false, operator::reports)
        .get("/federation", false, operator::federation)
        .get("/bridges", false, operator::bridges)
        .post("/bridges/{id}/ping", false, operator::ping_bridge)
        .get("/configuration", false, operator::configuration)
        .get("/backups", false, operator::backups)
        .post("/backups/run", false, operator::run_backup)
        .post("/backups/{target}/verify", false, operator::verify_backup)
        .get("/backups/contents", false, operator::backup_contents)
        .get("/log", false, operator::log)
        .get("/tokens", false, operator::tokens)
        .post("/tokens", false, operator::create_token)
        // Auditors, operators and records managers.
        .get("/audit", false, records::audit)
        .get("/rights", false, records::rights)
        .get("/gaps", false, vault::gaps)
        // Senders and records managers.
        .get("/requests", false, records::requests)
        .post("/requests", false, records::request)
        .post("/requests/{reference}/decide", false, records::decide)
        // Records managers.
        .get("/exports", false, exports::exports)
        .post("/exports", false, exports::create)
        .get("/exports/{name}", false, exports::download)
        .get("/search", false, search::form)
        .post("/search", false, search::search)
        .get("/imports", false, imports::imports)
        .add(
            "POST",
            "/imports",
            false,
            axum::routing::post(imports::import)
                .layer(axum::extract::DefaultBodyLimit::max(imports::MAX_UPLOAD)),
        )
        .get("/holds", false, vault::holds)
        .post("/holds", false, vault::place_hold)
        .post("/holds/{reference}/release", false, vault::release_hold)
        .get("/classification", false, vault::classification)
        .post("/classification/room", false, vault::classify_room)
        .post("/classification/role", false, vault::set_role)
        .get("/retention", false, vault::retention)
        .post("/retention", false, vault::propose)
        .post("/retention/{reference}/approve", false, vault::approve)
        .get("/retention/{reference}/statement", false, vault::statement)
        .post(
            "/retention/transfers/{reference}/confirm",
            false,
            vault::confirm_transfer,
        )
}

/// Every route the web console serves: method, path and whether it needs
/// no session.
pub fn route_table() -> Vec<Route> {
    routes().table
}

/// The web console's router, within the console's headers and origin
/// check.
pub fn router() -> Router<Arc<Console>> {
    routes()
        .router
        .layer(axum::middleware::from_fn(same_origin))
        .layer(axum::middleware::from_fn(language))
        .layer(axum::middleware::from_fn(headers))
}

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Answers the request in the browser's language until a session says
/// the person's.
async fn language(request: Request, next: Next) -> Response {
    let lang = Lang::from_headers(request.headers());
    i18n::LANG
        .scope(std::cell::Cell::new(lang), next.run(request))
        .await
}

/// Headers on every response: no scripts, no framing, no caching, no
/// referrer to other sites.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: with it a browser sends `Origin: null` with
        // the console's own forms, and the origin check refuses them.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Refuses a request that changes something from another origin: its
/// `Origin` must be the console's own (the `Host` it was sent to), and
/// a browser's `Sec-Fetch-Site` must say the same.
async fn same_origin(request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    let site = headers.get("sec-fetch-site").and_then(|h| h.to_str().ok());
    let own = match (host, origin) {
        (Some(host), Some(origin)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        _ => false,
    };
    if !own || site.is_some_and(|site| site != "same-origin") {
        return Refusal::Forbidden(
            Texts::current()
                .t("This form was sent from another site. Open the console and try again.")
                .into(),
        )
        .into_response();
    }
    next.run(request).await
}

async fn style_sheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../templates/console/console.css"),
    )
}

/// What every signed-in page shows around its content.
pub struct Nav {
    pub user: String,
    /// The page itself, to come back to after choosing a language.
    pub page: String,
    pub operator: bool,
    pub records_manager: bool,
    pub auditor: bool,
    pub csrf: String,
}

/// What a person may do in the console, read from the node at each
/// request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A server administrator: the node, its accounts, its backups; never
    /// archived content.
    Operator,
    /// One of the vault's records managers: its procedures.
    RecordsManager,
    /// Reads the audit trail and the rights; changes nothing.
    Auditor,
}

/// A request from a signed-in person.
pub struct Signed {
    pub user: OwnedUserId,
    pub operator: bool,
    pub records_manager: bool,
    pub auditor: bool,
    pub session: Session,
    pub cookie: String,
    /// Where the request came from, for the audit trail.
    pub address: String,
    /// The person's language.
    pub texts: Texts,
    /// The page asked for.
    pub page: String,
}

impl Signed {
    pub fn nav(&self) -> Nav {
        Nav {
            user: self.user.to_string(),
            page: self.page.clone(),
            operator: self.operator,
            records_manager: self.records_manager,
            auditor: self.auditor,
            csrf: self.session.csrf.clone(),
        }
    }

    /// Refuses the request unless the person has `role`.
    pub fn require(&self, role: Role) -> Result<(), Refusal> {
        let has = match role {
            Role::Operator => self.operator,
            Role::RecordsManager => self.records_manager,
            Role::Auditor => self.auditor,
        };
        if has {
            Ok(())
        } else {
            let whom = match role {
                Role::Operator => "operators",
                Role::RecordsManager => "records managers",
                Role::Auditor => "auditors",
            };
            Err(Refusal::Forbidden(self.texts.f(
                "This page is for {whom}. You are signed in as {user}.",
                &[("whom", &self.texts.t(whom)), ("user", &self.user)],
            )))
        }
    }

    /// Refuses the request unless the person holds a role: the audit
    /// trail and the rights are for auditors, operators and records
    /// managers alike.
    pub fn require_any_role(&self) -> Result<(), Refusal> {
        if self.operator || self.records_manager {
            Ok(())
        } else {
            self.require(Role::Auditor)
        }
    }

    /// Refuses a dangerous action unless the person entered a code in the
    /// last ten minutes; they are sent to enter one, then back to `page`.
    pub fn require_privilege(&self, page: &str) -> Result<(), Refusal> {
        if self.session.privileged(now()) {
            Ok(())
        } else {
            Err(Refusal::Reauthenticate(page.to_owned()))
        }
    }

    /// The person as the audit trail names them.
    pub fn actor(&self) -> Actor {
        Actor::person(
            self.user.as_str(),
            Origin::WebConsole {
                address: self.address.clone(),
            },
        )
    }
}

/// The session cookie's value in a request, if any.
pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn client_address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string())
        .unwrap_or_else(|| "unknown address".to_owned())
}

/// Where a request came from, for the audit trail.
pub struct Client(pub String);

impl Client {
    pub fn origin(&self) -> Origin {
        Origin::WebConsole {
            address: self.0.clone(),
        }
    }
}

impl<S: Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_address(parts)))
    }
}

impl FromRequestParts<Arc<Console>> for Signed {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let cookie = cookie_value(&parts.headers, console.cookie_name())
            .ok_or(Refusal::SignIn)?
            .to_owned();
        let session = blocking(|| console.sessions.touch(&cookie))?.ok_or(Refusal::SignIn)?;
        let user = session.signed_in().ok_or(Refusal::SignIn)?.to_owned();
        let node = console.node();
        let account = node
            .services
            .users
            .account(&user)
            .map_err(|e| Refusal::Internal(e.into()))?;
        // An account deactivated while signed in is signed out.
        let Some(account) = account.filter(|a| !a.deactivated) else {
            return Err(Refusal::SignIn);
        };
        let records_manager = node
            .vault
            .is_records_manager(user.as_str())
            .map_err(|e| Refusal::Internal(e.into()))?;
        let auditor = console
            .sessions
            .is_auditor(&user)
            .map_err(Refusal::Internal)?;
        let lang = console
            .sessions
            .language(&user)
            .map_err(Refusal::Internal)?
            .unwrap_or_else(|| Lang::from_headers(&parts.headers));
        // Error pages of this request speak it too.
        let _ = i18n::LANG.try_with(|current| current.set(lang));
        Ok(Self {
            texts: Texts(lang),
            page: parts.uri.path().to_owned(),
            operator: account.admin,
            records_manager,
            auditor,
            user,
            session,
            cookie,
            address: client_address(parts),
        })
    }
}

/// A form sent by a signed-in person, its CSRF token checked.
pub struct Posted<T> {
    pub signed: Signed,
    pub form: T,
}

#[derive(Deserialize)]
struct WithToken<T> {
    csrf: String,
    #[serde(flatten)]
    form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<Arc<Console>> for Posted<T> {
    type Rejection = Refusal;

    async fn from_request(request: Request, console: &Arc<Console>) -> Result<Self, Refusal> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, console).await?;
        let request = Request::from_parts(parts, body);
        let axum::Form(sent) = axum::Form::<WithToken<T>>::from_request(request, console)
            .await
            .map_err(|e| Refusal::BadRequest(format!("The form could not be read: {e}")))?;
        if !constant_time_eq(sent.csrf.as_bytes(), signed.session.csrf.as_bytes()) {
            return Err(Refusal::Forbidden(
                signed
                    .texts
                    .t("This form is from an earlier session. Open the page again and retry.")
                    .into(),
            ));
        }
        Ok(Self {
            signed,
            form: sent.form,
        })
    }
}

/// A form with nothing in it but its CSRF token.
#[derive(Deserialize)]
pub struct Nothing {}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs RocksDB work (a read, or a commit that waits for an fsync) off
/// the async workers' hot path.
pub fn blocking<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, Refusal> {
    tokio::task::block_in_place(f).map_err(Refusal::Internal)
}

/// Why a request was not served, as a page.
#[derive(Debug)]
pub enum Refusal {
    /// No session: to the sign-in page.
    SignIn,
    /// A dangerous action without a recent code: to enter one, then back
    /// to the page named.
    Reauthenticate(String),
    Forbidden(String),
    BadRequest(String),
    NotFound(String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    nav: Option<Nav>,
    t: Texts,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Self::SignIn => return Redirect::to("/sign-in").into_response(),
            Self::Reauthenticate(page) => {
                let target = format!("/reauth?then={}", urlencode(&page));
                return Redirect::to(&target).into_response();
            }
            Self::Forbidden(message) => (StatusCode::FORBIDDEN, "Not allowed", message),
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, "Not done", message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "Not found", message),
            Self::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "serving a console page");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The node could not serve this page. Its log says why.".to_owned(),
                )
            }
        };
        let page = MessagePage {
            nav: None,
            t: Texts::current(),
            title,
            message: &message,
        };
        (status, render(&page)).into_response()
    }
}

/// A page as HTML (or, if the template fails, the error in the log and
/// a plain 500).
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Percent-encodes a query value.
pub fn urlencode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
pub struct LanguageForm {
    lang: String,
    #[serde(default)]
    then: String,
}

/// `POST /language`: the person's language, kept for their next visits.
async fn choose_language(
    axum::extract::State(console): axum::extract::State<Arc<Console>>,
    posted: Posted<LanguageForm>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    let lang =
        Lang::parse(&form.lang).ok_or_else(|| Refusal::BadRequest("Choose nl or en.".into()))?;
    blocking(|| console.sessions.set_language(&signed.user, lang))?;
    Ok(Redirect::to(local_path(&form.then)).into_response())
}

/// The page a person lands on after sign-in: their role's first page.
async fn home(signed: Signed) -> Response {
    let target = if signed.operator {
        "/dashboard"
    } else if signed.records_manager {
        "/requests"
    } else if signed.auditor {
        "/audit"
    } else {
        "/requests"
    };
    Redirect::to(target).into_response()
}

/// Sets the session cookie (HttpOnly, SameSite=Strict, and on HTTPS
/// Secure with the `__Host-` prefix).
pub fn set_cookie(console: &Console, value: &str) -> (header::HeaderName, String) {
    let secure = if console.secure { "; Secure" } else { "" };
    (
        header::SET_COOKIE,
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict{secure}",
            console.cookie_name()
        ),
    )
}

/// Removes the session cookie.
pub fn clear_cookie(console: &Console) -> (header::HeaderName, String) {
    let secure = if console.secure { "; Secure" } else { "" };
    (
        header::SET_COOKIE,
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
            console.cookie_name()
        ),
    )
}

/// Where to go back to after a form: a path on this console only.
pub fn local_path(path: &str) -> &str {
    if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') {
        path
    } else {
        "/"
    }
}

/// A span of seconds as people read it: `3 d 4 h 12 min`.
pub fn duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    format!(
        "{} d {} h {} min",
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60
    )
}

/// Formats Unix seconds as UTC.
/// The start of the day a form names (`YYYY-MM-DD`, midnight
/// Europe/Amsterdam, as the command line reads dates) in ms since the
/// Unix epoch; none when the field is empty.
pub(super) fn day_start(text: &str, texts: Texts) -> Result<Option<u64>, Refusal> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    archipel_vault::export::parse_time(text)
        .map(Some)
        .map_err(|_| {
            Refusal::BadRequest(texts.f("{day} is not a date (YYYY-MM-DD).", &[("day", &text)]))
        })
}

pub fn when(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Failed sign-ins per account: after [`Failures::LIMIT`] in a row, the
/// account's sign-in waits [`Failures::WAIT_SECS`]. Bounded: when it holds
/// [`Failures::TRACKED`] accounts, the oldest entries go; if none may,
/// every sign-in waits.
#[derive(Default)]
pub struct Failures(std::sync::Mutex<std::collections::HashMap<String, (u32, u64)>>);

impl Failures {
    const LIMIT: u32 = 5;
    const WAIT_SECS: u64 = 5 * 60;
    const TRACKED: usize = 10_000;

    /// How many seconds `user` must wait before trying again, if any.
    pub fn locked(&self, user: &str) -> Option<u64> {
        let failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = now();
        if failures.len() >= Self::TRACKED && !failures.contains_key(user) {
            return Some(Self::WAIT_SECS);
        }
        failures
            .get(user)
            .filter(|(count, last)| *count >= Self::LIMIT && now < last + Self::WAIT_SECS)
            .map(|(_, last)| last + Self::WAIT_SECS - now)
    }

    pub fn failed(&self, user: &str) {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = now();
        if failures.len() >= Self::TRACKED {
            failures.retain(|_, (_, last)| now < *last + Self::WAIT_SECS);
        }
        if failures.len() >= Self::TRACKED && !failures.contains_key(user) {
            return;
        }
        let entry = failures.entry(user.to_owned()).or_insert((0, now));
        // A wait served starts a new count.
        if now >= entry.1 + Self::WAIT_SECS {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
    }

    pub fn succeeded(&self, user: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
    }
}
