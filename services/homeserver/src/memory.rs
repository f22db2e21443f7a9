//! Work that takes megabytes at once, one piece at a time, on a heap that
//! gives back what it does not use.
//!
//! A node at rest holds about 25 MiB; a password hash (argon2id) takes
//! 7 MiB more for a few tens of milliseconds, and the appliance's catch-up
//! of the search index about as much while its writer exists. Each alone
//! is a passing cost; two at once would double it. Such work holds
//! [`large_work`] while it runs, so that the node's peak is its rest and
//! one of them. The lock is fair: a login that waits for a long catch-up
//! goes next, between two of its parts.

use parking_lot::{FairMutex, FairMutexGuard, const_fair_mutex};

static LARGE_WORK: FairMutex<()> = const_fair_mutex(());

/// The lock that work taking megabytes at once holds; blocking, so taken
/// in blocking threads (`spawn_blocking`), never on an async worker.
/// Taking it hands the heap's free pages back first ([`trim_heap`]): the
/// work's megabytes come on top of what the node uses now, not of what
/// it used a moment ago (a sync response just sent, say).
pub fn large_work() -> FairMutexGuard<'static, ()> {
    let guard = LARGE_WORK.lock();
    trim_heap();
    guard
}

/// Hands the free pages inside glibc's heap back to the system. glibc
/// returns memory at the top of its heap on its own; what is freed in the
/// middle (RocksDB's blocks and memtables, a response's buffers) stays
/// resident until trimmed. Blocking: it walks the heap's free chunks
/// under the allocator's lock.
#[allow(unsafe_code)]
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe (it takes the arena locks) and
    // only releases pages no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn a_password_hash_waits_for_other_large_work() {
        // Other large work holds the lock in a thread of its own.
        let (taken, is_taken) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _held = super::large_work();
            taken.send(()).expect("the test waits");
            released.recv().ok();
        });
        is_taken.recv().expect("the lock is taken");
        let hashing = tokio::spawn(crate::service::users::hash_password("correct horse".into()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !hashing.is_finished(),
            "a hash ran while other large work held the lock"
        );
        release.send(()).expect("the holder waits");
        holder.join().expect("the holder ends");
        let hash = hashing.await.expect("joined").expect("hashed");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
    }
}
