//! RFC 6962 (RFC 9162 §2.1) Merkle tree hashing, proofs and their verification.
//!
//! Hashes: leaf `SHA-256(0x00 || leaf)`, interior node `SHA-256(0x01 || left || right)`,
//! the empty tree `SHA-256("")`. The tree over `n` leaves splits at the largest
//! power of two below `n`.
//!
//! The log stores every *complete* subtree hash: node `(level, index)` covers
//! leaves `[index * 2^level, (index + 1) * 2^level)`. Any subtree a proof needs
//! is then one stored node, or (on the right edge) a fold of O(log n) of them,
//! so proofs cost O(log n) reads. [`NodeSource`] is that storage; [`Frontier`]
//! is the in-memory right edge that appends need.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where complete subtree hashes come from: the store, or memory in tests.
pub trait NodeSource {
    type Error;
    /// The hash of the complete subtree `(level, index)`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// `MTH(D[start..end])` for a range that proofs use: aligned, complete on the
/// left, possibly partial at the right edge.
pub fn subtree_hash<S: NodeSource>(source: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let width = end - start;
    if width.is_power_of_two() && start.is_multiple_of(width) {
        return source.node(width.trailing_zeros(), start >> width.trailing_zeros());
    }
    let k = split_point(width);
    let left = subtree_hash(source, start, start + k)?;
    let right = subtree_hash(source, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root<S: NodeSource>(source: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        Ok(empty_root())
    } else {
        subtree_hash(source, 0, size)
    }
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1).
pub fn inclusion_proof<S: NodeSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    assert!(index < size, "leaf {index} is not in a tree of {size}");
    let mut path = Vec::new();
    let (mut start, mut end, mut index) = (0, size, index);
    // Walk down from the root, collecting siblings; the path lists them bottom-up.
    while end - start > 1 {
        let k = split_point(end - start);
        if index < k {
            path.push(subtree_hash(source, start + k, end)?);
            end = start + k;
        } else {
            path.push(subtree_hash(source, start, start + k)?);
            start += k;
            index -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new`
/// leaves (RFC 9162 §2.1.4.1).
pub fn consistency_proof<S: NodeSource>(
    source: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    assert!(old <= new, "consistency from {old} to a smaller {new}");
    let mut path = Vec::new();
    if old == 0 || old == new {
        return Ok(path);
    }
    let (mut start, mut end, mut m, mut whole) = (0, new, old, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                path.push(subtree_hash(source, start, end)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            path.push(subtree_hash(source, start + k, end)?);
            end = start + k;
        } else {
            path.push(subtree_hash(source, start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    path.reverse();
    Ok(path)
}

/// Checks an audit path (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Checks a consistency proof between two roots (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// The right edge of the tree: the roots of its maximal complete subtrees,
/// largest (leftmost) first. Enough to append and to compute the root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    /// Rebuilds the frontier of a stored tree of `size` leaves.
    pub fn load<S: NodeSource>(source: &S, size: u64) -> Result<Self, S::Error> {
        let mut peaks = Vec::new();
        let mut start = 0;
        for level in (0..64).rev() {
            if size & (1 << level) != 0 {
                peaks.push((level, source.node(level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(Self { size, peaks })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. Returns every complete subtree it completes,
    /// as `(level, index, hash)`, the leaf itself first: what to store.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut created = vec![(0, self.size, leaf)];
        let (mut level, mut hash) = (0u32, leaf);
        while let Some(&(peak_level, peak)) = self.peaks.last() {
            if peak_level != level {
                break;
            }
            self.peaks.pop();
            hash = node_hash(&peak, &hash);
            level += 1;
            created.push((level, self.size >> level, hash));
        }
        self.peaks.push((level, hash));
        self.size += 1;
        created
    }

    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, mut acc)) = peaks.next() else {
            return empty_root();
        };
        for (_, peak) in peaks {
            acc = node_hash(peak, &acc);
        }
        acc
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Complete subtree hashes in memory, filled by a [`Frontier`].
    #[derive(Default)]
    pub(crate) struct MemoryNodes {
        pub nodes: HashMap<(u32, u64), Hash>,
        pub frontier: Frontier,
    }

    impl MemoryNodes {
        pub fn push(&mut self, leaf: &[u8]) {
            for (level, index, hash) in self.frontier.append(leaf_hash(leaf)) {
                self.nodes.insert((level, index), hash);
            }
        }
    }

    impl NodeSource for MemoryNodes {
        type Error = std::convert::Infallible;
        fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
            Ok(*self.nodes.get(&(level, index)).expect("node stored"))
        }
    }

    /// MTH straight from the RFC's definition.
    fn reference_root(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn hex(hash: &Hash) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    fn tree(leaves: &[Vec<u8>]) -> MemoryNodes {
        let mut nodes = MemoryNodes::default();
        for leaf in leaves {
            nodes.push(leaf);
        }
        nodes
    }

    #[test]
    fn roots_match_the_rfc_6962_reference_vectors() {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let expected = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let mut nodes = MemoryNodes::default();
        assert_eq!(hex(&nodes.frontier.root()), expected[0]);
        for (n, input) in inputs.iter().enumerate() {
            nodes.push(input);
            assert_eq!(
                hex(&nodes.frontier.root()),
                expected[n + 1],
                "size {}",
                n + 1
            );
            let stored = root(&nodes, n as u64 + 1).expect("root");
            assert_eq!(hex(&stored), expected[n + 1], "stored root, size {}", n + 1);
        }
    }

    #[test]
    fn every_prefix_root_matches_the_definition() {
        let all = leaves(70);
        let nodes = tree(&all);
        for size in 0..=all.len() {
            assert_eq!(
                root(&nodes, size as u64).expect("root"),
                reference_root(&all[..size]),
                "size {size}"
            );
        }
    }

    #[test]
    fn frontier_reloads_from_stored_nodes() {
        let all = leaves(45);
        let nodes = tree(&all);
        for size in 0..=all.len() as u64 {
            let mut partial = MemoryNodes::default();
            for leaf in &all[..size as usize] {
                partial.push(leaf);
            }
            assert_eq!(
                Frontier::load(&nodes, size).expect("load"),
                partial.frontier,
                "size {size}"
            );
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        let all = leaves(40);
        let nodes = tree(&all);
        for size in 1..=all.len() as u64 {
            let root = reference_root(&all[..size as usize]);
            for index in 0..size {
                let proof = inclusion_proof(&nodes, index, size).expect("proof");
                let leaf = leaf_hash(&all[index as usize]);
                assert!(verify_inclusion(index, size, &leaf, &proof, &root));
                assert!(!verify_inclusion(
                    index,
                    size,
                    &leaf_hash(b"forged"),
                    &proof,
                    &root
                ));
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(!verify_inclusion(other, size, &leaf, &proof, &root));
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewrite_does_not() {
        let all = leaves(40);
        let nodes = tree(&all);
        for new in 1..=all.len() as u64 {
            let new_root = reference_root(&all[..new as usize]);
            for old in 1..=new {
                let old_root = reference_root(&all[..old as usize]);
                let proof = consistency_proof(&nodes, old, new).expect("proof");
                assert!(
                    verify_consistency(old, new, &old_root, &new_root, &proof),
                    "{old} -> {new}"
                );
                let mut rewritten = all[..old as usize].to_vec();
                rewritten[0] = b"rewritten".to_vec();
                let forged_root = reference_root(&rewritten);
                assert!(!verify_consistency(
                    old,
                    new,
                    &forged_root,
                    &new_root,
                    &proof
                ));
            }
        }
    }
}
