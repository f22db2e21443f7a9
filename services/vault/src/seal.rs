//! Sealing: every record's content under its own data key, every data key
//! wrapped by the vault key.
//!
//! XChaCha20-Poly1305 with random 192-bit nonces, so nonces never need a
//! counter that could repeat after a restore. Data keys and nonces come from
//! the thread's CSPRNG (`rand::thread_rng`: ChaCha, seeded and reseeded from
//! the operating system), which costs no system call per record; the vault
//! key straight from the operating system. The associated data binds each
//! ciphertext to its record number and purpose: a sealed blob moved to another
//! record does not open.
//!
//! Destroying a record's wrapped data key is crypto-shredding: the ciphertext
//! (and so the Merkle log over it) stays, the content is gone.

use std::path::Path;

use chacha20poly1305::{
    AeadCore, KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, OsRng, Payload},
};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::{Error, Result};

/// Bytes of nonce in front of every sealed blob.
pub const NONCE_LEN: usize = 24;

/// A 256-bit key that wraps data keys. Never logged, zeroed on drop.
pub struct VaultKey(Zeroizing<[u8; 32]>);

/// The key of one record, fresh for each.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl VaultKey {
    pub fn generate() -> Self {
        Self(Zeroizing::new(
            XChaCha20Poly1305::generate_key(&mut OsRng).into(),
        ))
    }

    /// Reads a key file: 64 hex digits (whitespace around them ignored).
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Error::Key(format!("reading the vault key {}: {e}", path.display()))
            })?);
        let digits = text.trim();
        let mut key = Zeroizing::new([0u8; 32]);
        if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Key(format!(
                "the vault key {} must hold 64 hex digits (a 256-bit key)",
                path.display()
            )));
        }
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
                .map_err(|e| Error::Key(format!("vault key {}: {e}", path.display())))?;
        }
        Ok(Self(key))
    }

    /// Loads the key at `path`, generating it (mode 0600) if the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate();
        let mut hex = Zeroizing::new(String::with_capacity(65));
        for byte in key.0.iter() {
            hex.push_str(&format!("{byte:02x}"));
        }
        hex.push('\n');
        archipel_store::create_durably(path, hex.as_bytes(), 0o600)
            .map_err(|e| Error::Key(format!("creating the vault key {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "generated a new vault key");
        Ok(key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }

    /// A key for another store that must open only with the vault key (the
    /// archive member's crypto store), one per `purpose`. One-way: it tells
    /// nothing of the vault key.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let mut hash = Sha256::new();
        hash.update(b"archipel vault key derivation v1\0");
        hash.update(purpose.as_bytes());
        hash.update(b"\0");
        hash.update(self.0.as_slice());
        Zeroizing::new(hash.finalize().into())
    }

    /// Wraps a record's data key, bound to that record.
    pub fn wrap(&self, key: &DataKey, seq: u64) -> Vec<u8> {
        seal_with(&self.cipher(), key.0.as_slice(), &aad("datakey", seq, 0))
    }

    /// Wraps the data key of a stored media file, bound to its name.
    pub(crate) fn wrap_named(&self, key: &DataKey, name: &str) -> Vec<u8> {
        seal_with(
            &self.cipher(),
            key.0.as_slice(),
            &named_aad("mediakey", name),
        )
    }

    pub(crate) fn unwrap_named(&self, wrapped: &[u8], name: &str) -> Result<DataKey> {
        let plain = Zeroizing::new(
            open_with(&self.cipher(), wrapped, &named_aad("mediakey", name)).map_err(|_| {
                Error::Key(format!(
                    "the key of media file {name} does not open with this vault key"
                ))
            })?,
        );
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| {
            Error::Corrupt(format!("media file {name}: the key has the wrong length"))
        })?;
        Ok(DataKey(Zeroizing::new(key)))
    }

    pub fn unwrap(&self, wrapped: &[u8], seq: u64) -> Result<DataKey> {
        let mut plain = open_with(&self.cipher(), wrapped, &aad("datakey", seq, 0))
            .map_err(|_| Error::Key(format!(
                "the data key of record {seq} does not open with this vault key (wrong key, or the record was altered)"
            )))?;
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| {
            Error::Corrupt(format!("record {seq}: the data key has the wrong length"))
        })?;
        plain.zeroize();
        Ok(DataKey(Zeroizing::new(key)))
    }
}

impl DataKey {
    pub fn generate() -> Self {
        Self(Zeroizing::new(
            XChaCha20Poly1305::generate_key(&mut rand::thread_rng()).into(),
        ))
    }

    /// A data key handed out in an export, to open that one record.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key, for an export (which shows the content anyway).
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }

    /// Seals part `part` of record `seq` (0: the event, 1..: its media).
    pub fn seal(&self, plain: &[u8], seq: u64, part: u32) -> Vec<u8> {
        seal_with(&self.cipher(), plain, &aad("content", seq, part))
    }

    /// Seals `plain` again with the nonce of an earlier sealing (the first
    /// bytes of `sealed`): the same key, nonce and place give the same bytes,
    /// so a checker holding the data key and the plaintext can show that
    /// they are what the sealed copy held, without the copy. `None` if
    /// `sealed` is too short to carry a nonce.
    pub fn reseal(
        &self,
        plain: &[u8],
        sealed_prefix: &[u8],
        seq: u64,
        part: u32,
    ) -> Option<Vec<u8>> {
        let nonce = XNonce::from_slice(sealed_prefix.get(..NONCE_LEN)?);
        Some(seal_with_nonce(
            &self.cipher(),
            nonce,
            plain,
            &aad("content", seq, part),
        ))
    }

    pub fn open(&self, sealed: &[u8], seq: u64, part: u32) -> Result<Vec<u8>> {
        open_with(&self.cipher(), sealed, &aad("content", seq, part)).map_err(|_| {
            Error::Corrupt(format!(
                "record {seq}: sealed content part {part} does not open (altered)"
            ))
        })
    }
}

fn named_aad(purpose: &str, name: &str) -> Vec<u8> {
    format!("archipel-vault/v1 {purpose} {name}").into_bytes()
}

/// Plaintext bytes per chunk of a sealed stream.
pub const STREAM_CHUNK: usize = 64 * 1024;
/// Bytes of nonce prefix in front of a sealed stream (XChaCha20's 24 less
/// the STREAM construction's 5-byte counter and flag).
const STREAM_PREFIX: usize = 19;
/// Bytes a chunk grows by when sealed (its Poly1305 tag).
const TAG_LEN: usize = 16;

impl DataKey {
    /// Seals everything `input` yields into `output` in chunks (the STREAM
    /// construction over XChaCha20-Poly1305: chunks cannot be reordered,
    /// dropped or cut short unseen), never holding more than one chunk.
    /// `inspect` sees each plaintext chunk and then its sealed form.
    pub fn seal_stream(
        &self,
        input: &mut dyn std::io::Read,
        output: &mut dyn std::io::Write,
        inspect: &mut dyn FnMut(&[u8], &[u8]),
    ) -> std::io::Result<()> {
        use chacha20poly1305::aead::stream::EncryptorBE32;
        let mut prefix = [0u8; STREAM_PREFIX];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut prefix);
        output.write_all(&prefix)?;
        inspect(&[], &prefix);
        let mut encryptor = EncryptorBE32::from_aead(self.cipher(), (&prefix).into());
        let mut chunk = Zeroizing::new(vec![0u8; STREAM_CHUNK]);
        let mut next = Zeroizing::new(vec![0u8; STREAM_CHUNK]);
        let mut len = read_full(input, &mut chunk)?;
        let failed = |_| std::io::Error::other("sealing a chunk");
        // A full chunk is the last one only if nothing follows it.
        while len == STREAM_CHUNK {
            let next_len = read_full(input, &mut next)?;
            if next_len == 0 {
                break;
            }
            let sealed = encryptor
                .encrypt_next(Payload {
                    msg: &chunk[..len],
                    aad: STREAM_AAD,
                })
                .map_err(failed)?;
            output.write_all(&sealed)?;
            inspect(&chunk[..len], &sealed);
            std::mem::swap(&mut chunk, &mut next);
            len = next_len;
        }
        let sealed = encryptor
            .encrypt_last(Payload {
                msg: &chunk[..len],
                aad: STREAM_AAD,
            })
            .map_err(failed)?;
        output.write_all(&sealed)?;
        inspect(&chunk[..len], &sealed);
        Ok(())
    }

    /// Opens a stream [`DataKey::seal_stream`] sealed, writing the
    /// plaintext to `output` chunk by chunk. Fails, with what was written
    /// so far to be discarded, if anything was altered, reordered or cut.
    pub fn open_stream(
        &self,
        input: &mut dyn std::io::Read,
        output: &mut dyn std::io::Write,
    ) -> Result<()> {
        use chacha20poly1305::aead::stream::DecryptorBE32;
        let altered = || Error::Corrupt("a sealed media file does not open (altered)".into());
        let io = |e: std::io::Error| Error::io("reading a sealed media file".to_owned(), e);
        let mut prefix = [0u8; STREAM_PREFIX];
        if read_full(input, &mut prefix).map_err(io)? != STREAM_PREFIX {
            return Err(altered());
        }
        let mut decryptor = DecryptorBE32::from_aead(self.cipher(), (&prefix).into());
        let mut chunk = vec![0u8; STREAM_CHUNK + TAG_LEN];
        let mut next = vec![0u8; STREAM_CHUNK + TAG_LEN];
        let mut len = read_full(input, &mut chunk).map_err(io)?;
        let written = |e| Error::io("writing an opened media file", e);
        while len == chunk.len() {
            let next_len = read_full(input, &mut next).map_err(io)?;
            if next_len == 0 {
                break;
            }
            let plain = Zeroizing::new(
                decryptor
                    .decrypt_next(Payload {
                        msg: &chunk[..len],
                        aad: STREAM_AAD,
                    })
                    .map_err(|_| altered())?,
            );
            output.write_all(&plain).map_err(written)?;
            std::mem::swap(&mut chunk, &mut next);
            len = next_len;
        }
        let plain = Zeroizing::new(
            decryptor
                .decrypt_last(Payload {
                    msg: &chunk[..len],
                    aad: STREAM_AAD,
                })
                .map_err(|_| altered())?,
        );
        output.write_all(&plain).map_err(written)
    }
}

/// The associated data of every chunk of a sealed media stream.
const STREAM_AAD: &[u8] = b"archipel-vault/v1 media stream";

/// Reads until `buf` is full or the input ends; returns how much it read.
fn read_full(input: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn aad(purpose: &str, seq: u64, part: u32) -> Vec<u8> {
    format!("archipel-vault/v1 {purpose} {seq} {part}").into_bytes()
}

/// `nonce || ciphertext-with-tag`.
fn seal_with(cipher: &XChaCha20Poly1305, plain: &[u8], aad: &[u8]) -> Vec<u8> {
    seal_with_nonce(
        cipher,
        &XChaCha20Poly1305::generate_nonce(&mut rand::thread_rng()),
        plain,
        aad,
    )
}

fn seal_with_nonce(
    cipher: &XChaCha20Poly1305,
    nonce: &XNonce,
    plain: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let ciphertext = cipher
        .encrypt(nonce, Payload { msg: plain, aad })
        .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    sealed: &[u8],
    aad: &[u8],
) -> std::result::Result<Vec<u8>, ()> {
    if sealed.len() < NONCE_LEN {
        return Err(());
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_opens_only_with_its_key_and_place() {
        let key = DataKey::generate();
        let sealed = key.seal(b"the minister's message", 7, 0);
        assert_eq!(
            key.open(&sealed, 7, 0).expect("opens"),
            b"the minister's message"
        );
        assert!(key.open(&sealed, 8, 0).is_err(), "moved to another record");
        assert!(key.open(&sealed, 7, 1).is_err(), "moved to another part");
        assert!(
            DataKey::generate().open(&sealed, 7, 0).is_err(),
            "another key"
        );
        let mut altered = sealed.clone();
        *altered.last_mut().expect("not empty") ^= 1;
        assert!(key.open(&altered, 7, 0).is_err(), "altered");
    }

    #[test]
    fn resealing_with_the_nonce_reproduces_the_sealed_bytes() {
        let key = DataKey::generate();
        let sealed = key.seal(b"minutes.pdf", 9, 1);
        let nonce = &sealed[..NONCE_LEN];
        assert_eq!(
            key.reseal(b"minutes.pdf", nonce, 9, 1),
            Some(sealed.clone())
        );
        assert_ne!(
            key.reseal(b"minutes.pdF", nonce, 9, 1),
            Some(sealed.clone())
        );
        assert_ne!(key.reseal(b"minutes.pdf", nonce, 9, 2), Some(sealed));
        assert_eq!(key.reseal(b"x", &[0; 3], 9, 1), None);
    }

    #[test]
    fn a_sealed_stream_opens_whole_and_only_unaltered() {
        let key = DataKey::generate();
        for size in [0, 10, STREAM_CHUNK, 2 * STREAM_CHUNK + 5] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut sealed = Vec::new();
            let mut seen = 0;
            key.seal_stream(&mut plain.as_slice(), &mut sealed, &mut |p, _| {
                seen += p.len()
            })
            .expect("seal");
            assert_eq!(seen, size);
            let mut opened = Vec::new();
            key.open_stream(&mut sealed.as_slice(), &mut opened)
                .expect("open");
            assert_eq!(opened, plain, "size {size}");
            // Cut short at a chunk boundary, or altered: refused.
            if size > STREAM_CHUNK {
                let cut = &sealed[..STREAM_PREFIX + STREAM_CHUNK + TAG_LEN];
                assert!(key.open_stream(&mut &cut[..], &mut Vec::new()).is_err());
            }
            let mut altered = sealed.clone();
            *altered.last_mut().expect("not empty") ^= 1;
            assert!(
                key.open_stream(&mut altered.as_slice(), &mut Vec::new())
                    .is_err()
            );
            assert!(
                DataKey::generate()
                    .open_stream(&mut sealed.as_slice(), &mut Vec::new())
                    .is_err()
            );
        }
    }

    #[test]
    fn data_keys_unwrap_only_with_the_vault_key() {
        let vault = VaultKey::generate();
        let data = DataKey::generate();
        let wrapped = vault.wrap(&data, 3);
        let sealed = data.seal(b"x", 3, 0);
        let unwrapped = vault.unwrap(&wrapped, 3).expect("unwraps");
        assert_eq!(unwrapped.open(&sealed, 3, 0).expect("opens"), b"x");
        assert!(vault.unwrap(&wrapped, 4).is_err());
        assert!(VaultKey::generate().unwrap(&wrapped, 3).is_err());
    }

    #[test]
    fn key_file_is_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vault.key");
        let first = VaultKey::load_or_generate(&path).expect("generates");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = VaultKey::load_or_generate(&path).expect("loads");
        assert_eq!(*first.0, *again.0);
    }

    #[test]
    fn a_malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vault.key");
        std::fs::write(&path, "not a key").expect("write");
        let err = VaultKey::load(&path).err().expect("refused").to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
