use serde::Serialize;

use crate::Tree;

/// An atomic set of writes across tables.
///
/// Nothing is visible until [`crate::Store::commit`] returns, and then all of
/// it is, durably.
#[derive(Default)]
pub struct Batch {
    pub(crate) inner: rocksdb::WriteBatch,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, tree: &Tree, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.inner
            .put_cf(tree.handle(), tree.stored(key.as_ref()), value);
    }

    /// Stores `value` as JSON.
    pub fn put_json<T: Serialize + ?Sized>(
        &mut self,
        tree: &Tree,
        key: impl AsRef<[u8]>,
        value: &T,
    ) {
        // Serializing our own plain data types cannot fail.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.put(tree, key, bytes);
    }

    pub fn delete(&mut self, tree: &Tree, key: impl AsRef<[u8]>) {
        self.inner
            .delete_cf(tree.handle(), tree.stored(key.as_ref()));
    }

    /// Deletes every key from `from` (inclusive) to `to` (exclusive): one
    /// range tombstone, however many keys it covers.
    pub fn delete_range(&mut self, tree: &Tree, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) {
        self.inner.delete_range_cf(
            tree.handle(),
            tree.stored(from.as_ref()),
            tree.stored(to.as_ref()),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }
}
