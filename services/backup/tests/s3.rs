//! End to end against a real S3-compatible server on 127.0.0.1: `s3s-fs`
//! (crates.io). Install it once with
//!
//! ```text
//! cargo install s3s-fs --version 0.14.1 --locked --features binary --root /var/tmp/archipel-tools
//! ```
//!
//! The tests look for it in `$ARCHIPEL_S3S_FS`, then
//! `/var/tmp/archipel-tools/bin/s3s-fs`, then `$PATH`, and fail (they do
//! not skip) when it is missing.

mod common;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret as _;
use archipel_backup::{
    DecryptionKey, Encryption, Error, NoProgress, Progress, RetentionPolicy, S3Config, S3Target,
    Source, Unlock, create, list, prune, restore, verify,
};
use common::*;

const ACCESS_KEY: &str = "archipel-test";
const SECRET_KEY: &str = "archipel-test-secret";
const BUCKET: &str = "backups";

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
struct S3Server {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl S3Server {
    fn start(root: &Path) -> Self {
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

    fn config(&self, prefix: &str) -> S3Config {
        config_for(self.port, prefix)
    }

    /// Every file the server stores: objects, and its own bookkeeping
    /// (uploaded parts of unfinished multipart uploads, `.upload_id-*`).
    fn stored_files(&self) -> Vec<String> {
        stored_files(&self.root)
    }
}

fn stored_files(root: &Path) -> Vec<String> {
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

fn config_for(port: u16, prefix: &str) -> S3Config {
    let mut config = S3Config::new(BUCKET, ACCESS_KEY, SECRET_KEY);
    config.endpoint = Some(format!("http://127.0.0.1:{port}"));
    config.allow_http = true;
    config.prefix = prefix.to_owned();
    // The smallest part S3 allows, so a test archive takes several parts.
    config.part_size = 5 << 20;
    config.max_retries = 1;
    config.request_timeout = Duration::from_secs(30);
    config
}

fn operator() -> (Encryption, DecryptionKey) {
    let identity = age::x25519::Identity::generate();
    let encryption =
        Encryption::to_recipients(&[identity.to_public().to_string()]).expect("recipient");
    let key =
        DecryptionKey::parse_identity_file(identity.to_string().expose_secret()).expect("identity");
    (encryption, key)
}

#[test]
fn round_trip_and_prune_through_s3() {
    let work = tempfile::tempdir().expect("temp dir");
    let server = S3Server::start(&work.path().join("s3"));
    let target = S3Target::new(&server.config("ministerie-bzk/node-1")).expect("target");
    assert_eq!(
        archipel_backup::Target::describe(&target),
        "s3://backups/ministerie-bzk/node-1"
    );
    // 22 MiB of random bytes do not compress: five parts of 5 MiB.
    let sources = make_node(&work.path().join("node"), 22 << 20);
    let (encryption, key) = operator();

    let first = create(
        &sources,
        &options(encryption, "2026-05-10T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create");
    assert!(
        first.archive_size > 20 << 20,
        "archive of {} bytes",
        first.archive_size
    );
    let (encryption, _) = operator();
    let small = [Source::new("archipel.toml", sources[4].path.clone())];
    let second = create(
        &small,
        &options(encryption, "2026-05-11T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create a second");

    let backups = list(&target).expect("list");
    assert_eq!(
        backups
            .iter()
            .map(|b| (b.name.clone(), b.complete))
            .collect::<Vec<_>>(),
        [(first.name.clone(), true), (second.name.clone(), true)]
    );
    assert_eq!(backups[0].archive_size, Some(first.archive_size));

    let node = node_key().verifying_key();
    let unlock = Unlock::new(&key).trusting(&node);
    let checked = verify(&target, &first.name, &unlock, &NoProgress).expect("verify");
    assert_eq!(checked.archive_size, first.archive_size);
    let restored = work.path().join("restored");
    restore(&target, &first.name, &unlock, &restored, None, &NoProgress).expect("restore");
    assert_restored(&sources, &restored);

    // Keep only the newest: the first backup goes, all three of its objects.
    let policy = RetentionPolicy {
        keep_last: 1,
        ..RetentionPolicy::default()
    };
    let now = "2026-05-12T00:00:00Z".parse().expect("time");
    let dry = prune(&target, &policy, &jiff::tz::TimeZone::UTC, now, true).expect("dry run");
    assert_eq!(dry.deleted, [first.name.to_string()]);
    assert_eq!(
        list(&target).expect("list").len(),
        2,
        "a dry run deletes nothing"
    );
    let report = prune(&target, &policy, &jiff::tz::TimeZone::UTC, now, false).expect("prune");
    assert_eq!(report.deleted, [first.name.to_string()]);
    assert_eq!(report.kept.len(), 1);
    let names: Vec<String> = list(&target)
        .expect("list")
        .into_iter()
        .map(|b| b.name.to_string())
        .collect();
    assert_eq!(names, [second.name.to_string()]);
    assert!(
        server
            .stored_files()
            .iter()
            .all(|file| !file.contains(first.name.as_str())),
        "{:?}",
        server.stored_files()
    );
}

/// Waits, when the failing source comes up, until the server holds an
/// uploaded part: the failure then strikes a multipart upload under way.
struct WaitForParts<'a> {
    root: &'a Path,
    saw_parts: std::sync::atomic::AtomicBool,
}

impl Progress for WaitForParts<'_> {
    fn entry(&self, path: &str) {
        if path != "unreadable" {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if stored_files(self.root)
                .iter()
                .any(|file| file.starts_with(".upload_id-") && file.contains(".part-"))
            {
                self.saw_parts
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_failed_backup_leaves_no_object_in_s3() {
    let work = tempfile::tempdir().expect("temp dir");
    let server = S3Server::start(&work.path().join("s3"));
    let target = S3Target::new(&server.config("")).expect("target");
    let (encryption, _) = operator();
    let mut sources = make_node(&work.path().join("node"), 30 << 20);
    // Reading /proc/self/mem at offset 0 fails with EIO: a disk error after
    // parts went up (zstd and the pipeline hold several MiB in flight).
    sources.push(Source::new("unreadable", "/proc/self/mem"));
    let progress = WaitForParts {
        root: &server.root,
        saw_parts: Default::default(),
    };
    let error = create(
        &sources,
        &options(encryption, "2026-05-10T02:00:00Z"),
        &target,
        &progress,
    )
    .expect_err("the source fails");
    assert!(matches!(error, Error::SourceRead { .. }), "{error}");
    assert!(
        progress
            .saw_parts
            .load(std::sync::atomic::Ordering::Relaxed),
        "no part was uploaded before the failure"
    );
    assert!(list(&target).expect("list").is_empty());
    let left: Vec<String> = server
        .stored_files()
        .into_iter()
        .filter(|file| file.contains("archipel-") || file.starts_with(".upload_id-"))
        .collect();
    assert!(left.is_empty(), "the aborted upload left {left:?}");
}

#[test]
fn an_unreachable_target_fails_visibly() {
    let work = tempfile::tempdir().expect("temp dir");
    // A port nobody listens on.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("free port")
        .local_addr()
        .expect("address")
        .port();
    let target = S3Target::new(&config_for(port, "")).expect("target");
    let (encryption, _) = operator();
    let sources = make_node(&work.path().join("node"), 1000);
    let error = create(
        &sources,
        &options(encryption, "2026-05-10T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect_err("unreachable");
    let text = error.to_string();
    assert!(matches!(error, Error::Target { .. }), "{text}");
    assert!(text.contains(&format!("s3://{BUCKET}")), "{text}");
}

#[test]
fn wrong_credentials_fail_visibly() {
    let work = tempfile::tempdir().expect("temp dir");
    let server = S3Server::start(&work.path().join("s3"));
    let mut config = server.config("");
    config.secret_access_key = "not-the-secret".to_owned();
    let target = S3Target::new(&config).expect("target");
    let error = list(&target).expect_err("refused");
    assert!(matches!(error, Error::Target { .. }), "{error}");
}
