use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestNode;

const V3: &str = "/_matrix/client/v3";

#[tokio::test]
async fn account_data_global_and_per_room_and_tags_sync() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    let since = node.sync(&alice, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    node.request(
        Method::PUT,
        &format!("{V3}/user/@alice:localhost/account_data/nl.minbzk.settings"),
        Some(&alice),
        Some(json!({ "theme": "dark" })),
    )
    .await
    .ok();
    node.request(
        Method::PUT,
        &format!("{V3}/user/@alice:localhost/rooms/{room}/account_data/nl.minbzk.note"),
        Some(&alice),
        Some(json!({ "note": "x" })),
    )
    .await
    .ok();
    node.request(
        Method::PUT,
        &format!("{V3}/user/@alice:localhost/rooms/{room}/tags/m.favourite"),
        Some(&alice),
        Some(json!({ "order": 0.5 })),
    )
    .await
    .ok();

    let global = node
        .request(
            Method::GET,
            &format!("{V3}/user/@alice:localhost/account_data/nl.minbzk.settings"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(global["theme"], "dark");
    let tags = node
        .request(
            Method::GET,
            &format!("{V3}/user/@alice:localhost/rooms/{room}/tags"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(tags["tags"]["m.favourite"]["order"], 0.5);

    let sync = node.sync(&alice, Some(&since)).await;
    let global_types: Vec<_> = sync["account_data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert!(
        global_types.contains(&json!("nl.minbzk.settings")),
        "{sync}"
    );
    let room_types: Vec<_> = sync["rooms"]["join"][&room]["account_data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert!(
        room_types.contains(&json!("m.tag")) && room_types.contains(&json!("nl.minbzk.note")),
        "{sync}"
    );

    node.request(
        Method::DELETE,
        &format!("{V3}/user/@alice:localhost/rooms/{room}/tags/m.favourite"),
        Some(&alice),
        None,
    )
    .await
    .ok();
    let tags = node
        .request(
            Method::GET,
            &format!("{V3}/user/@alice:localhost/rooms/{room}/tags"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(tags["tags"], json!({}));

    // Other people's account data is off limits.
    let bob = node.register("bob").await;
    node.request(
        Method::GET,
        &format!("{V3}/user/@alice:localhost/account_data/nl.minbzk.settings"),
        Some(&bob),
        None,
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn push_rules_default_ruleset_and_changes() {
    // The gateway the pusher below names is one the operator listed.
    let node = TestNode::start(|config| {
        config.push.gateways = vec!["https://push.example.org/_matrix/push/v1/notify".into()];
    });
    let alice = node.register("alice").await;
    let rules = node
        .request(Method::GET, &format!("{V3}/pushrules/"), Some(&alice), None)
        .await
        .ok();
    let overrides = rules["global"]["override"]
        .as_array()
        .expect("override rules");
    assert!(
        overrides.iter().any(|r| r["rule_id"] == ".m.rule.master"),
        "spec default ruleset: {rules}"
    );

    node.request(
        Method::PUT,
        &format!("{V3}/pushrules/global/room/!x:localhost"),
        Some(&alice),
        Some(json!({ "actions": [] })),
    )
    .await
    .ok();
    let rule = node
        .request(
            Method::GET,
            &format!("{V3}/pushrules/global/room/!x:localhost"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(rule["rule_id"], "!x:localhost");
    node.request(
        Method::PUT,
        &format!("{V3}/pushrules/global/override/.m.rule.master/enabled"),
        Some(&alice),
        Some(json!({ "enabled": true })),
    )
    .await
    .ok();
    let enabled = node
        .request(
            Method::GET,
            &format!("{V3}/pushrules/global/override/.m.rule.master/enabled"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(enabled["enabled"], true);
    node.request(
        Method::DELETE,
        &format!("{V3}/pushrules/global/room/!x:localhost"),
        Some(&alice),
        None,
    )
    .await
    .ok();
    node.request(
        Method::GET,
        &format!("{V3}/pushrules/global/room/!x:localhost"),
        Some(&alice),
        None,
    )
    .await
    .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let pusher = json!({ "pushkey": "abc", "kind": "http", "app_id": "nl.minbzk.app", "app_display_name": "App", "device_display_name": "Phone", "lang": "nl", "data": { "url": "https://push.example.org/_matrix/push/v1/notify" } });
    node.request(
        Method::POST,
        &format!("{V3}/pushers/set"),
        Some(&alice),
        Some(pusher),
    )
    .await
    .ok();
    let pushers = node
        .request(Method::GET, &format!("{V3}/pushers"), Some(&alice), None)
        .await
        .ok();
    assert_eq!(pushers["pushers"][0]["pushkey"], "abc");
}

#[tokio::test]
async fn profiles_propagate_to_rooms_and_the_user_directory_finds_people() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();

    node.request(
        Method::PUT,
        &format!("{V3}/profile/@alice:localhost/displayname"),
        Some(&alice),
        Some(json!({ "displayname": "Alice de Vries" })),
    )
    .await
    .ok();
    node.request(
        Method::PUT,
        &format!("{V3}/profile/@alice:localhost/displayname"),
        Some(&bob),
        Some(json!({ "displayname": "Hacked" })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let profile = node
        .request(
            Method::GET,
            &format!("{V3}/profile/@alice:localhost"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(profile["displayname"], "Alice de Vries");
    let member = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state/m.room.member/@alice:localhost"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(member["displayname"], "Alice de Vries");

    let found = node
        .request(
            Method::POST,
            &format!("{V3}/user_directory/search"),
            Some(&bob),
            Some(json!({ "search_term": "de vries" })),
        )
        .await
        .ok();
    assert_eq!(found["results"][0]["user_id"], "@alice:localhost");
    assert_eq!(found["limited"], false);
}

#[tokio::test]
async fn presence_is_visible_to_people_sharing_a_room() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    node.request(
        Method::PUT,
        &format!("{V3}/presence/@alice:localhost/status"),
        Some(&alice),
        Some(json!({ "presence": "unavailable", "status_msg": "in overleg" })),
    )
    .await
    .ok();
    let seen = node
        .request(
            Method::GET,
            &format!("{V3}/presence/@alice:localhost/status"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(seen["presence"], "unavailable");
    assert_eq!(seen["status_msg"], "in overleg");
    node.request(
        Method::GET,
        &format!("{V3}/presence/@alice:localhost/status"),
        Some(&carol),
        None,
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn device_keys_one_time_keys_and_to_device_messages() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    let bob_device = node
        .request(
            Method::GET,
            &format!("{V3}/account/whoami"),
            Some(&bob),
            None,
        )
        .await
        .ok()["device_id"]
        .as_str()
        .expect("device")
        .to_owned();
    let alice_since = node.sync(&alice, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    let device_keys = json!({ "user_id": "@bob:localhost", "device_id": bob_device, "algorithms": ["m.olm.v1.curve25519-aes-sha2"], "keys": { format!("curve25519:{bob_device}"): "k1" }, "signatures": {} });
    let upload = json!({ "device_keys": device_keys, "one_time_keys": { "signed_curve25519:AAAA": { "key": "otk1" }, "signed_curve25519:AAAB": { "key": "otk2" } }, "fallback_keys": { "signed_curve25519:FFFF": { "key": "fb", "fallback": true } } });
    let counts = node
        .request(
            Method::POST,
            &format!("{V3}/keys/upload"),
            Some(&bob),
            Some(upload),
        )
        .await
        .ok();
    assert_eq!(counts["one_time_key_counts"]["signed_curve25519"], 2);

    let alice_sync = node.sync(&alice, Some(&alice_since)).await;
    assert!(
        alice_sync["device_lists"]["changed"]
            .as_array()
            .expect("changed")
            .contains(&json!("@bob:localhost")),
        "{alice_sync}"
    );

    let query = node
        .request(
            Method::POST,
            &format!("{V3}/keys/query"),
            Some(&alice),
            Some(json!({ "device_keys": { "@bob:localhost": [] } })),
        )
        .await
        .ok();
    assert_eq!(
        query["device_keys"]["@bob:localhost"][&bob_device]["keys"]
            [format!("curve25519:{bob_device}")],
        "k1"
    );

    let claim_body = json!({ "one_time_keys": { "@bob:localhost": { bob_device.clone(): "signed_curve25519" } } });
    let mut claimed = Vec::new();
    for _ in 0..3 {
        let claim = node
            .request(
                Method::POST,
                &format!("{V3}/keys/claim"),
                Some(&alice),
                Some(claim_body.clone()),
            )
            .await
            .ok();
        let keys = claim["one_time_keys"]["@bob:localhost"][&bob_device]
            .as_object()
            .expect("keys")
            .clone();
        claimed.push(
            keys.values().next().expect("one key")["key"]
                .as_str()
                .expect("key")
                .to_owned(),
        );
    }
    assert_eq!(
        claimed,
        vec!["otk1", "otk2", "fb"],
        "one-time keys are handed out once, then the fallback key"
    );

    let message = json!({ "messages": { "@bob:localhost": { bob_device.clone(): { "ciphertext": "opaque" } } } });
    node.request(
        Method::PUT,
        &format!("{V3}/sendToDevice/m.room.encrypted/txn1"),
        Some(&alice),
        Some(message),
    )
    .await
    .ok();
    let bob_sync = node.sync(&bob, None).await;
    let to_device = bob_sync["to_device"]["events"]
        .as_array()
        .expect("to_device")
        .clone();
    assert_eq!(to_device.len(), 1, "{bob_sync}");
    assert_eq!(to_device[0]["sender"], "@alice:localhost");
    assert_eq!(to_device[0]["content"]["ciphertext"], "opaque");
    // Acknowledged by syncing past it: gone.
    let next = bob_sync["next_batch"].as_str().expect("next_batch");
    let later = node.sync(&bob, Some(next)).await;
    assert!(
        later["to_device"]["events"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "{later}"
    );
}

#[tokio::test]
async fn room_key_backup_round_trip_and_wrong_version() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    node.request(
        Method::GET,
        &format!("{V3}/room_keys/version"),
        Some(&alice),
        None,
    )
    .await
    .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let algorithm = json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "pk", "signatures": {} } });
    let created = node
        .request(
            Method::POST,
            &format!("{V3}/room_keys/version"),
            Some(&alice),
            Some(algorithm.clone()),
        )
        .await
        .ok();
    let version = created["version"].as_str().expect("version").to_owned();

    let data = json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": true, "session_data": { "ephemeral": "e", "ciphertext": "c", "mac": "m" } });
    let put = node
        .request(
            Method::PUT,
            &format!("{V3}/room_keys/keys/!r:localhost/s1?version={version}"),
            Some(&alice),
            Some(data.clone()),
        )
        .await
        .ok();
    assert_eq!(put["count"], 1);
    let got = node
        .request(
            Method::GET,
            &format!("{V3}/room_keys/keys?version={version}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(
        got["rooms"]["!r:localhost"]["sessions"]["s1"]["session_data"]["ciphertext"],
        "c"
    );

    let newer = node
        .request(
            Method::POST,
            &format!("{V3}/room_keys/version"),
            Some(&alice),
            Some(algorithm),
        )
        .await
        .ok();
    assert_ne!(newer["version"], version.as_str());
    let stale = node
        .request(
            Method::PUT,
            &format!("{V3}/room_keys/keys/!r:localhost/s2?version={version}"),
            Some(&alice),
            Some(data),
        )
        .await
        .err(StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(stale["current_version"], newer["version"]);
}

#[tokio::test]
async fn a_key_backup_without_an_algorithm_is_refused() {
    // Found by fuzzing: a version created from `{}` made every later read
    // of the backup's info fail with 500.
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    for body in [
        json!({}),
        json!({ "auth_data": {} }),
        json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2" }),
        json!({ "algorithm": 5, "auth_data": {} }),
    ] {
        node.request(
            Method::POST,
            &format!("{V3}/room_keys/version"),
            Some(&alice),
            Some(body),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    node.request(
        Method::GET,
        &format!("{V3}/room_keys/version"),
        Some(&alice),
        None,
    )
    .await
    .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn who_works_here_is_for_signed_in_users_only() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "visibility": "public" }),
        )
        .await;
    node.request(
        Method::PUT,
        &format!("{V3}/directory/room/%23overleg:localhost"),
        Some(&alice),
        Some(json!({ "room_id": room })),
    )
    .await
    .ok();

    for path in [
        format!("{V3}/profile/@alice:localhost"),
        format!("{V3}/profile/@alice:localhost/displayname"),
        format!("{V3}/profile/@alice:localhost/avatar_url"),
        format!("{V3}/profile/@nobody:localhost"),
        format!("{V3}/publicRooms"),
    ] {
        node.request(Method::GET, &path, None, None)
            .await
            .err(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    }
    let profile = node
        .request(
            Method::GET,
            &format!("{V3}/profile/@alice:localhost"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(profile["displayname"], "alice", "{profile}");
    let rooms = node
        .request(
            Method::GET,
            &format!("{V3}/publicRooms"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(rooms["chunk"][0]["room_id"], room.as_str(), "{rooms}");
    // The node's own aliases resolve for anyone, as clients expect when
    // they join by alias before they sign in.
    let resolved = node
        .request(
            Method::GET,
            &format!("{V3}/directory/room/%23overleg:localhost"),
            None,
            None,
        )
        .await
        .ok();
    assert_eq!(resolved["room_id"], room.as_str(), "{resolved}");
}

#[tokio::test]
async fn sync_gives_presence_and_account_data_changed_since_as_its_filter_asks() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    let set_presence = |token: &str, user: &str, presence: &str| {
        let (token, path) = (token.to_owned(), format!("{V3}/presence/{user}/status"));
        let body = json!({ "presence": presence });
        let node = &node;
        async move {
            node.request(Method::PUT, &path, Some(&token), Some(body))
                .await
                .ok();
        }
    };
    set_presence(&alice, "@alice:localhost", "unavailable").await;
    let since = node.sync(&bob, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    set_presence(&alice, "@alice:localhost", "online").await;
    set_presence(&carol, "@carol:localhost", "online").await;
    for kind in ["org.example.kept", "org.example.dropped"] {
        node.request(
            Method::PUT,
            &format!("{V3}/user/@bob:localhost/account_data/{kind}"),
            Some(&bob),
            Some(json!({ "kind": kind })),
        )
        .await
        .ok();
    }
    let sync = |filter: serde_json::Value| {
        let path = format!(
            "{V3}/sync?since={since}&timeout=0&filter={}",
            crate::harness::urlencode(&filter.to_string())
        );
        let (node, bob) = (&node, bob.clone());
        async move {
            node.request(Method::GET, &path, Some(&bob), None)
                .await
                .ok()
        }
    };
    let senders = |sync: &serde_json::Value| -> Vec<String> {
        sync["presence"]["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .map(|e| e["sender"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let kinds = |sync: &serde_json::Value| -> Vec<String> {
        sync["account_data"]["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    // Only what changed since, and only of people bob shares a room with.
    let everything = sync(json!({})).await;
    assert_eq!(senders(&everything), ["@alice:localhost"]);
    assert_eq!(
        everything["presence"]["events"][0]["content"]["presence"],
        "online"
    );
    assert_eq!(
        kinds(&everything),
        ["org.example.dropped", "org.example.kept"]
    );

    let filtered = sync(json!({
        "presence": { "not_types": ["m.presence"] },
        "account_data": { "types": ["org.example.k*"] },
    }))
    .await;
    assert!(senders(&filtered).is_empty(), "{filtered}");
    assert_eq!(kinds(&filtered), ["org.example.kept"]);

    let by_sender = sync(json!({
        "presence": { "not_senders": ["@alice:localhost"] },
        "account_data": { "not_types": ["*"] },
    }))
    .await;
    assert!(senders(&by_sender).is_empty(), "{by_sender}");
    assert!(kinds(&by_sender).is_empty(), "{by_sender}");
}

#[tokio::test]
async fn turn_servers_come_with_credentials_or_not_at_all() {
    let path = format!("{V3}/voip/turnServer");
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let none = node
        .request(Method::GET, &path, Some(&alice), None)
        .await
        .ok();
    assert_eq!(none, json!({}));
    node.request(Method::GET, &path, None, None)
        .await
        .err(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");

    let node = TestNode::start(|config| {
        config.turn.uris = vec!["turn:turn.example.org:3478?transport=udp".into()];
        config.turn.shared_secret = Some("geheim".into());
        config.turn.user_lifetime_secs = 3600;
    });
    let alice = node.register("alice").await;
    let turn = node
        .request(Method::GET, &path, Some(&alice), None)
        .await
        .ok();
    assert_eq!(
        turn["uris"],
        json!(["turn:turn.example.org:3478?transport=udp"])
    );
    assert_eq!(turn["ttl"], 3600);
    let username = turn["username"].as_str().expect("username");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, "@alice:localhost");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expiry: u64 = expiry.parse().expect("expiry");
    assert!(
        (now + 3590..=now + 3610).contains(&expiry),
        "{expiry} vs {now}"
    );
    // The base64 of an HMAC-SHA1.
    assert_eq!(turn["password"].as_str().map(str::len), Some(28));
}
