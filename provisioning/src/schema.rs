//! The provisioning file's schema (version 1). Every table refuses keys it
//! does not know; fields whose value is checked beyond its type keep their
//! place in the file (`Spanned`) so a problem names its line.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provisioning {
    /// The schema version: 1.
    pub version: Spanned<u32>,
    pub machine: Machine,
    #[serde(default)]
    pub network: Network,
    pub server: Server,
    pub tls: Tls,
    #[serde(default)]
    pub federation: Federation,
    #[serde(default)]
    pub push: Push,
    #[serde(default)]
    pub url_previews: UrlPreviews,
    #[serde(default)]
    pub management: Management,
    /// The first administrators; at least one.
    #[serde(default)]
    pub admins: Vec<Admin>,
    /// Backups: `[backup]` of the node's configuration, as is.
    pub backup: Option<Spanned<toml::Table>>,
    /// The archive's retention: `[vault.retention]` of the node's
    /// configuration, as is.
    pub retention: Option<Spanned<toml::Table>>,
    /// Whose archive this is (name and TOOI URI): `[vault.organisation]`
    /// of the node's configuration, as is.
    pub organisation: Option<Spanned<toml::Table>>,
    /// Bridges to other chat apps, each by the registration file it
    /// generated.
    #[serde(default)]
    pub bridges: Vec<Bridge>,
}

/// A bridge (application service) the node serves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    /// Its registration file (YAML), in the provisioning file's folder.
    pub registration: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// The host name (one DNS label or a fully qualified name).
    pub hostname: Spanned<String>,
    /// NTP servers (host names or addresses); none: the network's (DHCP).
    #[serde(default)]
    pub time_servers: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// `dhcp` (default) or `static`.
    #[serde(default)]
    pub mode: NetworkMode,
    /// The NIC this applies to, by its MAC address (`52:54:00:12:34:56`);
    /// every wired NIC when absent. The others keep DHCP.
    pub mac: Option<Spanned<String>>,
    /// For `static`: the address with its prefix length, `10.20.0.5/24`.
    pub address: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub dns: Vec<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Dhcp,
    Static,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The Matrix server name: in every user and room ID, fixed for good.
    pub name: Spanned<String>,
}

/// TLS for the client and federation APIs: an ACME directory (the
/// ministry's internal CA), or certificate files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub acme_directory: Option<Spanned<String>>,
    /// `mailto:` contact for the ACME account.
    pub acme_contact: Option<Spanned<String>>,
    /// The CA bundle that signs the ACME server's own certificate, if it is
    /// not in the system's trust store.
    pub acme_ca_bundle: Option<Spanned<PathBuf>>,
    /// PEM certificate chain and its key, instead of ACME.
    pub certificate: Option<Spanned<PathBuf>>,
    pub private_key: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// PEM bundle of the CAs trusted for federation (peers' certificates).
    pub ca_bundle: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub peers: Vec<Peer>,
}

/// Push gateways: the only places the node sends push notifications to
/// (`[homeserver.push]` of the node's configuration).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// Full URLs, each ending in `/_matrix/push/v1/notify`.
    #[serde(default)]
    pub gateways: Vec<Spanned<String>>,
    /// PEM bundle of the CAs an https gateway's certificate chains to.
    pub ca_bundle: Option<Spanned<PathBuf>>,
}

/// URL previews (`[homeserver.url_previews]` of the node's configuration):
/// off unless `enabled`; then only public addresses, and those of
/// `allowed_ranges`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlPreviews {
    #[serde(default)]
    pub enabled: bool,
    /// Address ranges previews may reach although they are not public,
    /// such as the intranet's: `10.20.0.0/16`.
    #[serde(default)]
    pub allowed_ranges: Vec<Spanned<String>>,
    /// PEM bundle of the CAs https pages' certificates chain to; the
    /// system's when absent.
    pub ca_bundle: Option<Spanned<PathBuf>>,
}

/// The management network: the only addresses from which the web console
/// and the metrics (`[console]` of the node's configuration) are reached,
/// on their own port, over HTTPS. Closed when `networks` is empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Address ranges with their prefix length: `10.20.0.0/24`.
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    /// The port (default 9443); not 443 or 8448, which serve clients and
    /// peers.
    pub port: Option<Spanned<u16>>,
}

impl Management {
    pub const DEFAULT_PORT: u16 = 9443;

    pub fn port(&self) -> u16 {
        self.port
            .as_ref()
            .map_or(Self::DEFAULT_PORT, |p| *p.get_ref())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub server_name: Spanned<String>,
    /// `ip:port` to connect to instead of discovering it.
    pub address: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// The localpart: `beheer` becomes `@beheer:<server name>`.
    pub user: Spanned<String>,
    /// An argon2id hash in PHC form (`$argon2id$v=19$...`).
    pub password_hash: Option<Spanned<String>>,
    /// A one-time token the administrator signs in with once, to choose a
    /// password; at least 20 characters.
    pub setup_token: Option<Spanned<String>>,
    /// Refused with a clear message: plaintext passwords never belong in a
    /// file that travels on a USB stick.
    pub password: Option<Spanned<toml::Value>>,
}
