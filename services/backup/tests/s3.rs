//! End to end against a real S3-compatible server on 127.0.0.1: `s3s-fs`
//! (see `common/s3_server.rs` for where it comes from).

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret as _;
use archipel_backup::{
    DecryptionKey, Encryption, Error, NoProgress, Progress, RetentionPolicy, S3Config, S3Target,
    Source, Unlock, create, list, prune, restore, verify,
};
use common::*;

#[path = "common/s3_server.rs"]
mod s3_server;

use s3_server::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, stored_files};

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
    let target = S3Target::new(&config_for(server.port, "ministerie-bzk/node-1")).expect("target");
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
    let target = S3Target::new(&config_for(server.port, "")).expect("target");
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
    let mut config = config_for(server.port, "");
    config.secret_access_key = "not-the-secret".to_owned();
    let target = S3Target::new(&config).expect("target");
    let error = list(&target).expect_err("refused");
    assert!(matches!(error, Error::Target { .. }), "{error}");
}
