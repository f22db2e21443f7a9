//! Stored sync filters.

use archipel_store::{Batch, Store, Tree, key};
use ruma::UserId;
use serde_json::Value;

use crate::{Result, columns as cf, service::users::random_string};

pub struct Filters {
    store: Store,
    tree: Tree,
}

impl Filters {
    pub fn new(store: Store) -> Result<Self> {
        Ok(Self {
            tree: store.tree(cf::USERID_FILTERID_FILTER)?,
            store,
        })
    }

    pub async fn create(&self, user: &UserId, filter: &Value) -> Result<String> {
        let id = random_string(12);
        let mut batch = Batch::new();
        batch.put_json(
            &self.tree,
            key::key([user.as_bytes(), id.as_bytes()]),
            filter,
        );
        self.store.commit_async(batch).await?;
        Ok(id)
    }

    pub fn get(&self, user: &UserId, id: &str) -> Result<Option<Value>> {
        Ok(self
            .tree
            .get_json(key::key([user.as_bytes(), id.as_bytes()]))?)
    }
}
