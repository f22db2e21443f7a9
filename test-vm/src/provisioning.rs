//! Provisioning folders for the test machines, written as ministry IT would
//! write them (see `provisioning/examples/`).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::Result;

use crate::pki::TestCa;

/// The administrator every test machine is provisioned with.
pub const ADMIN: &str = "beheer";

/// One machine's provisioning.
pub struct Spec<'a> {
    pub server_name: &'a str,
    pub hostname: &'a str,
    /// The administrator's one-time setup token.
    pub setup_token: &'a str,
    /// A static address (with prefix) on the NIC with this MAC; the other
    /// NICs keep DHCP.
    pub static_nic: Option<(&'a str, &'a str)>,
    /// Federation peers: server name and `ip:port`.
    pub peers: &'a [(&'a str, &'a str)],
    pub time_servers: &'a [&'a str],
    /// The management network that reaches the web console on 9443.
    pub management: Option<&'a str>,
}

/// Writes `provisioning.toml`, the machine's certificate and the CA bundle
/// into `dir`.
pub fn write(dir: &Path, ca: &TestCa, spec: &Spec) -> Result<()> {
    fs::create_dir_all(dir)?;
    ca.issue(spec.server_name, &dir.join("tls"))?;
    fs::write(dir.join("ca.pem"), ca.pem())?;
    let mut text = format!(
        "# A test machine.\nversion = 1\n\n[machine]\nhostname = \"{}\"\ntime_servers = {:?}\n\n[network]\n",
        spec.hostname, spec.time_servers
    );
    match spec.static_nic {
        Some((mac, address)) => writeln!(
            text,
            "mode = \"static\"\nmac = \"{mac}\"\naddress = \"{address}\""
        )?,
        None => writeln!(text, "mode = \"dhcp\"")?,
    }
    writeln!(
        text,
        "\n[server]\nname = \"{}\"\n\n[tls]\ncertificate = \"tls/fullchain.pem\"\nprivate_key = \"tls/key.pem\"",
        spec.server_name
    )?;
    if !spec.peers.is_empty() {
        writeln!(text, "\n[federation]\nca_bundle = \"ca.pem\"")?;
        for (server_name, address) in spec.peers {
            writeln!(
                text,
                "\n[[federation.peers]]\nserver_name = \"{server_name}\"\naddress = \"{address}\""
            )?;
        }
    }
    if let Some(network) = spec.management {
        writeln!(text, "\n[management]\nnetworks = [\"{network}\"]")?;
    }
    writeln!(
        text,
        "\n[[admins]]\nuser = \"{ADMIN}\"\nsetup_token = \"{}\"",
        spec.setup_token
    )?;
    fs::write(dir.join("provisioning.toml"), text)?;
    Ok(())
}
