//! Serving a router on a listener within bounds: a cap on open connections
//! (across all listeners, and per client address), a deadline for the TLS
//! handshake and for each request's headers (which also closes idle
//! keep-alive connections), and a stop that waits for open requests only
//! so long.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

use crate::tls::ACME_TLS_ALPN;

/// The bounds every listener of a node keeps.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Open connections on all listeners together.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_address: usize,
    /// How long a client may take to finish its TLS handshake, and to send
    /// a request's headers; an idle keep-alive connection is closed after
    /// it too.
    pub header_timeout: Duration,
    /// How long a stopping node lets open requests finish.
    pub stop_grace: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_address: 256,
            header_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// The connections open on a node's listeners, and who may open another.
pub struct Admission {
    bounds: Bounds,
    open: Arc<Semaphore>,
    per_address: parking_lot::Mutex<HashMap<IpAddr, usize>>,
    /// When a refusal was last logged (seconds since the epoch).
    warned: AtomicU64,
}

/// One admitted connection; dropping it makes room for another.
struct Admitted {
    admission: Arc<Admission>,
    address: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_address = self.admission.per_address.lock();
        if let Some(open) = per_address.get_mut(&self.address) {
            *open -= 1;
            if *open == 0 {
                per_address.remove(&self.address);
            }
        }
    }
}

impl Admission {
    pub fn new(bounds: Bounds) -> Arc<Self> {
        Arc::new(Self {
            open: Arc::new(Semaphore::new(bounds.max_connections)),
            bounds,
            per_address: parking_lot::Mutex::new(HashMap::new()),
            warned: AtomicU64::new(0),
        })
    }

    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.bounds.max_connections - self.open.available_permits()
    }

    fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Admitted> {
        let permit = self.open.clone().try_acquire_owned().ok();
        let Some(permit) = permit else {
            self.refused(address, "the node's");
            return None;
        };
        let mut per_address = self.per_address.lock();
        let open = per_address.entry(address).or_default();
        if *open >= self.bounds.max_per_address {
            drop(per_address);
            self.refused(address, "this address's");
            return None;
        }
        *open += 1;
        Some(Admitted {
            admission: self.clone(),
            address,
            _permit: permit,
        })
    }

    /// Logs a refusal, at most once a minute at warning level.
    fn refused(&self, address: IpAddr, whose: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.warned.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%address, open = self.open(), "refused a connection: {whose} connection limit is reached");
        } else {
            tracing::debug!(%address, "refused a connection: {whose} connection limit is reached");
        }
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until
/// `stop` says so; then lets open requests finish for the stop grace, and
/// cuts what is left.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    admission: Arc<Admission>,
    mut stop: watch::Receiver<bool>,
) {
    let tls = tls.map(TlsAcceptor::from);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Refused connections are closed at once, not left in the backlog.
        let Some(admitted) = admission.admit(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, tls, stop) = (router.clone(), tls.clone(), stop.clone());
        let bounds = admission.bounds().clone();
        connections.spawn(async move {
            let _admitted = admitted;
            match tls {
                None => connection(stream, peer, router, &bounds, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(bounds.header_timeout, acceptor.accept(stream)).await
                    {
                        // An ACME server validating a TLS-ALPN-01
                        // challenge: the handshake was the answer.
                        Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {
                            tracing::debug!(%peer, "answered an ACME TLS-ALPN-01 challenge");
                        }
                        Ok(Ok(tls)) => connection(tls, peer, router, &bounds, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
        // Forget the connections that ended.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let grace = admission.bounds().stop_grace + Duration::from_secs(1);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "stopping: cut the connections whose requests did not finish in time"
        );
    }
}

/// Serves HTTP/1 or HTTP/2 on one connection.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    bounds: &Bounds,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Handlers read the client's address as axum's `ConnectInfo`.
    let service = tower::ServiceExt::map_request(
        router,
        move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(bounds.header_timeout)
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(100);
    // hyper's header deadline starts once it knows HTTP/1 from HTTP/2,
    // which takes the first bytes: a client that sends none is cut here.
    let (io, spoke) = Spoke::new(io);
    let serving = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(serving);
    let silence = tokio::time::sleep(bounds.header_timeout);
    tokio::pin!(silence);
    let mut heard = false;
    loop {
        tokio::select! {
            _ = serving.as_mut() => return,
            () = &mut silence, if !heard => {
                if !spoke.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "closed a connection that sent nothing");
                    return;
                }
                heard = true;
            }
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    serving.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(bounds.stop_grace, serving).await;
}

/// A connection that notes when its client first sent something.
struct Spoke<I> {
    inner: I,
    spoke: Arc<std::sync::atomic::AtomicBool>,
}

impl<I> Spoke<I> {
    fn new(inner: I) -> (Self, Arc<std::sync::atomic::AtomicBool>) {
        let spoke = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            Self {
                inner,
                spoke: spoke.clone(),
            },
            spoke,
        )
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Spoke<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.spoke.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Spoke<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
