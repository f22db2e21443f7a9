//! Key encoding.
//!
//! Composite keys join their parts with `0xFF`, a byte that never occurs in
//! UTF-8, so a prefix scan over `a 0xFF` never matches a key that starts with
//! a longer `ab`. Integers are big-endian so byte order is numeric order.

/// The separator between the parts of a composite key.
pub const SEP: u8 = 0xFF;

/// Joins string-like parts into one key: `a 0xFF b 0xFF c`.
pub fn key<const N: usize>(parts: [&[u8]; N]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut out = Vec::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.extend_from_slice(part);
    }
    out
}

/// Like [`key`], with a trailing separator: the prefix of every key under these parts.
pub fn prefix<const N: usize>(parts: [&[u8]; N]) -> Vec<u8> {
    let mut out = key(parts);
    out.push(SEP);
    out
}

/// Appends a big-endian `u64` to a key (after a separator).
pub fn with_u64(mut key: Vec<u8>, n: u64) -> Vec<u8> {
    key.push(SEP);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// Encodes a `u64` as eight big-endian bytes.
pub fn u64_bytes(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Decodes eight big-endian bytes, or `None` if the slice has another length.
pub fn parse_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Splits a composite key into its parts. Integer parts (from [`with_u64`])
/// may contain `0xFF`, so only use this on keys whose parts are all strings,
/// or use [`split_last_u64`] first.
pub fn split(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    key.split(|b| *b == SEP)
}

/// Splits off a trailing `SEP + u64` written by [`with_u64`].
pub fn split_last_u64(key: &[u8]) -> Option<(&[u8], u64)> {
    if key.len() < 9 || key[key.len() - 9] != SEP {
        return None;
    }
    let (head, tail) = key.split_at(key.len() - 9);
    Some((head, parse_u64(&tail[1..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_collide() {
        let ab = key([b"ab", b"x"]);
        assert!(!ab.starts_with(&prefix([b"a"])));
        assert!(ab.starts_with(&prefix([b"ab"])));
    }

    #[test]
    fn u64_suffix_round_trips_even_with_ff_bytes() {
        let k = with_u64(key([b"room", b"user"]), 0xFF00_FF00_FFFF_FFFF);
        let (head, n) = split_last_u64(&k).expect("has u64 suffix");
        assert_eq!(head, key([b"room", b"user"]).as_slice());
        assert_eq!(n, 0xFF00_FF00_FFFF_FFFF);
    }

    #[test]
    fn big_endian_sorts_numerically() {
        assert!(u64_bytes(2) < u64_bytes(256));
    }
}
