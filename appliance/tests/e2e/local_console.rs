//! The local console, as on the machine's screen: run in tmux, read with
//! `capture-pane`, typed into with `send-keys`.

use std::{process::Command, time::Duration};

use crate::client::PASSWORD;
use crate::console_client::ConsoleClient;
use crate::harness::{TestServer, archipel_bin, eventually};

/// A terminal of 110 × 32 characters running one command, on its own tmux
/// server (killed when dropped).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Self {
        let socket = format!("archipel-test-{}", std::process::id());
        let tmux = Self { socket };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "screen",
            "-x",
            "110",
            "-y",
            "32",
            command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What the screen shows now.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "screen"])
    }

    /// Types `text` as it is.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "screen", "-l", text]);
    }

    /// Presses keys by tmux's names (`Tab`, `Enter`, `F3`, `C-c`).
    fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "screen"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Waits until the screen shows `text`; returns the screen.
    async fn shows(&self, text: &str) -> String {
        eventually(
            &format!("the screen to show {text:?}"),
            Duration::from_secs(20),
            || async { Some(self.screen()).filter(|screen| screen.contains(text)) },
        )
        .await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_console_shows_the_node_and_acts_for_a_signed_in_operator() {
    let server = TestServer::start().await;
    let console = server.console_url().expect("a console").to_owned();
    let mut boss = ConsoleClient::first_operator(&server, "boss").await;
    let screen = Tmux::start(&format!(
        "{} local-console --data-dir {}",
        archipel_bin(),
        server.data_dir().display()
    ));

    // The status, without signing in: where the console is, how the node
    // is doing.
    let shown = screen.shows("No alarms.").await;
    for expected in [
        "Archipel",
        "localhost",
        &format!("Web console   {console}"),
        "1 operator(s)",
        "F1 Status   F2 Log   F3 Actions",
    ] {
        assert!(shown.contains(expected), "{expected:?} not on\n{shown}");
    }
    // Ctrl-C does not stop it.
    screen.press(&["C-c"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    screen.shows("No alarms.").await;

    // Actions need an operator signed in: a wrong code is refused.
    screen.press(&["F3"]);
    screen.shows("Sign in as an operator").await;
    screen.type_text("boss");
    screen.press(&["Tab"]);
    screen.type_text(PASSWORD);
    screen.press(&["Tab"]);
    screen.type_text(&boss.authenticator.wrong_code());
    screen.press(&["Enter"]);
    let shown = screen.shows("wrong or already used code").await;
    assert!(!shown.contains(PASSWORD), "the password is on the screen");
    // The password and code are asked again.
    screen.type_text(PASSWORD);
    screen.press(&["Tab"]);
    let code = boss.authenticator.code().await;
    screen.type_text(&code);
    screen.press(&["Enter"]);
    screen.shows("Signed in as boss.").await;

    // A setup link for another operator, which the web console takes.
    screen.press(&["1"]);
    let shown = screen.shows("/setup/").await;
    let link = shown
        .split(|c: char| c.is_whitespace() || c == '│')
        .find(|word| word.contains("/setup/"))
        .expect("the link")
        .to_owned();
    assert!(link.starts_with(&format!("{console}/setup/")), "{link}");
    let opened = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
        .get(&link)
        .send()
        .await
        .expect("open the link");
    assert_eq!(opened.headers()["location"], "/setup");

    // The vault verifies; a backup needs a target; a restart waits for a
    // confirmation that does not come.
    screen.press(&["2"]);
    screen.shows("the vault verifies").await;
    // The status screen shows when, and how it went.
    screen.press(&["F1"]);
    screen.shows("verified,").await;
    screen.press(&["F3"]);
    screen.press(&["3"]);
    screen.shows("no backup targets are configured").await;
    screen.press(&["4"]);
    screen.shows("press y to confirm").await;
    screen.press(&["n"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!screen.screen().contains("press y to confirm"));

    // Each was recorded with the operator as the actor, from here.
    let trail = boss.get("/audit").await;
    for expected in [
        "console setup-link create",
        "vault verify",
        "backup now",
        "local console",
        "wrong or already used code",
    ] {
        assert!(trail.contains(expected), "{expected:?} not in the trail");
    }

    // The log screen.
    screen.press(&["F2"]);
    screen.shows("Log (journal of archipel.service)").await;
}
