//! Telling systemd how the node is doing (`Type=notify`, `WatchdogSec=`):
//! datagrams on the socket in `$NOTIFY_SOCKET`, as sd_notify(3) describes.
//! Outside systemd the variable is unset and nothing is sent.

use std::{
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    time::Duration,
};

/// Sends `state` (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, ...) to systemd,
/// if the node runs under it. Failures are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = notify_at(&path, state);
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "telling systemd");
    }
}

fn notify_at(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    // A leading `@` names a socket in the abstract namespace.
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

/// How often systemd wants to hear from the node (`$WATCHDOG_USEC`), if at all.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    // Ping at twice the rate systemd wants, as sd_watchdog_enabled(3) advises.
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_arrive_on_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        notify_at(path.as_os_str(), "READY=1").expect("sent");
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).expect("received");
        assert_eq!(&buffer[..n], b"READY=1");

        let name = format!("archipel-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
        let listener = UnixDatagram::bind_addr(&address).expect("bind abstract");
        notify_at(std::ffi::OsStr::new(&format!("@{name}")), "WATCHDOG=1").expect("sent");
        let n = listener.recv(&mut buffer).expect("received");
        assert_eq!(&buffer[..n], b"WATCHDOG=1");
    }
}
