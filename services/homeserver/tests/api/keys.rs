//! Cross-signing signatures: who may sign what, verified.

use http::Method;
use ruma::signatures::{Ed25519KeyPair, sign_json};
use serde_json::{Value, json};

use crate::harness::TestNode;

const V3: &str = "/_matrix/client/v3";

fn unpadded(bytes: &[u8]) -> String {
    ruma::serde::Base64::<ruma::serde::base64::Standard, _>::new(bytes).encode()
}

/// A new key pair named `name`, or by its own public key when `None` (as
/// cross-signing keys are), and that public key.
fn keypair(name: Option<&str>) -> (Ed25519KeyPair, String) {
    let der = Ed25519KeyPair::generate();
    let public = unpadded(
        &Ed25519KeyPair::from_der(&der, String::new())
            .expect("a key pair")
            .public_key(),
    );
    let version = name.map_or_else(|| public.clone(), str::to_owned);
    let pair = Ed25519KeyPair::from_der(&der, version).expect("a key pair");
    (pair, public)
}

/// `object` signed by `user` with `key`.
fn signed(user: &str, key: &Ed25519KeyPair, object: &Value) -> Value {
    let mut canonical: ruma::CanonicalJsonObject =
        serde_json::from_value(object.clone()).expect("canonical JSON");
    sign_json(user, key, &mut canonical).expect("sign");
    serde_json::to_value(canonical).expect("JSON")
}

/// `key` with its `signatures` replaced by `signatures`.
fn with_signatures(key: &Value, signatures: Value) -> Value {
    let mut key = key.clone();
    key["signatures"] = signatures;
    key
}

#[tokio::test]
async fn only_valid_signatures_of_ones_own_signing_keys_are_stored() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let mallory = node.register("mallory").await;
    let me = "@alice:localhost";
    let device = node.device_id(&alice).await;

    let (device_key, device_public) = keypair(Some(&device));
    let keys = json!({
        "user_id": me,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("ed25519:{device}"): device_public,
            format!("curve25519:{device}"): "curve",
        },
    });
    let keys = signed(me, &device_key, &keys);
    node.request(
        Method::POST,
        &format!("{V3}/keys/upload"),
        Some(&alice),
        Some(json!({ "device_keys": keys })),
    )
    .await
    .ok();

    let (master, master_public) = keypair(None);
    let (self_signing, self_signing_public) = keypair(None);
    let master_key = json!({
        "user_id": me, "usage": ["master"],
        "keys": { format!("ed25519:{master_public}"): master_public },
    });
    let self_signing_key = signed(
        me,
        &master,
        &json!({
            "user_id": me, "usage": ["self_signing"],
            "keys": { format!("ed25519:{self_signing_public}"): self_signing_public },
        }),
    );
    node.request(
        Method::POST,
        &format!("{V3}/keys/device_signing/upload"),
        Some(&alice),
        Some(json!({ "master_key": master_key, "self_signing_key": self_signing_key })),
    )
    .await
    .ok();

    let upload = |token: String, key: Value| {
        let node = &node;
        let device = device.clone();
        async move {
            node.request(
                Method::POST,
                &format!("{V3}/keys/signatures/upload"),
                Some(&token),
                Some(json!({ me: { device: key } })),
            )
            .await
            .ok()
        }
    };
    let ssk_id = format!("ed25519:{self_signing_public}");
    // Mallory signs alice's device, and overwrites alice's own signature:
    // neither is his to make.
    for signatures in [
        json!({ "@mallory:localhost": { "ed25519:MALLORY": "bm90IGEgc2lnbmF0dXJl" } }),
        json!({ me: { &ssk_id: "bm90IGEgc2lnbmF0dXJl" } }),
    ] {
        let reply = upload(mallory.clone(), with_signatures(&keys, signatures)).await;
        assert!(reply["failures"][me][&device].is_object(), "{reply}");
    }
    // Alice's self-signing key, but not a signature it made.
    let reply = upload(
        alice.clone(),
        with_signatures(&keys, json!({ me: { &ssk_id: "bm90IGEgc2lnbmF0dXJl" } })),
    )
    .await;
    assert_eq!(
        reply["failures"][me][&device]["errcode"], "M_INVALID_SIGNATURE",
        "{reply}"
    );
    // A real one.
    let mut bare = keys.clone();
    bare.as_object_mut()
        .expect("an object")
        .remove("signatures");
    let reply = upload(alice.clone(), signed(me, &self_signing, &bare)).await;
    assert!(
        reply["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{reply}"
    );

    let query = node
        .request(
            Method::POST,
            &format!("{V3}/keys/query"),
            Some(&mallory),
            Some(json!({ "device_keys": { me: [] } })),
        )
        .await
        .ok();
    let signatures = &query["device_keys"][me][&device]["signatures"];
    let signers: Vec<&String> = signatures.as_object().expect("signatures").keys().collect();
    assert_eq!(signers, [me], "{signatures}");
    let mine = signatures[me].as_object().expect("alice's signatures");
    assert_eq!(
        mine.len(),
        2,
        "the device's own and the self-signing key's: {signatures}"
    );
    assert_eq!(
        mine[&format!("ed25519:{device}")],
        keys["signatures"][me][&format!("ed25519:{device}")],
        "{signatures}"
    );
    assert_ne!(mine[&ssk_id], "bm90IGEgc2lnbmF0dXJl", "{signatures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_time_key_goes_to_one_claimer() {
    let node = std::sync::Arc::new(TestNode::start(|_| {}));
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let device = node.device_id(&bob).await;
    for round in 0..5 {
        node.request(
            Method::POST,
            &format!("{V3}/keys/upload"),
            Some(&bob),
            Some(json!({ "one_time_keys": { format!("signed_curve25519:K{round}"): { "key": format!("key{round}") } } })),
        )
        .await
        .ok();
        let claims: Vec<_> = (0..8)
            .map(|_| {
                let (node, alice, device) = (node.clone(), alice.clone(), device.clone());
                tokio::spawn(async move {
                    node.request(
                        Method::POST,
                        &format!("{V3}/keys/claim"),
                        Some(&alice),
                        Some(json!({ "one_time_keys": { "@bob:localhost": { device: "signed_curve25519" } } })),
                    )
                    .await
                    .ok()
                })
            })
            .collect();
        let mut given = 0;
        for claim in claims {
            let reply = claim.await.expect("a claim");
            if reply["one_time_keys"]["@bob:localhost"][&device]
                .as_object()
                .is_some_and(|keys| !keys.is_empty())
            {
                given += 1;
            }
        }
        assert_eq!(
            given, 1,
            "round {round}: the one key went to {given} claimers"
        );
    }
}
