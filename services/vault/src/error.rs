use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] archipel_store::Error),
    #[error("{0}")]
    Key(String),
    #[error("vault data is damaged: {0}")]
    Corrupt(String),
    #[error("{0}")]
    NotFound(String),
    #[error("record {seq} was erased by decision {reference}: its content is gone for good")]
    Erased { seq: u64, reference: String },
    /// A procedure rule refused the step (four eyes, a legal hold, a role...).
    #[error(transparent)]
    Rule(#[from] Refusal),
    /// Refused for another reason (a damaged export, a wrong cosignature...).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}

impl Error {
    pub(crate) fn io(context: impl std::fmt::Display, e: std::io::Error) -> Self {
        Self::Io(format!("{context}: {e}"))
    }
}

/// The procedure rule that refused a step. Each says who and what, so
/// that a console can say it in the reader's language.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("{actor} is not a records manager (add one with `archipel vault records-manager add`)")]
    NotRecordsManager { actor: String },
    #[error("name at least one event to exclude")]
    NothingToExclude,
    #[error("an exclusion request needs a reason")]
    ExclusionWithoutReason,
    #[error("{event_id} is a {event_type} event: room state cannot be excluded, only messages")]
    StateNotExcludable {
        event_id: String,
        event_type: String,
    },
    #[error(
        "{requester} may not request the exclusion of {event_id}: only its sender ({sender}), the owner of an imported chat, or their delegate may"
    )]
    NotSenderOrDelegate {
        requester: String,
        event_id: String,
        sender: String,
    },
    #[error("{event_id} was already erased by {reference}")]
    AlreadyErased { event_id: String, reference: String },
    #[error("{reference} was already {} by {by}", if *approved { "approved" } else { "rejected" })]
    AlreadyDecided {
        reference: String,
        approved: bool,
        by: String,
    },
    #[error(
        "{decider} requested {reference} and cannot also decide on it: another records manager must (four eyes)"
    )]
    RequesterDecides { decider: String, reference: String },
    #[error("{decider} sent {event_id} and cannot decide on its exclusion (four eyes)")]
    SenderDecides { decider: String, event_id: String },
    #[error(
        "{decider} imported {event_id} as their own chat and cannot decide on its exclusion (four eyes)"
    )]
    OwnerDecides { decider: String, event_id: String },
    #[error("legal hold {hold} on {scope} blocks the erasure of {event_id}")]
    Held {
        hold: String,
        scope: String,
        event_id: String,
    },
    #[error("a legal hold needs a reason")]
    HoldWithoutReason,
    #[error("{reference} was already released")]
    AlreadyReleased { reference: String },
    #[error("no record has expired: nothing to destroy")]
    NothingExpired,
    #[error("{reference} was already approved by {by}")]
    AlreadyApproved { reference: String, by: String },
    #[error(
        "{actor} proposed {reference} and cannot also approve it: another records manager must (four eyes)"
    )]
    ProposerApproves { actor: String, reference: String },
    #[error(
        "{reference} lists records as expired at a later date; approve it once that date has passed"
    )]
    NotYetDue { reference: String },
    #[error("{reference} was already confirmed by {by}")]
    AlreadyConfirmed { reference: String, by: String },
}
