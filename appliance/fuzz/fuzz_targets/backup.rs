//! Backups as `verify` and `restore` read them: the manifest object (JSON,
//! signatures, seal), the archive's tar stream after age and zstd, and
//! every entry's path, kind, size and hash against the manifest. The
//! harness encrypts to its own key and signs with its own node key, so the
//! input reaches past both; `raw_tar` sends bytes that are no tar at all.
#![no_main]

use std::io::Write as _;
use std::path::Path;

use arbitrary::Arbitrary;
use archipel_backup::{
    BackupName, DecryptionKey, DirTarget, Entry, EntryKind, Manifest, NoProgress, Seal, Unlock,
    restore, seal_manifest, sign_manifest, verify,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    entries: Vec<FuzzEntry>,
    /// Manifest entries the archive lacks, or entries the manifest lacks.
    extra_in_manifest: Vec<(String, u64)>,
    skip_in_manifest: Vec<u8>,
    raw_tar: Option<Vec<u8>>,
    /// The manifest object verbatim instead of the harness's.
    raw_manifest_object: Option<Vec<u8>>,
    /// Leave the signed manifest out of the archive.
    drop_manifest_entry: bool,
    restore: bool,
}

#[derive(Arbitrary, Debug)]
struct FuzzEntry {
    path: String,
    directory: bool,
    mode: u32,
    data: Vec<u8>,
    /// A wrong size or hash in the manifest.
    lie: Option<u64>,
}

struct Keys {
    identity: age::x25519::Identity,
    signing: ed25519_dalek::SigningKey,
}

static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| Keys {
    identity: age::x25519::Identity::generate(),
    signing: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
});

fn encrypt(plain: &[u8]) -> Vec<u8> {
    let recipient = KEYS.identity.to_public();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .expect("a recipient");
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).expect("in memory");
    writer.write_all(plain).expect("in memory");
    writer.finish().expect("in memory");
    out
}

fn tar_of(input: &Input, signed_manifest: Option<&[u8]>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in &input.entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        let data: &[u8] = if entry.directory {
            header.set_entry_type(tar::EntryType::Directory);
            &[]
        } else {
            &entry.data
        };
        header.set_size(data.len() as u64);
        // Paths the tar crate refuses (`..`, absolute) go in raw.
        if builder
            .append_data(&mut header.clone(), &entry.path, data)
            .is_err()
        {
            let bytes = entry.path.as_bytes();
            let name = &mut header.as_old_mut().name;
            let len = bytes.len().min(name.len());
            name[..len].copy_from_slice(&bytes[..len]);
            header.set_cksum();
            let _ = builder.append(&header, data);
        }
    }
    if let Some(signed) = signed_manifest {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o600);
        header.set_size(signed.len() as u64);
        let _ = builder.append_data(&mut header, archipel_backup::MANIFEST_ENTRY, signed);
    }
    builder.into_inner().unwrap_or_default()
}

fuzz_target!(|input: Input| {
    let name = BackupName::parse("archipel-20261204T120000Z").expect("a backup name");
    let mut entries: Vec<Entry> = input
        .entries
        .iter()
        .enumerate()
        .filter(|(i, _)| !input.skip_in_manifest.contains(&(*i as u8)))
        .map(|(_, entry)| Entry {
            path: entry.path.clone(),
            kind: if entry.directory {
                EntryKind::Dir
            } else {
                EntryKind::File
            },
            mode: entry.mode,
            size: entry.lie.unwrap_or(entry.data.len() as u64),
            sha256: (!entry.directory).then(|| match entry.lie {
                Some(lie) => archipel_backup::sha256_hex(&lie.to_le_bytes()),
                None => archipel_backup::sha256_hex(&entry.data),
            }),
        })
        .collect();
    for (path, size) in &input.extra_in_manifest {
        entries.push(Entry {
            path: path.clone(),
            kind: EntryKind::File,
            mode: 0o600,
            size: *size,
            sha256: Some(archipel_backup::sha256_hex(b"")),
        });
    }
    let manifest = Manifest {
        format: 1,
        name: name.to_string(),
        created: name.created(),
        server_name: "a.test".to_owned(),
        metadata: Default::default(),
        recipients: vec![KEYS.identity.to_public().to_string()],
        compression: "zstd".to_owned(),
        total_bytes: entries.iter().map(|e| e.size).fold(0, u64::saturating_add),
        entries,
    };
    let signed = sign_manifest(&manifest, &KEYS.signing);
    let tar = match &input.raw_tar {
        Some(raw) => raw.clone(),
        None => tar_of(&input, (!input.drop_manifest_entry).then_some(&signed[..])),
    };
    let archive = encrypt(&zstd::encode_all(&tar[..], 1).expect("in memory"));
    let seal = Seal {
        archive_object: name.archive_object(),
        archive_size: archive.len() as u64,
        signed_manifest_sha256: archipel_backup::sha256_hex(&signed),
    };
    let object = match &input.raw_manifest_object {
        Some(raw) => raw.clone(),
        None => seal_manifest(&signed, &seal, &KEYS.signing),
    };

    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = dir.path().join("target");
    std::fs::create_dir(&store).expect("the target folder");
    std::fs::write(store.join(name.archive_object()), &archive).expect("written");
    std::fs::write(store.join(name.manifest_object()), encrypt(&object)).expect("written");
    let target = DirTarget::new(&store).expect("a target");
    let key = DecryptionKey::Identities(vec![KEYS.identity.clone()]);
    let signer = KEYS.signing.verifying_key();
    let unlock = Unlock::new(&key).trusting(&signer);
    let result = if input.restore {
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).expect("the restore's parent");
        let destination = deep.join("restored");
        let restored = restore(&target, &name, &unlock, &destination, None, &NoProgress);
        if restored.is_err() {
            assert!(
                !destination.exists(),
                "a failed restore left {destination:?}"
            );
        }
        assert_only(dir.path(), &["a", "target"]);
        assert_only(&dir.path().join("a"), &["b"]);
        assert_only(&deep, if restored.is_ok() { &["restored"] } else { &[] });
        restored
    } else {
        verify(&target, &name, &unlock, &NoProgress)
    };
    if result.is_ok() && input.raw_tar.is_none() && input.raw_manifest_object.is_none() {
        // What checks out is what the manifest says, all of it.
        assert!(
            input.extra_in_manifest.is_empty(),
            "a listed entry was missing"
        );
        assert!(
            !input.drop_manifest_entry,
            "the signed manifest was missing"
        );
        assert!(
            input
                .skip_in_manifest
                .iter()
                .all(|i| usize::from(*i) >= input.entries.len()),
            "an entry the manifest lacks was accepted"
        );
        assert!(
            input.entries.iter().all(|e| e.directory || e.lie.is_none()),
            "a file with a wrong size or hash was accepted"
        );
    }
});

/// A restore writes nothing but its destination.
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("a folder of the harness")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, names, "in {dir:?}");
}
