//! TLS for the client API and federation: the listener's certificate, and
//! the trust roots for peers (a configured CA bundle, never the public web
//! PKI). [`crate::listen`] serves TLS connections.

use std::{path::Path, sync::Arc};

use rustls::{ClientConfig, RootCertStore, ServerConfig, crypto::ring};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{Error, Result};

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::internal(format!("reading {what} {}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(Error::internal(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

/// The listener's TLS settings from a PEM chain and key.
pub fn server_config(certificate: &Path, private_key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = read_certificates(certificate, "TLS certificate")?;
    let key = PrivateKeyDer::from_pem_file(private_key).map_err(|e| {
        Error::internal(format!(
            "reading TLS private key {}: {e}",
            private_key.display()
        ))
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            Error::internal(format!(
                "TLS certificate {} does not match its key {}: {e}",
                certificate.display(),
                private_key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Outgoing TLS that trusts exactly the certificate authorities in `ca_bundle`.
pub fn client_config(ca_bundle: &Path) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca_bundle, "CA bundle")? {
        roots.add(certificate).map_err(|e| {
            Error::internal(format!(
                "CA bundle {}: unusable certificate: {e}",
                ca_bundle.display()
            ))
        })?;
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
