//! The node's own HTTPS: `[tls]` in the configuration. The client API is
//! served over TLS with certificate files, or with a certificate obtained
//! and renewed from an ACME directory (a ministry's internal CA) and cached
//! in the data folder. The federation listener uses the same certificate
//! unless it has its own files.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use rustls::{ServerConfig, crypto::ring};
use rustls_acme::{AcmeConfig, caches::DirCache};
use serde::Deserialize;

use crate::config::Config;

/// Where Debian keeps the system's trusted CAs, used for an ACME directory
/// without its own `ca_bundle`.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Where the client API answers over HTTPS, e.g. `0.0.0.0:443`. No
    /// HTTPS listener when unset.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain and its key...
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    /// ...or a certificate from an ACME directory.
    pub acme: Option<AcmeSettings>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSettings {
    /// The directory URL, `https://...`.
    pub directory: String,
    /// `mailto:` addresses for the ACME account.
    #[serde(default)]
    pub contact: Vec<String>,
    /// The CAs that sign the ACME server's own certificate; the system's
    /// trusted CAs when unset.
    pub ca_bundle: Option<PathBuf>,
    /// The names on the certificate; the server name when empty.
    #[serde(default)]
    pub domains: Vec<String>,
}

impl TlsConfig {
    pub fn validate(&self) -> Result<()> {
        let files = self.certificate.is_some() || self.private_key.is_some();
        if self.listen.is_none() {
            if files || self.acme.is_some() {
                bail!("`tls.listen` is required when [tls] has a certificate or [tls.acme]");
            }
            return Ok(());
        }
        match (&self.acme, &self.certificate, &self.private_key) {
            (Some(_), _, _) if files => {
                bail!("[tls]: give either certificate files or [tls.acme], not both")
            }
            (Some(acme), _, _) => acme.validate(),
            (None, Some(_), Some(_)) => Ok(()),
            (None, Some(_), None) => bail!("`tls.private_key` is required with `tls.certificate`"),
            (None, None, Some(_)) => bail!("`tls.certificate` is required with `tls.private_key`"),
            (None, None, None) => bail!(
                "`tls.listen` needs a certificate: `tls.certificate` and `tls.private_key`, or [tls.acme]"
            ),
        }
    }
}

impl AcmeSettings {
    fn validate(&self) -> Result<()> {
        if !self.directory.starts_with("https://") {
            bail!(
                "`tls.acme.directory` = {:?}: an ACME directory is an https:// URL",
                self.directory
            );
        }
        if let Some(bad) = self.contact.iter().find(|c| !c.starts_with("mailto:")) {
            bail!("`tls.acme.contact`: {bad:?} is not a mailto: address");
        }
        for domain in &self.domains {
            if <&ruma::ServerName>::try_from(domain.as_str()).is_err() || domain.contains(':') {
                bail!("`tls.acme.domains`: {domain:?} is not a host name");
            }
        }
        Ok(())
    }
}

/// The node's TLS: what its listeners hand out, and the task that keeps
/// an ACME certificate current.
pub struct NodeTls {
    pub server_config: Arc<ServerConfig>,
    pub listen: SocketAddr,
    acme: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for NodeTls {
    fn drop(&mut self) {
        if let Some(task) = &self.acme {
            task.abort();
        }
    }
}

/// Sets up `[tls]`: loads the certificate files, or starts obtaining (and
/// later renewing) a certificate from the ACME directory. `None` when the
/// node has no HTTPS listener.
pub fn start(config: &Config) -> Result<Option<NodeTls>> {
    let tls = &config.tls;
    let Some(listen) = tls.listen else {
        return Ok(None);
    };
    if let Some(acme) = &tls.acme {
        return start_acme(config, acme, listen).map(Some);
    }
    let (Some(certificate), Some(key)) = (&tls.certificate, &tls.private_key) else {
        bail!("`tls.listen` needs `tls.certificate` and `tls.private_key`, or [tls.acme]");
    };
    Ok(Some(NodeTls {
        server_config: archipel_homeserver::tls::server_config(certificate, key)?,
        listen,
        acme: None,
    }))
}

/// When the certificate the node serves expires, in seconds since the
/// epoch: the one in `tls.certificate`, or the newest cached from ACME.
/// `None` without `[tls]`, or before ACME issued one.
pub fn certificate_expiry(config: &Config) -> Result<Option<i64>> {
    let tls = &config.tls;
    let path = match (&tls.certificate, &tls.acme) {
        (Some(certificate), _) => Some(certificate.clone()),
        (None, Some(_)) => newest_cached_certificate(&config.node.data_dir.join("acme"))?,
        (None, None) => None,
    };
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // A cached ACME entry holds the private key before the chain: the
    // first certificate is the node's own.
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let pem = pem.with_context(|| format!("{}: not PEM", path.display()))?;
        if pem.label == "CERTIFICATE" {
            let certificate = pem
                .parse_x509()
                .map_err(|e| anyhow::anyhow!("{}: not a certificate: {e}", path.display()))?;
            return Ok(Some(certificate.validity().not_after.timestamp()));
        }
    }
    bail!("{}: holds no certificate", path.display())
}

/// The most recently written `cached_cert_*` file in rustls-acme's cache.
fn newest_cached_certificate(cache: &Path) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(cache) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", cache.display())),
    };
    let mut newest = None;
    for entry in entries {
        let entry = entry?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("cached_cert_")
        {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        if newest.as_ref().is_none_or(|(at, _)| modified > *at) {
            newest = Some((modified, entry.path()));
        }
    }
    Ok(newest.map(|(_, path)| path))
}

fn start_acme(config: &Config, acme: &AcmeSettings, listen: SocketAddr) -> Result<NodeTls> {
    let domains = if acme.domains.is_empty() {
        vec![config.homeserver.server_name.host().to_owned()]
    } else {
        acme.domains.clone()
    };
    let bundle = acme
        .ca_bundle
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let mut client = archipel_homeserver::tls::client_config(&bundle)
        .context("the CAs trusted for the ACME directory")?;
    // The ACME client speaks HTTP/1.1.
    client.alpn_protocols.clear();
    let cache = config.node.data_dir.join("acme");
    let mut state = AcmeConfig::new_with_client_config(&domains, Arc::new(client))
        .directory(&acme.directory)
        .contact(&acme.contact)
        .cache(DirCache::new(cache))
        .state();
    let mut server_config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS settings")?
        .with_no_client_auth()
        .with_cert_resolver(state.resolver());
    server_config.alpn_protocols = vec![
        b"h2".to_vec(),
        b"http/1.1".to_vec(),
        archipel_homeserver::tls::ACME_TLS_ALPN.to_vec(),
    ];
    let directory = acme.directory.clone();
    tracing::info!(%directory, domains = ?domains, "obtaining the TLS certificate over ACME");
    let task = tokio::spawn(async move {
        // The state does the ordering, renewing and caching as it is polled.
        while let Some(event) = state.next().await {
            match event {
                Ok(rustls_acme::EventOk::DeployedCachedCert) => {
                    tracing::info!("serving the TLS certificate cached from ACME");
                }
                Ok(rustls_acme::EventOk::DeployedNewCert) => {
                    tracing::info!(%directory, "obtained a new TLS certificate over ACME");
                }
                Ok(event) => tracing::debug!(?event, "ACME"),
                Err(e) => {
                    tracing::error!(%directory, error = %e, "ACME: no new certificate (retrying)");
                }
            }
        }
    });
    Ok(NodeTls {
        server_config: Arc::new(server_config),
        listen,
        acme: Some(task),
    })
}
