//! Reading and checking a provisioning file. Every problem names the field
//! (`tls.acme_directory`, `admins[0].password`) and the line.

use std::{
    fmt,
    net::IpAddr,
    ops::Range,
    path::{Component, Path, PathBuf},
};

use toml::Spanned;

use crate::schema::{NetworkMode, Provisioning};

/// One mistake in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field, dotted from the top: `machine.hostname`.
    pub field: String,
    /// 1-based; `None` when the file could not be read at all.
    pub line: Option<usize>,
    pub message: String,
}

/// Every mistake found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.line {
                Some(line) => write!(f, "{}:{line}: ", self.file.display())?,
                None => write!(f, "{}: ", self.file.display())?,
            }
            if !problem.field.is_empty() {
                write!(f, "`{}`: ", problem.field)?;
            }
            write!(f, "{}", problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Reads and checks the provisioning file at `path`; relative paths in it
/// are resolved against its folder and must exist.
pub fn check(path: &Path) -> Result<Provisioning, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| Problems {
        file: path.to_owned(),
        problems: vec![Problem {
            field: String::new(),
            line: None,
            message: format!("cannot be read: {e}"),
        }],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    check_str(&text, path, base)
}

/// Checks the text of a provisioning file named `file` whose relative paths
/// are relative to `base`.
pub fn check_str(text: &str, file: &Path, base: &Path) -> Result<Provisioning, Problems> {
    let fail = |problems| Problems {
        file: file.to_owned(),
        problems,
    };
    let provisioning: Provisioning = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let message = e.message().trim().to_owned();
        let (field, line) = match span {
            Some(span) => (
                field_at(text, &span, &message),
                Some(line_of(text, span.start)),
            ),
            None => (String::new(), None),
        };
        fail(vec![Problem {
            field,
            line,
            message,
        }])
    })?;
    let mut checker = Checker {
        text,
        base,
        problems: Vec::new(),
    };
    checker.all(&provisioning);
    if checker.problems.is_empty() {
        Ok(provisioning)
    } else {
        checker.problems.sort_by_key(|p| p.line);
        Err(fail(checker.problems))
    }
}

/// The 1-based line of byte `offset` (of a `Spanned` value's span) in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted field a parse error at `span` is about: the table header on
/// or above its line, and the key on its line (or, for a missing or unknown
/// field, the field the message names).
fn field_at(text: &str, span: &Range<usize>, message: &str) -> String {
    let header = |line: &str| line.trim().trim_matches(['[', ']']).trim().to_owned();
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let on_header = line.trim_start().starts_with('[');
    let table = if on_header {
        header(line)
    } else {
        text[..line_start]
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('['))
            .map(header)
            .unwrap_or_default()
    };
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"))
        .map(str::to_owned);
    let key = named.or_else(|| {
        (!on_header)
            .then(|| {
                line.split_once('=')
                    .map(|(key, _)| key.trim().trim_matches('"').to_owned())
            })
            .flatten()
    });
    match key {
        Some(key) if table.is_empty() => key,
        Some(key) => format!("{table}.{key}"),
        None => table,
    }
}

struct Checker<'a> {
    text: &'a str,
    base: &'a Path,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem<T>(
        &mut self,
        field: impl Into<String>,
        at: &Spanned<T>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            field: field.into(),
            line: Some(line_of(self.text, at.span().start)),
            message: message.into(),
        });
    }

    fn problem_at_line(
        &mut self,
        field: impl Into<String>,
        line: usize,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            field: field.into(),
            line: Some(line),
            message: message.into(),
        });
    }

    /// The line of a table header, for problems about a whole table.
    fn header_line(&self, header: &str) -> usize {
        self.text
            .lines()
            .position(|line| line.trim() == header)
            .map_or(1, |i| i + 1)
    }

    fn file(&mut self, field: &str, path: &Spanned<PathBuf>) {
        // A name in the provisioning file's folder, never a way out of it:
        // the file is copied where the node reads it.
        let inside = path
            .get_ref()
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            self.problem(
                field,
                path,
                format!(
                    "{}: name a file in the provisioning file's folder (no absolute path, no `..`)",
                    path.get_ref().display()
                ),
            );
            return;
        }
        let full = self.base.join(path.get_ref());
        if !full.is_file() {
            self.problem(
                field,
                path,
                format!(
                    "{} is not there (paths are relative to the provisioning file's folder)",
                    full.display()
                ),
            );
        }
    }

    fn all(&mut self, p: &Provisioning) {
        if *p.version.get_ref() != 1 {
            self.problem(
                "version",
                &p.version,
                format!("{}: this Archipel reads version 1", p.version.get_ref()),
            );
        }
        if !valid_hostname(p.machine.hostname.get_ref()) {
            self.problem(
                "machine.hostname",
                &p.machine.hostname,
                format!(
                    "`{}`: letters, digits and `-` in dot-separated labels of at most 63 characters",
                    p.machine.hostname.get_ref()
                ),
            );
        }
        for (i, server) in p.machine.time_servers.iter().enumerate() {
            if !valid_hostname(server.get_ref()) && server.get_ref().parse::<IpAddr>().is_err() {
                self.problem(
                    format!("machine.time_servers[{i}]"),
                    server,
                    format!("`{}`: a host name or an IP address", server.get_ref()),
                );
            }
        }
        self.network(p);
        let server_name = p.server.name.get_ref();
        if let Err(e) = <&ruma::ServerName>::try_from(server_name.as_str()) {
            self.problem(
                "server.name",
                &p.server.name,
                format!("`{server_name}` is not a valid Matrix server name ({e})"),
            );
        }
        self.tls(p);
        self.federation(p);
        self.push(p);
        self.url_previews(p);
        for (n, bridge) in p.bridges.iter().enumerate() {
            self.file(&format!("bridges[{n}].registration"), &bridge.registration);
        }
        self.management(p);
        self.admins(p);
    }

    fn network(&mut self, p: &Provisioning) {
        let network = &p.network;
        match network.mode {
            NetworkMode::Dhcp => {
                for (field, value) in [("address", &network.address), ("gateway", &network.gateway)]
                {
                    if let Some(value) = value {
                        self.problem(
                            format!("network.{field}"),
                            value,
                            "only for `mode = \"static\"`; with DHCP the network assigns it",
                        );
                    }
                }
            }
            NetworkMode::Static => {
                match &network.address {
                    None => {
                        let line = self.header_line("[network]");
                        self.problem_at_line(
                            "network.address",
                            line,
                            "required for `mode = \"static\"`, e.g. \"10.20.0.5/24\"",
                        );
                    }
                    Some(address) if !valid_cidr(address.get_ref()) => self.problem(
                        "network.address",
                        address,
                        format!(
                            "`{}`: an address with its prefix length, e.g. \"10.20.0.5/24\"",
                            address.get_ref()
                        ),
                    ),
                    Some(_) => {}
                }
                if let Some(gateway) = &network.gateway
                    && gateway.get_ref().parse::<IpAddr>().is_err()
                {
                    self.problem(
                        "network.gateway",
                        gateway,
                        format!("`{}`: an IP address", gateway.get_ref()),
                    );
                }
            }
        }
        if let Some(mac) = &network.mac
            && !valid_mac(mac.get_ref())
        {
            self.problem(
                "network.mac",
                mac,
                format!(
                    "`{}`: a MAC address, six pairs of hex digits, e.g. \"52:54:00:12:34:56\"",
                    mac.get_ref()
                ),
            );
        }
        for (i, dns) in network.dns.iter().enumerate() {
            if dns.get_ref().parse::<IpAddr>().is_err() {
                self.problem(
                    format!("network.dns[{i}]"),
                    dns,
                    format!("`{}`: an IP address", dns.get_ref()),
                );
            }
        }
    }

    fn tls(&mut self, p: &Provisioning) {
        let tls = &p.tls;
        let files = (&tls.certificate, &tls.private_key);
        match (&tls.acme_directory, files) {
            (Some(directory), (None, None)) => {
                if !directory.get_ref().starts_with("https://") {
                    self.problem(
                        "tls.acme_directory",
                        directory,
                        format!(
                            "`{}`: the ACME directory's https:// URL",
                            directory.get_ref()
                        ),
                    );
                }
                match &tls.acme_contact {
                    Some(contact) if !contact.get_ref().starts_with("mailto:") => self.problem(
                        "tls.acme_contact",
                        contact,
                        format!("`{}`: a mailto: address", contact.get_ref()),
                    ),
                    _ => {}
                }
                if let Some(bundle) = &tls.acme_ca_bundle {
                    self.file("tls.acme_ca_bundle", bundle);
                }
            }
            (None, (Some(certificate), Some(key))) => {
                self.file("tls.certificate", certificate);
                self.file("tls.private_key", key);
            }
            (None, (Some(certificate), None)) => self.problem(
                "tls.private_key",
                certificate,
                "required with `tls.certificate`",
            ),
            (None, (None, Some(key))) => {
                self.problem("tls.certificate", key, "required with `tls.private_key`");
            }
            (Some(directory), _) => self.problem(
                "tls.acme_directory",
                directory,
                "give either an ACME directory or certificate files, not both",
            ),
            (None, (None, None)) => {
                let line = self.header_line("[tls]");
                self.problem_at_line(
                    "tls",
                    line,
                    "give `acme_directory` (and `acme_contact`), or `certificate` and `private_key`",
                );
            }
        }
    }

    fn federation(&mut self, p: &Provisioning) {
        let federation = &p.federation;
        match &federation.ca_bundle {
            Some(bundle) => self.file("federation.ca_bundle", bundle),
            None if !federation.peers.is_empty() => {
                let at = &federation.peers[0].server_name;
                self.problem(
                    "federation.ca_bundle",
                    at,
                    "required when peers are listed: the CAs that sign their certificates",
                );
            }
            None => {}
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, peer) in federation.peers.iter().enumerate() {
            let name = peer.server_name.get_ref();
            let field = format!("federation.peers[{i}].server_name");
            if <&ruma::ServerName>::try_from(name.as_str()).is_err() {
                self.problem(
                    &field,
                    &peer.server_name,
                    format!("`{name}` is not a valid Matrix server name"),
                );
            } else if name == p.server.name.get_ref() {
                self.problem(&field, &peer.server_name, "this node's own server name");
            } else if !seen.insert(name.clone()) {
                self.problem(&field, &peer.server_name, format!("{name} is listed twice"));
            }
            if let Some(address) = &peer.address
                && address.get_ref().parse::<std::net::SocketAddr>().is_err()
            {
                self.problem(
                    format!("federation.peers[{i}].address"),
                    address,
                    format!(
                        "`{}`: an IP address and port, e.g. \"10.30.0.5:8448\"",
                        address.get_ref()
                    ),
                );
            }
        }
    }

    fn push(&mut self, p: &Provisioning) {
        let push = &p.push;
        if let Some(bundle) = &push.ca_bundle {
            self.file("push.ca_bundle", bundle);
        }
        for (i, gateway) in push.gateways.iter().enumerate() {
            let url = gateway.get_ref();
            let field = format!("push.gateways[{i}]");
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let host = rest.and_then(|r| r.strip_suffix("/_matrix/push/v1/notify"));
            if host.is_none_or(|h| h.is_empty() || h.contains(['/', ' ', '?', '#'])) {
                self.problem(
                    &field,
                    gateway,
                    format!("`{url}`: a gateway's http(s) URL ending in /_matrix/push/v1/notify"),
                );
            } else if url.starts_with("https://") && push.ca_bundle.is_none() {
                self.problem(
                    &field,
                    gateway,
                    "an https gateway needs `push.ca_bundle`: the CAs its certificate chains to",
                );
            }
        }
    }

    fn url_previews(&mut self, p: &Provisioning) {
        let previews = &p.url_previews;
        if let Some(bundle) = &previews.ca_bundle {
            self.file("url_previews.ca_bundle", bundle);
        }
        for (i, range) in previews.allowed_ranges.iter().enumerate() {
            // The node's configuration reads these ranges with the same parser.
            if range.get_ref().parse::<ipnet::IpNet>().is_err() {
                self.problem(
                    format!("url_previews.allowed_ranges[{i}]"),
                    range,
                    format!(
                        "`{}`: an address range with its prefix length, such as 10.20.0.0/16",
                        range.get_ref()
                    ),
                );
            }
        }
    }

    fn management(&mut self, p: &Provisioning) {
        let management = &p.management;
        for (i, network) in management.networks.iter().enumerate() {
            // The console listens on IPv4, as the client API does.
            if network.get_ref().parse::<ipnet::Ipv4Net>().is_err() {
                self.problem(
                    format!("management.networks[{i}]"),
                    network,
                    format!(
                        "`{}`: an IPv4 address range with its prefix length, such as 10.20.0.0/24",
                        network.get_ref()
                    ),
                );
            }
        }
        if let Some(port) = &management.port
            && [0, 80, 443, 8008, 8448].contains(port.get_ref())
        {
            self.problem(
                "management.port",
                port,
                format!(
                    "{}: the management port must be free; 443 and 8448 serve clients and peers, 8008 the node itself",
                    port.get_ref()
                ),
            );
        }
    }

    fn admins(&mut self, p: &Provisioning) {
        if p.admins.is_empty() {
            self.problem_at_line(
                "admins",
                line_of(self.text, self.text.len()),
                "at least one `[[admins]]` entry: nobody could manage the node",
            );
        }
        for (i, admin) in p.admins.iter().enumerate() {
            let field = |name: &str| format!("admins[{i}].{name}");
            let user = admin.user.get_ref();
            if user.is_empty()
                || !user
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/".contains(&b))
            {
                self.problem(
                    field("user"),
                    &admin.user,
                    format!("`{user}`: a user name of lowercase letters, digits and . _ = - /"),
                );
            }
            if let Some(password) = &admin.password {
                self.problem(
                    field("password"),
                    password,
                    "plaintext passwords are refused: give `password_hash` (argon2id, e.g. from \
                     `archipel provision hash-password`) or a one-time `setup_token`",
                );
                continue;
            }
            match (&admin.password_hash, &admin.setup_token) {
                (Some(hash), None) => {
                    let parsed = argon2::PasswordHash::new(hash.get_ref());
                    if !parsed.is_ok_and(|h| h.algorithm.as_str() == "argon2id") {
                        self.problem(
                            field("password_hash"),
                            hash,
                            "not an argon2id hash in PHC form ($argon2id$v=19$m=...,t=...,p=...$salt$hash)",
                        );
                    }
                }
                (None, Some(token)) => {
                    let text = token.get_ref();
                    if !text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c))
                        || text.len() > 64
                    {
                        self.problem(
                            field("setup_token"),
                            token,
                            "only A-Z a-z 0-9 . _ ~ - and at most 64 characters (a Matrix registration token)",
                        );
                    } else if text.chars().count() < 20 {
                        self.problem(
                            field("setup_token"),
                            token,
                            "at least 20 characters: it is a password until used",
                        );
                    }
                }
                (Some(hash), Some(_)) => self.problem(
                    field("password_hash"),
                    hash,
                    "give `password_hash` or `setup_token`, not both",
                ),
                (None, None) => self.problem(
                    field("user"),
                    &admin.user,
                    "needs `password_hash` or `setup_token`",
                ),
            }
        }
    }
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_mac(text: &str) -> bool {
    let pairs: Vec<&str> = text.split(':').collect();
    pairs.len() == 6
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn valid_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    match (address.parse::<IpAddr>(), prefix.parse::<u8>()) {
        (Ok(IpAddr::V4(_)), Ok(prefix)) => prefix <= 32,
        (Ok(IpAddr::V6(_)), Ok(prefix)) => prefix <= 128,
        _ => false,
    }
}
