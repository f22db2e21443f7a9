//! Witnessing between peer nodes, both halves: this node's vault co-signs
//! peers' checkpoints (installed as the homeserver's [`Witness`]), and a
//! loop asks every peer to co-sign this node's newest checkpoint, keeping
//! the cosignatures in the vault.

use std::{collections::HashMap, sync::Arc, time::Duration};

use archipel_homeserver::{
    Error as HsError, Services,
    api::federation::witness::add_checkpoint,
    service::federation::witness::{Witness, Witnessed},
};
use archipel_vault::{Vault, origin_for, witness::Refusal};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::VerifyingKey;
use ruma::{OwnedServerName, ServerName, UInt};
use tokio::{sync::watch, time::Instant};

/// How often the loop looks for a new checkpoint to have co-signed.
const POLL: Duration = Duration::from_secs(2);
const FIRST_RETRY: Duration = Duration::from_secs(2);
const LAST_RETRY: Duration = Duration::from_secs(300);

/// The vault as the homeserver's witness.
pub struct VaultWitness {
    pub vault: Arc<Vault>,
    /// This node's server name: the name its cosignatures carry.
    pub name: String,
}

impl Witness for VaultWitness {
    fn add_checkpoint(
        &self,
        peer: &ServerName,
        keys: &[[u8; 32]],
        note: &str,
        old_size: u64,
        proof: &[[u8; 32]],
    ) -> archipel_homeserver::Result<Witnessed> {
        let origin = origin_for(peer.as_str());
        let mut last = HsError::forbidden(format!("{peer} has no usable signing key."));
        for key in keys {
            let Ok(key) = VerifyingKey::from_bytes(key) else {
                continue;
            };
            match self
                .vault
                .witness(&origin, &key, note, old_size, proof, &self.name)
            {
                Ok(line) => return Ok(Witnessed::Cosigned(line)),
                Err(Refusal::Conflict { size }) => return Ok(Witnessed::FromSize(size)),
                Err(Refusal::Inconsistent(reason)) => return Err(HsError::forbidden(reason)),
                // Maybe signed by another of the peer's keys.
                Err(Refusal::Invalid(reason)) => last = HsError::invalid_param(reason),
                Err(Refusal::Vault(e)) => return Err(HsError::internal(e)),
            }
        }
        Err(last)
    }
}

/// Asks each peer to co-sign this node's newest checkpoint, until `stop`.
pub async fn run(services: Arc<Services>, vault: Arc<Vault>, mut stop: watch::Receiver<bool>) {
    let peers: Vec<OwnedServerName> = services
        .federation
        .config()
        .peer_names()
        .into_iter()
        .collect();
    if peers.is_empty() {
        return;
    }
    // Per peer: when to try next, and the wait after a failure.
    let mut backoff: HashMap<OwnedServerName, (Instant, Duration)> = HashMap::new();
    loop {
        for peer in &peers {
            if backoff
                .get(peer)
                .is_some_and(|(next, _)| Instant::now() < *next)
            {
                continue;
            }
            match cosign_newest(&services, &vault, peer).await {
                Ok(()) => {
                    backoff.remove(peer);
                }
                Err(e) => {
                    let wait = backoff
                        .get(peer)
                        .map_or(FIRST_RETRY, |(_, w)| (*w * 2).min(LAST_RETRY));
                    tracing::warn!(%peer, error = %e, retry_in = ?wait, "a peer did not co-sign the vault checkpoint");
                    backoff.insert(peer.clone(), (Instant::now() + wait, wait));
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Has `peer` co-sign the newest checkpoint, if it has not yet.
async fn cosign_newest(
    services: &Services,
    vault: &Arc<Vault>,
    peer: &ServerName,
) -> anyhow::Result<()> {
    let cosigned = vault.newest_cosigned(peer.as_str())?;
    let Some(latest) = vault.log().latest_checkpoint()? else {
        return Ok(());
    };
    if latest.size == cosigned {
        return Ok(());
    }
    let mut old_size = cosigned;
    // At most twice: once more from the size the witness names.
    for _ in 0..2 {
        let Some((size, note, proof)) = vault.for_witness(old_size)? else {
            return Ok(());
        };
        let request = add_checkpoint::v1::Request::new(
            UInt::try_from(old_size)?,
            proof.iter().map(|hash| B64.encode(hash)).collect(),
            note,
        );
        let answer = services.federation.send(peer, request).await?;
        if let Some(line) = answer.cosignature {
            let keys = services.federation.server_keys(peer).await?;
            let mut kept = false;
            for key in keys.ed25519_keys() {
                let Ok(key) = VerifyingKey::from_bytes(&key) else {
                    continue;
                };
                if vault
                    .add_cosignature(size, peer.as_str(), &key, &line)
                    .is_ok()
                {
                    kept = true;
                    break;
                }
            }
            anyhow::ensure!(kept, "{peer}'s cosignature does not verify with its keys");
            tracing::debug!(%peer, size, "vault checkpoint co-signed");
            return Ok(());
        }
        match answer.size {
            Some(size) => old_size = u64::from(size),
            None => anyhow::bail!("{peer} answered with neither a cosignature nor a size"),
        }
    }
    anyhow::bail!("{peer} keeps naming another size to prove consistency from")
}
