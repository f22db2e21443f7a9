//! The search index follows the vault: Dutch words found by their stem,
//! filters that hold, imported chats found by their source, an erased
//! record found by no search, an index made again from the vault, and a
//! catch-up that takes turns with other work that takes megabytes.

use std::time::Duration;

use archipel_search::{Query, Search};
use archipel_store::{Store, StoreOptions};
use archipel_vault::{CapturedEvent, CheckpointPolicy, Vault, columns::COLUMNS, seal::VaultKey};
use serde_json::{Value, json, value::to_raw_value};

const ALICE: &str = "@alice:test.example";
const BOB: &str = "@bob:test.example";
const ROOM: &str = "!room:test.example";
const OTHER: &str = "!other:test.example";
const DAY: u64 = 86_400_000;
const START: u64 = 1_700_000_000_000;

fn open(dir: &std::path::Path) -> Vault {
    let store = Store::open(&dir.join("db"), COLUMNS, &StoreOptions::default()).expect("store");
    let key = VaultKey::load_or_generate(&dir.join("vault.key")).expect("key");
    Vault::open(
        store,
        &dir.join("vault"),
        key,
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        "test.example/archipel-vault".into(),
        CheckpointPolicy {
            every_records: 1000,
            every: Duration::from_secs(3600),
        },
    )
    .expect("vault")
}

fn message(n: u64, room: &str, sender: &str, day: u64, content: Value) -> CapturedEvent {
    CapturedEvent {
        position: n,
        event: to_raw_value(&json!({
            "event_id": format!("$e{n}"),
            "room_id": room,
            "sender": sender,
            "type": "m.room.message",
            "origin_server_ts": START + day * DAY,
            "content": content,
        }))
        .expect("JSON"),
        media: Vec::new(),
        soft_failed: None,
        bridge: None,
    }
}

fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

fn seqs(search: &Search, query: &Query) -> Vec<u64> {
    let mut seqs: Vec<u64> = search
        .search(query)
        .expect("searched")
        .into_iter()
        .map(|hit| hit.seq)
        .collect();
    seqs.sort_unstable();
    seqs
}

fn words(text: &str) -> Query {
    Query {
        text: text.into(),
        limit: 100,
        ..Query::default()
    }
}

#[test]
fn messages_are_found_by_their_words_and_filters_hold() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = open(dir.path());
    vault
        .capture(vec![
            message(1, ROOM, ALICE, 0, text("Het besluit over de begroting valt morgen")),
            message(2, ROOM, BOB, 1, text("De besluiten van het kabinet zijn openbaar")),
            message(3, OTHER, ALICE, 2, text("Lunch om twaalf uur?")),
            message(
                4,
                OTHER,
                BOB,
                3,
                json!({ "msgtype": "m.file", "body": "begroting.pdf", "filename": "begroting.pdf" }),
            ),
            message(
                5,
                ROOM,
                ALICE,
                4,
                json!({
                    "msgtype": "m.text",
                    "body": "* Het besluit is uitgesteld",
                    "m.new_content": { "msgtype": "m.text", "body": "Het besluit is uitgesteld" },
                }),
            ),
        ])
        .expect("captured");
    let search = Search::open(&dir.path().join("search")).expect("index");
    let caught = search.catch_up(&vault, |_, _| {}).expect("caught up");
    assert_eq!(caught.indexed, 5);

    // Dutch stems: "besluiten" and "besluit" are one word.
    assert_eq!(seqs(&search, &words("besluiten")), vec![0, 1, 4]);
    assert_eq!(seqs(&search, &words("besluit begroting")), vec![0]);
    assert_eq!(seqs(&search, &words("\"besluit is uitgesteld\"")), vec![4]);
    assert_eq!(seqs(&search, &words("begroting")), vec![0, 3]);
    assert_eq!(seqs(&search, &words("besluit -kabinet")), vec![0, 4]);
    let filtered = |edit: &dyn Fn(&mut Query)| {
        let mut query = words("besluit");
        edit(&mut query);
        seqs(&search, &query)
    };
    assert_eq!(filtered(&|q| q.sender = Some(BOB.into())), vec![1]);
    assert_eq!(
        filtered(&|q| q.room = Some(OTHER.into())),
        Vec::<u64>::new()
    );
    assert_eq!(
        filtered(&|q| {
            q.from_ms = Some(START + DAY);
            q.until_ms = Some(START + 4 * DAY);
        }),
        vec![1]
    );
    assert_eq!(
        filtered(&|q| q.not_rooms = vec![ROOM.into()]),
        Vec::<u64>::new()
    );
    let mut files = words("");
    files.msgtype = Some("m.file".into());
    assert_eq!(seqs(&search, &files), vec![3]);
    // No words: every message of the filters, newest first.
    let mut everything = words("");
    everything.rooms = Some(vec![OTHER.into()]);
    let hits = search.search(&everything).expect("searched");
    assert_eq!(hits.iter().map(|h| h.seq).collect::<Vec<_>>(), vec![3, 2]);
    assert_eq!(hits[0].source, "matrix");

    // Hostile text is read as words, and too long a query is refused.
    for hostile in [
        "((((",
        "body:*",
        "\"unclosed",
        "a AND OR NOT",
        "~~~^2",
        "[1 TO",
    ] {
        search.search(&words(hostile)).expect("read leniently");
    }
    assert!(search.search(&words(&"a ".repeat(600))).is_err());

    // Caught up, nothing more to read; a new message is found after the
    // next catch-up.
    assert_eq!(search.catch_up(&vault, |_, _| {}).expect("idle").indexed, 0);
    vault
        .capture(vec![message(6, OTHER, BOB, 5, text("Nog een besluit"))])
        .expect("captured");
    search.catch_up(&vault, |_, _| {}).expect("caught up");
    assert_eq!(seqs(&search, &words("besluit")), vec![0, 1, 4, 5]);
}

#[test]
fn an_erased_record_is_found_by_no_search_and_a_lost_index_is_made_again() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = open(dir.path());
    vault
        .capture(vec![
            message(1, ROOM, ALICE, 0, text("Etentje met mijn zus op vrijdag")),
            message(2, ROOM, ALICE, 0, text("De begroting voor vrijdag")),
        ])
        .expect("captured");
    let index = dir.path().join("search");
    let search = Search::open(&index).expect("index");
    search.catch_up(&vault, |_, _| {}).expect("caught up");
    assert_eq!(seqs(&search, &words("vrijdag")), vec![0, 1]);

    vault
        .set_records_manager("@rm:test.example", true, "operator")
        .expect("a records manager");
    let request = vault
        .request_exclusion(&["$e1".into()], ALICE, "private", None)
        .expect("requested");
    vault
        .decide(&request.reference, true, "@rm:test.example", None)
        .expect("decided");
    let caught = search.catch_up(&vault, |_, _| {}).expect("caught up");
    assert_eq!(caught.removed, 1);
    assert_eq!(seqs(&search, &words("vrijdag")), vec![1]);
    assert_eq!(seqs(&search, &words("zus")), Vec::<u64>::new());
    assert_eq!(seqs(&search, &words("")), vec![1]);
    drop(search);

    // Lost, or of another kind: made again from the vault, without the
    // erased record.
    std::fs::remove_dir_all(&index).expect("remove");
    std::fs::create_dir_all(&index).expect("folder");
    std::fs::write(index.join("meta.json"), b"{ not an index").expect("write");
    let search = Search::open(&index).expect("made again");
    assert_eq!(search.position().expect("position"), 0);
    let mut read = Vec::new();
    search
        .catch_up(&vault, |done, total| read.push((done, total)))
        .expect("caught up");
    assert_eq!(read.last().map(|(d, t)| d == t), Some(true));
    assert_eq!(seqs(&search, &words("vrijdag")), vec![1]);
    assert_eq!(seqs(&search, &words("zus")), Vec::<u64>::new());
}

#[test]
fn catch_ups_one_message_at_a_time_leave_merged_segments() {
    // Each catch-up commits a segment; the writer lives only as long as its
    // catch-up, and must let the merges its commits start finish, or a node
    // that indexes every ten seconds piles up segments without end.
    let dir = tempfile::tempdir().expect("dir");
    let vault = open(dir.path());
    let index = dir.path().join("search");
    let search = Search::open(&index).expect("index");
    let rounds = 24;
    for n in 1..=rounds {
        let body = text(&format!("bericht {n}"));
        vault
            .capture(vec![message(n, ROOM, ALICE, 0, body)])
            .expect("captured");
        let caught = search.catch_up(&vault, |_, _| {}).expect("caught up");
        assert_eq!(caught.indexed, 1);
    }
    assert_eq!(seqs(&search, &words("bericht")).len(), rounds as usize);
    let segments = tantivy::Index::open_in_dir(&index)
        .expect("the index")
        .searchable_segment_ids()
        .expect("segments")
        .len();
    let many = format!("{segments} segments after {rounds} catch-ups");
    assert!(segments < 10, "{many}");
}

/// The lock the test shares with the index, as the node shares its own
/// with password hashing.
static LARGE_WORK: parking_lot::FairMutex<()> = parking_lot::const_fair_mutex(());

fn large_work() -> parking_lot::FairMutexGuard<'static, ()> {
    LARGE_WORK.lock()
}

#[test]
fn a_catch_up_writes_only_while_it_holds_the_shared_lock() {
    let dir = tempfile::tempdir().expect("dir");
    let vault = open(dir.path());
    vault
        .capture(vec![message(
            1,
            ROOM,
            ALICE,
            0,
            text("Het besluit valt morgen"),
        )])
        .expect("captured");
    let search = Search::open(&dir.path().join("search"))
        .expect("index")
        .sharing_memory_with(large_work);

    // Other work holds the lock: the catch-up waits for it.
    let held = LARGE_WORK.lock();
    std::thread::scope(|scope| {
        let catching_up = scope.spawn(|| search.catch_up(&vault, |_, _| {}));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !catching_up.is_finished(),
            "the catch-up ran while another held the lock"
        );
        assert_eq!(search.position().expect("position"), 0);
        drop(held);
        let caught = catching_up.join().expect("joined").expect("caught up");
        assert_eq!(caught.indexed, 1);
    });
    assert_eq!(search.position().expect("position"), 1);
    assert_eq!(seqs(&search, &words("besluit")), vec![0]);
}
