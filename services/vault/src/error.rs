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
    #[error("{0}")]
    Io(String),
}

impl Error {
    pub(crate) fn io(context: impl std::fmt::Display, e: std::io::Error) -> Self {
        Self::Io(format!("{context}: {e}"))
    }
}
