//! The web console in a real Chromium: the first operator from the setup
//! link, sign-in with an authenticator, roles page by page, CSRF and
//! expired sessions refused, and the four-eyes exclusion by two records
//! managers signed in separately. Every route refuses a request without a
//! session.

use std::time::Duration;

use fantoccini::{Client, Locator};
use reqwest::{StatusCode, redirect::Policy};

use crate::browser::{
    Authenticator, Browser, csrf, enrol, fill, path, screenshot, session_cookie, sign_in, text,
};
use crate::client::{Api, PASSWORD};
use crate::harness::{TestServer, eventually};
use crate::vault::{archived, vault_ok};

const OPERATOR_PASSWORD: &str = "a long operator password";

/// Creates the first operator, `boss`, through the node's setup link in
/// `browser`; returns their authenticator.
async fn first_operator(server: &TestServer, browser: &Client) -> Authenticator {
    let link = server.setup_link().expect("a new node prints a setup link");
    browser.goto(link).await.expect("open the setup link");
    assert_eq!(path(browser).await, "/setup");
    fill(
        browser,
        &[
            ("user", "boss"),
            ("password", OPERATOR_PASSWORD),
            ("repeat", OPERATOR_PASSWORD),
        ],
        "submit",
    )
    .await;
    screenshot(browser, "enrol").await;
    let authenticator = enrol(browser, "boss").await;
    assert_eq!(path(browser).await, "/dashboard");
    // The link is used up.
    browser.goto(link).await.expect("open it again");
    assert!(
        text(browser)
            .await
            .contains("unknown, already used or expired")
    );
    browser.back().await.expect("back");
    authenticator
}

async fn goto(browser: &Client, console: &str, page: &str) {
    browser
        .goto(&format!("{console}{page}"))
        .await
        .unwrap_or_else(|e| panic!("open {page}: {e}"));
}

/// Registers a Matrix account (password [`PASSWORD`]); returns its API.
async fn user(server: &TestServer, name: &str) -> Api {
    let session = Api::new(server.url()).register(name).await;
    Api::new(server.url()).with_token(&session.access_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_takes_an_authenticator_code_and_roles_guard_each_page() {
    let server = TestServer::start().await;
    let console = server.console_url().expect("a console").to_owned();
    let browser = Browser::start().await;

    let operator = browser.session().await;
    let mut boss = first_operator(&server, &operator).await;
    let dashboard = text(&operator).await;
    for shown in ["localhost", "Users", "Vault", "Backups", "Certificate"] {
        assert!(
            dashboard.contains(shown),
            "dashboard lacks {shown}:\n{dashboard}"
        );
    }

    // Alice and carol are chat users; the operator makes alice an auditor.
    let alice_api = user(&server, "alice").await;
    user(&server, "carol").await;
    let room = alice_api
        .post(
            "/_matrix/client/v3/createRoom",
            &serde_json::json!({ "name": "Budget 2027" }),
        )
        .await
        .ok()["room_id"]
        .as_str()
        .expect("a room")
        .to_owned();
    alice_api
        .send_text_ok(&room, "t1", "the figures are in")
        .await;
    // The operator sees the room, its metadata and members, not what is said.
    goto(&operator, &console, "/rooms").await;
    assert!(text(&operator).await.contains("Budget 2027"));
    goto(&operator, &console, &format!("/rooms/{room}")).await;
    screenshot(&operator, "room").await;
    let shown = text(&operator).await;
    assert!(
        shown.contains("@alice:localhost") && shown.contains("join"),
        "{shown}"
    );
    assert!(
        !operator
            .source()
            .await
            .expect("source")
            .contains("the figures are in")
    );
    // The dashboard counts it among the messages archived today.
    eventually("the message counted", Duration::from_secs(20), || {
        let (operator, console) = (operator.clone(), console.clone());
        async move {
            goto(&operator, &console, "/dashboard").await;
            text(&operator)
                .await
                .contains("1 message(s) in the last 30 days")
                .then_some(())
        }
    })
    .await;
    screenshot(&operator, "dashboard").await;
    // Alice reports the room; the operator reads it, and the other pages.
    alice_api
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/report"),
            &serde_json::json!({ "reason": "spam about the budget" }),
        )
        .await
        .ok();
    goto(&operator, &console, "/reports").await;
    screenshot(&operator, "reports").await;
    assert!(text(&operator).await.contains("spam about the budget"));
    for (page, shown) in [
        ("/backups", "No backup targets are configured"),
        ("/log", "The newest lines of the journal"),
        ("/federation", "Federation is off"),
        ("/configuration", "session_idle_secs"),
        ("/gaps", "No alarms."),
    ] {
        goto(&operator, &console, page).await;
        screenshot(&operator, &page[1..]).await;
        assert!(text(&operator).await.contains(shown), "{page}");
    }
    goto(&operator, &console, "/users").await;
    screenshot(&operator, "users").await;
    assert!(text(&operator).await.contains("@alice:localhost"));
    goto(&operator, &console, "/users/@alice:localhost").await;
    fill(&operator, &[], "auditor").await;
    assert!(
        text(&operator)
            .await
            .contains("@alice:localhost is an auditor."),
        "{}",
        text(&operator).await
    );
    screenshot(&operator, "user").await;
    goto(&operator, &console, "/tokens").await;
    fill(&operator, &[("uses", "2")], "create-token").await;
    assert!(
        text(&operator)
            .await
            .contains("New registration token, shown only now")
    );
    screenshot(&operator, "tokens").await;

    // Carol, a plain user, gets her own requests and nothing else.
    let carol = browser.session().await;
    sign_in(&carol, &console, "carol", PASSWORD, None).await;
    assert_eq!(path(&carol).await, "/requests");
    screenshot(&carol, "requests-sender").await;
    for (page, role) in [
        ("/dashboard", "operators"),
        ("/users", "operators"),
        ("/users/@alice:localhost", "operators"),
        ("/tokens", "operators"),
        ("/rooms", "operators"),
        ("/reports", "operators"),
        ("/backups", "operators"),
        ("/backups/contents", "operators"),
        ("/log", "operators"),
        ("/federation", "operators"),
        ("/configuration", "operators"),
        ("/exports", "records managers"),
        ("/gaps", "auditors"),
        ("/audit", "auditors"),
        ("/rights", "auditors"),
    ] {
        goto(&carol, &console, page).await;
        let shown = text(&carol).await;
        assert!(
            shown.contains(&format!("This page is for {role}")),
            "{page} as carol:\n{shown}"
        );
    }

    // The operator deactivates carol (typing her ID to confirm): her
    // console session ends with her account.
    goto(&operator, &console, "/users/@carol:localhost").await;
    fill(&operator, &[("confirm", "@carol")], "deactivate").await;
    assert!(
        text(&operator)
            .await
            .contains("type the user ID (@carol:localhost) to confirm")
    );
    fill(&operator, &[("confirm", "@carol:localhost")], "deactivate").await;
    assert!(
        text(&operator)
            .await
            .contains("@carol:localhost is deactivated"),
        "{}",
        text(&operator).await
    );
    goto(&carol, &console, "/requests").await;
    assert_eq!(path(&carol).await, "/sign-in");

    // Alice, an auditor, reads the trail: the operator's actions with
    // their name and origin; and nothing of an operator's.
    let alice = browser.session().await;
    sign_in(&alice, &console, "alice", PASSWORD, None).await;
    assert_eq!(path(&alice).await, "/audit");
    screenshot(&alice, "audit").await;
    let trail = text(&alice).await;
    for shown in [
        "console auditor add",
        "user deactivate",
        "registration-token create",
        "console sign-in",
        "@boss:localhost",
        "web console from 127.0.0.1",
    ] {
        assert!(trail.contains(shown), "the trail lacks {shown}:\n{trail}");
    }
    assert!(!trail.contains(OPERATOR_PASSWORD));
    // and who holds which role.
    goto(&alice, &console, "/rights").await;
    screenshot(&alice, "rights").await;
    let rights = text(&alice).await;
    assert!(
        rights.contains("@boss:localhost") && rights.contains("@alice:localhost"),
        "{rights}"
    );
    goto(&alice, &console, "/users").await;
    assert!(text(&alice).await.contains("This page is for operators"));
    // Made an operator, she sees it at her next click; and no longer.
    for (now, then) in [
        ("is an operator.", true),
        ("is no longer an operator.", false),
    ] {
        goto(&operator, &console, "/users/@alice:localhost").await;
        fill(&operator, &[], "admin").await;
        assert!(
            text(&operator)
                .await
                .contains(&format!("@alice:localhost {now}"))
        );
        goto(&alice, &console, "/users").await;
        assert_eq!(
            text(&alice).await.contains("This page is for operators"),
            !then
        );
    }

    // Signed out, the operator signs in again: a wrong code is refused,
    // the right one lets them in.
    goto(&operator, &console, "/dashboard").await;
    fill(&operator, &[], "sign-out").await;
    assert_eq!(path(&operator).await, "/sign-in");
    goto(&operator, &console, "/dashboard").await;
    assert_eq!(path(&operator).await, "/sign-in");
    fill(
        &operator,
        &[("user", "boss"), ("password", "not the password")],
        "submit",
    )
    .await;
    assert!(
        text(&operator)
            .await
            .contains("Wrong user name or password.")
    );
    fill(
        &operator,
        &[("user", "boss"), ("password", OPERATOR_PASSWORD)],
        "submit",
    )
    .await;
    assert_eq!(path(&operator).await, "/sign-in/code");
    fill(&operator, &[("code", &boss.wrong_code())], "submit").await;
    assert!(text(&operator).await.contains("Wrong or already used code"));
    assert_eq!(path(&operator).await, "/sign-in/code");
    screenshot(&operator, "code-refused").await;
    let code = boss.code().await;
    fill(&operator, &[("code", &code)], "submit").await;
    assert_eq!(path(&operator).await, "/dashboard");
    // The same code does not sign in twice.
    let again = browser.session().await;
    goto(&again, &console, "/sign-in").await;
    fill(
        &again,
        &[("user", "boss"), ("password", OPERATOR_PASSWORD)],
        "submit",
    )
    .await;
    fill(&again, &[("code", &code)], "submit").await;
    assert!(text(&again).await.contains("Wrong or already used code"));
}

/// Posts `fields` to `page` with `browser`'s session cookie, from the
/// console's own origin: a form sent outside the browser. `csrf` is the
/// token of the page the browser shows unless `fields` names one.
async fn post_as(
    browser: &Client,
    console: &str,
    page: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = csrf(browser).await;
    let mut form = vec![("csrf", token.as_str())];
    form.retain(|(name, _)| !fields.iter().any(|(field, _)| field == name));
    form.extend_from_slice(fields);
    http()
        .post(format!("{console}{page}"))
        .header(
            "cookie",
            format!("archipel={}", session_cookie(browser).await),
        )
        .header("origin", console)
        .form(&form)
        .send()
        .await
        .expect("post")
}

/// A client that keeps redirects for the test to see.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_from_another_site_and_an_expired_session_are_refused() {
    let server = TestServer::start_with(&["--console-session-idle-secs", "10"]).await;
    let console = server.console_url().expect("a console").to_owned();
    let browser = Browser::start().await;
    let operator = browser.session().await;
    first_operator(&server, &operator).await;

    // Another site on this machine, with a form aimed at the console: the
    // browser sends the session cookie along (same site), and the console
    // refuses the request by its origin.
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let evil_url = format!("http://{}", evil.local_addr().expect("address"));
    let page = format!(
        "<!doctype html><form method=post action=\"{console}/tokens\">\
         <input type=hidden name=csrf value=guessed><input type=hidden name=uses value=9>\
         <button id=go>Win a prize</button></form>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    tokio::spawn(async move { axum::serve(evil, app).await });
    operator.goto(&evil_url).await.expect("open the other site");
    fill(&operator, &[], "go").await;
    let shown = text(&operator).await;
    assert!(shown.contains("sent from another site"), "{shown}");

    // From the console's own origin, without the session's token: refused.
    goto(&operator, &console, "/tokens").await;
    let cookie = session_cookie(&operator).await;
    let forged = http()
        .post(format!("{console}/tokens"))
        .header("cookie", format!("archipel={cookie}"))
        .header("origin", &console)
        .form(&[("csrf", "guessed"), ("uses", "9")])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        forged
            .text()
            .await
            .expect("body")
            .contains("earlier session")
    );
    // With it, done: the token is the only one made.
    let token = csrf(&operator).await;
    let made = http()
        .post(format!("{console}/tokens"))
        .header("cookie", format!("archipel={cookie}"))
        .header("origin", &console)
        .form(&[("csrf", token.as_str()), ("uses", "1")])
        .send()
        .await
        .expect("post");
    assert_eq!(made.status(), StatusCode::OK);
    goto(&operator, &console, "/tokens").await;
    let tokens = operator
        .find_all(Locator::Css("td code"))
        .await
        .expect("the token list");
    assert_eq!(tokens.len(), 1, "{}", text(&operator).await);

    // Idle past its limit, the session is over.
    tokio::time::sleep(Duration::from_secs(11)).await;
    goto(&operator, &console, "/dashboard").await;
    assert_eq!(path(&operator).await, "/sign-in");
    let gone = http()
        .get(format!("{console}/dashboard"))
        .header("cookie", format!("archipel={cookie}"))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
}

/// Sends a text message; returns its event ID.
async fn send(api: &Api, room: &str, text: &str) -> String {
    api.send_text_ok(room, &format!("t{}", text.len()), text)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusion_is_decided_by_another_signed_in_records_manager() {
    let server = TestServer::start().await;
    let console = server.console_url().expect("a console").to_owned();
    let dir = server.data_dir();
    let alice_api = user(&server, "alice").await;
    let rm1_api = user(&server, "rm1").await;
    user(&server, "rm2").await;
    let room = alice_api.create_room().await;
    let private = send(&alice_api, &room, "dinner with my sister on friday").await;
    let rm1_room = rm1_api.create_room().await;
    let own = send(&rm1_api, &rm1_room, "my own party meeting notes").await;
    vault_ok(&dir, &["records-manager", "add", "@rm1:localhost"]);
    vault_ok(&dir, &["records-manager", "add", "@rm2:localhost"]);
    eventually("both messages archived", Duration::from_secs(30), || {
        let dir = dir.clone();
        let (a, b) = (private.clone(), own.clone());
        async move {
            let records = archived(&dir);
            let has = |id: &str| records.iter().any(|r| r["event_id"] == id);
            (has(&a) && has(&b)).then_some(())
        }
    })
    .await;

    let browser = Browser::start().await;
    let operator = browser.session().await;
    first_operator(&server, &operator).await;

    // Alice asks for her private message to go.
    let alice = browser.session().await;
    sign_in(&alice, &console, "alice", PASSWORD, None).await;
    fill(
        &alice,
        &[
            ("events", &private),
            ("reason", "a family matter"),
            ("ground", "5.1.2e"),
        ],
        "request",
    )
    .await;
    let notice = text(&alice).await;
    let reference = notice
        .split("Requested as ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_else(|| panic!("no reference in:\n{notice}"))
        .to_owned();

    // rm1 sees it with the message, and asks for their own message to go:
    // that one they cannot decide themselves, not even with a forged form.
    let rm1 = browser.session().await;
    sign_in(&rm1, &console, "rm1", PASSWORD, None).await;
    goto(&rm1, &console, "/requests").await;
    assert!(text(&rm1).await.contains("dinner with my sister on friday"));
    fill(
        &rm1,
        &[("events", &own), ("reason", "party-political")],
        "request",
    )
    .await;
    let notice = text(&rm1).await;
    let own_reference = notice
        .split("Requested as ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_else(|| panic!("no reference in:\n{notice}"))
        .to_owned();
    assert!(
        rm1.find(Locator::Id(&format!("approve-{own_reference}")))
            .await
            .is_err(),
        "rm1 is offered to decide on their own request"
    );
    let forged = post_as(
        &rm1,
        &console,
        &format!("/requests/{own_reference}/decide"),
        &[("decision", "approve")],
    )
    .await;
    let refused = forged.text().await.expect("body");
    assert!(refused.contains("cannot also decide"), "{refused}");

    // The operator sees neither the messages nor a way to decide.
    goto(&operator, &console, "/requests").await;
    let shown = operator.source().await.expect("source");
    assert!(!shown.contains("dinner with my sister"));
    assert!(!shown.contains("To decide"));
    let forged = http()
        .post(format!("{console}/requests/{reference}/decide"))
        .header(
            "cookie",
            format!("archipel={}", session_cookie(&operator).await),
        )
        .header("origin", &console)
        .form(&[
            ("csrf", csrf(&operator).await.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // rm2 reads Dutch, chosen once and kept, and approves alice's request.
    let rm2 = browser.session().await;
    sign_in(&rm2, &console, "rm2", PASSWORD, None).await;
    goto(&rm2, &console, "/requests").await;
    fill(&rm2, &[], "language").await;
    assert_eq!(path(&rm2).await, "/requests");
    goto(&rm2, &console, "/requests").await;
    let shown = text(&rm2).await;
    assert!(
        shown.contains("Uitzonderingsverzoeken") && shown.contains("Te beslissen"),
        "{shown}"
    );
    screenshot(&rm2, "requests-nl").await;
    fill(&rm2, &[], &format!("approve-{reference}")).await;
    let shown = text(&rm2).await;
    assert!(
        shown.contains(&format!("{reference} goedgekeurd")),
        "{shown}"
    );
    assert!(!shown.contains("dinner with my sister on friday"));
    // The vault's refusals read Dutch too.
    let again = post_as(
        &rm2,
        &console,
        &format!("/requests/{reference}/decide"),
        &[("decision", "approve")],
    )
    .await;
    let refused = again.text().await.expect("body");
    assert!(
        refused.contains(&format!(
            "Over {reference} is al beslist: goedgekeurd door @rm2:localhost."
        )),
        "{refused}"
    );

    // rm2's other pages; none of them is the operator's.
    for page in [
        "/holds",
        "/classification",
        "/retention",
        "/imports",
        "/search",
    ] {
        goto(&rm2, &console, page).await;
        screenshot(&rm2, &page[1..]).await;
        goto(&operator, &console, page).await;
        assert!(
            text(&operator)
                .await
                .contains("This page is for records managers"),
            "{page} as the operator"
        );
    }
    goto(&rm2, &console, "/holds").await;
    fill(
        &rm2,
        &[
            ("subject", "@alice:localhost"),
            ("reason", "Woo request 2026-3"),
        ],
        "place",
    )
    .await;
    assert!(
        text(&rm2)
            .await
            .contains("LH-000001 ingesteld voor user @alice:localhost.")
    );
    screenshot(&rm2, "holds").await;
    // An export of the room, in Dutch as rm2 reads the console.
    goto(&rm2, &console, "/exports").await;
    fill(&rm2, &[("room", room.as_str())], "export").await;
    assert!(
        text(&rm2).await.contains("geëxporteerd"),
        "{}",
        text(&rm2).await
    );
    screenshot(&rm2, "exports").await;
    // A WhatsApp chat alice kept on her phone, uploaded by rm2: imported
    // once, and the same file again adds nothing.
    let files = tempfile::tempdir().expect("a folder");
    let export = crate::imports::ios_export(files.path(), &crate::client::png(4, 4));
    let export = export.to_str().expect("a path");
    for expected in ["record(s) geïmporteerd in !whatsapp_", "Niets nieuws"] {
        goto(&rm2, &console, "/imports").await;
        rm2.find(Locator::Id("export"))
            .await
            .expect("the file field")
            .send_keys(export)
            .await
            .expect("choose the file");
        fill(
            &rm2,
            &[
                ("owner", "alice"),
                ("owner_name", "Jan"),
                ("declaration", "Van mijn werktelefoon; volledig."),
            ],
            "import",
        )
        .await;
        let shown = text(&rm2).await;
        assert!(shown.contains(expected), "{shown}");
    }
    assert!(text(&rm2).await.contains("@alice:localhost"));
    screenshot(&rm2, "imports").await;
    // Search finds the imported chat's words, and not alice's erased
    // message.
    goto(&rm2, &console, "/search").await;
    fill(&rm2, &[("words", "board")], "search").await;
    let shown = text(&rm2).await;
    assert!(shown.contains("Can you send the board?"), "{shown}");
    screenshot(&rm2, "search").await;
    goto(&rm2, &console, "/search").await;
    fill(&rm2, &[("words", "sister")], "search").await;
    let shown = text(&rm2).await;
    assert!(shown.contains("Geen bericht gevonden."), "{shown}");

    // The trail names the people who signed in, and where from.
    goto(&operator, &console, "/audit").await;
    let trail = text(&operator).await;
    for shown in [
        format!("@alice:localhost vault request-exclusion {reference}"),
        format!("@rm2:localhost vault decide approve {reference} (as @rm2:localhost)"),
    ] {
        assert!(trail.contains(&shown), "the trail lacks {shown}:\n{trail}");
    }
    assert!(trail.contains("cannot also decide"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_route_refuses_a_request_without_a_session() {
    let server = TestServer::start().await;
    let console = server.console_url().expect("a console").to_owned();
    let routes = archipel::console_routes();
    let public: Vec<String> = routes
        .iter()
        .filter(|r| r.public)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        public,
        [
            "GET /static/console.css",
            "GET /sign-in",
            "POST /sign-in",
            "GET /sign-in/code",
            "POST /sign-in/code",
            "GET /sign-in/enrol",
            "POST /sign-in/enrol",
            "GET /setup/{token}",
            "GET /setup",
            "POST /setup",
        ],
        "the routes served without a session"
    );
    let client = http();
    for route in routes.iter().filter(|r| !r.public) {
        let path = route
            .path
            .replace("{user}", "@boss:localhost")
            .replace("{reference}", "EX-1")
            .replace("{room}", "!room:localhost");
        for cookie in [None, Some("archipel=made-up")] {
            let request = match route.method {
                "GET" => client.get(format!("{console}{path}")),
                "POST" => client
                    .post(format!("{console}{path}"))
                    .header("origin", &console)
                    .form(&[("csrf", "x")]),
                other => panic!("a {other} route"),
            };
            let request = match cookie {
                Some(cookie) => request.header("cookie", cookie),
                None => request,
            };
            let response = request.send().await.expect("request");
            assert_eq!(
                response.status(),
                StatusCode::SEE_OTHER,
                "{} {path} with {cookie:?}",
                route.method
            );
            assert_eq!(
                response.headers()["location"],
                "/sign-in",
                "{} {path}",
                route.method
            );
        }
    }
    // The sign-in steps without a session go back to the start, the setup
    // link that does not exist is not found, and nothing is a page with
    // someone's data.
    for page in ["/sign-in/code", "/sign-in/enrol", "/setup"] {
        let response = client
            .get(format!("{console}{page}"))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page}");
    }
    let response = client
        .get(format!("{console}/setup/not-a-link"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // In the browser's language, Dutch or English, error pages too.
    for (page, language, shown) in [
        ("/sign-in", "nl-NL,nl;q=0.9", "Inloggen"),
        ("/sign-in", "en-GB", "Sign in"),
        ("/setup/not-a-link", "nl", "Niet gevonden"),
    ] {
        let html = client
            .get(format!("{console}{page}"))
            .header("accept-language", language)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("a page");
        assert!(
            html.contains(&format!("<h1>{shown}</h1>")),
            "{page} in {language}: {html}"
        );
    }
    // Every page comes with a policy that runs no script at all.
    let response = client
        .get(format!("{console}/sign-in"))
        .send()
        .await
        .expect("get");
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .expect("text");
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(!policy.contains("script-src"), "{policy}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
}
