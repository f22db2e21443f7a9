//! TLS for the client API and federation: the listener's certificate, the trust roots for peers
//! (a configured CA bundle, never the public web PKI), and a listener that
//! hands axum finished TLS connections.

use std::{io, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rustls::{ClientConfig, RootCertStore, ServerConfig, crypto::ring};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

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

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener whose connections come out with their TLS handshake done.
///
/// Handshakes run in their own tasks, so a client that stalls its handshake
/// delays nobody else.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (send, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, go on.
                        tracing::warn!(error = %e, "accepting a TLS connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let send = send.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        // An ACME server validating a TLS-ALPN-01
                        // challenge: the handshake was the answer.
                        Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {
                            tracing::debug!(%peer, "answered an ACME TLS-ALPN-01 challenge");
                        }
                        Ok(Ok(tls)) => {
                            let _ = send.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
