//! A person signed in to the web console over plain HTTP, as a browser's
//! forms would send (cookie, CSRF token, own origin): what the tests of
//! the vault's procedures use, since records managers act only there.

use reqwest::{StatusCode, redirect::Policy};

use crate::browser::Authenticator;
use crate::client::PASSWORD;
use crate::harness::TestServer;

pub struct ConsoleClient {
    http: reqwest::Client,
    console: String,
    cookie: String,
    csrf: String,
    /// The person's authenticator app.
    pub authenticator: Authenticator,
}

/// The text between `start` and `end` after `start` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    let to = html[from..].find(end)? + from;
    Some(&html[from..to])
}

fn unescape(text: &str) -> String {
    text.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The session cookie a response sets.
fn set_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("archipel="))
        .and_then(|v| v.split(';').next())
        .map(ToOwned::to_owned)
}

impl ConsoleClient {
    /// Signs `name` (with [`PASSWORD`]) in to `server`'s console, enrolling
    /// a new authenticator.
    pub async fn sign_in(server: &TestServer, name: &str) -> Self {
        let console = server.console_url().expect("a console").to_owned();
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("a client");
        let response = http
            .post(format!("{console}/sign-in"))
            .header("origin", &console)
            .form(&[("user", name), ("password", PASSWORD)])
            .send()
            .await
            .expect("sign in");
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{name}'s password"
        );
        assert_eq!(response.headers()["location"], "/sign-in/enrol");
        let cookie = set_cookie(&response).expect("a session cookie");
        Self::enrol(http, console, cookie).await
    }

    /// Creates the first operator, `name` with [`PASSWORD`], through the
    /// setup link the node printed, and enrols their authenticator.
    pub async fn first_operator(server: &TestServer, name: &str) -> Self {
        let console = server.console_url().expect("a console").to_owned();
        let link = server.setup_link().expect("a new node prints a setup link");
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("a client");
        let opened = http.get(link).send().await.expect("open the setup link");
        assert_eq!(opened.headers()["location"], "/setup");
        let cookie = set_cookie(&opened).expect("a session cookie");
        let page = http
            .get(format!("{console}/setup"))
            .header("cookie", format!("archipel={cookie}"))
            .send()
            .await
            .expect("the setup page")
            .text()
            .await
            .expect("a page");
        let csrf = between(&page, "name=\"csrf\" value=\"", "\"").expect("a token");
        let created = http
            .post(format!("{console}/setup"))
            .header("cookie", format!("archipel={cookie}"))
            .header("origin", &console)
            .form(&[
                ("csrf", csrf),
                ("user", name),
                ("password", PASSWORD),
                ("repeat", PASSWORD),
            ])
            .send()
            .await
            .expect("create the operator");
        assert_eq!(created.headers()["location"], "/sign-in/enrol");
        let cookie = set_cookie(&created).expect("a new session cookie");
        Self::enrol(http, console, cookie).await
    }

    /// On the enrolment step: reads the secret, confirms it with a code.
    async fn enrol(http: reqwest::Client, console: String, cookie: String) -> Self {
        let mut client = Self {
            http,
            console,
            cookie,
            csrf: String::new(),
            authenticator: Authenticator::new(""),
        };
        let page = client.get("/sign-in/enrol").await;
        let secret = between(&page, "<code id=\"secret\">", "</code>")
            .expect("the authenticator's secret")
            .to_owned();
        client.authenticator = Authenticator::new(&secret);
        let code = client.authenticator.code().await;
        let response = client
            .send("/sign-in/enrol", &[("code", code.as_str())])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "the first code");
        client.cookie = set_cookie(&response).expect("a new session cookie");
        client.get("/").await;
        client
    }

    /// The same session, on `server` restarted (its console's address
    /// changes; the session lives in its database).
    pub fn follow(&mut self, server: &TestServer) {
        self.console = server.console_url().expect("a console").to_owned();
    }

    async fn send(&self, page: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        self.http
            .post(format!("{}{page}", self.console))
            .header("cookie", format!("archipel={}", self.cookie))
            .header("origin", &self.console)
            .form(&form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {page}: {e}"))
    }

    /// `GET page` with the session's cookie, redirects not followed.
    async fn fetch(&self, page: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{page}", self.console))
            .header("cookie", format!("archipel={}", self.cookie))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {page}: {e}"))
    }

    /// A page (following the redirects of the console's own pages).
    pub async fn get(&mut self, page: &str) -> String {
        let mut page = page.to_owned();
        loop {
            let response = self.fetch(&page).await;
            if response.status() == StatusCode::SEE_OTHER {
                page = response.headers()["location"]
                    .to_str()
                    .expect("a location")
                    .to_owned();
                continue;
            }
            let html = response.text().await.expect("a page");
            if let Some(token) = between(&html, "name=\"csrf\" value=\"", "\"") {
                self.csrf = token.to_owned();
            }
            return html;
        }
    }

    /// A response's status and body as bytes, without following
    /// redirects: a download.
    pub async fn download(&mut self, page: &str) -> (StatusCode, Vec<u8>) {
        let response = self.fetch(page).await;
        let status = response.status();
        (status, response.bytes().await.expect("a body").to_vec())
    }

    /// Sends a form of `page`'s; returns the status and the page that
    /// answers.
    pub async fn try_post(&mut self, page: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let response = self.send(page, fields).await;
        (response.status(), response.text().await.expect("a page"))
    }

    /// Sends a form of `page`'s; returns the notice of the page that
    /// answers (what was done, or why not).
    pub async fn post(&mut self, page: &str, fields: &[(&str, &str)]) -> String {
        let response = self.send(page, fields).await;
        let status = response.status();
        let html = response.text().await.expect("a page");
        assert_eq!(status, StatusCode::OK, "POST {page}:\n{html}");
        if let Some(token) = between(&html, "name=\"csrf\" value=\"", "\"") {
            self.csrf = token.to_owned();
        }
        between(&html, "id=\"notice\">", "</p>")
            .map(unescape)
            .unwrap_or_else(|| panic!("no notice after POST {page}:\n{html}"))
    }

    /// Asks for `events` (of this person's) to be excluded; returns the
    /// request's reference, or the refusal.
    pub async fn request_exclusion(
        &mut self,
        events: &[&str],
        reason: &str,
        ground: Option<&str>,
    ) -> Result<String, String> {
        self.get("/requests").await;
        let events = events.join("\n");
        let notice = self
            .post(
                "/requests",
                &[
                    ("events", events.as_str()),
                    ("reason", reason),
                    ("ground", ground.unwrap_or_default()),
                ],
            )
            .await;
        match notice.strip_prefix("Requested as ") {
            Some(rest) => Ok(rest.split('.').next().expect("a reference").to_owned()),
            None => Err(notice),
        }
    }

    /// Approves or rejects an exclusion request; returns the notice.
    pub async fn decide(&mut self, reference: &str, approve: bool, note: &str) -> String {
        self.get("/requests").await;
        let decision = if approve { "approve" } else { "reject" };
        self.post(
            &format!("/requests/{reference}/decide"),
            &[("decision", decision), ("note", note)],
        )
        .await
    }

    /// Places a legal hold on a `room` or `user` (`scope`); returns the
    /// notice.
    pub async fn place_hold(&mut self, scope: &str, subject: &str, reason: &str) -> String {
        self.get("/holds").await;
        self.post(
            "/holds",
            &[("scope", scope), ("subject", subject), ("reason", reason)],
        )
        .await
    }

    pub async fn release_hold(&mut self, reference: &str) -> String {
        self.get("/holds").await;
        self.post(&format!("/holds/{reference}/release"), &[]).await
    }

    pub async fn set_role(&mut self, user: &str, role: &str) -> String {
        self.get("/classification").await;
        self.post("/classification/role", &[("user", user), ("role", role)])
            .await
    }

    pub async fn classify(&mut self, room: &str, classification: &str) -> String {
        self.get("/classification").await;
        self.post(
            "/classification/room",
            &[("room", room), ("classification", classification)],
        )
        .await
    }

    /// Proposes a destruction list as of `as_of` (`YYYY-MM-DD`, empty for
    /// today); returns the notice.
    pub async fn propose_destruction(&mut self, as_of: &str) -> String {
        self.get("/retention").await;
        self.post("/retention", &[("as_of", as_of)]).await
    }

    pub async fn approve_destruction(&mut self, reference: &str) -> String {
        self.get("/retention").await;
        self.post(&format!("/retention/{reference}/approve"), &[])
            .await
    }
}
