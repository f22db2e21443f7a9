//! Work that takes megabytes at once, one piece at a time.
//!
//! A node at rest holds about 25 MiB; a password hash (argon2id) takes
//! 7 MiB more for a few tens of milliseconds, and the appliance's catch-up
//! of the search index about as much while its writer exists. Each alone
//! is a passing cost; two at once would double it. Such work holds
//! [`large_work`] while it runs, so that the node's peak is its rest plus
//! one of them. The lock is fair: a login that waits for a long catch-up
//! goes next, between two of its parts.

use parking_lot::{FairMutex, FairMutexGuard, const_fair_mutex};

/// The lock that work taking megabytes at once holds; blocking. Taken in
/// blocking threads (`spawn_blocking`), never on an async worker.
pub fn large_work() -> FairMutexGuard<'static, ()> {
    LARGE_WORK.lock()
}

/// The lock itself, for a service that takes it by reference (the
/// appliance's search index).
pub static LARGE_WORK: FairMutex<()> = const_fair_mutex(());

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn a_password_hash_waits_for_other_large_work() {
        let held = super::large_work();
        let hashing = tokio::spawn(crate::service::users::hash_password("correct horse".into()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !hashing.is_finished(),
            "a hash ran while other large work held the lock"
        );
        drop(held);
        let hash = hashing.await.expect("joined").expect("hashed");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
    }
}
