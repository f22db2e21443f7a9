//! Application services: the bridges (mautrix-telegram, -whatsapp, ...)
//! an operator installs, each by the registration file it generates.
//!
//! A registration names the bridge's tokens (`as_token`: the bridge to the
//! node; `hs_token`: the node to the bridge), the URL the node pushes
//! transactions to, and its namespaces: the user IDs, aliases and rooms it
//! speaks for. Within its user namespaces a bridge may act as any of its
//! users (`?user_id=`, "masquerading"); exclusive namespaces are closed to
//! everyone else. [`sender`] delivers the events a bridge is interested in.

pub mod sender;

use std::{fmt, path::Path, sync::Arc};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use regex::{Regex, RegexBuilder};
use ruma::{OwnedUserId, RoomAliasId, RoomId, ServerName, UserId};
use serde::Deserialize;

/// The largest compiled form of a namespace's pattern: a registration is
/// the operator's, but a pattern must not cost the node unbounded memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One entry of a namespace list, as written.
#[derive(Clone, Debug, Deserialize)]
struct RawNamespace {
    #[serde(default)]
    exclusive: bool,
    regex: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct RawNamespaces {
    #[serde(default)]
    users: Vec<RawNamespace>,
    #[serde(default)]
    aliases: Vec<RawNamespace>,
    #[serde(default)]
    rooms: Vec<RawNamespace>,
}

/// A registration file as bridges write it (the spec's fields, and the
/// unstable ones mautrix writes). Other keys are ignored.
#[derive(Deserialize)]
struct RawRegistration {
    id: String,
    url: Option<String>,
    as_token: String,
    hs_token: String,
    sender_localpart: String,
    #[serde(default)]
    namespaces: RawNamespaces,
    /// Synapse's default when absent: rate limited.
    #[serde(default = "yes")]
    rate_limited: bool,
    #[serde(default)]
    receive_ephemeral: bool,
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: bool,
    /// The bridge creates its devices itself (MSC4190) and never logs in.
    #[serde(default, rename = "io.element.msc4190")]
    msc4190: bool,
}

fn yes() -> bool {
    true
}

/// A namespace pattern, anchored at its start as Synapse matches them.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub exclusive: bool,
    regex: Regex,
}

impl Namespace {
    fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// An installed bridge.
pub struct Registration {
    pub id: String,
    /// Where transactions go; none: the bridge receives nothing (a double
    /// puppeting registration).
    pub url: Option<String>,
    as_token: String,
    hs_token: String,
    /// The bridge's own user (`@<sender_localpart>:<server>`).
    pub sender: OwnedUserId,
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
    pub rate_limited: bool,
    pub receive_ephemeral: bool,
    /// Creates its devices with `PUT /devices/{id}` (MSC4190): logging in
    /// as one of its users is refused.
    pub creates_devices: bool,
}

/// Tokens are never shown.
impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("sender", &self.sender)
            .field("users", &self.users)
            .field("aliases", &self.aliases)
            .field("rooms", &self.rooms)
            .field("rate_limited", &self.rate_limited)
            .field("receive_ephemeral", &self.receive_ephemeral)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Reads a registration file; the error names the file and the field.
    pub fn load(path: &Path, server_name: &ServerName) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot be read: {e}", path.display()))?;
        Self::parse(&text, server_name).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads a registration from its YAML text.
    pub fn parse(text: &str, server_name: &ServerName) -> Result<Self, String> {
        let raw: RawRegistration =
            serde_saphyr::from_str(text).map_err(|e| format!("not a registration: {e}"))?;
        let field = |name: &str, problem: &str| Err(format!("`{name}` {problem}"));
        if raw.id.trim().is_empty() {
            return field("id", "is empty");
        }
        for (name, token) in [("as_token", &raw.as_token), ("hs_token", &raw.hs_token)] {
            if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return field(
                    name,
                    "must be at least 16 characters without spaces (bridges generate 64)",
                );
            }
        }
        if raw.as_token == raw.hs_token {
            return field("hs_token", "must differ from `as_token`");
        }
        let url = match raw.url.as_deref().map(str::trim) {
            None | Some("" | "null") => None,
            Some(url) => {
                let parsed =
                    reqwest::Url::parse(url).map_err(|e| format!("`url` is not a URL: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return field("url", "must be http or https");
                }
                Some(url.trim_end_matches('/').to_owned())
            }
        };
        let sender = UserId::parse(format!("@{}:{server_name}", raw.sender_localpart))
            .map_err(|e| format!("`sender_localpart` makes no user ID: {e}"))?;
        let compile = |list: &[RawNamespace], name: &str| -> Result<Vec<Namespace>, String> {
            list.iter()
                .enumerate()
                .map(|(n, ns)| {
                    RegexBuilder::new(&format!("^(?:{})", ns.regex))
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map(|regex| Namespace {
                            exclusive: ns.exclusive,
                            regex,
                        })
                        .map_err(|e| format!("`namespaces.{name}[{n}].regex`: {e}"))
                })
                .collect()
        };
        Ok(Self {
            id: raw.id,
            url,
            as_token: raw.as_token,
            hs_token: raw.hs_token,
            sender,
            users: compile(&raw.namespaces.users, "users")?,
            aliases: compile(&raw.namespaces.aliases, "aliases")?,
            rooms: compile(&raw.namespaces.rooms, "rooms")?,
            rate_limited: raw.rate_limited,
            receive_ephemeral: raw.receive_ephemeral || raw.push_ephemeral,
            creates_devices: raw.msc4190,
        })
    }

    /// The token the node sends to the bridge.
    pub(crate) fn hs_token(&self) -> &str {
        &self.hs_token
    }

    /// Whether the bridge speaks for `user`: its own user, or one of its
    /// user namespaces.
    pub fn is_user(&self, user: &UserId) -> bool {
        user == self.sender || self.users.iter().any(|ns| ns.matches(user.as_str()))
    }

    pub fn is_alias(&self, alias: &RoomAliasId) -> bool {
        self.aliases.iter().any(|ns| ns.matches(alias.as_str()))
    }

    pub fn is_room(&self, room: &RoomId) -> bool {
        self.rooms.iter().any(|ns| ns.matches(room.as_str()))
    }

    /// Whether `user` is the bridge's own (its user, or one of its
    /// exclusive namespaces), rather than a person's account it acts as
    /// through a shared namespace: double puppeting.
    pub fn owns(&self, user: &UserId) -> bool {
        user == self.sender
            || self
                .users
                .iter()
                .any(|ns| ns.exclusive && ns.matches(user.as_str()))
    }
}

/// Of a bridge's answer to a ping, at most this much is handed back.
const MAX_PING_BODY: usize = 1000;

/// Asks the bridge to answer (`POST /_matrix/app/v1/ping` with its
/// `hs_token`); how long it took, or the spec's error for what went wrong.
pub async fn ping(
    registration: &Registration,
    transaction_id: Option<&str>,
) -> crate::Result<std::time::Duration> {
    let Some(url) = &registration.url else {
        return Err(crate::Error::url_not_set());
    };
    let mut body = serde_json::json!({});
    if let Some(txn) = transaction_id {
        body["transaction_id"] = serde_json::Value::String(txn.to_owned());
    }
    let client = sender::client()?;
    let started = std::time::Instant::now();
    let response = client
        .post(format!("{url}/_matrix/app/v1/ping"))
        .bearer_auth(registration.hs_token())
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            crate::Error::connection_failed(
                e.is_timeout(),
                format!("The application service could not be reached: {e}"),
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(MAX_PING_BODY).collect();
        tracing::warn!(appservice = %registration.id, %status, "a bridge answered its ping with an error");
        return Err(crate::Error::bad_status(status, text));
    }
    Ok(started.elapsed())
}

/// What a query asks a bridge about: one of its users, or an alias.
pub enum Query<'a> {
    User(&'a UserId),
    Alias(&'a RoomAliasId),
}

/// Asks the bridge whose exclusive namespace holds the user or alias
/// whether it exists (`GET /_matrix/app/v1/users/{userId}` or
/// `/rooms/{roomAlias}` with its `hs_token`), so that it can create it
/// first; whether the bridge said it does. A bridge that cannot be
/// reached says no.
pub async fn query(services: &crate::Services, asked: Query<'_>) -> bool {
    let (owner, path) = match asked {
        Query::User(user) => (
            services.appservices.exclusive_user(user),
            format!(
                "users/{}",
                utf8_percent_encode(user.as_str(), NON_ALPHANUMERIC)
            ),
        ),
        Query::Alias(alias) => (
            services.appservices.exclusive_alias(alias),
            format!(
                "rooms/{}",
                utf8_percent_encode(alias.as_str(), NON_ALPHANUMERIC)
            ),
        ),
    };
    let Some(registration) = owner else {
        return false;
    };
    let Some(url) = &registration.url else {
        return false;
    };
    let Ok(client) = sender::client() else {
        return false;
    };
    match client
        .get(format!("{url}/_matrix/app/v1/{path}"))
        .bearer_auth(registration.hs_token())
        .send()
        .await
    {
        Ok(response) => response.status().is_success(),
        Err(e) => {
            tracing::warn!(appservice = %registration.id, error = %e, "a bridge could not be asked");
            false
        }
    }
}

/// The installed bridges.
#[derive(Clone, Debug, Default)]
pub struct Appservices {
    registrations: Vec<Arc<Registration>>,
    /// The people's accounts each bridge has acted as since the node
    /// started (double puppeting), recorded once each.
    puppeted: Arc<std::sync::Mutex<std::collections::HashSet<(String, OwnedUserId)>>>,
}

impl Appservices {
    /// Loads every registration file; refuses two that share an ID or a
    /// token.
    pub fn load(paths: &[std::path::PathBuf], server_name: &ServerName) -> Result<Self, String> {
        let mut registrations: Vec<Arc<Registration>> = Vec::new();
        for path in paths {
            let registration = Registration::load(path, server_name)?;
            for other in &registrations {
                if other.id == registration.id {
                    return Err(format!(
                        "{}: `id` {} is another registration's too",
                        path.display(),
                        registration.id
                    ));
                }
                if other.as_token == registration.as_token
                    || other.hs_token == registration.hs_token
                    || other.as_token == registration.hs_token
                    || other.hs_token == registration.as_token
                {
                    return Err(format!(
                        "{}: a token of it is also one of {}'s",
                        path.display(),
                        other.id
                    ));
                }
            }
            registrations.push(Arc::new(registration));
        }
        Ok(Self {
            registrations,
            puppeted: Default::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty()
    }

    /// Whether this is the first time since the node started that the
    /// bridge acts as this person.
    pub fn first_puppeting(&self, registration: &Registration, user: &UserId) -> bool {
        self.puppeted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((registration.id.clone(), user.to_owned()))
    }

    pub fn all(&self) -> &[Arc<Registration>] {
        &self.registrations
    }

    /// The bridge whose `as_token` this is. Every registration's token is
    /// compared whole, so the time taken does not tell how much of a token
    /// was right.
    pub fn by_token(&self, token: &str) -> Option<Arc<Registration>> {
        let mut found = None;
        for registration in &self.registrations {
            if constant_time_eq(registration.as_token.as_bytes(), token.as_bytes()) {
                found = Some(registration.clone());
            }
        }
        found
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<Registration>> {
        self.registrations.iter().find(|r| r.id == id).cloned()
    }

    /// The bridge whose exclusive namespace holds `user`, if one does.
    pub fn exclusive_user(&self, user: &UserId) -> Option<&Registration> {
        self.registrations
            .iter()
            .find(|r| {
                r.sender == user
                    || r.users
                        .iter()
                        .any(|ns| ns.exclusive && ns.matches(user.as_str()))
            })
            .map(AsRef::as_ref)
    }

    /// The bridge whose exclusive namespace holds `alias`, if one does.
    pub fn exclusive_alias(&self, alias: &RoomAliasId) -> Option<&Registration> {
        self.registrations
            .iter()
            .find(|r| {
                r.aliases
                    .iter()
                    .any(|ns| ns.exclusive && ns.matches(alias.as_str()))
            })
            .map(AsRef::as_ref)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TELEGRAM: &str = r#"
id: telegram
url: http://127.0.0.1:29317
as_token: as-0123456789abcdef0123456789abcdef
hs_token: hs-0123456789abcdef0123456789abcdef
sender_localpart: qkGT3PLhRJpkaAXbW2DkUm81wWsc5zSa
rate_limited: false
namespaces:
  users:
  - exclusive: true
    regex: '@telegram_.*:archipel\.test'
  - exclusive: true
    regex: '@telegrambot:archipel\.test'
  aliases:
  - exclusive: true
    regex: \#telegram_.*:archipel\.test
de.sorunome.msc2409.push_ephemeral: true
receive_ephemeral: true
"#;

    fn server() -> &'static ServerName {
        "archipel.test".try_into().expect("a server name")
    }

    #[test]
    fn a_bridge_registration_reads_with_its_namespaces() {
        let registration = Registration::parse(TELEGRAM, server()).expect("reads");
        assert_eq!(registration.id, "telegram");
        assert_eq!(registration.url.as_deref(), Some("http://127.0.0.1:29317"));
        assert!(!registration.rate_limited);
        assert!(registration.receive_ephemeral);
        let user = |s: &str| UserId::parse(s).expect("a user ID");
        assert!(registration.is_user(&user("@telegrambot:archipel.test")));
        assert!(registration.is_user(&user("@telegram_123:archipel.test")));
        assert!(registration.is_user(&user("@qkGT3PLhRJpkaAXbW2DkUm81wWsc5zSa:archipel.test")));
        assert!(!registration.is_user(&user("@alice:archipel.test")));
        // Anchored at the start, as Synapse matches.
        assert!(!registration.is_user(&user("@x_telegram_1:archipel.test")));
        let alias = RoomAliasId::parse("#telegram_chat:archipel.test").expect("an alias");
        assert!(registration.is_alias(&alias));
        let debug = format!("{registration:?}");
        assert!(
            !debug.contains("0123456789abcdef"),
            "tokens are not shown: {debug}"
        );
    }

    #[test]
    fn a_bad_registration_names_its_field() {
        let refused = |text: &str| Registration::parse(text, server()).expect_err("refused");
        assert!(refused("id: x\n").contains("not a registration"));
        let short = TELEGRAM.replace("as-0123456789abcdef0123456789abcdef", "short");
        assert!(refused(&short).contains("`as_token`"));
        let bad_regex = TELEGRAM.replace("'@telegram_.*:archipel\\.test'", "'@telegram_(:x'");
        assert!(
            refused(&bad_regex).contains("`namespaces.users[0].regex`"),
            "{}",
            refused(&bad_regex)
        );
        let ftp = TELEGRAM.replace("http://127.0.0.1:29317", "ftp://127.0.0.1");
        assert!(refused(&ftp).contains("`url`"));
        let null = TELEGRAM.replace("http://127.0.0.1:29317", "null");
        assert_eq!(
            Registration::parse(&null, server()).expect("reads").url,
            None
        );
        let same = TELEGRAM.replace(
            "hs-0123456789abcdef0123456789abcdef",
            "as-0123456789abcdef0123456789abcdef",
        );
        assert!(refused(&same).contains("`hs_token`"));
    }

    #[test]
    fn exclusive_namespaces_are_found_and_tokens_match_whole() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("telegram.yaml");
        std::fs::write(&path, TELEGRAM).expect("write");
        let appservices = Appservices::load(std::slice::from_ref(&path), server()).expect("loads");
        let user = UserId::parse("@telegram_5:archipel.test").expect("a user ID");
        assert_eq!(
            appservices.exclusive_user(&user).map(|r| r.id.as_str()),
            Some("telegram")
        );
        assert!(
            appservices
                .by_token("as-0123456789abcdef0123456789abcdef")
                .is_some()
        );
        assert!(
            appservices
                .by_token("as-0123456789abcdef0123456789abcde")
                .is_none()
        );
        assert!(
            appservices
                .by_token("hs-0123456789abcdef0123456789abcdef")
                .is_none()
        );
        let twice = Appservices::load(&[path.clone(), path], server()).expect_err("refused");
        assert!(twice.contains("another registration's"), "{twice}");
    }
}
