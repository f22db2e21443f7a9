//! Witnessing peers' vault checkpoints, as the federation layer sees it:
//! what witnessing means is the vault's business, and the node installs
//! its vault as the [`Witness`] (`Services::witness`).

use ruma::ServerName;

use crate::Result;

/// What a witness answers.
pub enum Witnessed {
    Cosigned(String),
    /// Prove consistency from this size, the last one co-signed.
    FromSize(u64),
}

/// The node's witness (its vault), installed at startup.
pub trait Witness: Send + Sync {
    /// Co-signs `peer`'s checkpoint `note` if it is signed by one of `keys`
    /// (the peer's Ed25519 server keys) and extends what was co-signed
    /// before. A log that does not is refused with [`Error::forbidden`].
    fn add_checkpoint(
        &self,
        peer: &ServerName,
        keys: &[[u8; 32]],
        note: &str,
        old_size: u64,
        proof: &[[u8; 32]],
    ) -> Result<Witnessed>;
}
