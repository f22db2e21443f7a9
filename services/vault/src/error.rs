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
