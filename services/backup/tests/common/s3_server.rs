//! A real S3-compatible server for tests: `s3s-fs` (crates.io) on a free
//! loopback port, killed on drop. Shared by the backup crate's tests and
//! the appliance's end-to-end tests (included with `#[path]`). Install it
//! once with
//!
//! ```text
//! cargo install s3s-fs --version 0.14.1 --locked --features binary --root /var/tmp/archipel-tools
//! ```
//!
//! It is looked for in `$ARCHIPEL_S3S_FS`, then
//! `/var/tmp/archipel-tools/bin/s3s-fs`, then `$PATH`; a test that needs it
//! fails (it does not skip) when it is missing.

#![allow(dead_code)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "archipel-test";
pub const SECRET_KEY: &str = "archipel-test-secret";
pub const BUCKET: &str = "backups";

fn s3s_fs_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ARCHIPEL_S3S_FS") {
        return PathBuf::from(path);
    }
    let installed = PathBuf::from("/var/tmp/archipel-tools/bin/s3s-fs");
    if installed.is_file() {
        return installed;
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|path| path.is_file())
    }) {
        return found;
    }
    panic!(
        "the S3 tests need the s3s-fs server: install it with \
         `cargo install s3s-fs --version 0.14.1 --locked --features binary --root /var/tmp/archipel-tools` \
         or point ARCHIPEL_S3S_FS at the binary"
    );
}

/// A running s3s-fs on a free loopback port, killed on drop.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
}

impl S3Server {
    pub fn start(root: &Path) -> Self {
        fs::create_dir_all(root.join(BUCKET)).expect("bucket directory");
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("free port")
            .local_addr()
            .expect("address")
            .port();
        let child = Command::new(s3s_fs_binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let server = Self {
            child,
            port,
            root: root.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on {address} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Every file the server stores: objects, and its own bookkeeping
    /// (uploaded parts of unfinished multipart uploads, `.upload_id-*`).
    pub fn stored_files(&self) -> Vec<String> {
        stored_files(&self.root)
    }
}

pub fn stored_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read the server's directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(root)
                        .expect("under root")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    found
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
