//! An Archipel endpoint on the federation listener: a peer asks this node
//! to co-sign its vault checkpoint. What witnessing means is the vault's
//! business; this module carries the request, authenticated like every
//! federation request, to the [`Witness`] the node installed.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD as B64};

use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::federation::witness::Witnessed};

/// `POST /_archipel/witness/v1/add-checkpoint`
pub mod add_checkpoint {
    pub mod v1 {
        use ruma::{
            UInt,
            api::{federation::authentication::ServerSignatures, request, response},
            metadata,
        };

        metadata! {
            method: POST,
            rate_limited: false,
            authentication: ServerSignatures,
            path: "/_archipel/witness/v1/add-checkpoint",
        }

        /// A checkpoint to co-sign, with a consistency proof from the size
        /// the witness last co-signed.
        #[request]
        pub struct Request {
            /// The size of the log the witness last co-signed (0 the first time).
            pub old_size: UInt,
            /// Base64 hashes of the consistency proof from `old_size`.
            pub consistency_proof: Vec<String>,
            /// The signed checkpoint note.
            pub checkpoint: String,
        }

        /// `cosignature` when co-signed; otherwise `size`, the log size the
        /// witness last co-signed, to prove consistency from.
        #[response]
        pub struct Response {
            #[serde(skip_serializing_if = "Option::is_none")]
            pub cosignature: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub size: Option<UInt>,
        }

        impl Request {
            pub fn new(old_size: UInt, consistency_proof: Vec<String>, checkpoint: String) -> Self {
                Self {
                    old_size,
                    consistency_proof,
                    checkpoint,
                }
            }
        }
    }
}

pub async fn add_checkpoint(
    services: Arc<Services>,
    request: Ruma<add_checkpoint::v1::Request>,
) -> Result<add_checkpoint::v1::Response> {
    let Some(witness) = services.witness.get().cloned() else {
        return Err(Error::unrecognized(
            http::StatusCode::NOT_FOUND,
            "This node does not witness checkpoints.",
        ));
    };
    let peer = request.origin().to_owned();
    let keys = services.federation.server_keys(&peer).await?.ed25519_keys();
    let proof = request
        .body
        .consistency_proof
        .iter()
        .map(|hash| {
            B64.decode(hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| Error::invalid_param("A proof hash is not a base64 SHA-256 hash."))
        })
        .collect::<Result<Vec<[u8; 32]>>>()?;
    let old_size = u64::from(request.body.old_size);
    let note = request.body.checkpoint.clone();
    let answer = tokio::task::spawn_blocking(move || {
        witness.add_checkpoint(&peer, &keys, &note, old_size, &proof)
    })
    .await
    .map_err(Error::internal)??;
    let mut response = add_checkpoint::v1::Response {
        cosignature: None,
        size: None,
    };
    match answer {
        Witnessed::Cosigned(line) => response.cosignature = Some(line),
        Witnessed::FromSize(size) => {
            response.size = Some(ruma::UInt::try_from(size).unwrap_or_default())
        }
    }
    Ok(response)
}
