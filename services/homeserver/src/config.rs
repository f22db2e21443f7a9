//! The homeserver's part of the node configuration.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use ruma::{OwnedServerName, RoomVersionId, server_name};
use serde::Deserialize;

/// Settings for the Matrix homeserver. Every field has a default, so an empty
/// `[homeserver]` table is a valid, closed configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeserverConfig {
    /// The name in every user and room ID (`@alice:<server_name>`).
    pub server_name: OwnedServerName,
    /// Public URL of the client API, advertised in `.well-known/matrix/client`.
    pub public_base_url: Option<String>,
    /// Federation endpoint advertised in `.well-known/matrix/server` (`host:port`).
    pub federation_endpoint: Option<String>,
    /// Open registration with `m.login.dummy`: only for local development nodes.
    pub open_registration: bool,
    /// Largest accepted media upload, in bytes.
    pub max_upload_size: u64,
    /// Largest accepted JSON request body, in bytes.
    pub max_request_size: usize,
    /// Lifetime of access tokens issued together with a refresh token, in seconds.
    pub refreshable_token_lifetime_secs: u64,
    /// How long one request may take, in seconds, before it is answered
    /// with an error (a `/sync` long-poll waits at most this less 10 s).
    pub request_timeout_secs: u64,
    /// Room version for rooms created without an explicit one.
    #[serde(deserialize_with = "room_version")]
    pub default_room_version: RoomVersionId,
    pub rate_limit: RateLimitConfig,
    /// Whether every event goes to the archive outbox. Not a configuration
    /// key: only a development node started for benchmarking turns it off.
    #[serde(skip, default = "archive_capture_on")]
    pub archive_capture: bool,
    pub archive_member: ArchiveMemberConfig,
    pub turn: TurnConfig,
    pub push: PushConfig,
    pub url_previews: UrlPreviewConfig,
    /// Registration files of the bridges (application services) this node
    /// serves, as each bridge generates it.
    pub appservices: Vec<std::path::PathBuf>,
}

/// URL previews (`[homeserver.url_previews]`): whether the node fetches
/// the pages users link to for their clients' previews. Off by default: a
/// preview makes the node fetch an address a user chose. When on, only
/// public addresses are fetched, and those of `allowed_ranges`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlPreviewConfig {
    pub enabled: bool,
    /// Address ranges (CIDR) previews may reach although they are not
    /// public, such as an intranet's: `["10.20.0.0/16"]`.
    pub allowed_ranges: Vec<ipnet::IpNet>,
    /// The most of a page read, in bytes; its head comes first.
    pub max_bytes: usize,
    /// The roots an `https` page's certificate must chain to.
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl Default for UrlPreviewConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allowed_ranges: Vec::new(),
            max_bytes: 1024 * 1024,
            ca_bundle: Some("/etc/ssl/certs/ca-certificates.crt".into()),
        }
    }
}

impl UrlPreviewConfig {
    /// What is wrong with the table, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_bytes < 1024 {
            return Err("`homeserver.url_previews.max_bytes` must be at least 1024".into());
        }
        Ok(())
    }
}

/// Push gateways (`[homeserver.push]`): the only URLs the node sends push
/// notifications to. Closed by default: a pusher whose URL is not listed
/// is refused, so that no user can make the node post to an address of
/// their choosing.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Full URLs of push gateways, each ending in `/_matrix/push/v1/notify`.
    pub gateways: Vec<String>,
    /// The roots an `https` gateway's certificate must chain to.
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// The path every push gateway serves (push gateway API).
pub const PUSH_GATEWAY_PATH: &str = "/_matrix/push/v1/notify";

impl PushConfig {
    /// What is wrong with the table, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for gateway in &self.gateways {
            let url = reqwest::Url::parse(gateway)
                .map_err(|e| format!("`homeserver.push.gateways`: {gateway:?}: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.path() != PUSH_GATEWAY_PATH {
                return Err(format!(
                    "`homeserver.push.gateways`: {gateway:?} is not an http(s) URL with the \
                     path {PUSH_GATEWAY_PATH}"
                ));
            }
            if url.scheme() == "https" && self.ca_bundle.is_none() {
                return Err(format!(
                    "`homeserver.push.ca_bundle` is required for the https gateway {gateway:?}"
                ));
            }
        }
        Ok(())
    }

    /// Whether the node may send notifications to `url`.
    pub fn allows(&self, url: &str) -> bool {
        self.gateways.iter().any(|g| g == url)
    }
}

/// TURN servers for voice and video calls (`[homeserver.turn]`): clients
/// ask `/voip/turnServer` where to relay call media. None unless `uris` is
/// set; then either a secret shared with the TURN server (coturn's
/// `static-auth-secret`), from which each user gets credentials that
/// expire, or one fixed username and password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// `turn:` and `turns:` URIs handed to clients.
    pub uris: Vec<String>,
    pub shared_secret: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long credentials from the shared secret are valid, in seconds.
    pub user_lifetime_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            uris: Vec::new(),
            shared_secret: None,
            username: None,
            password: None,
            user_lifetime_secs: 86_400,
        }
    }
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "<hidden>");
        f.debug_struct("TurnConfig")
            .field("uris", &self.uris)
            .field("shared_secret", &hidden(&self.shared_secret))
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("user_lifetime_secs", &self.user_lifetime_secs)
            .finish()
    }
}

impl TurnConfig {
    /// What is wrong with the table, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(uri) = self
            .uris
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            return Err(format!(
                "`homeserver.turn.uris`: {uri:?} is not a turn: or turns: URI"
            ));
        }
        let fixed = (&self.username, &self.password);
        match (&self.shared_secret, fixed) {
            (Some(_), (None, None)) | (None, (Some(_), Some(_))) => {}
            (None, (None, None)) if self.uris.is_empty() => {}
            (None, (None, None)) => {
                return Err(
                    "`homeserver.turn`: `uris` needs `shared_secret`, or `username` and `password`"
                        .into(),
                );
            }
            (Some(_), _) => {
                return Err(
                    "`homeserver.turn`: `shared_secret` or `username` and `password`, not both"
                        .into(),
                );
            }
            (None, _) => {
                return Err("`homeserver.turn`: `username` and `password` go together".into());
            }
        }
        if self.shared_secret.is_some() && self.user_lifetime_secs == 0 {
            return Err("`homeserver.turn.user_lifetime_secs` must be more than 0".into());
        }
        Ok(())
    }
}

/// The node's archive member (`[homeserver.archive_member]`): an account the
/// node owns that joins every room with a local member, so that the archive
/// can hold the keys of encrypted rooms and participants can see that the
/// conversation is archived.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveMemberConfig {
    /// Off only on a development node started for benchmarking.
    pub enabled: bool,
    /// Its user ID's localpart: `@<localpart>:<server_name>`.
    pub localpart: String,
    /// The name participants see in the member list, e.g. "Archief BZK".
    pub display_name: String,
}

impl Default for ArchiveMemberConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            localpart: "archive".into(),
            display_name: "Archive".into(),
        }
    }
}

fn archive_capture_on() -> bool {
    true
}

/// Per-user (or per-address, before login) limits on endpoints the spec marks as rate-limited.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed in a burst.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 5,
            burst: 20,
        }
    }
}

impl Default for HomeserverConfig {
    fn default() -> Self {
        Self {
            server_name: server_name!("localhost").to_owned(),
            public_base_url: None,
            federation_endpoint: None,
            open_registration: false,
            max_upload_size: 50 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            refreshable_token_lifetime_secs: 300,
            request_timeout_secs: 120,
            default_room_version: RoomVersionId::V12,
            rate_limit: RateLimitConfig::default(),
            archive_capture: true,
            archive_member: ArchiveMemberConfig::default(),
            turn: TurnConfig::default(),
            push: PushConfig::default(),
            url_previews: UrlPreviewConfig::default(),
            appservices: Vec::new(),
        }
    }
}

/// Room versions this server creates and joins.
pub const SUPPORTED_ROOM_VERSIONS: &[RoomVersionId] =
    &[RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

fn room_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RoomVersionId, D::Error> {
    let raw = String::deserialize(d)?;
    let version = RoomVersionId::try_from(raw.as_str()).map_err(serde::de::Error::custom)?;
    if SUPPORTED_ROOM_VERSIONS.contains(&version) {
        Ok(version)
    } else {
        Err(serde::de::Error::custom(format!(
            "room version {raw} is not supported (supported: 10, 11)"
        )))
    }
}

/// Federation with peer ministries (`[federation]`). Off unless `listen` is
/// set, and then only with the servers in `peers`: requests from anyone
/// else are refused before they are read, and nothing is ever sent to a
/// server outside the list.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Address of the federation listener (HTTPS only). Unset: no federation.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain of the listener, valid for the server name.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub tls_private_key: Option<PathBuf>,
    /// PEM bundle of the certificate authorities that issue the peers'
    /// certificates (a government PKI). The public web PKI is not trusted.
    pub ca_bundle: Option<PathBuf>,
    /// The peer ministries' servers this node federates with, and no others.
    pub peers: Vec<PeerConfig>,
}

/// One allowlisted peer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's server name, as in its user IDs.
    pub server_name: OwnedServerName,
    /// Where to reach it (`ip:port`), instead of `.well-known` discovery.
    /// The certificate must still be valid for `server_name`.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// Pinned signing keys: key ID (`ed25519:...`) to unpadded base64 public
    /// key. When set, only these keys are accepted and none are fetched.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

impl FederationConfig {
    pub fn enabled(&self) -> bool {
        self.listen.is_some()
    }

    pub fn peer(&self, server: &ruma::ServerName) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.server_name == server)
    }

    /// The peers' server names; none with federation off.
    pub fn peer_names(&self) -> std::collections::BTreeSet<OwnedServerName> {
        if !self.enabled() {
            return Default::default();
        }
        self.peers.iter().map(|p| p.server_name.clone()).collect()
    }

    pub fn allows(&self, server: &ruma::ServerName) -> bool {
        self.enabled() && self.peer(server).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::TurnConfig;

    #[test]
    fn turn_settings_name_what_is_wrong() {
        let turn =
            |uris: &[&str], secret: Option<&str>, user: Option<&str>, password: Option<&str>| {
                TurnConfig {
                    uris: uris.iter().map(|u| (*u).to_owned()).collect(),
                    shared_secret: secret.map(str::to_owned),
                    username: user.map(str::to_owned),
                    password: password.map(str::to_owned),
                    ..TurnConfig::default()
                }
                .validate()
            };
        let uri = "turns:turn.example.org:5349";
        assert_eq!(turn(&[], None, None, None), Ok(()));
        assert_eq!(turn(&[uri], Some("s"), None, None), Ok(()));
        assert_eq!(turn(&[uri], None, Some("u"), Some("p")), Ok(()));
        for (wrong, says) in [
            (
                turn(&["https://turn.example.org"], Some("s"), None, None),
                "turn.uris",
            ),
            (turn(&[uri], None, None, None), "needs `shared_secret`"),
            (turn(&[uri], Some("s"), Some("u"), Some("p")), "not both"),
            (turn(&[uri], None, Some("u"), None), "go together"),
        ] {
            assert!(wrong.as_ref().is_err_and(|e| e.contains(says)), "{wrong:?}");
        }
        let hidden = format!(
            "{:?}",
            TurnConfig {
                shared_secret: Some("geheim".into()),
                ..TurnConfig::default()
            }
        );
        assert!(!hidden.contains("geheim"), "{hidden}");
    }

    #[test]
    fn preview_ranges_are_read_as_address_ranges() {
        let read = |ranges: serde_json::Value| {
            serde_json::from_value::<super::UrlPreviewConfig>(
                serde_json::json!({ "enabled": true, "allowed_ranges": ranges }),
            )
        };
        let config = read(serde_json::json!(["10.40.0.0/16", "fd00::/8"])).expect("ranges");
        assert!(
            config.allowed_ranges[0]
                .contains(&"10.40.3.4".parse::<std::net::IpAddr>().expect("an address"))
        );
        for wrong in ["10.40.0.0", "10.40.0.0/33", "intranet/16"] {
            assert!(read(serde_json::json!([wrong])).is_err(), "{wrong}");
        }
    }
}
