use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestNode;

const V3: &str = "/_matrix/client/v3";

#[tokio::test]
async fn registration_is_closed_by_default_and_opens_with_a_token() {
    let node = TestNode::start(|c| c.open_registration = false);
    let body = json!({ "username": "eve", "password": "correct horse", "auth": { "type": "m.login.dummy" } });
    node.request(Method::POST, &format!("{V3}/register"), None, Some(body))
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let token = node
        .homeserver
        .services
        .users
        .create_registration_token(Some("welcome".into()), Some(1), None)
        .await
        .expect("token");
    assert_eq!(token.token, "welcome");
    let valid = node
        .request(
            Method::GET,
            "/_matrix/client/v1/register/m.login.registration_token/validity?token=welcome",
            None,
            None,
        )
        .await
        .ok();
    assert_eq!(valid["valid"], true);

    // The first request returns the flows and a session.
    let first = node
        .request(
            Method::POST,
            &format!("{V3}/register"),
            None,
            Some(json!({ "username": "eve", "password": "correct horse" })),
        )
        .await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        first.body["flows"][0]["stages"][0],
        "m.login.registration_token"
    );
    let session = first.body["session"].as_str().expect("session").to_owned();

    let wrong = json!({ "username": "eve", "password": "correct horse", "auth": { "type": "m.login.registration_token", "token": "nope", "session": session } });
    node.request(Method::POST, &format!("{V3}/register"), None, Some(wrong))
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let right = json!({ "username": "eve", "password": "correct horse", "auth": { "type": "m.login.registration_token", "token": "welcome", "session": session } });
    let registered = node
        .request(Method::POST, &format!("{V3}/register"), None, Some(right))
        .await
        .ok();
    assert_eq!(registered["user_id"], "@eve:localhost");

    // The token allowed one use; it is spent.
    let again = json!({ "username": "mallory", "password": "correct horse", "auth": { "type": "m.login.registration_token", "token": "welcome" } });
    node.request(Method::POST, &format!("{V3}/register"), None, Some(again))
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(
        !node
            .homeserver
            .services
            .users
            .exists(&ruma::UserId::parse("@mallory:localhost").expect("id"))
            .expect("exists")
    );
}

#[tokio::test]
async fn taken_and_invalid_user_names_are_refused() {
    let node = TestNode::start(|_| {});
    node.register("alice").await;
    let body = json!({ "username": "alice", "password": "correct horse", "auth": { "type": "m.login.dummy" } });
    node.request(Method::POST, &format!("{V3}/register"), None, Some(body))
        .await
        .err(StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    let body = json!({ "username": "Bad Name!", "password": "correct horse", "auth": { "type": "m.login.dummy" } });
    node.request(Method::POST, &format!("{V3}/register"), None, Some(body))
        .await
        .err(StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
    node.request(
        Method::GET,
        &format!("{V3}/register/available?username=alice"),
        None,
        None,
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    let free = node
        .request(
            Method::GET,
            &format!("{V3}/register/available?username=bob"),
            None,
            None,
        )
        .await
        .ok();
    assert_eq!(free["available"], true);
}

#[tokio::test]
async fn password_login_logout_and_whoami() {
    let node = TestNode::start(|_| {});
    node.register("alice").await;
    let flows = node
        .request(Method::GET, &format!("{V3}/login"), None, None)
        .await
        .ok();
    assert_eq!(flows["flows"][0]["type"], "m.login.password");

    let bad = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "wrong" });
    node.request(Method::POST, &format!("{V3}/login"), None, Some(bad))
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let good = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "@alice:localhost" }, "password": "correct horse", "device_id": "LAPTOP" });
    let session = node
        .request(Method::POST, &format!("{V3}/login"), None, Some(good))
        .await
        .ok();
    assert_eq!(session["device_id"], "LAPTOP");
    let token = session["access_token"].as_str().expect("token");

    let me = node
        .request(
            Method::GET,
            &format!("{V3}/account/whoami"),
            Some(token),
            None,
        )
        .await
        .ok();
    assert_eq!(me["user_id"], "@alice:localhost");
    assert_eq!(me["device_id"], "LAPTOP");

    node.request(
        Method::POST,
        &format!("{V3}/logout"),
        Some(token),
        Some(json!({})),
    )
    .await
    .ok();
    node.request(
        Method::GET,
        &format!("{V3}/account/whoami"),
        Some(token),
        None,
    )
    .await
    .err(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let node = TestNode::start(|_| {});
    let first = node.register("alice").await;
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "correct horse" });
    let second = node
        .request(Method::POST, &format!("{V3}/login"), None, Some(login))
        .await
        .ok();
    let second = second["access_token"].as_str().expect("token").to_owned();
    node.request(
        Method::POST,
        &format!("{V3}/logout/all"),
        Some(&first),
        Some(json!({})),
    )
    .await
    .ok();
    for token in [&first, &second] {
        node.request(
            Method::GET,
            &format!("{V3}/account/whoami"),
            Some(token),
            None,
        )
        .await
        .err(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_expired_access_tokens_are_soft_logged_out() {
    let node = TestNode::start(|c| c.refreshable_token_lifetime_secs = 0);
    node.register("alice").await;
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "correct horse", "refresh_token": true });
    let session = node
        .request(Method::POST, &format!("{V3}/login"), None, Some(login))
        .await
        .ok();
    let access = session["access_token"].as_str().expect("access").to_owned();
    let refresh = session["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert!(session["expires_in_ms"].is_u64(), "{session}");

    // Lifetime 0: the access token is already expired.
    let expired = node
        .request(
            Method::GET,
            &format!("{V3}/account/whoami"),
            Some(&access),
            None,
        )
        .await
        .err(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(expired["soft_logout"], true);

    let renewed = node
        .request(
            Method::POST,
            &format!("{V3}/refresh"),
            None,
            Some(json!({ "refresh_token": refresh })),
        )
        .await
        .ok();
    assert_ne!(renewed["refresh_token"], refresh.as_str());
    // The old refresh token is spent.
    node.request(
        Method::POST,
        &format!("{V3}/refresh"),
        None,
        Some(json!({ "refresh_token": refresh })),
    )
    .await
    .err(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn devices_are_listed_renamed_and_deleted_with_password_confirmation() {
    let node = TestNode::start(|_| {});
    let token = node.register("alice").await;
    node.login_device("alice", "PHONE").await;

    let devices = node
        .request(Method::GET, &format!("{V3}/devices"), Some(&token), None)
        .await
        .ok();
    assert_eq!(devices["devices"].as_array().expect("devices").len(), 2);
    node.request(
        Method::PUT,
        &format!("{V3}/devices/PHONE"),
        Some(&token),
        Some(json!({ "display_name": "Work phone" })),
    )
    .await
    .ok();
    let phone = node
        .request(
            Method::GET,
            &format!("{V3}/devices/PHONE"),
            Some(&token),
            None,
        )
        .await
        .ok();
    assert_eq!(phone["display_name"], "Work phone");

    let challenge = node
        .request(
            Method::DELETE,
            &format!("{V3}/devices/PHONE"),
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let session = challenge.body["session"].as_str().expect("session");
    let wrong = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "nope", "session": session } });
    let refused = node
        .request(
            Method::DELETE,
            &format!("{V3}/devices/PHONE"),
            Some(&token),
            Some(wrong),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body["errcode"], "M_FORBIDDEN", "{}", refused.body);
    node.request(
        Method::GET,
        &format!("{V3}/devices/PHONE"),
        Some(&token),
        None,
    )
    .await
    .ok();

    let right = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "correct horse", "session": session } });
    node.request(
        Method::DELETE,
        &format!("{V3}/devices/PHONE"),
        Some(&token),
        Some(right),
    )
    .await
    .ok();
    node.request(
        Method::GET,
        &format!("{V3}/devices/PHONE"),
        Some(&token),
        None,
    )
    .await
    .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn password_change_requires_the_old_password() {
    let node = TestNode::start(|_| {});
    let token = node.register("alice").await;
    let change = json!({ "new_password": "battery staple", "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "correct horse" } });
    node.request(
        Method::POST,
        &format!("{V3}/account/password"),
        Some(&token),
        Some(change),
    )
    .await
    .ok();
    let old = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "correct horse" });
    node.request(Method::POST, &format!("{V3}/login"), None, Some(old))
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let new = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "battery staple" });
    node.request(Method::POST, &format!("{V3}/login"), None, Some(new))
        .await
        .ok();
}

#[tokio::test]
async fn discovery_endpoints_answer() {
    let node = TestNode::start(|c| c.public_base_url = Some("https://chat.example.org".into()));
    let versions = node
        .request(Method::GET, "/_matrix/client/versions", None, None)
        .await
        .ok();
    assert!(
        versions["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .any(|v| v == "v1.11")
    );
    let client = node
        .request(Method::GET, "/.well-known/matrix/client", None, None)
        .await
        .ok();
    assert_eq!(
        client["m.homeserver"]["base_url"],
        "https://chat.example.org"
    );
    node.request(Method::GET, "/.well-known/matrix/server", None, None)
        .await
        .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let token = node.register("alice").await;
    let caps = node
        .request(
            Method::GET,
            &format!("{V3}/capabilities"),
            Some(&token),
            None,
        )
        .await
        .ok();
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "12");
    assert_eq!(
        caps["capabilities"]["m.room_versions"]["available"]["10"],
        "stable"
    );
}

/// matrix-rust-sdk asks for the flows with an empty body before anything
/// else; the answer is the challenge, not a complaint about the password.
#[tokio::test]
async fn registration_without_auth_answers_with_the_flows() {
    let node = TestNode::start(|_| {});
    for body in [None, Some(json!({})), Some(json!({ "username": "eve" }))] {
        let reply = node
            .request(Method::POST, &format!("{V3}/register"), None, body.clone())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{body:?}: {}",
            reply.body
        );
        assert_eq!(reply.body["flows"][0]["stages"][0], "m.login.dummy");
        assert!(reply.body["session"].is_string(), "{}", reply.body);
    }
    // A taken name is still named before the flows, as Synapse does.
    node.register("alice").await;
    node.request(
        Method::POST,
        &format!("{V3}/register"),
        None,
        Some(json!({ "username": "alice" })),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_USER_IN_USE");
}

/// `"auth": {}` starts user-interactive authentication like an absent
/// `auth` (Element's first cross-signing upload, deleting devices,
/// changing the password).
#[tokio::test]
async fn an_empty_auth_object_is_answered_with_the_flows() {
    let node = TestNode::start(|_| {});
    let token = node.register("alice").await;
    node.login_device("alice", "PHONE").await;

    // The first cross-signing upload needs no authentication.
    let master = json!({ "user_id": "@alice:localhost", "usage": ["master"], "keys": { "ed25519:base64+master+public+key": "base64+master+public+key" } });
    let upload = json!({ "master_key": master, "auth": {} });
    node.request(
        Method::POST,
        &format!("{V3}/keys/device_signing/upload"),
        Some(&token),
        Some(upload.clone()),
    )
    .await
    .ok();

    for (method, path, body) in [
        (Method::POST, "/keys/device_signing/upload", upload),
        (
            Method::POST,
            "/delete_devices",
            json!({ "devices": ["PHONE"], "auth": {} }),
        ),
        (Method::DELETE, "/devices/PHONE", json!({ "auth": {} })),
        (
            Method::POST,
            "/account/password",
            json!({ "new_password": "battery staple", "auth": {} }),
        ),
    ] {
        let reply = node
            .request(method, &format!("{V3}{path}"), Some(&token), Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{path}: {}",
            reply.body
        );
        assert_eq!(
            reply.body["flows"][0]["stages"][0], "m.login.password",
            "{path}: {}",
            reply.body
        );
    }
    // Nothing was changed by the unauthenticated attempts.
    node.request(
        Method::GET,
        &format!("{V3}/devices/PHONE"),
        Some(&token),
        None,
    )
    .await
    .ok();
}

/// Element Web reads `threepids.length`: the list is there even when empty.
#[tokio::test]
async fn third_party_ids_are_an_empty_list() {
    let node = TestNode::start(|_| {});
    let token = node.register("alice").await;
    let reply = node
        .request(
            Method::GET,
            &format!("{V3}/account/3pid"),
            Some(&token),
            None,
        )
        .await
        .ok();
    assert_eq!(reply, json!({ "threepids": [] }));
}

/// Registers `name` with the registration token `token`: the flows, then
/// the token stage; the final reply.
async fn register_with_token(node: &TestNode, name: &str, token: &str) -> crate::harness::Reply {
    let body = json!({ "username": name, "password": "correct horse" });
    let first = node
        .request(Method::POST, &format!("{V3}/register"), None, Some(body))
        .await;
    let session = first.body["session"].as_str().expect("session").to_owned();
    let body = json!({ "username": name, "password": "correct horse", "auth": { "type": "m.login.registration_token", "token": token, "session": session } });
    node.request(Method::POST, &format!("{V3}/register"), None, Some(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_use_token_registers_one_account_however_many_ask_at_once() {
    let node = std::sync::Arc::new(TestNode::start(|c| c.open_registration = false));
    node.homeserver
        .services
        .users
        .create_registration_token(Some("eenmalig".into()), Some(1), None)
        .await
        .expect("token");
    let attempts: Vec<_> = (0..6)
        .map(|i| {
            let node = node.clone();
            tokio::spawn(async move {
                register_with_token(&node, &format!("user{i}"), "eenmalig").await
            })
        })
        .collect();
    let mut registered = 0;
    for attempt in attempts {
        let reply = attempt.await.expect("an attempt");
        if reply.status == StatusCode::OK {
            registered += 1;
        } else {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        }
    }
    assert_eq!(registered, 1, "one use, {registered} accounts");

    // Two at once for one name: one account, with one password.
    let open = std::sync::Arc::new(TestNode::start(|_| {}));
    let attempts: Vec<_> = ["first password", "second password"]
        .into_iter()
        .map(|password| {
            let open = open.clone();
            tokio::spawn(async move {
                let body = json!({ "username": "carol", "password": password, "auth": { "type": "m.login.dummy" } });
                open.request(Method::POST, &format!("{V3}/register"), None, Some(body))
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.expect("an attempt"));
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::BAD_REQUEST],
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_token_used_twice_at_once_renews_one_session() {
    let node = std::sync::Arc::new(TestNode::start(|_| {}));
    node.register("alice").await;
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "correct horse", "refresh_token": true });
    let session = node
        .request(Method::POST, &format!("{V3}/login"), None, Some(login))
        .await
        .ok();
    let refresh = session["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let attempts: Vec<_> = (0..4)
        .map(|_| {
            let (node, refresh) = (node.clone(), refresh.clone());
            tokio::spawn(async move {
                node.request(
                    Method::POST,
                    &format!("{V3}/refresh"),
                    None,
                    Some(json!({ "refresh_token": refresh })),
                )
                .await
            })
        })
        .collect();
    let mut renewed = Vec::new();
    for attempt in attempts {
        let reply = attempt.await.expect("an attempt");
        if reply.status == StatusCode::OK {
            renewed.push(reply.body);
        }
    }
    assert_eq!(
        renewed.len(),
        1,
        "one refresh token, {} renewals",
        renewed.len()
    );
    // Logging out ends it: nothing is left that still works.
    let access = renewed[0]["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    node.request(
        Method::POST,
        &format!("{V3}/logout"),
        Some(&access),
        Some(json!({})),
    )
    .await
    .ok();
    node.request(
        Method::GET,
        &format!("{V3}/account/whoami"),
        Some(&access),
        None,
    )
    .await
    .err(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}
