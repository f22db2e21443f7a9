//! `archipel local-console`: the console on the machine's own screen
//! (tty1 on the appliance). Without signing in it shows where the node is
//! reached and how it is doing, and the node's log; behind an operator's
//! password and authenticator code it offers a few actions, each carried
//! out and recorded by the node through its admin socket (the operations
//! layer, with the operator as the actor).
//!
//! Built for a bare Linux console: it redraws the whole screen at every
//! refresh (boot messages written over it are gone within seconds), uses
//! the 16 colours and plain characters a VT has, and neither Ctrl-C nor a
//! keyboard that goes away stops it: without a keyboard it keeps showing
//! the status.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::{
    DefaultTerminal, Frame,
    crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Wrap},
};

use crate::{
    admin::protocol::{self as admin, LocalAction, Request},
    config::Config,
    ops::status::NodeStatus,
};

/// How often the status is read again.
const REFRESH: Duration = Duration::from_secs(5);
/// How long the status may take before the screen says the node does not
/// answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Screen {
    Status,
    Log,
    Actions,
}

/// The sign-in form's fields.
#[derive(Default)]
struct SignIn {
    user: String,
    password: String,
    code: String,
    field: usize,
}

struct App {
    config: Config,
    screen: Screen,
    status: Result<NodeStatus, String>,
    read_at: Instant,
    log: Vec<String>,
    sign_in: SignIn,
    /// The node's session for the signed-in operator, and who they are.
    session: Option<(String, String)>,
    /// What the last action said.
    said: Option<Result<String, String>>,
    /// An action waiting for "y".
    confirming: Option<LocalAction>,
    /// How the data partition is locked, read at the start.
    seal: String,
}

/// Left by the first boot's sealing (`seal-data`) once it has shown the
/// data partition's recovery key on the screen.
const RECOVERY_KEY_SHOWN: &str = "/run/archipel/recovery-key-shown";

/// Runs the local console until the process is stopped.
pub fn run(config: Config) -> Result<()> {
    keep_recovery_key_shown(std::path::Path::new(RECOVERY_KEY_SHOWN));
    let mut terminal = ratatui::try_init().context("opening the terminal")?;
    let result = App::new(config).run(&mut terminal);
    ratatui::restore();
    result
}

/// At the boot that showed the recovery key, leaves it on the screen
/// until someone presses Enter there: drawing the console would wipe it.
/// Part of the console itself rather than of its unit's start, so that the
/// boot does not wait for that person.
fn keep_recovery_key_shown(marker: &std::path::Path) {
    if !marker.exists() {
        return;
    }
    println!("\n Press Enter once the recovery key above is written down.");
    let mut line = String::new();
    // End of input (Ctrl-D, a terminal that closed) is not a yes: the key
    // stays until Enter.
    while !matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
        std::thread::sleep(Duration::from_secs(2));
    }
    if let Err(e) = std::fs::remove_file(marker) {
        eprintln!("the recovery key marker stays: {e}");
    }
}

impl App {
    fn new(config: Config) -> Self {
        let mut app = Self {
            config,
            screen: Screen::Status,
            status: Err("reading…".into()),
            read_at: Instant::now(),
            log: Vec::new(),
            sign_in: SignIn::default(),
            session: None,
            said: None,
            confirming: None,
            seal: seal_state(),
        };
        app.refresh();
        app
    }

    fn refresh(&mut self) {
        self.status = admin::ask_within(&self.config, &Request::Status, Some(ASK_TIMEOUT))
            .map_err(|e| format!("{e:#}"))
            .and_then(|json| serde_json::from_str(&json).map_err(|e| e.to_string()));
        if self.screen == Screen::Log {
            self.log = crate::ops::status::journal();
        }
        self.read_at = Instant::now();
    }

    fn run(mut self, terminal: &mut DefaultTerminal) -> Result<()> {
        loop {
            // Everything again: whatever the kernel wrote over the screen
            // is gone at the next refresh.
            terminal.clear()?;
            terminal.draw(|frame| self.draw(frame))?;
            let deadline = self.read_at + REFRESH;
            while Instant::now() < deadline {
                let wait = deadline.saturating_duration_since(Instant::now());
                // A keyboard that is gone (or a terminal that closed) is
                // no reason to stop showing the status.
                match event::poll(wait) {
                    Ok(true) => match event::read() {
                        Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                            self.key(key);
                            terminal.draw(|frame| self.draw(frame))?;
                        }
                        Ok(Event::Resize(..)) => {
                            terminal.clear()?;
                            terminal.draw(|frame| self.draw(frame))?;
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(wait),
                    },
                    Ok(false) => {}
                    Err(_) => std::thread::sleep(wait),
                }
            }
            self.refresh();
        }
    }

    fn key(&mut self, key: KeyEvent) {
        let screen = match key.code {
            KeyCode::F(1) => Some(Screen::Status),
            KeyCode::F(2) => Some(Screen::Log),
            KeyCode::F(3) => Some(Screen::Actions),
            _ => None,
        };
        if let Some(screen) = screen {
            self.screen = screen;
            self.said = None;
            self.confirming = None;
            if screen == Screen::Log {
                self.log = crate::ops::status::journal();
            }
            return;
        }
        if self.screen != Screen::Actions {
            return;
        }
        match &self.session {
            None => self.sign_in_key(key),
            Some(_) => self.action_key(key),
        }
    }

    fn sign_in_key(&mut self, key: KeyEvent) {
        let form = &mut self.sign_in;
        let field = match form.field {
            0 => &mut form.user,
            1 => &mut form.password,
            _ => &mut form.code,
        };
        match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => field.push(c),
            KeyCode::Backspace => {
                field.pop();
            }
            KeyCode::Tab | KeyCode::Down => form.field = (form.field + 1) % 3,
            KeyCode::BackTab | KeyCode::Up => form.field = (form.field + 2) % 3,
            KeyCode::Enter if form.field < 2 => form.field += 1,
            KeyCode::Enter => {
                let request = Request::LocalSignIn {
                    user: form.user.clone(),
                    password: std::mem::take(&mut form.password),
                    code: std::mem::take(&mut form.code),
                };
                form.field = 1;
                match admin::ask(&self.config, &request) {
                    Ok(session) => {
                        self.session = Some((session, form.user.clone()));
                        self.said = None;
                    }
                    Err(e) => self.said = Some(Err(format!("{e:#}"))),
                }
            }
            _ => {}
        }
    }

    fn action_key(&mut self, key: KeyEvent) {
        if let Some(action) = self.confirming.take() {
            if key.code == KeyCode::Char('y') {
                self.act(action);
            }
            return;
        }
        let action = match key.code {
            KeyCode::Char('1') => LocalAction::SetupLink,
            KeyCode::Char('2') => LocalAction::VerifyVault,
            KeyCode::Char('3') => LocalAction::BackupNow,
            KeyCode::Char('4') => LocalAction::Restart,
            KeyCode::Char('5') => LocalAction::Reboot,
            KeyCode::Char('0') => {
                self.session = None;
                self.said = None;
                return;
            }
            _ => return,
        };
        if matches!(action, LocalAction::Restart | LocalAction::Reboot) {
            self.confirming = Some(action);
        } else {
            self.act(action);
        }
    }

    fn act(&mut self, action: LocalAction) {
        let Some((session, _)) = &self.session else {
            return;
        };
        let request = Request::Local {
            session: session.clone(),
            action,
        };
        let said = admin::ask(&self.config, &request).map_err(|e| format!("{e:#}"));
        if said.as_ref().is_err_and(|e| e.contains("sign in again")) {
            self.session = None;
        }
        if said.is_ok() {
            // Recorded by the node; systemd carries it out.
            let systemctl = match action {
                LocalAction::Restart => Some(["restart", "archipel.service"].as_slice()),
                LocalAction::Reboot => Some(["reboot"].as_slice()),
                _ => None,
            };
            if let Some(args) = systemctl {
                let _ = std::process::Command::new("systemctl").args(args).status();
            }
        }
        self.said = Some(said);
    }

    fn draw(&self, frame: &mut Frame<'_>) {
        let [top, body, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let title = match &self.status {
            Ok(s) => format!(" Archipel {} - {} ", s.version, s.server_name),
            Err(_) => format!(" Archipel - {} ", self.config.homeserver.server_name),
        };
        frame.render_widget(
            Paragraph::new(title).style(Style::new().bg(Color::Blue).fg(Color::White)),
            top,
        );
        let keys = " F1 Status   F2 Log   F3 Actions";
        frame.render_widget(
            Paragraph::new(keys).style(Style::new().bg(Color::Blue).fg(Color::White)),
            bottom,
        );
        let lines = match self.screen {
            Screen::Status => self.status_lines(),
            Screen::Log => self.log.iter().map(|l| Line::raw(l.clone())).collect(),
            Screen::Actions => self.action_lines(),
        };
        let name = match self.screen {
            Screen::Status => " Status ",
            Screen::Log => " Log (journal of archipel.service) ",
            Screen::Actions => " Actions ",
        };
        let scroll = match self.screen {
            // The newest lines of the log.
            Screen::Log => u16::try_from(lines.len().saturating_sub(usize::from(body.height) - 2))
                .unwrap_or(u16::MAX),
            _ => 0,
        };
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::new().borders(Borders::ALL).title(name))
                .wrap(Wrap { trim: false })
                .scroll((scroll, 0)),
            body,
        );
    }

    fn status_lines(&self) -> Vec<Line<'static>> {
        let status = match &self.status {
            Ok(status) => status,
            Err(e) => {
                return vec![
                    alarm("The node does not answer."),
                    Line::raw(e.clone()),
                    Line::raw(""),
                    Line::raw("It may be starting, or stopped: see F2 (log)."),
                ];
            }
        };
        let now = jiff::Timestamp::now().as_second();
        let mut lines = vec![
            field(
                "Web console",
                status.console_url.as_deref().unwrap_or("off"),
            ),
            field("Addresses", &addresses()),
            field("Data disk", &self.seal),
            field(
                "Running for",
                &crate::console::web::duration(now - status.started),
            ),
            Line::raw(""),
            field(
                "Users",
                &format!(
                    "{} active, {} operator(s)",
                    status.users_active, status.server_admins
                ),
            ),
            field("Rooms", &status.rooms.to_string()),
            field(
                "Vault",
                &format!(
                    "{} records, checkpoint {}",
                    status.vault_records,
                    status
                        .checkpoint
                        .map_or("not signed yet".to_owned(), |size| format!(
                            "signed at {size}"
                        ))
                ),
            ),
        ];
        lines.push(field(
            "Last verify",
            &status.last_verify.as_ref().map_or_else(
                || "never (Actions, 2)".to_owned(),
                |last| {
                    let outcome = if last.problems == 0 {
                        "verified".to_owned()
                    } else {
                        format!("{} problem(s)", last.problems)
                    };
                    format!(
                        "{}: {outcome}, {} records",
                        crate::console::web::when(last.at),
                        last.records
                    )
                },
            ),
        ));
        for c in &status.cosigned {
            lines.push(field(
                "  co-signed by",
                &format!(
                    "{} at {}{}",
                    c.witness,
                    c.size,
                    if c.verifies { "" } else { " (does not verify)" }
                ),
            ));
        }
        for (peer, queued) in &status.peers {
            lines.push(field("Peer", &format!("{peer}: {queued} event(s) queued")));
        }
        for (target, at) in &status.backups {
            lines.push(field(
                "Last backup",
                &format!("{target}: {}", crate::console::web::when(*at)),
            ));
        }
        lines.push(field(
            "Certificate",
            &status
                .certificate_expiry
                .map_or("none served".to_owned(), |at| {
                    format!("expires {}", crate::console::web::when(at))
                }),
        ));
        lines.push(Line::raw(""));
        let alarms = status.alarms(now);
        if alarms.is_empty() {
            lines.push(Line::styled("No alarms.", Style::new().fg(Color::Green)));
        }
        let english = crate::console::web::Texts(crate::console::web::Lang::En);
        lines.extend(alarms.iter().map(|a| alarm(&a.text(english))));
        lines
    }

    fn action_lines(&self) -> Vec<Line<'static>> {
        let mut lines = Vec::new();
        match &self.session {
            None => {
                lines.push(Line::raw(
                    "Sign in as an operator: user name, password, and the code of your authenticator.",
                ));
                lines.push(Line::raw("Tab moves between fields, Enter signs in."));
                lines.push(Line::raw(""));
                let form = &self.sign_in;
                let masked = "*".repeat(form.password.chars().count());
                for (i, (label, value)) in [
                    ("User", form.user.as_str()),
                    ("Password", masked.as_str()),
                    ("Code", form.code.as_str()),
                ]
                .into_iter()
                .enumerate()
                {
                    let marker = if i == form.field { "> " } else { "  " };
                    lines.push(Line::from(vec![
                        Span::raw(format!("{marker}{label:<10}")),
                        Span::styled(
                            format!("{value}_"),
                            Style::new().add_modifier(Modifier::BOLD),
                        ),
                    ]));
                }
            }
            Some((_, user)) => {
                lines.push(Line::raw(format!("Signed in as {user}.")));
                lines.push(Line::raw(""));
                for entry in [
                    "1  Create a one-time setup link for a new operator",
                    "2  Verify the vault",
                    "3  Back up now",
                    "4  Restart the node",
                    "5  Reboot the machine",
                    "0  Sign out",
                ] {
                    lines.push(Line::raw(entry));
                }
                if let Some(action) = self.confirming {
                    lines.push(Line::raw(""));
                    lines.push(alarm(&format!(
                        "{action:?}: press y to confirm, any other key to cancel."
                    )));
                }
            }
        }
        match &self.said {
            Some(Ok(said)) => {
                lines.push(Line::raw(""));
                lines.push(Line::styled(said.clone(), Style::new().fg(Color::Green)));
            }
            Some(Err(e)) => {
                lines.push(Line::raw(""));
                lines.push(alarm(e));
            }
            None => {}
        }
        lines
    }
}

fn field(name: &str, value: &str) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{name:<14}"), Style::new().fg(Color::Cyan)),
        Span::raw(value.to_owned()),
    ])
}

fn alarm(text: &str) -> Line<'static> {
    Line::styled(
        format!("! {text}"),
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
    )
}

/// The machine's IPv4 addresses, other than loopback.
fn addresses() -> String {
    let output = std::process::Command::new("ip")
        .args(["-4", "-br", "addr", "show", "scope", "global"])
        .output();
    let Ok(output) = output else {
        return "unknown".into();
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let found: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next()?;
            let address = parts.nth(1)?;
            Some(format!("{address} ({name})"))
        })
        .collect();
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

/// The appliance's encrypted data partition.
const DATA_PARTITION: &str = "/dev/disk/by-partlabel/archipel-data";

/// How the data partition is locked, as its LUKS2 key slots say.
fn seal_state() -> String {
    if !std::path::Path::new(DATA_PARTITION).exists() {
        return "no encrypted data partition on this machine".into();
    }
    match std::process::Command::new("systemd-cryptenroll")
        .arg(DATA_PARTITION)
        .output()
    {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            // SLOT TYPE, then one line per slot.
            let kinds: Vec<&str> = text
                .lines()
                .skip(1)
                .filter_map(|line| line.split_whitespace().nth(1))
                .collect();
            seal_description(&kinds)
        }
        Ok(output) => format!(
            "unknown: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => format!("unknown: {e}"),
    }
}

/// What key slots of these kinds mean for the person at the machine.
fn seal_description(kinds: &[&str]) -> String {
    let has = |kind: &str| kinds.contains(&kind);
    if has("password") {
        "encrypted, NOT sealed yet: an empty passphrase opens it".into()
    } else if has("tpm2") && has("recovery") {
        "encrypted, sealed to this machine's TPM2 (PCR 7), recovery key enrolled".into()
    } else if has("tpm2") {
        "encrypted, sealed to this machine's TPM2 (PCR 7), NO recovery key".into()
    } else if has("recovery") {
        "encrypted, no TPM2: the recovery key is asked at every boot".into()
    } else {
        format!("encrypted, key slots: {}", kinds.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::seal_description;

    #[test]
    fn the_seal_is_told_from_the_key_slots() {
        assert!(seal_description(&["recovery", "tpm2"]).contains("sealed to this machine's TPM2"));
        assert!(seal_description(&["recovery", "tpm2"]).contains("recovery key enrolled"));
        assert!(seal_description(&["password"]).contains("NOT sealed"));
        assert!(seal_description(&["recovery"]).contains("asked at every boot"));
        assert!(seal_description(&["tpm2"]).contains("NO recovery key"));
    }
}
