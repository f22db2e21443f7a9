//! `archipel provision apply FILE`: makes a machine what its provisioning
//! file says, idempotently. Everything is checked and rendered first; only
//! then is anything written, and only what differs. A second apply of the
//! same file changes nothing.
//!
//! What it writes, under `--root` (`/` on the appliance):
//! - `etc/archipel/archipel.toml`: the node's configuration;
//! - `etc/archipel/tls/`: the CA bundles and certificate files it names;
//! - `etc/archipel/vault.key`: the archive's key, generated once, never replaced;
//! - `etc/archipel/system/`: the host name, the systemd-networkd network,
//!   the systemd-timesyncd servers (the image links `/etc/hostname`'s
//!   successors to these: its root file system is read-only, and
//!   `/etc/archipel` lives on the data partition) and the firewall's
//!   management network (`management.nft`);
//! - on the running system (`--root /`) also the kernel's host name, and
//!   the management network in the image's firewall;
//! - the administrators, in the node's database: those missing are created
//!   from their password hash, or get their one-time setup token. Existing
//!   accounts are never touched.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use archipel_provisioning::{Provisioning, schema::NetworkMode};
use serde::{Deserialize, Serialize};

use crate::{
    admin::protocol::{self as admin, AdminEntry},
    config::Config,
    node,
    ops::{Actor, Node, Origin, accounts},
};

/// Where the node's configuration and identity live (a link to the data
/// partition on the appliance).
pub const ETC: &str = "etc/archipel";
/// The node's data folder.
pub const DATA_DIR: &str = "/var/lib/archipel";
/// The firewall's management sets, under [`ETC`].
const MANAGEMENT_RULES: &str = "system/management.nft";
/// The client API over HTTPS and the federation listener.
pub const HTTPS_LISTEN: &str = "0.0.0.0:443";
pub const FEDERATION_LISTEN: &str = "0.0.0.0:8448";

/// What an apply did to one thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Changed,
    Unchanged,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Change {
    /// A path (as on the running system) or an account.
    pub what: String,
    pub outcome: Outcome,
}

/// A file apply makes.
struct Planned {
    /// As on the running system: `/etc/archipel/archipel.toml`.
    path: String,
    contents: Vec<u8>,
    mode: u32,
}

/// Everything an apply will make true, rendered before anything is written.
pub(super) struct Plan {
    files: Vec<Planned>,
    hostname: String,
    admins: Vec<AdminEntry>,
    /// The node configuration as the node will read it (paths as on the
    /// running system).
    config: Config,
}

/// Applies the provisioning file `file` to the system under `root`.
pub fn apply(file: &Path, root: &Path) -> Result<Vec<Change>> {
    let (_, plan) = super::checked(file).map_err(|problems| {
        anyhow::anyhow!(
            "{problems}\n{}: {} problem(s); nothing was applied",
            file.display(),
            problems.problems.len()
        )
    })?;
    let data_dir = under(root, DATA_DIR);
    check_server_name(&data_dir, &plan.config)
        .with_context(|| format!("{}: nothing was applied", file.display()))?;

    let mut changes = Vec::new();
    for planned in &plan.files {
        let outcome =
            write_if_changed(&under(root, &planned.path), &planned.contents, planned.mode)?;
        changes.push(Change {
            what: planned.path.clone(),
            outcome,
        });
    }
    let key_path = format!("/{ETC}/vault.key");
    changes.push(Change {
        what: key_path.clone(),
        outcome: vault_key(&under(root, &key_path))?,
    });
    if root == Path::new("/") {
        changes.push(Change {
            what: "host name".into(),
            outcome: set_hostname(&plan.hostname)?,
        });
        changes.push(Change {
            what: "firewall: the management network".into(),
            outcome: load_management_rules(&under(root, &format!("/{ETC}/{MANAGEMENT_RULES}")))?,
        });
    }
    // The node's data under `root`, for its accounts only: listeners,
    // TLS, federation and bridges play no part in creating them.
    let mut config = plan.config;
    config.node.data_dir = data_dir;
    config.vault.key_file = Some(under(root, &key_path));
    config.tls = Default::default();
    config.federation = Default::default();
    config.homeserver.appservices = Vec::new();
    changes.extend(admins(&config, plan.admins)?);
    Ok(changes)
}

/// `root` joined with an absolute path.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Renders what applying `p` (whose text is `text`, its paths relative to
/// `base`) would write, without writing anything.
pub(super) fn plan(p: &Provisioning, text: &[u8], base: &Path) -> Result<Plan> {
    let mut files = Vec::new();
    let mut copy = |from: &Path, to: &str, mode: u32| -> Result<String> {
        let source = base.join(from);
        let contents =
            std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        let path = format!("/{ETC}/{to}");
        files.push(Planned {
            path: path.clone(),
            contents,
            mode,
        });
        Ok(path)
    };
    let server_name = p.server.name.get_ref();
    let mut node = toml::Table::new();
    node.insert("data_dir".into(), DATA_DIR.into());
    node.insert("listen".into(), "127.0.0.1:8008".into());
    let mut homeserver = toml::Table::new();
    homeserver.insert("server_name".into(), server_name.as_str().into());
    homeserver.insert(
        "public_base_url".into(),
        format!("https://{server_name}").into(),
    );

    let mut tls = toml::Table::new();
    tls.insert("listen".into(), HTTPS_LISTEN.into());
    match (
        &p.tls.acme_directory,
        &p.tls.certificate,
        &p.tls.private_key,
    ) {
        (Some(directory), _, _) => {
            let mut acme = toml::Table::new();
            acme.insert("directory".into(), directory.get_ref().as_str().into());
            if let Some(contact) = &p.tls.acme_contact {
                acme.insert("contact".into(), vec![contact.get_ref().clone()].into());
            }
            if let Some(bundle) = &p.tls.acme_ca_bundle {
                acme.insert(
                    "ca_bundle".into(),
                    copy(bundle.get_ref(), "tls/acme-ca.pem", 0o644)?.into(),
                );
            }
            tls.insert("acme".into(), acme.into());
        }
        (None, Some(certificate), Some(key)) => {
            tls.insert(
                "certificate".into(),
                copy(certificate.get_ref(), "tls/fullchain.pem", 0o644)?.into(),
            );
            tls.insert(
                "private_key".into(),
                copy(key.get_ref(), "tls/key.pem", 0o600)?.into(),
            );
        }
        _ => bail!("[tls]: neither an ACME directory nor certificate files"),
    }

    let mut root = toml::Table::new();
    if !p.federation.peers.is_empty() || p.federation.ca_bundle.is_some() {
        let mut federation = toml::Table::new();
        if !p.federation.peers.is_empty() {
            federation.insert("listen".into(), FEDERATION_LISTEN.into());
            homeserver.insert(
                "federation_endpoint".into(),
                format!("{server_name}:8448").into(),
            );
        }
        if let Some(bundle) = &p.federation.ca_bundle {
            federation.insert(
                "ca_bundle".into(),
                copy(bundle.get_ref(), "tls/peers-ca.pem", 0o644)?.into(),
            );
        }
        let peers: Vec<toml::Value> = p
            .federation
            .peers
            .iter()
            .map(|peer| {
                let mut table = toml::Table::new();
                table.insert(
                    "server_name".into(),
                    peer.server_name.get_ref().as_str().into(),
                );
                if let Some(address) = &peer.address {
                    table.insert("address".into(), address.get_ref().as_str().into());
                }
                table.into()
            })
            .collect();
        federation.insert("peers".into(), peers.into());
        root.insert("federation".into(), federation.into());
    }

    if !p.push.gateways.is_empty() {
        let mut push = toml::Table::new();
        let gateways: Vec<toml::Value> = p
            .push
            .gateways
            .iter()
            .map(|g| g.get_ref().as_str().into())
            .collect();
        push.insert("gateways".into(), gateways.into());
        if let Some(bundle) = &p.push.ca_bundle {
            push.insert(
                "ca_bundle".into(),
                copy(bundle.get_ref(), "tls/push-ca.pem", 0o644)?.into(),
            );
        }
        homeserver.insert("push".into(), push.into());
    }

    let previews = &p.url_previews;
    if previews.enabled {
        let mut table = toml::Table::new();
        table.insert("enabled".into(), true.into());
        let ranges: Vec<toml::Value> = previews
            .allowed_ranges
            .iter()
            .map(|r| r.get_ref().as_str().into())
            .collect();
        table.insert("allowed_ranges".into(), ranges.into());
        if let Some(bundle) = &previews.ca_bundle {
            table.insert(
                "ca_bundle".into(),
                copy(bundle.get_ref(), "tls/preview-ca.pem", 0o644)?.into(),
            );
        }
        homeserver.insert("url_previews".into(), table.into());
    }

    if !p.bridges.is_empty() {
        let mut registrations = Vec::new();
        for (n, bridge) in p.bridges.iter().enumerate() {
            // The tokens in it are the bridge's keys: readable to the node only.
            let path = copy(
                bridge.registration.get_ref(),
                &format!("bridges/bridge-{n}.yaml"),
                0o600,
            )?;
            registrations.push(toml::Value::from(path));
        }
        homeserver.insert("appservices".into(), registrations.into());
    }

    let mut vault = toml::Table::new();
    vault.insert("key_file".into(), format!("/{ETC}/vault.key").into());
    if let Some(retention) = &p.retention {
        vault.insert("retention".into(), retention.get_ref().clone().into());
    }
    if let Some(organisation) = &p.organisation {
        vault.insert("organisation".into(), organisation.get_ref().clone().into());
    }
    let management = &p.management;
    if !management.networks.is_empty() {
        let mut console = toml::Table::new();
        console.insert(
            "listen".into(),
            format!("0.0.0.0:{}", management.port()).into(),
        );
        root.insert("console".into(), console.into());
    }
    root.insert("node".into(), node.into());
    root.insert("homeserver".into(), homeserver.into());
    root.insert("tls".into(), tls.into());
    root.insert("vault".into(), vault.into());
    if let Some(backup) = &p.backup {
        root.insert("backup".into(), backup.get_ref().clone().into());
    }
    let digest = archipel_backup::sha256_hex(text);
    let rendered = format!(
        "# Written by `archipel provision apply` from a provisioning file with\n\
         # SHA-256 {digest}.\n\
         # Change the provisioning file and apply it again rather than this file.\n\n{}",
        toml::to_string(&root).context("rendering the node configuration")?
    );
    let config_path = format!("/{ETC}/archipel.toml");
    // The node reads it exactly so; anything it would refuse stops here.
    let config = Config::parse(&rendered, Path::new(&config_path))?;
    files.push(Planned {
        path: config_path,
        contents: rendered.into_bytes(),
        mode: 0o640,
    });

    let hostname = p.machine.hostname.get_ref().clone();
    files.push(Planned {
        path: format!("/{ETC}/system/hostname"),
        contents: format!("{hostname}\n").into_bytes(),
        mode: 0o644,
    });
    files.push(Planned {
        path: format!("/{ETC}/system/20-archipel.network"),
        contents: network_unit(p).into_bytes(),
        mode: 0o644,
    });
    files.push(Planned {
        path: format!("/{ETC}/{MANAGEMENT_RULES}"),
        contents: management_rules(p).into_bytes(),
        mode: 0o644,
    });
    files.push(Planned {
        path: format!("/{ETC}/system/50-archipel-time.conf"),
        contents: time_servers(p).into_bytes(),
        mode: 0o644,
    });
    Ok(Plan {
        files,
        hostname,
        admins: p
            .admins
            .iter()
            .map(|a| AdminEntry {
                user: a.user.get_ref().clone(),
                password_hash: a.password_hash.as_ref().map(|h| h.get_ref().clone()),
                setup_token: a.setup_token.as_ref().map(|t| t.get_ref().clone()),
            })
            .collect(),
        config,
    })
}

/// The firewall's management sets (declared in the image's
/// `nftables.conf`), filled with the management network and port: the
/// only addresses that reach the console. Empty, the console is closed.
fn management_rules(p: &Provisioning) -> String {
    let management = &p.management;
    let mut rules = String::from(
        "# Written by `archipel provision apply`: the management network, which\n\
         # alone reaches the web console (the image's nftables.conf declares the sets).\n\
         flush set inet archipel management\n\
         flush set inet archipel management_port\n",
    );
    if !management.networks.is_empty() {
        let networks: Vec<&str> = management
            .networks
            .iter()
            .map(|n| n.get_ref().as_str())
            .collect();
        rules.push_str(&format!(
            "add element inet archipel management {{ {} }}\n\
             add element inet archipel management_port {{ {} }}\n",
            networks.join(", "),
            management.port()
        ));
    }
    rules
}

/// Loads the management rules into the running firewall, if it is the
/// image's (a machine without Archipel's nftables table keeps its own).
/// At every boot: the firewall starts with the sets empty.
fn load_management_rules(path: &Path) -> Result<Outcome> {
    let ours = std::process::Command::new("nft")
        .args(["list", "set", "inet", "archipel", "management"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !ours {
        return Ok(Outcome::Unchanged);
    }
    let loaded = std::process::Command::new("nft")
        .arg("-f")
        .arg(path)
        .output()
        .context("running nft")?;
    if !loaded.status.success() {
        bail!(
            "loading {} into the firewall: {}",
            path.display(),
            String::from_utf8_lossy(&loaded.stderr).trim()
        );
    }
    Ok(Outcome::Changed)
}

/// The systemd-networkd unit for the wired interfaces, or for the one
/// with `network.mac` (the others keep the image's DHCP default).
fn network_unit(p: &Provisioning) -> String {
    let matching = match &p.network.mac {
        Some(mac) => format!("MACAddress={}", mac.get_ref().to_ascii_lowercase()),
        None => "Name=en* eth*".to_owned(),
    };
    let mut unit =
        format!("# Written by `archipel provision apply`.\n[Match]\n{matching}\n\n[Network]\n");
    match p.network.mode {
        NetworkMode::Dhcp => unit.push_str("DHCP=yes\n"),
        NetworkMode::Static => {
            if let Some(address) = &p.network.address {
                unit.push_str(&format!("Address={}\n", address.get_ref()));
            }
            if let Some(gateway) = &p.network.gateway {
                unit.push_str(&format!("Gateway={}\n", gateway.get_ref()));
            }
        }
    }
    for dns in &p.network.dns {
        unit.push_str(&format!("DNS={}\n", dns.get_ref()));
    }
    unit
}

/// The systemd-timesyncd drop-in; without servers, those from DHCP.
fn time_servers(p: &Provisioning) -> String {
    let servers: Vec<&str> = p
        .machine
        .time_servers
        .iter()
        .map(|s| s.get_ref().as_str())
        .collect();
    let mut conf = String::from("# Written by `archipel provision apply`.\n[Time]\n");
    if !servers.is_empty() {
        conf.push_str(&format!("NTP={}\n", servers.join(" ")));
    }
    conf
}

/// A node's server name is fixed once its data exists.
fn check_server_name(data_dir: &Path, config: &Config) -> Result<()> {
    let wanted = config.homeserver.server_name.as_str();
    match crate::config::read_server_name(data_dir) {
        Some(existing) if existing != wanted => bail!(
            "`server.name` is {wanted}, but this node's data belongs to {existing}: a server name cannot change"
        ),
        _ => Ok(()),
    }
}

/// Writes `contents` to `path` with `mode` unless it is there already:
/// through a temporary file, synced and renamed, so a crash leaves the old
/// file or the new one.
fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<Outcome> {
    let outcome = match std::fs::read(path) {
        Ok(existing) => {
            let same_mode =
                std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
            if existing == contents && same_mode {
                return Ok(Outcome::Unchanged);
            }
            Outcome::Changed
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Created,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let dir = path.parent().context("a file path has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".provision-")
        .tempfile_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    temporary
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    temporary.write_all(contents)?;
    temporary.as_file().sync_all()?;
    temporary
        .persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(outcome)
}

/// The archive's key: made once; an existing key is only checked.
fn vault_key(path: &Path) -> Result<Outcome> {
    let existed = path.exists();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    archipel_vault::seal::VaultKey::load_or_generate(path)?;
    Ok(if existed {
        Outcome::Unchanged
    } else {
        Outcome::Created
    })
}

fn set_hostname(name: &str) -> Result<Outcome> {
    let current = nix::unistd::gethostname()
        .context("reading the host name")?
        .to_string_lossy()
        .into_owned();
    if current == name {
        return Ok(Outcome::Unchanged);
    }
    nix::unistd::sethostname(name).with_context(|| format!("setting the host name to {name}"))?;
    Ok(Outcome::Changed)
}

/// Creates the administrators that do not exist yet: on the node's data,
/// or through the running node.
fn admins(config: &Config, admins: Vec<AdminEntry>) -> Result<Vec<Change>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let _entered = rt.enter();
    let output = match node::open(config) {
        Ok(node) => {
            let services = &node.homeserver.services;
            let here = Node {
                config,
                services,
                vault: &node.vault,
            };
            let actor = Actor::this_process(Origin::Provisioning);
            let changes = rt.block_on(ensure_admins(here, &actor, admins))?;
            services.store.flush()?;
            return Ok(changes);
        }
        Err(e) if e.is::<node::Running>() => {
            admin::ask(config, &admin::Request::ProvisionAdmins(admins))?
        }
        Err(e) => return Err(e),
    };
    output
        .lines()
        .map(|line| serde_json::from_str(line).context("the node's answer"))
        .collect()
}

/// Creates each administrator that does not exist (and has no pending
/// setup token): from its password hash, or as a one-time setup token.
/// Each creation, or its failure, is recorded in the vault's log as done
/// by `actor` (an apply that changes nothing records nothing: it runs at
/// every boot).
pub async fn ensure_admins(
    node: Node<'_>,
    actor: &Actor,
    admins: Vec<AdminEntry>,
) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for entry in admins {
        let id = ruma::UserId::parse_with_server_name(
            entry.user.as_str(),
            &node.config.homeserver.server_name,
        )
        .with_context(|| format!("`{}` is not a valid user name", entry.user))?;
        let users = &node.services.users;
        let outcome = if users.exists(&id)? || users.setup_token_for(&id)?.is_some() {
            Outcome::Unchanged
        } else {
            match (entry.password_hash, entry.setup_token) {
                (Some(hash), _) => accounts::create_admin_hashed(node, actor, &id, hash).await?,
                (None, Some(token)) => {
                    accounts::create_setup_token(node, actor, &id, &token).await?
                }
                (None, None) => bail!("{id}: neither a password hash nor a setup token"),
            }
            Outcome::Created
        };
        changes.push(Change {
            what: format!("administrator {id}"),
            outcome,
        });
    }
    Ok(changes)
}
