//! End to end on the directory target: create, list, verify, restore; wrong
//! keys; tampering; a full disk.

mod common;

use std::fs;
use std::sync::atomic::Ordering;

use age::secrecy::ExposeSecret as _;
use archipel_backup::{
    BackupName, DecryptionKey, DirTarget, Encryption, Error, NoProgress, PartsCheck, SecretString,
    Unlock, create, list, read_manifest, restore, verify, verify_parts,
};
use common::*;

fn identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

fn key_for(identity: &age::x25519::Identity) -> DecryptionKey {
    DecryptionKey::parse_identity_file(identity.to_string().expose_secret())
        .expect("identity parses")
}

fn recipients(identities: &[&age::x25519::Identity]) -> Encryption {
    let texts: Vec<String> = identities
        .iter()
        .map(|i| i.to_public().to_string())
        .collect();
    Encryption::to_recipients(&texts).expect("recipients parse")
}

#[test]
fn round_trip_through_a_directory() {
    let work = tempfile::tempdir().expect("temp dir");
    let sources = make_node(&work.path().join("node"), 50 << 20);
    let store = work.path().join("usb");
    fs::create_dir(&store).expect("target dir");
    let target = DirTarget::new(&store).expect("target");
    let operator = identity();
    let progress = CountingProgress::default();

    let info = create(
        &sources,
        &options(recipients(&[&operator]), "2026-05-12T02:00:00Z"),
        &target,
        &progress,
    )
    .expect("create");
    assert_eq!(info.name.as_str(), "archipel-20260512T020000Z");
    let total = progress.total.load(Ordering::Relaxed);
    assert!(total > 50 << 20, "total {total}");
    assert_eq!(
        progress.advanced.load(Ordering::Relaxed),
        total,
        "progress reaches the total"
    );
    assert_eq!(
        dir_names(&store),
        [
            "archipel-20260512T020000Z.manifest.age",
            "archipel-20260512T020000Z.recipients.txt",
            "archipel-20260512T020000Z.tar.zst.age"
        ]
    );
    let sidecar = fs::read_to_string(store.join("archipel-20260512T020000Z.recipients.txt"))
        .expect("sidecar");
    assert_eq!(sidecar.trim(), operator.to_public().to_string());

    let backups = list(&target).expect("list");
    assert_eq!(backups.len(), 1);
    assert!(backups[0].complete);
    assert_eq!(backups[0].archive_size, Some(info.archive_size));
    assert_eq!(
        backups[0].created(),
        "2026-05-12T02:00:00Z".parse().expect("time")
    );

    let key = key_for(&operator);
    let node = node_key().verifying_key();
    let unlock = Unlock::new(&key).trusting(&node);
    let manifest = read_manifest(&target, &info.name, &unlock).expect("manifest");
    assert_eq!(manifest.server_name, SERVER_NAME);
    assert_eq!(
        manifest.metadata["vault_checkpoint"],
        "bzk.archipel.test/vault\n42\nq6b1c0ffee=\n"
    );
    assert_eq!(manifest.recipients, vec![operator.to_public().to_string()]);
    let key_entry = manifest
        .entries
        .iter()
        .find(|e| e.path == "signing.key")
        .expect("key entry");
    assert_eq!(key_entry.mode, 0o600);
    assert!(
        manifest
            .entries
            .iter()
            .any(|e| e.path == "media/zz/empty" && e.size == 0)
    );
    assert!(manifest.entries.iter().any(|e| e.path == "media/empty-dir"));

    let checked = verify(&target, &info.name, &unlock, &progress).expect("verify");
    assert_eq!(checked.bytes, manifest.total_bytes);
    assert_eq!(
        checked.files,
        manifest
            .entries
            .iter()
            .filter(|e| e.kind == archipel_backup::EntryKind::File)
            .count() as u64
    );
    assert_eq!(
        progress.advanced.load(Ordering::Relaxed),
        manifest.total_bytes
    );

    let restored = work.path().join("restored/data");
    fs::create_dir(work.path().join("restored")).expect("parent");
    restore(&target, &info.name, &unlock, &restored, None, &NoProgress).expect("restore");
    assert_restored(&sources, &restored);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        fs::metadata(&restored)
            .expect("restored")
            .permissions()
            .mode()
            & 0o777,
        0o700,
        "the restored folder is private"
    );
    assert_eq!(
        dir_names(&work.path().join("restored")),
        ["data"],
        "no staging directory is left"
    );
}

#[test]
fn restore_refuses_a_non_empty_destination_and_a_failed_check_switches_nothing() {
    let work = tempfile::tempdir().expect("temp dir");
    let sources = make_node(&work.path().join("node"), 10_000);
    let store = work.path().join("usb");
    fs::create_dir(&store).expect("target dir");
    let target = DirTarget::new(&store).expect("target");
    let operator = identity();
    let info = create(
        &sources,
        &options(recipients(&[&operator]), "2026-05-12T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create");
    let key = key_for(&operator);
    let unlock = Unlock::new(&key);

    let occupied = work.path().join("occupied");
    write(&occupied.join("keep-me"), b"existing data", 0o644);
    let error = restore(&target, &info.name, &unlock, &occupied, None, &NoProgress)
        .expect_err("non-empty destination");
    assert!(matches!(error, Error::Destination { .. }), "{error}");
    assert!(error.to_string().contains("not empty"), "{error}");
    assert_eq!(dir_names(&occupied), ["keep-me"]);

    // The caller's check (the vault verifying its log) sees the restored
    // data in the staging directory; its refusal switches nothing.
    let empty = work.path().join("empty");
    fs::create_dir(&empty).expect("empty destination");
    let saw_key = std::sync::atomic::AtomicBool::new(false);
    let check = |staging: &std::path::Path| -> Result<(), String> {
        saw_key.store(staging.join("signing.key").is_file(), Ordering::Relaxed);
        Err("vault log does not verify".to_owned())
    };
    let error = restore(
        &target,
        &info.name,
        &unlock,
        &empty,
        Some(&check),
        &NoProgress,
    )
    .expect_err("check refuses");
    assert!(matches!(error, Error::RestoreCheck(_)), "{error}");
    assert!(
        saw_key.load(Ordering::Relaxed),
        "the check ran on the restored data"
    );
    assert!(dir_names(&empty).is_empty());
    assert_eq!(
        dir_names(work.path()),
        ["empty", "node", "occupied", "usb"],
        "no staging directory is left"
    );

    // An empty directory is a fine destination.
    restore(&target, &info.name, &unlock, &empty, None, &NoProgress)
        .expect("restore into an empty directory");
    assert_restored(&sources, &empty);
}

#[test]
fn verify_unpacks_only_the_parts_the_caller_checks_and_removes_them() {
    let work = tempfile::tempdir().expect("temp dir");
    let sources = make_node(&work.path().join("node"), 10_000);
    let store = work.path().join("usb");
    fs::create_dir(&store).expect("target dir");
    let target = DirTarget::new(&store).expect("target");
    let operator = identity();
    let info = create(
        &sources,
        &options(recipients(&[&operator]), "2026-05-12T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create");
    let key = key_for(&operator);
    let unlock = Unlock::new(&key);
    let scratch_in = work.path().join("scratch");
    fs::create_dir(&scratch_in).expect("scratch parent");

    let seen = std::sync::Mutex::new(Vec::new());
    let check = |dir: &std::path::Path| -> Result<(), String> {
        seen.lock()
            .expect("lock")
            .extend(tree(dir).into_keys().map(|p| p.display().to_string()));
        Ok(())
    };
    let parts = PartsCheck {
        parts: &["vault/db", "signing.key"],
        scratch_in: &scratch_in,
        check: &check,
    };
    verify_parts(&target, &info.name, &unlock, &parts, &NoProgress).expect("verify");
    let mut seen = seen.into_inner().expect("lock");
    seen.sort();
    assert_eq!(
        seen,
        [
            "signing.key",
            "vault",
            "vault/db",
            "vault/db/000004.sst",
            "vault/db/CURRENT"
        ]
    );
    assert!(dir_names(&scratch_in).is_empty(), "the scratch is removed");

    let refuse = |_: &std::path::Path| -> Result<(), String> { Err("log root differs".into()) };
    let parts = PartsCheck {
        parts: &["vault/db"],
        scratch_in: &scratch_in,
        check: &refuse,
    };
    let error = verify_parts(&target, &info.name, &unlock, &parts, &NoProgress)
        .expect_err("the check refuses");
    assert!(matches!(error, Error::ContentCheck(_)), "{error}");
    assert!(error.to_string().contains("log root differs"), "{error}");
    assert!(dir_names(&scratch_in).is_empty(), "the scratch is removed");
}

#[test]
fn a_wrong_key_is_told_the_recipients() {
    let work = tempfile::tempdir().expect("temp dir");
    let sources = make_node(&work.path().join("node"), 1000);
    let target = DirTarget::new(work.path()).expect("target");
    let (first, second, stranger) = (identity(), identity(), identity());
    let info = create(
        &sources,
        &options(recipients(&[&first, &second]), "2026-05-12T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create");

    let key = key_for(&stranger);
    let error =
        verify(&target, &info.name, &Unlock::new(&key), &NoProgress).expect_err("stranger's key");
    let text = error.to_string();
    assert!(matches!(error, Error::WrongKey { .. }), "{text}");
    assert!(
        text.contains(&first.to_public().to_string())
            && text.contains(&second.to_public().to_string()),
        "{text}"
    );
    assert!(
        text.contains("archipel-20260512T020000Z.manifest.age"),
        "{text}"
    );

    // Either recipient's key opens it.
    let key = key_for(&second);
    verify(&target, &info.name, &Unlock::new(&key), &NoProgress).expect("second recipient");
}

#[test]
fn a_passphrase_recovery_copy_opens_with_the_passphrase_only() {
    let work = tempfile::tempdir().expect("temp dir");
    let sources = make_node(&work.path().join("node"), 100_000);
    let store = work.path().join("usb");
    fs::create_dir(&store).expect("target dir");
    let target = DirTarget::new(&store).expect("target");
    let passphrase = || SecretString::from("correct horse battery staple".to_owned());
    // A low scrypt work factor keeps the test quick; the default is about a second.
    let encryption = Encryption::Passphrase {
        passphrase: passphrase(),
        work_factor: Some(10),
    };
    let info = create(
        &sources,
        &options(encryption, "2026-05-12T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create");

    let key = DecryptionKey::from_passphrase(passphrase());
    let restored = work.path().join("restored");
    restore(
        &target,
        &info.name,
        &Unlock::new(&key),
        &restored,
        None,
        &NoProgress,
    )
    .expect("restore");
    assert_restored(&sources, &restored);

    let wrong = DecryptionKey::from_passphrase(SecretString::from("wrong".to_owned()));
    let error = verify(&target, &info.name, &Unlock::new(&wrong), &NoProgress)
        .expect_err("wrong passphrase");
    assert!(matches!(error, Error::WrongPassphrase { .. }), "{error}");

    let key = key_for(&identity());
    let error =
        verify(&target, &info.name, &Unlock::new(&key), &NoProgress).expect_err("an identity");
    assert!(error.to_string().contains("passphrase"), "{error}");
}

struct Tampered {
    work: tempfile::TempDir,
    target: DirTarget,
    name: BackupName,
    key: DecryptionKey,
}

fn backup_to_tamper_with() -> Tampered {
    let work = tempfile::tempdir().expect("temp dir");
    let sources = make_node(&work.path().join("node"), 2 << 20);
    let store = work.path().join("usb");
    fs::create_dir(&store).expect("target dir");
    let target = DirTarget::new(&store).expect("target");
    let operator = identity();
    let info = create(
        &sources,
        &options(recipients(&[&operator]), "2026-05-12T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create");
    Tampered {
        work,
        target,
        name: info.name,
        key: key_for(&operator),
    }
}

impl Tampered {
    fn object(&self, suffix: &str) -> std::path::PathBuf {
        self.target.root().join(format!("{}{suffix}", self.name))
    }

    /// Verify and restore must both fail; the destination (an empty
    /// directory) stays empty and no staging directory is left.
    fn expect_detected(&self) -> Error {
        let unlock = Unlock::new(&self.key);
        let error =
            verify(&self.target, &self.name, &unlock, &NoProgress).expect_err("verify detects it");
        let destination = self.work.path().join("restore-here");
        fs::create_dir(&destination).expect("destination");
        let restore_error = restore(
            &self.target,
            &self.name,
            &unlock,
            &destination,
            None,
            &NoProgress,
        )
        .expect_err("restore detects it");
        assert_eq!(restore_error.to_string(), error.to_string());
        assert!(
            dir_names(&destination).is_empty(),
            "the destination is untouched"
        );
        assert_eq!(
            dir_names(self.work.path()),
            ["node", "restore-here", "usb"],
            "no staging directory is left"
        );
        error
    }
}

#[test]
fn a_flipped_byte_in_the_archive_is_named() {
    let tampered = backup_to_tamper_with();
    let path = tampered.object(".tar.zst.age");
    let mut bytes = fs::read(&path).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&path, bytes).expect("write back");
    let error = tampered.expect_detected();
    assert!(matches!(error, Error::Damaged { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("archipel-20260512T020000Z.tar.zst.age"),
        "{error}"
    );
}

#[test]
fn a_truncated_archive_is_named() {
    let tampered = backup_to_tamper_with();
    let path = tampered.object(".tar.zst.age");
    let length = fs::metadata(&path).expect("archive").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(length - 1000)
        .expect("truncate");
    let error = tampered.expect_detected();
    assert!(matches!(error, Error::Truncated { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("archipel-20260512T020000Z.tar.zst.age is truncated"),
        "{error}"
    );
}

#[test]
fn an_altered_manifest_object_is_named() {
    let tampered = backup_to_tamper_with();
    let path = tampered.object(".manifest.age");
    let mut bytes = fs::read(&path).expect("manifest object");
    let last = bytes.len() - 20;
    bytes[last] ^= 0x80;
    fs::write(&path, bytes).expect("write back");
    let error = tampered.expect_detected();
    assert!(matches!(error, Error::Damaged { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("archipel-20260512T020000Z.manifest.age"),
        "{error}"
    );
}

/// Someone with write access to the target knows the public recipients and
/// can encrypt a manifest of their own: the signature gives it away.
#[test]
fn a_rewritten_manifest_fails_its_signature() {
    let tampered = backup_to_tamper_with();
    let path = tampered.object(".manifest.age");
    let plaintext = {
        let file = fs::File::open(&path).expect("manifest object");
        let DecryptionKey::Identities(identities) = &tampered.key else {
            unreachable!("an identity key")
        };
        let decryptor = age::Decryptor::new(file).expect("age header");
        let mut reader = decryptor
            .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
            .expect("decrypts");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut reader, &mut text).expect("reads");
        text
    };
    let edited = plaintext.replace(SERVER_NAME, "evil.archipel.test");
    assert_ne!(edited, plaintext);
    let recipients = fs::read_to_string(tampered.object(".recipients.txt")).expect("sidecar");
    let encryption = Encryption::to_recipients(&[recipients.trim()]).expect("recipient");
    let Encryption::Recipients(recipients) = encryption else {
        unreachable!("recipients")
    };
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .expect("encryptor");
    let mut output = Vec::new();
    let mut writer = encryptor.wrap_output(&mut output).expect("wrap");
    std::io::Write::write_all(&mut writer, edited.as_bytes()).expect("encrypt");
    writer.finish().expect("finish");
    fs::write(&path, output).expect("replace manifest object");

    let error = tampered.expect_detected();
    assert!(matches!(error, Error::BadSignature { .. }), "{error}");
    assert!(
        error.to_string().contains("archipel-20260512T020000Z"),
        "{error}"
    );
}

#[test]
fn a_backup_signed_by_another_key_is_refused_when_the_node_key_is_given() {
    let work = tempfile::tempdir().expect("temp dir");
    let sources = make_node(&work.path().join("node"), 1000);
    let target = DirTarget::new(work.path()).expect("target");
    let operator = identity();
    let mut options = options(recipients(&[&operator]), "2026-05-12T02:00:00Z");
    options.signing_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let info = create(&sources, &options, &target, &NoProgress).expect("create");
    let key = key_for(&operator);
    let node = node_key().verifying_key();
    let error = verify(
        &target,
        &info.name,
        &Unlock::new(&key).trusting(&node),
        &NoProgress,
    )
    .expect_err("other signer");
    assert!(matches!(error, Error::UntrustedSigner { .. }), "{error}");
    let checked = verify(&target, &info.name, &Unlock::new(&key), &NoProgress).expect("any signer");
    use base64::Engine as _;
    let other = base64::engine::general_purpose::STANDARD
        .encode(options.signing_key.verifying_key().as_bytes());
    assert_eq!(
        checked.signer, other,
        "without a trusted key the signer is reported"
    );
}

#[test]
fn a_missing_manifest_object_is_an_incomplete_backup() {
    let tampered = backup_to_tamper_with();
    fs::remove_file(tampered.object(".manifest.age")).expect("remove");
    let backups = list(&tampered.target).expect("list");
    assert!(!backups[0].complete);
    let error = verify(
        &tampered.target,
        &tampered.name,
        &Unlock::new(&tampered.key),
        &NoProgress,
    )
    .expect_err("incomplete");
    assert!(matches!(error, Error::Incomplete { .. }), "{error}");
    let unknown = BackupName::parse("archipel-20300101T000000Z").expect("name");
    let error = verify(
        &tampered.target,
        &unknown,
        &Unlock::new(&tampered.key),
        &NoProgress,
    )
    .expect_err("unknown");
    assert!(matches!(error, Error::NotFound { .. }), "{error}");
}

#[test]
fn a_failing_source_leaves_nothing_in_the_target() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut sources = make_node(&work.path().join("node"), 3 << 20);
    // Reading /proc/self/mem at offset 0 fails with EIO: a disk error in
    // the middle of a backup, after megabytes went to the target.
    sources.push(archipel_backup::Source::new("unreadable", "/proc/self/mem"));
    let store = work.path().join("usb");
    fs::create_dir(&store).expect("target dir");
    let target = DirTarget::new(&store).expect("target");
    let error = create(
        &sources,
        &options(recipients(&[&identity()]), "2026-05-12T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect_err("the source fails");
    assert!(matches!(error, Error::SourceRead { .. }), "{error}");
    assert!(error.to_string().contains("/proc/self/mem"), "{error}");
    assert!(
        dir_names(&store).is_empty(),
        "left behind: {:?}",
        dir_names(&store)
    );
}

/// A 1 MiB tmpfs stands in for a full USB stick. Mounting needs root (the
/// development machines and CI run as root); without it the test fails and
/// says so.
#[test]
fn a_full_target_fails_the_backup_and_keeps_earlier_ones() {
    let work = tempfile::tempdir().expect("temp dir");
    let mount = work.path().join("small-disk");
    fs::create_dir(&mount).expect("mount point");
    let _mounted = Tmpfs::mount(&mount, "1m");
    let target = DirTarget::new(&mount).expect("target");
    let operator = identity();

    let small = work.path().join("small");
    write(
        &small.join("config.toml"),
        b"server_name = \"bzk.archipel.test\"\n",
        0o644,
    );
    let small_sources = [archipel_backup::Source::new(
        "archipel.toml",
        small.join("config.toml"),
    )];
    let first = create(
        &small_sources,
        &options(recipients(&[&operator]), "2026-05-12T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("a small backup fits");
    let before = dir_names(&mount);

    let sources = make_node(&work.path().join("node"), 3 << 20);
    let error = create(
        &sources,
        &options(recipients(&[&operator]), "2026-05-13T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect_err("the disk is full");
    let text = error.to_string();
    assert!(matches!(error, Error::Target { .. }), "{text}");
    assert!(
        text.contains("archipel-20260513T020000Z.tar.zst.age")
            && text.contains("the target is full"),
        "{text}"
    );

    assert_eq!(
        dir_names(&mount),
        before,
        "nothing of the failed backup is left, not even a hidden file"
    );
    let backups = list(&target).expect("list");
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].name, first.name);
    let key = key_for(&operator);
    verify(&target, &first.name, &Unlock::new(&key), &NoProgress)
        .expect("the earlier backup still verifies");
}

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Self {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a {size} tmpfs at {} and needs root (CAP_SYS_ADMIN); mount failed: {status}",
            path.display()
        );
        Self(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn prune_keeps_the_policy_and_removes_leftovers_of_failed_runs() {
    let work = tempfile::tempdir().expect("temp dir");
    let config = work.path().join("archipel.toml");
    write(&config, b"server_name = \"bzk.archipel.test\"\n", 0o644);
    let sources = [archipel_backup::Source::new("archipel.toml", &config)];
    let store = work.path().join("usb");
    fs::create_dir(&store).expect("target dir");
    let target = DirTarget::new(&store).expect("target");
    let operator = identity();
    let times = [
        "2026-05-01T02:00:00Z",
        "2026-05-02T02:00:00Z",
        "2026-05-03T02:00:00Z",
        "2026-05-03T14:00:00Z",
        "2026-05-04T02:00:00Z",
    ];
    for time in times {
        create(
            &sources,
            &options(recipients(&[&operator]), time),
            &target,
            &NoProgress,
        )
        .expect("create");
    }
    // The run of 3 May 14:00 failed before its manifest object was written.
    fs::remove_file(store.join("archipel-20260503T140000Z.manifest.age")).expect("remove manifest");

    let policy = archipel_backup::RetentionPolicy {
        keep_daily: 2,
        ..Default::default()
    };
    let now = "2026-05-05T00:00:00Z".parse().expect("time");
    let report = archipel_backup::prune(&target, &policy, &jiff::tz::TimeZone::UTC, now, false)
        .expect("prune");
    assert_eq!(
        report.deleted,
        ["archipel-20260501T020000Z", "archipel-20260502T020000Z"]
    );
    assert_eq!(report.leftovers, ["archipel-20260503T140000Z"]);
    let left: Vec<String> = list(&target)
        .expect("list")
        .into_iter()
        .map(|b| format!("{} {}", b.name, b.complete))
        .collect();
    assert_eq!(
        left,
        [
            "archipel-20260503T020000Z true",
            "archipel-20260504T020000Z true"
        ]
    );
    assert_eq!(
        dir_names(&store).len(),
        6,
        "three objects each: {:?}",
        dir_names(&store)
    );

    // A run still in progress (newer than every complete backup) is left alone.
    create(
        &sources,
        &options(recipients(&[&operator]), "2026-05-05T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create");
    fs::remove_file(store.join("archipel-20260505T020000Z.manifest.age")).expect("remove manifest");
    let report = archipel_backup::prune(&target, &policy, &jiff::tz::TimeZone::UTC, now, false)
        .expect("prune");
    assert!(
        report.deleted.is_empty() && report.leftovers.is_empty(),
        "{report:?}"
    );
}

#[test]
fn a_restored_file_is_never_setuid_setgid_or_sticky() {
    use std::os::unix::fs::PermissionsExt as _;
    let work = tempfile::tempdir().expect("temp dir");
    let sources = make_node(&work.path().join("node"), 1 << 10);
    common::write(
        &work.path().join("node/media/ab/special"),
        b"#!/bin/sh\n",
        0o7755,
    );
    let store = work.path().join("usb");
    fs::create_dir(&store).expect("target dir");
    let target = DirTarget::new(&store).expect("target");
    let operator = identity();
    let info = create(
        &sources,
        &options(recipients(&[&operator]), "2026-05-12T02:00:00Z"),
        &target,
        &NoProgress,
    )
    .expect("create");
    let key = key_for(&operator);
    let node = node_key().verifying_key();
    let unlock = Unlock::new(&key).trusting(&node);
    let manifest = read_manifest(&target, &info.name, &unlock).expect("manifest");
    let recorded = manifest
        .entries
        .iter()
        .find(|e| e.path == "media/ab/special")
        .expect("the file is backed up");
    assert_eq!(recorded.mode, 0o7755, "the manifest records what was there");

    let restored = work.path().join("restored");
    restore(&target, &info.name, &unlock, &restored, None, &NoProgress).expect("restore");
    let mode = fs::metadata(restored.join("media/ab/special"))
        .expect("restored")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "restored with mode {mode:o}");
}
