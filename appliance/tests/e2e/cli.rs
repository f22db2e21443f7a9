//! The `archipel` command line: user management on a running node (over its
//! admin socket) and on a stopped one's data folder, registration tokens, and
//! configuration errors that name the key.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use reqwest::StatusCode;
use serde_json::json;

use crate::client::Api;
use crate::harness::{TestServer, archipel_bin, json_lines};

fn archipel(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(archipel_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn archipel");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("archipel exits")
}

#[track_caller]
fn succeeds(output: &Output) -> String {
    assert!(
        output.status.success(),
        "archipel failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn fails(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "archipel should have failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn data(dir: &Path) -> String {
    dir.to_str().expect("utf-8 path").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn user_commands_manage_accounts_on_a_running_node_and_a_stopped_one() {
    const PASSWORD: &str = "long enough password";
    let mut server = TestServer::start().await;
    let dir = data(&server.data_dir());

    // While the node runs, the commands go to it over its admin socket.
    let created = archipel(
        &[
            "user",
            "create",
            "carol",
            "--password-stdin",
            "--data-dir",
            &dir,
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(succeeds(&created).contains("@carol:localhost"));
    // She can log in at once: no restart.
    Api::new(server.url())
        .login_reply("carol", PASSWORD)
        .await
        .ok();
    let duplicate = archipel(
        &[
            "user",
            "create",
            "carol",
            "--password-stdin",
            "--data-dir",
            &dir,
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(fails(&duplicate).contains("creating @carol:localhost"));
    let short = archipel(
        &[
            "user",
            "create",
            "dave",
            "--password-stdin",
            "--data-dir",
            &dir,
        ],
        Some("short\n"),
    );
    assert!(fails(&short).contains("at least 8"));
    // Without a terminal and without --password-stdin there is no way to ask.
    let no_tty = archipel(&["user", "create", "erin", "--data-dir", &dir], None);
    assert!(fails(&no_tty).contains("--password-stdin"));

    let list = succeeds(&archipel(
        &["user", "list", "--json", "--data-dir", &dir],
        None,
    ));
    let users = json_lines(&list);
    assert_eq!(
        users
            .iter()
            .filter(|u| u["user_id"] == "@carol:localhost")
            .count(),
        1,
        "{list}"
    );
    assert!(
        !users.iter().any(|u| u["user_id"] == "@dave:localhost"),
        "a rejected create stored nothing: {list}"
    );

    let session = Api::new(server.url())
        .login_reply("carol", PASSWORD)
        .await
        .ok()["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    succeeds(&archipel(
        &[
            "user",
            "passwd",
            "carol",
            "--password-stdin",
            "--data-dir",
            &dir,
        ],
        Some("another password\n"),
    ));
    let api = Api::new(server.url());
    api.login_reply("carol", PASSWORD)
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    api.login_reply("carol", "another password").await.ok();
    // A reset password ends the sessions the old one opened.
    api.with_token(&session)
        .get("/_matrix/client/v3/account/whoami")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    // Every command is audited by the node, and no password reaches its log.
    let log = server.log();
    for audited in ["user create carol", "user passwd carol", "user list"] {
        assert!(
            log.contains(&format!("command={audited}")),
            "`{audited}` is not in the audit log:\n{}",
            server.log_tail()
        );
    }
    assert!(!log.contains(PASSWORD) && !log.contains("another password"));

    // On a stopped node the commands open its data themselves.
    server.stop().await;
    succeeds(&archipel(
        &["user", "deactivate", "carol", "--data-dir", &dir],
        None,
    ));
    server.restart().await;
    let api = Api::new(server.url());
    api.login_reply("carol", "another password")
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // The vault's log holds each change to the accounts, whichever way it
    // was made, with the local account that made it and never a password:
    // the failed duplicate too; lists change nothing and are not there.
    let procedure = succeeds(&archipel(
        &["vault", "procedure", "--json", "--data-dir", &dir],
        None,
    ));
    let me = nix::unistd::getuid().as_raw();
    let recorded: Vec<(String, String, bool)> = json_lines(&procedure)
        .into_iter()
        .filter(|step| step["action"] == "admin_command")
        .map(|step| {
            assert!(
                step["actor"]
                    .as_str()
                    .is_some_and(|actor| actor.contains(&format!("(uid {me})"))),
                "{step}"
            );
            let origin = step["details"]["origin"].as_str().expect("an origin");
            (
                step["subject"].as_str().expect("a subject").to_owned(),
                step["details"]["outcome"]
                    .as_str()
                    .expect("an outcome")
                    .to_owned(),
                // Through the running node's socket, or on its data.
                origin.starts_with("admin socket (pid "),
            )
        })
        .collect();
    let expected = [
        ("user create @carol:localhost", "done", true),
        ("user create @carol:localhost", "failed", true),
        ("user passwd @carol:localhost", "done", true),
        ("user deactivate @carol:localhost", "done", false),
    ];
    assert_eq!(
        recorded,
        expected.map(|(what, outcome, socket)| (what.to_owned(), outcome.to_owned(), socket)),
        "{procedure}"
    );
    assert!(!procedure.contains(PASSWORD) && !procedure.contains("another password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_tokens_open_a_closed_node() {
    let mut server = TestServer::start_closed().await;
    let dir = data(&server.data_dir());
    let api = Api::new(server.url());
    let body = json!({ "username": "mallory", "password": "long enough password", "auth": { "type": "m.login.dummy" } });
    api.post("/_matrix/client/v3/register", &body)
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // Issued on the running node, usable at once.
    let token = succeeds(&archipel(
        &[
            "registration-token",
            "create",
            "--uses",
            "1",
            "--data-dir",
            &dir,
        ],
        None,
    ))
    .trim()
    .to_owned();
    assert!(!token.is_empty());
    assert!(
        !server.log().contains(&token),
        "the audit log shows no token"
    );

    let body = json!({ "username": "frank", "password": "long enough password" });
    let challenge = api.post("/_matrix/client/v3/register", &body).await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let session = challenge.json()["session"].clone();
    let mut body = body;
    body["auth"] =
        json!({ "type": "m.login.registration_token", "token": token, "session": session });
    let registered = api.post("/_matrix/client/v3/register", &body).await.ok();
    assert_eq!(registered["user_id"], "@frank:localhost");
    server.stop().await;

    let listed = succeeds(&archipel(
        &["registration-token", "list", "--data-dir", &dir],
        None,
    ));
    assert!(listed.contains("used 1/1"), "{listed}");

    // The vault's log records the token's issue, never the token.
    let procedure = succeeds(&archipel(
        &["vault", "procedure", "--json", "--data-dir", &dir],
        None,
    ));
    let issued: Vec<String> = json_lines(&procedure)
        .into_iter()
        .filter(|step| step["action"] == "admin_command")
        .map(|step| step["subject"].as_str().expect("a subject").to_owned())
        .collect();
    assert_eq!(
        issued,
        ["registration-token create for 1 registration(s)"],
        "{procedure}"
    );
    assert!(!procedure.contains(&token), "{procedure}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_issues_registration_tokens_over_the_admin_api() {
    const NEW: &str = "/_synapse/admin/v1/registration_tokens/new";
    const LIST: &str = "/_synapse/admin/v1/registration_tokens";
    let server = TestServer::start_closed().await;
    let dir = data(&server.data_dir());
    succeeds(&archipel(
        &[
            "user",
            "create",
            "boss",
            "--admin",
            "--password-stdin",
            "--data-dir",
            &dir,
        ],
        Some("long enough password\n"),
    ));
    succeeds(&archipel(
        &[
            "user",
            "create",
            "eve",
            "--password-stdin",
            "--data-dir",
            &dir,
        ],
        Some("long enough password\n"),
    ));
    let api = Api::new(server.url());
    let token_of = async |name: &str| {
        api.login_reply(name, "long enough password").await.ok()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    };
    let boss = api.with_token(&token_of("boss").await);
    let eve = api.with_token(&token_of("eve").await);

    // Only a server administrator, and only signed in.
    api.post(NEW, &json!({}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    eve.post(NEW, &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    eve.get(LIST)
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // Bad input is refused and creates nothing.
    for bad in [
        json!({ "length": 0 }),
        json!({ "length": 65 }),
        json!({ "token": "abc", "length": 8 }),
        json!({ "token": "not a token!" }),
        json!({ "uses_allowed": -1 }),
        json!({ "expiry_time": 1 }),
    ] {
        let reply = boss.post(NEW, &bad).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.json()
        );
    }
    boss.raw_json(http::Method::POST, NEW, b"{not json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_NOT_JSON");
    assert_eq!(boss.get(LIST).await.ok()["registration_tokens"], json!([]));

    // One use, made by the administrator, opens the closed node once.
    let made = boss
        .post(NEW, &json!({ "uses_allowed": 1, "length": 24 }))
        .await
        .ok();
    let token = made["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 24);
    assert_eq!(made["uses_allowed"], 1);
    assert_eq!(made["completed"], 0);
    let registered = api.register_with_token("frank", &token).await.ok();
    assert_eq!(registered["user_id"], "@frank:localhost");
    api.register_with_token("grace", &token)
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let used = boss.get(&format!("{LIST}?valid=false")).await.ok();
    assert_eq!(used["registration_tokens"][0]["token"], token.as_str());
    assert_eq!(used["registration_tokens"][0]["completed"], 1);
    assert_eq!(
        boss.get(&format!("{LIST}?valid=true")).await.ok()["registration_tokens"],
        json!([])
    );

    // Audited, without the token.
    let log = server.log();
    assert!(
        log.contains("admin API: registration token created") && log.contains("@boss:localhost"),
        "{log}"
    );
    assert!(!log.contains(&token), "the audit log shows no token");
    // And in the vault's log, with the administrator as the actor.
    let procedure = succeeds(&archipel(
        &["vault", "procedure", "--json", "--data-dir", &dir],
        None,
    ));
    // The token the store refused (`not a token!`) is there as refused.
    let by_api: Vec<String> = json_lines(&procedure)
        .into_iter()
        .filter(|step| step["details"]["origin"] == "Matrix admin API")
        .map(|step| {
            format!(
                "{} {} {}",
                step["actor"].as_str().expect("an actor"),
                step["subject"].as_str().expect("a subject"),
                step["details"]["outcome"].as_str().expect("an outcome"),
            )
        })
        .collect();
    assert_eq!(
        by_api,
        [
            "@boss:localhost registration-token create for unlimited registrations failed",
            "@boss:localhost registration-token create for 1 registration(s) done",
        ],
        "{procedure}"
    );
    assert!(!procedure.contains(&token), "{procedure}");
}

#[test]
fn configuration_mistakes_name_the_key_and_line() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().join("archipel.toml");
    std::fs::write(
        &path,
        "[node]\ndata_dir = \"/tmp/x\"\n\n[homeserver]\nserver_nmae = \"example.org\"\n",
    )
    .expect("write config");
    let err = fails(&archipel(
        &["check-config", "--config", path.to_str().expect("path")],
        None,
    ));
    assert!(
        err.contains("server_nmae") && err.contains("line 5"),
        "{err}"
    );

    std::fs::write(&path, "[homeserver]\nopen_registration = true\n").expect("write config");
    let err = fails(&archipel(
        &["run", "--config", path.to_str().expect("path")],
        None,
    ));
    assert!(err.contains("open_registration"), "{err}");

    let missing = fails(&archipel(
        &["run", "--config", "/nonexistent/archipel.toml"],
        None,
    ));
    assert!(missing.contains("/nonexistent/archipel.toml"), "{missing}");
}

#[test]
fn help_lists_the_commands() {
    let help = succeeds(&archipel(&["--help"], None));
    for command in ["run", "dev", "user", "registration-token", "check-config"] {
        assert!(help.contains(command), "--help lacks {command}: {help}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reported_events_and_rooms_reach_the_operators() {
    use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

    let server = TestServer::start().await;
    let pair = crate::client::alice_and_bob_in_room(&server, Vec::new()).await;
    let dir = data(&server.data_dir());
    let sent = pair
        .alice_room()
        .send(RoomMessageEventContent::text_plain("iets ongepasts"))
        .await
        .expect("alice sends");
    let event_id = sent.response.event_id;
    pair.bob_room()
        .report_content(event_id.clone(), Some("Niet\u{1b}[31m zakelijk".into()))
        .await
        .expect("bob reports the event");
    pair.bob_room()
        .report_room("De hele kamer".into())
        .await
        .expect("bob reports the room");
    // An event one cannot see is not found; an overlong reason is refused.
    let unknown = matrix_sdk::ruma::event_id!("$nergens:localhost").to_owned();
    assert!(pair.bob_room().report_content(unknown, None).await.is_err());
    assert!(pair.bob_room().report_room("x".repeat(5000)).await.is_err());

    // The operator lists them, newest first, while the node runs.
    let listed = json_lines(&succeeds(&archipel(
        &["reports", "--json", "--data-dir", &dir],
        None,
    )));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["event_id"], serde_json::Value::Null);
    assert_eq!(listed[0]["reason"], "De hele kamer");
    assert_eq!(listed[1]["event_id"], event_id.as_str());
    assert_eq!(listed[1]["reporter"], "@bob:localhost");
    assert_eq!(listed[1]["room_id"], pair.room_id.as_str());
    let table = succeeds(&archipel(&["reports", "--data-dir", &dir], None));
    assert!(table.contains("@bob:localhost reported"), "{table}");
    assert!(table.contains("reason: Niet [31m zakelijk"), "{table}");
    assert!(
        !table.contains('\u{1b}'),
        "control characters reach the terminal"
    );
}
