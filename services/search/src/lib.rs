//! Full-text search over the archive vault, for records managers.
//!
//! A [`Search`] is a tantivy index of the vault's messages, kept in a folder
//! beside the vault: one document per message record (an encrypted
//! message's text comes from its decryption record), with its room,
//! sender, time, message type and source (`matrix`, the export format of
//! an import, or the ID of the bridge that brought it) to filter on, and its text analysed for Dutch (lower
//! case, Snowball stemming: "besluiten" finds "besluit"). The text is
//! indexed, never stored: a hit names its record, whose content the vault
//! opens.
//!
//! The index follows the log ([`Search::catch_up`]): it reads the records
//! appended since the position its last commit noted, and for an erasure
//! entry deletes the erased record's document, so an erased record is
//! found by no search from that commit on (its terms leave the index's
//! files at the next merge of their segment). An index that is missing,
//! or made for another schema, is made again from the vault.

use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use archipel_vault::record::{Entry, EventEntry};
use archipel_vault::{Error as VaultError, Vault};
use parking_lot::{FairMutex, FairMutexGuard};
use serde::Serialize;
use serde_json::Value;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query as TantivyQuery, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value as _,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

/// The analyser of message text.
const DUTCH: &str = "nl_stem";
/// The index writer's memory budget (tantivy's least is 15 MB). The
/// writer exists only while a catch-up writes: its buffers and threads
/// (a document queue of 2.5 MB, a 4 MB term table, arenas) would
/// otherwise stay resident in a node that indexes every ten seconds.
const WRITER_BYTES: usize = 32 << 20;
/// A document as the index writer's queue holds it: boxed, so that each
/// of the queue's 10,000 slots (tantivy's fixed size, every slot written
/// when the queue is made, and a catch-up makes it twice) takes about 80
/// bytes rather than 250: 3.4 MB less at each catch-up.
struct Queued(Box<TantivyDocument>);

impl tantivy::Document for Queued {
    type Value<'a> = <TantivyDocument as tantivy::Document>::Value<'a>;
    type FieldsValuesIter<'a> = <TantivyDocument as tantivy::Document>::FieldsValuesIter<'a>;

    fn iter_fields_and_values(&self) -> Self::FieldsValuesIter<'_> {
        self.0.iter_fields_and_values()
    }
}

/// Records read between commits while catching up.
const COMMIT_EVERY: u64 = 20_000;
/// The longest query text taken, and the most hits returned.
pub const MAX_QUERY: usize = 1_000;
pub const MAX_HITS: usize = 1_000;
/// What the import key of a message's content is (see the vault's imports).
const IMPORT_KEY: &str = "nl.archipel.import";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("the search index's folder: {0}")]
    Folder(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("{0}")]
    Query(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Copy)]
struct Fields {
    seq: Field,
    room: Field,
    sender: Field,
    ts: Field,
    msgtype: Field,
    source: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(DUTCH)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        seq: builder.add_u64_field("seq", INDEXED | STORED | FAST),
        room: builder.add_text_field("room", STRING | STORED),
        sender: builder.add_text_field("sender", STRING | STORED),
        ts: builder.add_u64_field("ts", INDEXED | STORED | FAST),
        msgtype: builder.add_text_field("msgtype", STRING | STORED),
        source: builder.add_text_field("source", STRING | STORED),
        body: builder.add_text_field("body", text),
    };
    (builder.build(), fields)
}

/// What to look for. Every filter given must hold.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Words (all of them), `"a phrase"`, `-not`; empty: every message.
    pub text: String,
    pub room: Option<String>,
    pub sender: Option<String>,
    /// From this time (ms since the Unix epoch)...
    pub from_ms: Option<u64>,
    /// ...until (not including) this one.
    pub until_ms: Option<u64>,
    /// `m.text`, `m.image`, `m.file`...
    pub msgtype: Option<String>,
    /// `matrix`, or an import's format (`whatsapp`).
    pub source: Option<String>,
    /// Only these rooms (a classification's, say)...
    pub rooms: Option<Vec<String>>,
    /// ...and none of these.
    pub not_rooms: Vec<String>,
    /// At most this many hits (at most [`MAX_HITS`]).
    pub limit: usize,
}

/// A message found: its record in the vault and what it is filed under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub seq: u64,
    pub room: String,
    pub sender: String,
    pub ts: u64,
    pub msgtype: String,
    pub source: String,
}

/// What [`Search::catch_up`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CatchUp {
    /// Message records indexed.
    pub indexed: u64,
    /// Erased records taken out.
    pub removed: u64,
    /// The log position the index now follows to.
    pub position: u64,
}

/// The index of one vault's messages.
pub struct Search {
    index: Index,
    reader: IndexReader,
    /// Held by the one catch-up that writes at a time.
    writing: Mutex<()>,
    /// Held while the writer exists (see [`Search::sharing_memory_with`]).
    large_work: fn() -> FairMutexGuard<'static, ()>,
    fields: Fields,
}

/// The lock a catch-up's writer holds when the index shares it with no
/// other work.
fn own_large_work() -> FairMutexGuard<'static, ()> {
    static LARGE_WORK: FairMutex<()> = parking_lot::const_fair_mutex(());
    LARGE_WORK.lock()
}

impl Search {
    /// Opens the index in `dir`, making it (empty) if it is missing or was
    /// made for another schema: [`Search::catch_up`] then fills it from
    /// the vault.
    pub fn open(dir: &Path) -> Result<Self> {
        let (schema, fields) = schema();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Query(format!("{}: {e}", dir.display())))?;
        let index = match Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => index,
            Ok(_) | Err(_) if has_files(dir) => {
                tracing::warn!(dir = %dir.display(), "the search index is of another kind; making it again from the vault");
                std::fs::remove_dir_all(dir)
                    .and_then(|()| std::fs::create_dir_all(dir))
                    .map_err(|e| Error::Query(format!("{}: {e}", dir.display())))?;
                Index::create(MmapDirectory::open(dir)?, schema, Default::default())?
            }
            _ => Index::create(MmapDirectory::open(dir)?, schema, Default::default())?,
        };
        index.tokenizers().register(
            DUTCH,
            TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser)
                .filter(Stemmer::new(Language::Dutch))
                .build(),
        );
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            reader,
            writing: Mutex::new(()),
            large_work: own_large_work,
            fields,
        })
    }

    /// Has each catch-up hold what `large_work` returns while its writer
    /// exists (a few megabytes for a moment), so that other work of the
    /// process that takes as much waits for it, and it for them, rather
    /// than both running at once.
    pub fn sharing_memory_with(mut self, large_work: fn() -> FairMutexGuard<'static, ()>) -> Self {
        self.large_work = large_work;
        self
    }

    /// The log position the index follows to: every record before it is
    /// in (or, erased, out of) the index.
    pub fn position(&self) -> Result<u64> {
        let metas = self.index.load_metas()?;
        Ok(metas.payload.and_then(|p| p.parse().ok()).unwrap_or(0))
    }

    /// Reads the records the vault appended since [`Search::position`]:
    /// indexes each message, takes each erased record out. `progress`
    /// hears `(records read, records to read)`.
    pub fn catch_up(&self, vault: &Vault, mut progress: impl FnMut(u64, u64)) -> Result<CatchUp> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let size = vault.log().size()?;
        let start = self.position()?;
        let mut done = CatchUp {
            position: start,
            ..CatchUp::default()
        };
        if start >= size {
            return Ok(done);
        }
        let mut seq = start;
        while seq < size {
            let end = (seq + COMMIT_EVERY).min(size);
            // A writer per part, holding `large_work`: work that waits
            // for it goes between two parts.
            let large_work = (self.large_work)();
            let mut writer: IndexWriter<Queued> =
                self.index.writer_with_num_threads(1, WRITER_BYTES)?;
            for at in seq..end {
                let record = vault.log().record(at)?;
                match &record.entry {
                    Entry::Event(event) => {
                        if let Some(document) = self.event_document(vault, at, event)? {
                            writer.add_document(Queued(Box::new(document)))?;
                            done.indexed += 1;
                        }
                    }
                    Entry::Decryption(decryption) => {
                        if let Some(document) =
                            self.decryption_document(vault, at, decryption.ciphertext_seq)?
                        {
                            writer.add_document(Queued(Box::new(document)))?;
                            done.indexed += 1;
                        }
                    }
                    Entry::Erasure(erasure) => {
                        writer
                            .delete_term(Term::from_field_u64(self.fields.seq, erasure.erased_seq));
                        done.removed += 1;
                    }
                    Entry::Procedure(_) | Entry::SessionKey(_) => {}
                }
            }
            let mut commit = writer.prepare_commit()?;
            commit.set_payload(&end.to_string());
            commit.commit()?;
            // The merges the commit started finish before the writer goes:
            // dropped, it would abandon them.
            writer.wait_merging_threads()?;
            drop(large_work);
            seq = end;
            done.position = end;
            progress(end - start, size - start);
        }
        self.reader.reload()?;
        Ok(done)
    }

    /// A message event's document; none for other events, and for a
    /// record whose content is gone (erased).
    fn event_document(
        &self,
        vault: &Vault,
        seq: u64,
        event: &EventEntry,
    ) -> Result<Option<TantivyDocument>> {
        if !matches!(event.event_type.as_str(), "m.room.message" | "m.sticker") {
            return Ok(None);
        }
        let Some(opened) = open(vault, seq)? else {
            return Ok(None);
        };
        Ok(Some(self.document(seq, event, &opened["content"])))
    }

    /// An encrypted message's document, from its decryption record `at`,
    /// filed under the ciphertext's record.
    fn decryption_document(
        &self,
        vault: &Vault,
        at: u64,
        ciphertext: u64,
    ) -> Result<Option<TantivyDocument>> {
        let record = vault.log().record(ciphertext)?;
        let Some(event) = record.event() else {
            return Ok(None);
        };
        let Some(plaintext) = decrypted(vault, at)? else {
            return Ok(None);
        };
        if !matches!(
            plaintext["type"].as_str(),
            Some("m.room.message" | "m.sticker")
        ) {
            return Ok(None);
        }
        Ok(Some(self.document(
            ciphertext,
            event,
            &plaintext["content"],
        )))
    }

    fn document(&self, seq: u64, event: &EventEntry, content: &Value) -> TantivyDocument {
        let f = self.fields;
        let body = body(content).unwrap_or_default();
        let mut text = body.to_owned();
        if let Some(name) = content["filename"].as_str().filter(|n| *n != body) {
            text.push('\n');
            text.push_str(name);
        }
        let source = content[IMPORT_KEY]["source"]
            .as_str()
            .or(event.bridge.as_deref())
            .unwrap_or("matrix");
        let msgtype = content["msgtype"]
            .as_str()
            .unwrap_or(event.event_type.as_str());
        doc!(
            f.seq => seq,
            f.room => event.room_id.as_str(),
            f.sender => event.sender.as_str(),
            f.ts => event.origin_server_ts,
            f.msgtype => msgtype,
            f.source => source,
            f.body => text,
        )
    }

    /// The messages that match `query`, best first (newest first without
    /// words). Hostile query text costs no more than any: it is read
    /// leniently, as words, and bounded.
    pub fn search(&self, query: &Query) -> Result<Vec<Hit>> {
        if query.text.len() > MAX_QUERY {
            return Err(Error::Query(format!(
                "the query is longer than {MAX_QUERY} characters"
            )));
        }
        let f = self.fields;
        let term = |field: Field, value: &str| -> Box<dyn TantivyQuery> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
        let words = query.text.trim();
        if words.is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        } else {
            let mut parser = QueryParser::for_index(&self.index, vec![f.body]);
            parser.set_conjunction_by_default();
            let (parsed, _) = parser.parse_query_lenient(words);
            clauses.push((Occur::Must, parsed));
        }
        for (field, value) in [
            (f.room, &query.room),
            (f.sender, &query.sender),
            (f.msgtype, &query.msgtype),
            (f.source, &query.source),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                clauses.push((Occur::Must, term(field, value)));
            }
        }
        if query.from_ms.is_some() || query.until_ms.is_some() {
            let bound = |ms: Option<u64>, inclusive: bool| match ms {
                None => Bound::Unbounded,
                Some(ms) if inclusive => Bound::Included(Term::from_field_u64(f.ts, ms)),
                Some(ms) => Bound::Excluded(Term::from_field_u64(f.ts, ms)),
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(query.from_ms, true),
                    bound(query.until_ms, false),
                )),
            ));
        }
        if let Some(rooms) = &query.rooms {
            let any: Vec<(Occur, Box<dyn TantivyQuery>)> = rooms
                .iter()
                .map(|room| (Occur::Should, term(f.room, room)))
                .collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        for room in &query.not_rooms {
            clauses.push((Occur::MustNot, term(f.room, room)));
        }
        let searcher = self.reader.searcher();
        let limit = query.limit.clamp(1, MAX_HITS);
        let combined = BooleanQuery::new(clauses);
        let addresses: Vec<_> = if words.is_empty() {
            searcher
                .search(
                    &combined,
                    &TopDocs::with_limit(limit).order_by_u64_field("ts", tantivy::Order::Desc),
                )?
                .into_iter()
                .map(|(_, address)| address)
                .collect()
        } else {
            searcher
                .search(&combined, &TopDocs::with_limit(limit))?
                .into_iter()
                .map(|(_, address)| address)
                .collect()
        };
        addresses
            .into_iter()
            .map(|address| {
                let document: TantivyDocument = searcher.doc(address)?;
                let text = |field| {
                    document
                        .get_first(field)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                let number = |field| {
                    document
                        .get_first(field)
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0)
                };
                Ok(Hit {
                    seq: number(f.seq),
                    room: text(f.room),
                    sender: text(f.sender),
                    ts: number(f.ts),
                    msgtype: text(f.msgtype),
                    source: text(f.source),
                })
            })
            .collect()
    }
}

/// A message record's text as a person reads it (an encrypted one's from
/// its decryption record, an edit's new text); none if it has none, or
/// its content is gone.
pub fn message_text(vault: &Vault, seq: u64) -> Result<Option<String>> {
    let Some(mut event) = open(vault, seq)? else {
        return Ok(None);
    };
    if event["type"] == "m.room.encrypted" {
        let Some(decryption) = vault.decryption_of(seq)? else {
            return Ok(None);
        };
        let Some(plaintext) = decrypted(vault, decryption)? else {
            return Ok(None);
        };
        event = plaintext;
    }
    Ok(body(&event["content"]).map(str::to_owned))
}

/// What a person reads of a message's content: an edit's new text, else
/// its body.
fn body(content: &Value) -> Option<&str> {
    content["m.new_content"]["body"]
        .as_str()
        .or_else(|| content["body"].as_str())
}

/// The event decryption record `seq` holds, as its participants saw it;
/// none if it was erased.
fn decrypted(vault: &Vault, seq: u64) -> Result<Option<Value>> {
    Ok(opened(vault, seq, || vault.open_decryption(seq))?
        .map(|decrypted| serde_json::from_str(&decrypted.plaintext).unwrap_or_default()))
}

/// A record's sealed content, opened; none if it was erased.
fn open(vault: &Vault, seq: u64) -> Result<Option<Value>> {
    opened(vault, seq, || vault.open_event(seq))
}

/// What `open` opened of record `seq`; none if the record's content is
/// gone (erased, or its key destroyed).
fn opened<T>(
    vault: &Vault,
    seq: u64,
    open: impl FnOnce() -> archipel_vault::Result<T>,
) -> Result<Option<T>> {
    match open() {
        Ok(value) => Ok(Some(value)),
        Err(VaultError::Erased { .. }) => Ok(None),
        Err(e) if !vault.log().has_data_key(seq)? => {
            tracing::debug!(seq, error = %e, "a record without its key is not indexed");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}
