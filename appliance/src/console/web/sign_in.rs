//! Signing in: the account's password, then a code from its
//! authenticator (enrolled at the first sign-in); signing out; a fresh
//! code before dangerous actions; and the one-time setup link that
//! creates the first operator.

use std::sync::Arc;

use askama::Template;
use axum::{
    Form,
    extract::{FromRequestParts, Path, Query, State},
    http::{HeaderMap, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{
    Client, Nav, Nothing, Posted, Refusal, Signed, Texts, blocking, clear_cookie, constant_time_eq,
    cookie_value, local_path, render, set_cookie,
};
use crate::{
    console::Console,
    ops::{self, Actor},
    sessions::{self, Session, Stage},
};

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    nav: Option<Nav>,
    t: Texts,
    error: Option<String>,
    user: String,
}

#[derive(Template)]
#[template(path = "console/code.html")]
struct CodePage {
    nav: Option<Nav>,
    t: Texts,
    error: Option<String>,
    csrf: String,
    user: String,
}

#[derive(Template)]
#[template(path = "console/enrol.html")]
struct EnrolPage {
    nav: Option<Nav>,
    t: Texts,
    error: Option<String>,
    csrf: String,
    user: String,
    secret: String,
    uri: String,
    qr: String,
}

#[derive(Template)]
#[template(path = "console/setup.html")]
struct SetupPage {
    nav: Option<Nav>,
    t: Texts,
    error: Option<String>,
    csrf: String,
    user: String,
}

#[derive(Template)]
#[template(path = "console/reauth.html")]
struct ReauthPage {
    nav: Option<Nav>,
    t: Texts,
    error: Option<String>,
    then: String,
}

/// The session in the cookie, if it is at a sign-in stage.
fn pending(console: &Console, headers: &HeaderMap) -> Result<Option<(String, Session)>, Refusal> {
    let Some(cookie) = cookie_value(headers, console.cookie_name()) else {
        return Ok(None);
    };
    let cookie = cookie.to_owned();
    Ok(blocking(|| console.sessions.touch(&cookie))?.map(|session| (cookie, session)))
}

/// A live session, at whatever stage: the sign-in steps' requests. Without
/// one, back to the start.
pub struct Pending {
    cookie: String,
    session: Session,
}

impl FromRequestParts<Arc<Console>> for Pending {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Refusal> {
        let (cookie, session) = pending(console, &parts.headers)?.ok_or(Refusal::SignIn)?;
        Ok(Self { cookie, session })
    }
}

/// `GET /sign-in`.
pub async fn form(State(console): State<Arc<Console>>, t: Texts, headers: HeaderMap) -> Response {
    match pending(&console, &headers) {
        Ok(Some((_, session))) if session.signed_in().is_some() => {
            Redirect::to("/").into_response()
        }
        _ => render(&SignInPage {
            nav: None,
            t,
            error: None,
            user: String::new(),
        }),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    user: String,
    password: String,
}

/// `POST /sign-in`: the password. Right, it starts a session waiting
/// for the code (or for a new authenticator).
pub async fn password(
    State(console): State<Arc<Console>>,
    t: Texts,
    client: Client,
    Form(form): Form<PasswordForm>,
) -> Result<Response, Refusal> {
    let refused = |error: String| {
        render(&SignInPage {
            nav: None,
            t,
            error: Some(error),
            user: form.user.clone(),
        })
    };
    let node = console.node();
    let Ok(user) = ops::accounts::user_id(node.config, form.user.trim()) else {
        return Ok(refused(WRONG_PASSWORD.to_owned()));
    };
    if let Some(wait) = console.failures.locked(user.as_str()) {
        return Ok(refused(locked(wait)));
    }
    let right = node
        .services
        .users
        .check_password(&user, &form.password)
        .await
        .map_err(|e| Refusal::Internal(e.into()))?;
    if !right {
        console.failures.failed(user.as_str());
        if node.services.users.exists(&user).unwrap_or(false) {
            let actor = Actor::person(user.as_str(), client.origin());
            let _ = ops::console::sign_in(node, &actor, Err(anyhow::anyhow!(WRONG_PASSWORD)));
        }
        return Ok(refused(WRONG_PASSWORD.to_owned()));
    }
    let (stage, next) = if blocking(|| console.sessions.has_factor(&user))? {
        (Stage::Code, "/sign-in/code")
    } else {
        (
            Stage::Enrol {
                secret: sessions::new_secret(),
            },
            "/sign-in/enrol",
        )
    };
    let (cookie, _) = blocking(|| console.sessions.start(Some(user.clone()), stage))?;
    Ok(([set_cookie(&console, &cookie)], Redirect::to(next)).into_response())
}

const WRONG_PASSWORD: &str = "Wrong user name or password.";

fn locked(wait: u64) -> String {
    Texts::current().f(
        "Too many failed attempts for this account. Try again in {minutes} minute(s).",
        &[("minutes", &wait.div_ceil(60))],
    )
}

/// `GET /sign-in/code`.
pub async fn code_form(t: Texts, Pending { session, .. }: Pending) -> Result<Response, Refusal> {
    if session.stage != Stage::Code {
        return Err(Refusal::SignIn);
    }
    Ok(render(&CodePage {
        nav: None,
        t,
        error: None,
        user: display_user(&session),
        csrf: session.csrf,
    }))
}

fn display_user(session: &Session) -> String {
    session
        .user
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

/// `POST /sign-in/code`: the authenticator's code. Right, the session is
/// signed in, under a new cookie.
pub async fn code(
    State(console): State<Arc<Console>>,
    t: Texts,
    client: Client,
    Pending { cookie, session }: Pending,
    Form(form): Form<CodeForm>,
) -> Result<Response, Refusal> {
    let (Stage::Code, Some(user)) = (&session.stage, session.user.clone()) else {
        return Err(Refusal::SignIn);
    };
    check_token(&form.csrf, &session)?;
    let again = |error: String| {
        render(&CodePage {
            nav: None,
            t,
            error: Some(error),
            csrf: session.csrf.clone(),
            user: user.to_string(),
        })
    };
    if let Some(wait) = console.failures.locked(user.as_str()) {
        return Ok(again(locked(wait)));
    }
    let node = console.node();
    let actor = Actor::person(user.as_str(), client.origin());
    if !blocking(|| console.sessions.check_code(&user, &form.code))? {
        console.failures.failed(user.as_str());
        let _ = ops::console::sign_in(node, &actor, Err(anyhow::anyhow!(WRONG_CODE)));
        return Ok(again(WRONG_CODE.to_owned()));
    }
    console.failures.succeeded(user.as_str());
    signed_in(&console, &actor, &cookie, session)
}

const WRONG_CODE: &str = "Wrong or already used code. Enter the code your authenticator shows now.";

/// Moves the session to signed in under a new cookie, and records it.
fn signed_in(
    console: &Console,
    actor: &Actor,
    cookie: &str,
    mut session: Session,
) -> Result<Response, Refusal> {
    session.stage = Stage::SignedIn;
    let (fresh, _) = blocking(|| console.sessions.advance(cookie, session))?;
    blocking(|| ops::console::sign_in(console.node(), actor, Ok(())))?;
    Ok(([set_cookie(console, &fresh)], Redirect::to("/")).into_response())
}

fn check_token(sent: &str, session: &Session) -> Result<(), Refusal> {
    if constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "This form is from an earlier session. Sign in again.".into(),
        ))
    }
}

/// `GET /sign-in/enrol`: the new authenticator's secret, as a QR code
/// and as text.
pub async fn enrol_form(
    State(console): State<Arc<Console>>,
    t: Texts,
    Pending { session, .. }: Pending,
) -> Result<Response, Refusal> {
    let page = enrol_page(&console, t, &session, None)?.ok_or(Refusal::SignIn)?;
    Ok(render(&page))
}

fn enrol_page(
    console: &Console,
    t: Texts,
    session: &Session,
    error: Option<String>,
) -> Result<Option<EnrolPage>, Refusal> {
    let (Stage::Enrol { secret }, Some(user)) = (&session.stage, &session.user) else {
        return Ok(None);
    };
    let issuer = format!("Archipel {}", console.node().config.homeserver.server_name);
    let uri = sessions::otpauth_uri(secret, user, &issuer)?;
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| Refusal::Internal(anyhow::anyhow!("making the QR code: {e}")))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(Some(EnrolPage {
        nav: None,
        t,
        error,
        csrf: session.csrf.clone(),
        user: user.to_string(),
        secret: secret.clone(),
        uri,
        qr,
    }))
}

/// `POST /sign-in/enrol`: the first code of the new authenticator. Right,
/// the authenticator is kept and the session signed in.
pub async fn enrol(
    State(console): State<Arc<Console>>,
    t: Texts,
    client: Client,
    Pending { cookie, session }: Pending,
    Form(form): Form<CodeForm>,
) -> Result<Response, Refusal> {
    let (Stage::Enrol { secret }, Some(user)) = (session.stage.clone(), session.user.clone())
    else {
        return Err(Refusal::SignIn);
    };
    check_token(&form.csrf, &session)?;
    if !blocking(|| console.sessions.enrol(&user, &secret, &form.code))? {
        let page = enrol_page(&console, t, &session, Some(WRONG_CODE.to_owned()))?;
        return Ok(render(&page.ok_or(Refusal::SignIn)?));
    }
    let actor = Actor::person(user.as_str(), client.origin());
    blocking(|| ops::console::enrolled(console.node(), &actor, &user))?;
    signed_in(&console, &actor, &cookie, session)
}

/// `GET /setup/{token}`: opens a one-time setup link (and uses it up).
pub async fn open_setup_link(
    State(console): State<Arc<Console>>,
    Path(token): Path<String>,
) -> Result<Response, Refusal> {
    match blocking(|| console.sessions.open_setup_link(&token))? {
        Some((cookie, _)) => {
            Ok(([set_cookie(&console, &cookie)], Redirect::to("/setup")).into_response())
        }
        None => Err(Refusal::NotFound(
            "This setup link is unknown, already used or expired. Ask an operator for a new one."
                .into(),
        )),
    }
}

/// `GET /setup`: the form for the new operator's account.
pub async fn setup_form(t: Texts, Pending { session, .. }: Pending) -> Result<Response, Refusal> {
    if !matches!(session.stage, Stage::Setup { .. }) {
        return Err(Refusal::SignIn);
    }
    Ok(render(&SetupPage {
        nav: None,
        t,
        error: None,
        csrf: session.csrf,
        user: String::new(),
    }))
}

#[derive(Deserialize)]
pub struct SetupForm {
    csrf: String,
    user: String,
    password: String,
    repeat: String,
}

/// `POST /setup`: creates the operator's account (a server
/// administrator); their authenticator is next.
pub async fn setup(
    State(console): State<Arc<Console>>,
    t: Texts,
    client: Client,
    Pending {
        cookie,
        mut session,
    }: Pending,
    Form(form): Form<SetupForm>,
) -> Result<Response, Refusal> {
    if !matches!(session.stage, Stage::Setup { .. }) {
        return Err(Refusal::SignIn);
    }
    check_token(&form.csrf, &session)?;
    let again = |error: &str| {
        render(&SetupPage {
            nav: None,
            t,
            error: Some(error.to_owned()),
            csrf: session.csrf.clone(),
            user: form.user.clone(),
        })
    };
    if form.password != form.repeat {
        return Ok(again("The two passwords differ."));
    }
    if form.password.chars().count() < 12 {
        return Ok(again("Choose a password of at least 12 characters."));
    }
    let node = console.node();
    let actor = Actor::person("the holder of a setup link", client.origin());
    let user = match ops::accounts::create_user(
        node,
        &actor,
        form.user.trim(),
        form.password.clone(),
        true,
    )
    .await
    {
        Ok(user) => user,
        Err(e) => return Ok(again(&format!("{e:#}"))),
    };
    session.user = Some(user);
    session.stage = Stage::Enrol {
        secret: sessions::new_secret(),
    };
    let (fresh, _) = blocking(|| console.sessions.advance(&cookie, session))?;
    Ok((
        [set_cookie(&console, &fresh)],
        Redirect::to("/sign-in/enrol"),
    )
        .into_response())
}

/// `POST /sign-out`.
pub async fn sign_out(
    State(console): State<Arc<Console>>,
    posted: Posted<Nothing>,
) -> Result<Response, Refusal> {
    let cookie = posted.signed.cookie.clone();
    blocking(|| console.sessions.end(&cookie))?;
    Ok(([clear_cookie(&console)], Redirect::to("/sign-in")).into_response())
}

#[derive(Deserialize)]
pub struct Then {
    #[serde(default)]
    then: String,
}

/// `GET /reauth?then=PAGE`: a fresh code before a dangerous action.
pub async fn reauth_form(signed: Signed, Query(query): Query<Then>) -> Response {
    render(&ReauthPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        error: None,
        then: local_path(&query.then).to_owned(),
    })
}

#[derive(Deserialize)]
pub struct ReauthForm {
    code: String,
    #[serde(default)]
    then: String,
}

/// `POST /reauth`: the code; right, dangerous actions are open for ten
/// minutes and the person goes back to the page they came from.
pub async fn reauth(
    State(console): State<Arc<Console>>,
    posted: Posted<ReauthForm>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    let then = local_path(&form.then).to_owned();
    if let Some(wait) = console.failures.locked(signed.user.as_str()) {
        return Ok(render(&ReauthPage {
            nav: Some(signed.nav()),
            t: signed.texts,
            error: Some(locked(wait)),
            then,
        }));
    }
    if !blocking(|| console.sessions.check_code(&signed.user, &form.code))? {
        console.failures.failed(signed.user.as_str());
        return Ok(render(&ReauthPage {
            nav: Some(signed.nav()),
            t: signed.texts,
            error: Some(WRONG_CODE.to_owned()),
            then,
        }));
    }
    console.failures.succeeded(signed.user.as_str());
    let cookie = signed.cookie.clone();
    blocking(|| console.sessions.reauthenticated(&cookie, signed.session))?;
    Ok(Redirect::to(&then).into_response())
}
