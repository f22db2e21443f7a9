//! The node configuration file (`archipel.toml`).
//!
//! Every key has a documented default; unknown keys and bad values are
//! errors that name the key and line.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use archipel_homeserver::{FederationConfig, HomeserverConfig};
use archipel_vault::VaultConfig;
use serde::Deserialize;

/// Where an installed node's configuration lives.
pub const DEFAULT_PATH: &str = "/etc/archipel/archipel.toml";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub homeserver: HomeserverConfig,
    #[serde(default)]
    pub tls: crate::tls::TlsConfig,
    #[serde(default)]
    pub federation: FederationConfig,
    #[serde(default)]
    pub vault: VaultConfig,
    #[serde(default)]
    pub backup: crate::backup::BackupConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Where this configuration came from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
    /// Development node: open registration allowed.
    #[serde(skip)]
    pub dev: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's data: database, keys, media.
    pub data_dir: PathBuf,
    /// Address of the client API.
    pub listen: SocketAddr,
    /// Memory for the database's block cache and write buffers together, in MiB.
    pub cache_mib: usize,
    /// Open connections on all listeners together.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_address: usize,
    /// Seconds a client has to finish its TLS handshake and to send a
    /// request's headers; an idle keep-alive connection closes after it.
    pub header_timeout_secs: u64,
    /// Seconds a stopping node lets open requests finish.
    pub stop_grace_secs: u64,
}

impl NodeConfig {
    /// The bounds of the node's listeners.
    pub fn bounds(&self) -> archipel_homeserver::listen::Bounds {
        archipel_homeserver::listen::Bounds {
            max_connections: self.max_connections.max(1),
            max_per_address: self.max_connections_per_address.max(1),
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs.max(1)),
            stop_grace: std::time::Duration::from_secs(self.stop_grace_secs),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/archipel"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            cache_mib: 8,
            max_connections: 1024,
            max_connections_per_address: 256,
            header_timeout_secs: 30,
            stop_grace_secs: 10,
        }
    }
}

/// The management listener: the web console and Prometheus metrics. Off
/// unless `listen` is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Address of the management listener: plain HTTP on loopback,
    /// anywhere else HTTPS with the node's certificate (`[tls]`). The
    /// image's firewall admits only the management network to it.
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token Prometheus presents for `/metrics`
    /// (made, mode 0600, at the first start when missing). Default:
    /// `metrics.token` in the data folder.
    pub metrics_token_file: Option<PathBuf>,
    /// A console session ends after this many seconds without a request
    /// (default 15 minutes)...
    pub session_idle_secs: u64,
    /// ...and this many seconds after sign-in in any case (default 8
    /// hours).
    pub session_max_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: None,
            metrics_token_file: None,
            session_idle_secs: 15 * 60,
            session_max_secs: 8 * 60 * 60,
        }
    }
}

impl ConsoleConfig {
    /// Where the metrics token is kept.
    pub fn metrics_token_path(&self, data_dir: &Path) -> PathBuf {
        self.metrics_token_file
            .clone()
            .unwrap_or_else(|| data_dir.join("metrics.token"))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `archipel_homeserver=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.source = path.to_owned();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.homeserver.open_registration && !self.dev {
            bail!(
                "{}: `homeserver.open_registration` is only allowed on development nodes (`archipel dev --open-registration`); \
                 use registration tokens instead",
                self.source.display()
            );
        }
        if !self.dev && !self.node.listen.ip().is_loopback() {
            bail!(
                "{}: `node.listen` = {}: the client API serves plain HTTP, so it must listen on loopback \
                 (put it behind a TLS-terminating proxy until TLS is configured on the node)",
                self.source.display(),
                self.node.listen
            );
        }
        if !self.dev && self.vault.key_file.is_none() {
            bail!(
                "{}: `vault.key_file` is required: the archive's key comes from provisioning \
                 (create one with `archipel vault keygen /etc/archipel/vault.key`)",
                self.source.display()
            );
        }
        self.tls
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.source.display()))?;
        if let Some(listen) = self.console.listen
            && !listen.ip().is_loopback()
            && self.tls.listen.is_none()
        {
            bail!(
                "{}: `console.listen` = {listen}: the management listener serves HTTPS with the node's \
                 certificate, so it needs `[tls]`, or it must listen on loopback",
                self.source.display()
            );
        }
        if self.console.session_idle_secs == 0
            || self.console.session_max_secs < self.console.session_idle_secs
        {
            bail!(
                "{}: `console.session_idle_secs` must be at least 1 and at most `console.session_max_secs`",
                self.source.display()
            );
        }
        self.homeserver
            .turn
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.source.display()))?;
        self.homeserver
            .push
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.source.display()))?;
        self.homeserver
            .url_previews
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.source.display()))?;
        self.validate_federation()?;
        self.backup
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.source.display()))?;
        if self.homeserver.max_request_size < 65_536 {
            bail!(
                "{}: `homeserver.max_request_size` must be at least 65536 (the largest event)",
                self.source.display()
            );
        }
        Ok(())
    }

    fn validate_federation(&self) -> Result<()> {
        let federation = &self.federation;
        let source = self.source.display();
        let Some(listen) = federation.listen else {
            if !federation.peers.is_empty() {
                bail!(
                    "{source}: `federation.peers` is set but `federation.listen` is not: \
                     federation stays off until the node has a federation listener"
                );
            }
            return Ok(());
        };
        if federation.ca_bundle.is_none() {
            bail!(
                "{source}: `federation.ca_bundle` is required when `federation.listen` ({listen}) is set"
            );
        }
        // Without files of its own, the listener uses the node's [tls] certificate.
        match (&federation.tls_certificate, &federation.tls_private_key) {
            (Some(_), Some(_)) => {}
            (None, None) if self.tls.listen.is_some() => {}
            (None, None) => bail!(
                "{source}: `federation.tls_certificate` and `federation.tls_private_key` are required \
                 when `federation.listen` ({listen}) is set and [tls] is not"
            ),
            (Some(_), None) => bail!(
                "{source}: `federation.tls_private_key` is required with `federation.tls_certificate`"
            ),
            (None, Some(_)) => bail!(
                "{source}: `federation.tls_certificate` is required with `federation.tls_private_key`"
            ),
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, peer) in federation.peers.iter().enumerate() {
            if peer.server_name == self.homeserver.server_name {
                bail!(
                    "{source}: `federation.peers[{i}]` is this node's own server name ({})",
                    peer.server_name
                );
            }
            if !seen.insert(peer.server_name.clone()) {
                bail!(
                    "{source}: `federation.peers[{i}]`: {} is listed twice",
                    peer.server_name
                );
            }
            for (id, key) in &peer.keys {
                if !id.starts_with("ed25519:") {
                    bail!(
                        "{source}: `federation.peers[{i}].keys`: key ID {id} must start with `ed25519:`"
                    );
                }
                if <ruma::serde::Base64>::parse(key).is_err() {
                    bail!("{source}: `federation.peers[{i}].keys`: {id} is not base64");
                }
            }
        }
        Ok(())
    }

    /// The embedded default: a local node on loopback with its data in a folder.
    pub fn dev(args: &DevOptions) -> Result<Self> {
        let mut homeserver = HomeserverConfig {
            server_name: args.server_name.as_str().try_into().with_context(|| {
                format!(
                    "--server-name {}: not a valid server name",
                    args.server_name
                )
            })?,
            open_registration: args.open_registration,
            appservices: args.appservices.clone(),
            ..HomeserverConfig::default()
        };
        homeserver.rate_limit.enabled = args.rate_limit;
        homeserver.archive_capture = !args.without_vault;
        homeserver.archive_member.enabled = !args.without_archive_member;
        if let Some(size) = args.max_upload_size {
            homeserver.max_upload_size = size;
        }
        let config = Self {
            node: NodeConfig {
                data_dir: args.data_dir.clone(),
                listen: args.listen,
                ..NodeConfig::default()
            },
            homeserver,
            tls: crate::tls::TlsConfig::default(),
            federation: match &args.federation {
                Some(path) => FederationFile::load(path)?.federation,
                None => FederationConfig::default(),
            },
            // Frequent checkpoints: tools and witnesses see the tail soon.
            vault: VaultConfig {
                checkpoint_interval_secs: 2,
                // Woo packages and transfers need an organisation; a
                // development node's is plainly not a real one.
                organisation: Some(archipel_vault::Organisation {
                    name: format!("Archipel development node {}", args.server_name),
                    identifier: format!("https://{}/organisation", args.server_name),
                }),
                ..VaultConfig::default()
            },
            backup: crate::backup::BackupConfig::default(),
            log: LogConfig::default(),
            console: ConsoleConfig {
                listen: Some(args.console_listen),
                session_idle_secs: args.console_session_idle_secs,
                session_max_secs: ConsoleConfig::default()
                    .session_max_secs
                    .max(args.console_session_idle_secs),
                ..ConsoleConfig::default()
            },
            source: PathBuf::from("(dev defaults)"),
            dev: true,
        };
        config.validate()?;
        Ok(config)
    }

    /// The development defaults over an existing development node's data
    /// folder (its server name as the node recorded it).
    pub fn for_data_dir(dir: &Path) -> Result<Self> {
        Self::dev(&DevOptions {
            data_dir: dir.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            server_name: read_server_name(dir).unwrap_or_else(|| "localhost".into()),
            open_registration: false,
            rate_limit: false,
            max_upload_size: None,
            without_vault: false,
            without_archive_member: false,
            console_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            console_session_idle_secs: ConsoleConfig::default().session_idle_secs,
            federation: None,
            appservices: read_dev_appservices(dir)?,
        })
    }
}

/// How `archipel dev` runs a development node: its command-line options.
#[derive(clap::Args, Clone)]
pub struct DevOptions {
    /// Folder for the node's data (created if missing).
    #[arg(long, default_value = "archipel-data")]
    pub data_dir: PathBuf,
    /// Address for the client API (plain HTTP: keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8008")]
    pub listen: SocketAddr,
    /// The server name in user and room IDs.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Let anyone register with m.login.dummy (for test clients).
    #[arg(long)]
    pub open_registration: bool,
    /// Enforce the spec's rate limits (off by default in dev).
    #[arg(long)]
    pub rate_limit: bool,
    /// Largest accepted media upload, in bytes.
    #[arg(long)]
    pub max_upload_size: Option<u64>,
    /// Archive nothing: no capture into the vault. Only for measuring what
    /// capture costs; a node that must keep records never runs like this.
    #[arg(long, hide = true)]
    pub without_vault: bool,
    /// No archive member: encrypted rooms stay unreadable to the archive.
    /// Only for measuring what the archive member costs.
    #[arg(long, hide = true)]
    pub without_archive_member: bool,
    /// Address of the management listener (metrics; plain HTTP, keep it on
    /// loopback). Port 0 picks a free one; the ready line names it.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub console_listen: SocketAddr,
    /// A console session ends after this many seconds without a request.
    #[arg(long, default_value_t = 15 * 60, value_name = "SECONDS")]
    pub console_session_idle_secs: u64,
    /// A TOML file with a `[federation]` table (listener, TLS files, peers),
    /// to federate this development node with others.
    #[arg(long, value_name = "FILE")]
    pub federation: Option<PathBuf>,
    /// A bridge's registration file (the YAML it generates), to serve it
    /// as an application service. Repeatable.
    #[arg(long = "appservice", value_name = "FILE")]
    pub appservices: Vec<PathBuf>,
}

/// `archipel dev --federation FILE`: a file holding only a `[federation]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FederationFile {
    #[serde(default)]
    federation: FederationConfig,
}

impl FederationFile {
    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading federation file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// The server name a data folder belongs to (written at the node's first
/// start), so management commands need only `--data-dir`.
pub fn read_server_name(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("server_name"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Where a development node records the bridges it runs with: commands
/// on the stopped node load them too, so the events those commands make
/// (a deactivated user leaving their rooms) reach the bridges.
const DEV_APPSERVICES: &str = "appservices";

/// The registration files a development node at `dir` last ran with.
fn read_dev_appservices(dir: &Path) -> Result<Vec<PathBuf>> {
    let path = dir.join(DEV_APPSERVICES);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().map(PathBuf::from).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Records the registration files a development node runs with, as
/// absolute paths, one a line (none: no file).
pub fn record_dev_appservices(dir: &Path, files: &[PathBuf]) -> Result<()> {
    let path = dir.join(DEV_APPSERVICES);
    if files.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let mut text = String::new();
    for file in files {
        let absolute = std::path::absolute(file)
            .with_context(|| format!("--appservice {}", file.display()))?;
        text.push_str(
            absolute
                .to_str()
                .with_context(|| format!("--appservice {}: not a UTF-8 path", file.display()))?,
        );
        text.push('\n');
    }
    archipel_store::replace_durably(&path, text.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(&format!("{KEY}{text}"), Path::new("test.toml"))
    }

    /// Production nodes need a vault key; the tests below are about other keys.
    const KEY: &str = "vault.key_file = \"/etc/archipel/vault.key\"\n";

    #[test]
    fn a_production_node_needs_a_vault_key() {
        let err = Config::parse("", Path::new("test.toml"))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("vault.key_file"), "{err}");
    }

    #[test]
    fn empty_file_is_a_closed_default() {
        let config = parse("").expect("valid");
        assert!(!config.homeserver.open_registration);
        assert!(config.node.listen.ip().is_loopback());
    }

    #[test]
    fn example_file_is_valid() {
        let config = Config::parse(
            include_str!("../archipel.example.toml"),
            Path::new("archipel.example.toml"),
        )
        .expect("the shipped example parses");
        // The example shows the defaults.
        assert_eq!(
            config.vault.retention,
            archipel_vault::retention::RetentionPolicy::default()
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[homeserver]\nserver_nmae = \"x\"\n")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("server_nmae"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = parse("[homeserver]\nserver_name = \"not a name!\"\n")
            .expect_err("bad name")
            .to_string();
        assert!(err.contains("server_name"), "{err}");
    }

    #[test]
    fn open_registration_is_refused_outside_dev() {
        let err = parse("[homeserver]\nopen_registration = true\n")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("open_registration"), "{err}");
    }

    #[test]
    fn backup_targets_are_checked() {
        const RECIPIENT: &str = "age1qlv9sa7uevyanlw9lpxw7swdum7wra43y80hqajkzmy0n3wv9c4skte0lw";
        let ok = parse(&format!(
            "[backup]\nrecipients = [\"{RECIPIENT}\"]\n[[backup.targets]]\nname = \"usb\"\ndirectory = \"/mnt/usb\"\n"
        ))
        .expect("valid");
        assert_eq!(ok.backup.targets[0].name, "usb");
        assert_eq!(ok.backup.keep.daily, 7);

        for (text, named) in [
            (
                "[[backup.targets]]\nname = \"usb\"\ndirectory = \"/mnt/usb\"\n".to_owned(),
                "backup.recipients",
            ),
            (
                format!(
                    "[backup]\nrecipients = [\"{RECIPIENT}\"]\n[[backup.targets]]\nname = \"usb\"\n"
                ),
                "exactly one of `directory` and `s3`",
            ),
            (
                "[backup]\nrecipients = [\"age1nope\"]\n".to_owned(),
                "backup.recipients",
            ),
            (
                "[backup.schedule]\nevery_hours = 5\n".to_owned(),
                "backup.schedule.every_hours",
            ),
            (
                "[backup.schedule]\nat = \"2am\"\n".to_owned(),
                "backup.schedule.at",
            ),
            (
                "[backup.schedule]\ntime_zone = \"Europe/Atlantis\"\n".to_owned(),
                "backup.schedule.time_zone",
            ),
            ("[backup.keep]\nhourly = 3\n".to_owned(), "hourly"),
        ] {
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn unsupported_room_version_is_refused() {
        let err = parse("[homeserver]\ndefault_room_version = \"9\"\n")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("default_room_version"), "{err}");
    }
}
