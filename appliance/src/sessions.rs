//! The web console's sign-in state, kept in the homeserver's database in
//! column families the appliance declares ([`COLUMNS`]): sessions, each
//! person's second factor, the auditors, and the one-time setup links.
//!
//! A session is named in the browser by a random cookie and stored under
//! the SHA-256 of it, as the homeserver stores access tokens: a copy of
//! the database hands out no session. A session ends after
//! `session_idle_secs` without a request and `session_max_secs` after
//! sign-in, whichever comes first.

use anyhow::{Context, Result, bail};
use archipel_store::{Batch, ColumnSpec, Store, Tree};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, Totp};

use crate::console::web::Lang;

const SESSIONS: &str = "console_session";
const FACTORS: &str = "console_factor";
const AUDITORS: &str = "console_auditor";
const SETUP_LINKS: &str = "console_setup";
const LANGUAGES: &str = "console_language";

/// The column families the console keeps in the homeserver's database.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::lookups(SESSIONS),
    ColumnSpec::lookups(FACTORS),
    ColumnSpec::lookups(AUDITORS),
    ColumnSpec::lookups(SETUP_LINKS),
    ColumnSpec::lookups(LANGUAGES),
];

/// How long after signing in (or signing in again) dangerous actions need
/// no new code.
pub const PRIVILEGE_SECS: u64 = 10 * 60;

/// How long a setup link stays valid.
pub const SETUP_LINK_SECS: u64 = 24 * 60 * 60;

/// How far along a session is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The password was right; the code from the authenticator is next.
    Code,
    /// The password was right and the person has no authenticator yet:
    /// they are shown `secret` and confirm it with a code.
    Enrol { secret: String },
    /// A setup link was opened: the first operator's account is next.
    Setup { link_hash: String },
    /// Signed in.
    SignedIn,
}

/// One browser's session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// Who is signing in or signed in (none while a setup link is open).
    pub user: Option<OwnedUserId>,
    pub stage: Stage,
    /// Unix seconds.
    pub created: u64,
    pub last_seen: u64,
    /// The token every form of this session carries.
    pub csrf: String,
    /// Until when dangerous actions need no new code (Unix seconds).
    pub privileged_until: u64,
}

impl Session {
    pub fn signed_in(&self) -> Option<&UserId> {
        (self.stage == Stage::SignedIn)
            .then_some(self.user.as_deref())
            .flatten()
    }

    pub fn privileged(&self, now: u64) -> bool {
        now < self.privileged_until
    }
}

/// A person's authenticator: the TOTP secret and the last time step
/// accepted, so that no code is accepted twice.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Factor {
    secret: String,
    last_step: u64,
    enrolled: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SetupLink {
    expires: u64,
}

/// The console's sign-in state.
pub struct Sessions {
    store: Store,
    sessions: Tree,
    factors: Tree,
    auditors: Tree,
    setup_links: Tree,
    languages: Tree,
    idle_secs: u64,
    max_secs: u64,
}

/// Checking a code and advancing its factor's last step is one step, for
/// every `Sessions` of the process: the web console's and the local
/// console's (through the admin socket) alike.
static FACTOR_WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn now() -> u64 {
    jiff::Timestamp::now().as_second().max(0) as u64
}

fn hash(token: &str) -> String {
    B64URL.encode(Sha256::digest(token.as_bytes()))
}

/// A random token for a cookie, a form or a link.
pub fn random_token() -> String {
    B64URL.encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub fn new(store: &Store, idle_secs: u64, max_secs: u64) -> Result<Self> {
        Ok(Self {
            sessions: store.tree(SESSIONS)?,
            factors: store.tree(FACTORS)?,
            auditors: store.tree(AUDITORS)?,
            setup_links: store.tree(SETUP_LINKS)?,
            languages: store.tree(LANGUAGES)?,
            store: store.clone(),
            idle_secs,
            max_secs,
        })
    }

    /// Starts a session at `stage`; returns its cookie value.
    pub fn start(&self, user: Option<OwnedUserId>, stage: Stage) -> Result<(String, Session)> {
        let now = now();
        let privileged_until = if stage == Stage::SignedIn {
            now + PRIVILEGE_SECS
        } else {
            0
        };
        let session = Session {
            user,
            stage,
            created: now,
            last_seen: now,
            csrf: random_token(),
            privileged_until,
        };
        let cookie = random_token();
        let mut batch = Batch::new();
        batch.put_json(&self.sessions, hash(&cookie), &session);
        self.store.commit(batch)?;
        Ok((cookie, session))
    }

    /// The live session the cookie names, its last request moved to now;
    /// none if there is none or it has expired (then it is removed).
    pub fn touch(&self, cookie: &str) -> Result<Option<Session>> {
        let key = hash(cookie);
        let Some(mut session) = self.sessions.get_json::<Session>(&key)? else {
            return Ok(None);
        };
        let now = now();
        if now >= session.last_seen + self.idle_secs || now >= session.created + self.max_secs {
            let mut batch = Batch::new();
            batch.delete(&self.sessions, &key);
            self.store.commit(batch)?;
            return Ok(None);
        }
        session.last_seen = now;
        let mut batch = Batch::new();
        batch.put_json(&self.sessions, &key, &session);
        // A lost last-seen time after a crash costs nothing: not synced.
        let _unsynced = self.store.write(batch)?;
        Ok(Some(session))
    }

    /// Removes the sessions and setup links that have expired; returns how
    /// many. A session is also removed when it is next presented expired;
    /// this finds those nobody presents again.
    pub fn sweep(&self) -> Result<usize> {
        let now = now();
        let mut batch = Batch::new();
        for row in self.sessions.iter() {
            let (key, value) = row?;
            let session: Session = self.sessions.decode_json(&value)?;
            if now >= session.last_seen + self.idle_secs || now >= session.created + self.max_secs {
                batch.delete(&self.sessions, &key);
            }
        }
        for row in self.setup_links.iter() {
            let (key, value) = row?;
            let link: SetupLink = self.setup_links.decode_json(&value)?;
            if now >= link.expires {
                batch.delete(&self.setup_links, &key);
            }
        }
        let removed = batch.len();
        if removed > 0 {
            self.store.commit(batch)?;
        }
        Ok(removed)
    }

    /// Moves the session the cookie names to its next stage under a new
    /// cookie (a name known before sign-in is worth nothing after it);
    /// returns the new cookie.
    pub fn advance(&self, cookie: &str, mut session: Session) -> Result<(String, Session)> {
        let now = now();
        if session.stage == Stage::SignedIn {
            session.privileged_until = now + PRIVILEGE_SECS;
            // The session's lifetime counts from sign-in.
            session.created = now;
        }
        session.last_seen = now;
        session.csrf = random_token();
        let fresh = random_token();
        let mut batch = Batch::new();
        batch.delete(&self.sessions, hash(cookie));
        batch.put_json(&self.sessions, hash(&fresh), &session);
        self.store.commit(batch)?;
        Ok((fresh, session))
    }

    /// Opens the privilege window of a signed-in session again.
    pub fn reauthenticated(&self, cookie: &str, mut session: Session) -> Result<Session> {
        session.privileged_until = now() + PRIVILEGE_SECS;
        let mut batch = Batch::new();
        batch.put_json(&self.sessions, hash(cookie), &session);
        self.store.commit(batch)?;
        Ok(session)
    }

    /// Ends the session the cookie names.
    pub fn end(&self, cookie: &str) -> Result<()> {
        let mut batch = Batch::new();
        batch.delete(&self.sessions, hash(cookie));
        Ok(self.store.commit(batch)?)
    }

    /// Ends every console session of `user` (a password reset, a
    /// deactivation, a new authenticator).
    pub fn end_all(&self, user: &UserId) -> Result<usize> {
        let mut batch = Batch::new();
        for row in self.sessions.iter() {
            let row = row?;
            let session: Session = self.sessions.decode_json(&row.1)?;
            if session.user.as_deref() == Some(user) {
                batch.delete(&self.sessions, &row.0);
            }
        }
        let ended = batch.len();
        self.store.commit(batch)?;
        Ok(ended)
    }

    /// Whether `user` has an authenticator.
    pub fn has_factor(&self, user: &UserId) -> Result<bool> {
        Ok(self.factors.contains(user.as_bytes())?)
    }

    /// Whether `code` is `user`'s current code, not accepted before. An
    /// accepted code's time step is kept, so it is refused next time.
    pub fn check_code(&self, user: &UserId, code: &str) -> Result<bool> {
        let _serial = FACTOR_WRITES.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut factor) = self.factors.get_json::<Factor>(user.as_bytes())? else {
            return Ok(false);
        };
        let Some(step) = totp(&factor.secret)?.check(code.trim(), now()) else {
            return Ok(false);
        };
        if step <= factor.last_step {
            return Ok(false);
        }
        factor.last_step = step;
        let mut batch = Batch::new();
        batch.put_json(&self.factors, user.as_bytes(), &factor);
        self.store.commit(batch)?;
        Ok(true)
    }

    /// Keeps `secret` as `user`'s authenticator if `code` is its current
    /// code; returns whether it was.
    pub fn enrol(&self, user: &UserId, secret: &str, code: &str) -> Result<bool> {
        let _serial = FACTOR_WRITES.lock().unwrap_or_else(|e| e.into_inner());
        let Some(step) = totp(secret)?.check(code.trim(), now()) else {
            return Ok(false);
        };
        let factor = Factor {
            secret: secret.to_owned(),
            last_step: step,
            enrolled: now(),
        };
        let mut batch = Batch::new();
        batch.put_json(&self.factors, user.as_bytes(), &factor);
        self.store.commit(batch)?;
        Ok(true)
    }

    /// Forgets `user`'s authenticator: they enrol a new one at their next
    /// sign-in. Ends their sessions.
    pub fn remove_factor(&self, user: &UserId) -> Result<()> {
        let mut batch = Batch::new();
        batch.delete(&self.factors, user.as_bytes());
        self.store.commit(batch)?;
        self.end_all(user)?;
        Ok(())
    }

    pub fn is_auditor(&self, user: &UserId) -> Result<bool> {
        Ok(self.auditors.contains(user.as_bytes())?)
    }

    pub fn set_auditor(&self, user: &UserId, auditor: bool) -> Result<()> {
        let mut batch = Batch::new();
        if auditor {
            batch.put_json(&self.auditors, user.as_bytes(), &now());
        } else {
            batch.delete(&self.auditors, user.as_bytes());
        }
        Ok(self.store.commit(batch)?)
    }

    /// The language `user` chose for the console, if they chose one.
    pub fn language(&self, user: &UserId) -> Result<Option<Lang>> {
        Ok(self.languages.get_json(user.as_bytes())?)
    }

    pub fn set_language(&self, user: &UserId, lang: Lang) -> Result<()> {
        let mut batch = Batch::new();
        batch.put_json(&self.languages, user.as_bytes(), &lang);
        Ok(self.store.commit(batch)?)
    }

    /// A new one-time setup link's token, valid for [`SETUP_LINK_SECS`].
    pub fn create_setup_link(&self) -> Result<String> {
        let token = random_token();
        let mut batch = Batch::new();
        let link = SetupLink {
            expires: now() + SETUP_LINK_SECS,
        };
        batch.put_json(&self.setup_links, hash(&token), &link);
        self.store.commit(batch)?;
        Ok(token)
    }

    /// Opens the setup link `token`: a session at the setup stage, and the
    /// link is used up. Refused if the link is unknown, used or expired.
    pub fn open_setup_link(&self, token: &str) -> Result<Option<(String, Session)>> {
        let link_hash = hash(token);
        let Some(link) = self.setup_links.get_json::<SetupLink>(&link_hash)? else {
            return Ok(None);
        };
        let mut batch = Batch::new();
        batch.delete(&self.setup_links, &link_hash);
        self.store.commit(batch)?;
        if now() >= link.expires {
            return Ok(None);
        }
        self.start(None, Stage::Setup { link_hash }).map(Some)
    }
}

/// The TOTP of a base32 secret: RFC 6238 with SHA-1, 6 digits and 30 s
/// steps (what every authenticator app reads), one step of clock skew
/// either way. `account` names it in an authenticator app.
fn totp_for(secret: &str, account: Option<(&str, &str)>) -> Result<Totp> {
    let secret = Secret::try_from_base32(secret)
        .ok()
        .context("an authenticator secret does not decode")?;
    let mut builder = totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_secret(secret);
    if let Some((user, issuer)) = account {
        builder = builder
            .with_account_name(user)
            .with_issuer(Some(issuer.replace(':', " ")));
    }
    Ok(builder.build_noncompliant())
}

pub fn totp(secret: &str) -> Result<Totp> {
    totp_for(secret, None)
}

/// A new authenticator secret (160 bits, base32).
pub fn new_secret() -> String {
    Secret::generate().to_base32()
}

/// The `otpauth://` URI an authenticator app scans: `user`'s localpart
/// at `issuer` (colons, which the URI's label reserves, become spaces).
pub fn otpauth_uri(secret: &str, user: &UserId, issuer: &str) -> Result<String> {
    match totp_for(secret, Some((user.localpart(), issuer)))?.to_url() {
        Ok(url) => Ok(url),
        Err(e) => bail!("making the authenticator link: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use archipel_store::{Store, StoreOptions};

    use super::*;

    fn sessions(idle_secs: u64, max_secs: u64) -> (tempfile::TempDir, Sessions) {
        let dir = tempfile::tempdir().expect("a folder");
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("a store");
        let sessions = Sessions::new(&store, idle_secs, max_secs).expect("sessions");
        (dir, sessions)
    }

    fn alice() -> OwnedUserId {
        "@alice:example.org".try_into().expect("a user ID")
    }

    #[test]
    fn a_session_ends_when_idle_and_a_swept_one_is_gone() {
        // Times are whole seconds: with 2 s, a touch in the same or the
        // next second as the start finds the session alive.
        let (_dir, sessions) = sessions(2, 60);
        let (cookie, _) = sessions
            .start(Some(alice()), Stage::SignedIn)
            .expect("started");
        assert!(sessions.touch(&cookie).expect("read").is_some());
        let (idle, _) = sessions
            .start(Some(alice()), Stage::SignedIn)
            .expect("started");
        std::thread::sleep(std::time::Duration::from_millis(3100));
        assert_eq!(sessions.sweep().expect("swept"), 2);
        assert!(sessions.touch(&idle).expect("read").is_none());
        assert!(sessions.touch(&cookie).expect("read").is_none());
    }

    #[test]
    fn a_code_is_accepted_once_and_a_wrong_one_never() {
        let (_dir, sessions) = sessions(60, 600);
        let secret = new_secret();
        let code = totp(&secret)
            .expect("a TOTP")
            .generate_current()
            .to_string();
        assert!(
            !sessions
                .enrol(&alice(), &secret, "000000x")
                .expect("checked")
        );
        assert!(sessions.enrol(&alice(), &secret, &code).expect("enrolled"));
        // The enrolment used this code's time step.
        assert!(!sessions.check_code(&alice(), &code).expect("checked"));
        sessions.remove_factor(&alice()).expect("removed");
        assert!(!sessions.has_factor(&alice()).expect("read"));
    }

    #[test]
    fn a_setup_link_opens_once() {
        let (_dir, sessions) = sessions(60, 600);
        let token = sessions.create_setup_link().expect("a link");
        let (_, session) = sessions
            .open_setup_link(&token)
            .expect("opened")
            .expect("a session");
        assert!(matches!(session.stage, Stage::Setup { .. }));
        assert!(sessions.open_setup_link(&token).expect("read").is_none());
        assert!(sessions.open_setup_link("made-up").expect("read").is_none());
    }

    #[test]
    fn advancing_a_session_changes_its_cookie() {
        let (_dir, sessions) = sessions(60, 600);
        let (cookie, mut session) = sessions.start(Some(alice()), Stage::Code).expect("started");
        assert!(session.signed_in().is_none());
        session.stage = Stage::SignedIn;
        let (fresh, session) = sessions.advance(&cookie, session).expect("advanced");
        assert_ne!(fresh, cookie);
        assert!(sessions.touch(&cookie).expect("read").is_none());
        assert_eq!(session.signed_in(), Some(alice().as_ref()));
        assert!(session.privileged(now()));
        assert_eq!(sessions.end_all(&alice()).expect("ended"), 1);
        assert!(sessions.touch(&fresh).expect("read").is_none());
    }
}
