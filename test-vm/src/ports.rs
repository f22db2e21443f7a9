//! Loopback ports for listeners that a test names before the process that
//! binds them starts: qemu's port forwards, a node's federation port,
//! Synapse, Pebble.
//!
//! A port the kernel hands out for `bind(0)` and that is then closed may be
//! handed out again, or taken by an outgoing connection, before that
//! process binds it. So these ports come from below the ephemeral range,
//! which the kernel never hands out, and each is reserved for the life of
//! the test process by a lock on a file named after it, which concurrent
//! test processes respect.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

const FIRST: u16 = 20_000;
/// Up to 31999: Linux's ephemeral range starts at 32768.
const SPAN: u16 = 12_000;

/// A loopback port no other test process holds and nothing listens on,
/// reserved until this process exits.
pub fn reserve() -> io::Result<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());
    let locks = std::env::temp_dir().join("archipel-test-ports");
    std::fs::create_dir_all(&locks)?;
    // Processes start at different offsets, so they seldom contend.
    let start = u16::try_from(std::process::id() % u32::from(SPAN)).expect("below SPAN");
    for _ in 0..SPAN {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) % SPAN;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(locks.join(port.to_string()))?;
        if lock.try_lock().is_ok() && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock);
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free loopback port from {FIRST} to {}", FIRST + SPAN - 1),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_ports_differ_and_are_free() {
        let ports: Vec<u16> = (0..20).map(|_| super::reserve().expect("a port")).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            assert!((super::FIRST..32_768).contains(&port));
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("a reserved port is free");
        }
    }
}
