//! A real Chromium, driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`) with fantoccini, for the web console's tests; and
//! an authenticator that reads the secret the console shows.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::harness::eventually;

/// One chromedriver; each [`Browser::session`] is a separate Chromium with
/// its own cookies, as two people on two computers. Chromedriver runs in a
/// process group of its own, with every Chromium it starts: dropped, the
/// whole group is killed, so no browser outlives its test; their profiles
/// live in a temporary folder of the Browser's own, removed with it.
pub struct Browser {
    driver: Child,
    url: String,
    _profiles: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let group = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Browser {
    pub async fn start() -> Self {
        let port = crate::federation::free_port();
        let profiles = tempfile::tempdir().expect("a folder for the profiles");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Where chromedriver makes each Chromium's profile.
            .env("TMPDIR", profiles.path())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) runs");
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver to listen", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                reqwest::get(format!("{url}/status"))
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        Self {
            driver,
            url,
            _profiles: profiles,
        }
    }

    /// A new Chromium window with no cookies.
    pub async fn session(&self) -> Client {
        // fantoccini's client is built on rustls, which needs a provider
        // chosen when more than one is linked in (the first call wins).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": "/usr/bin/chromium",
                // No connections of Chromium's own: this machine reaches
                // only loopback.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync"],
            }),
        );
        ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

/// An authenticator app: the codes of a secret, each time step used once
/// (the console refuses a code used before).
pub struct Authenticator {
    secret: String,
    last_step: u64,
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl Authenticator {
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            last_step: 0,
        }
    }

    fn totp(&self) -> totp_rs::Totp {
        totp_rs::Builder::new()
            .with_secret(totp_rs::Secret::try_from_base32(&self.secret).expect("base32 secret"))
            .build_noncompliant()
    }

    /// The code of a time step not used yet (waiting for the next step if
    /// this one was).
    pub async fn code(&mut self) -> String {
        loop {
            let step = unix_seconds() / 30;
            if step > self.last_step {
                self.last_step = step;
                return self.totp().generate(step * 30).to_string();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A six-digit code that is not valid now (nor a step either side).
    pub fn wrong_code(&self) -> String {
        let now = unix_seconds();
        let valid: Vec<String> = [now - 30, now, now + 30]
            .iter()
            .map(|t| self.totp().generate(*t).to_string())
            .collect();
        (0..)
            .map(|n| format!("{:06}", 123_456 + n))
            .find(|code| !valid.contains(code))
            .expect("a wrong code")
    }
}

/// Fills the fields of the form around the element with id `first` and
/// submits it with the button `submit`.
pub async fn fill(browser: &Client, fields: &[(&str, &str)], submit: &str) {
    for (id, value) in fields {
        let Ok(field) = browser.find(Locator::Id(id)).await else {
            panic!(
                "no field #{id} on {}:\n{}",
                page_url(browser).await,
                text(browser).await
            );
        };
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    }
    let Ok(button) = browser.find(Locator::Id(submit)).await else {
        panic!(
            "no button #{submit} on {}:\n{}",
            page_url(browser).await,
            text(browser).await
        );
    };
    let before = browser.find(Locator::Css("body")).await.expect("a body");
    button.click().await.expect("click");
    // Done when the page the form was on is gone.
    eventually("the form's answer", Duration::from_secs(20), || {
        let before = before.clone();
        async move { before.tag_name().await.is_err().then_some(()) }
    })
    .await;
}

pub async fn page_url(browser: &Client) -> String {
    browser
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default()
}

/// The text of the page's body.
pub async fn text(browser: &Client) -> String {
    browser
        .find(Locator::Css("body"))
        .await
        .expect("a body")
        .text()
        .await
        .expect("its text")
}

/// The path of the page the browser shows.
pub async fn path(browser: &Client) -> String {
    browser
        .current_url()
        .await
        .expect("a URL")
        .path()
        .to_owned()
}

/// Saves what the browser shows as `NAME.png` among the console's
/// screenshots (`$CARGO_TARGET_TMPDIR/console-screenshots`).
pub async fn screenshot(browser: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("save the screenshot");
}

/// Signs `user` in with `password` and a code, enrolling the
/// authenticator if the console asks to; returns the authenticator.
pub async fn sign_in(
    browser: &Client,
    console: &str,
    user: &str,
    password: &str,
    authenticator: Option<&mut Authenticator>,
) -> Option<Authenticator> {
    browser
        .goto(&format!("{console}/sign-in"))
        .await
        .expect("open the sign-in page");
    fill(browser, &[("user", user), ("password", password)], "submit").await;
    match authenticator {
        Some(authenticator) => {
            assert_eq!(
                path(browser).await,
                "/sign-in/code",
                "{}",
                text(browser).await
            );
            let code = authenticator.code().await;
            fill(browser, &[("code", &code)], "submit").await;
            assert_signed_in(browser, user).await;
            None
        }
        None => Some(enrol(browser, user).await),
    }
}

/// On the enrolment page: reads the secret, confirms it with a code.
pub async fn enrol(browser: &Client, user: &str) -> Authenticator {
    assert_eq!(
        path(browser).await,
        "/sign-in/enrol",
        "{}",
        text(browser).await
    );
    let secret = browser
        .find(Locator::Id("secret"))
        .await
        .expect("the secret is shown")
        .text()
        .await
        .expect("its text");
    let mut authenticator = Authenticator::new(&secret);
    let code = authenticator.code().await;
    fill(browser, &[("code", &code)], "submit").await;
    assert_signed_in(browser, user).await;
    authenticator
}

async fn assert_signed_in(browser: &Client, user: &str) {
    let Ok(shown) = browser.find(Locator::Id("signed-in-as")).await else {
        panic!("not signed in as {user}: {}", text(browser).await);
    };
    let shown = shown.text().await.expect("text");
    assert!(
        shown.starts_with(&format!("@{user}:")),
        "signed in as {shown}"
    );
}

/// The CSRF token in the page's forms.
pub async fn csrf(browser: &Client) -> String {
    browser
        .find(Locator::Css("input[name=csrf]"))
        .await
        .expect("a form with a CSRF token")
        .attr("value")
        .await
        .expect("its value")
        .expect("a value")
}

/// The session cookie's value.
pub async fn session_cookie(browser: &Client) -> String {
    browser
        .get_named_cookie("archipel")
        .await
        .expect("the session cookie")
        .value()
        .to_owned()
}
