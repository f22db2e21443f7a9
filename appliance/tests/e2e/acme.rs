//! HTTPS on the node itself: a certificate obtained, served and renewed
//! over ACME from Pebble (Debian's `pebble`, the ACME test server) on
//! loopback, validated with TLS-ALPN-01 against the node's own listener;
//! and certificate files.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::federation::{TestCa, free_port};
use crate::harness::{TestServer, eventually};

const DOMAIN: &str = "chat.archipel.test";

/// Pebble with its DNS (`pebble-challtestsrv`, answering 127.0.0.1 for
/// every name), on free loopback ports.
struct Pebble {
    _dir: tempfile::TempDir,
    ca: TestCa,
    directory: String,
    management: u16,
    _processes: [Child; 2],
}

impl Pebble {
    /// Starts Pebble; it validates challenges at `tls_port` of the name
    /// asked for, and issues certificates valid for `validity`.
    async fn start(tls_port: u16, validity: Duration) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("archipel-pebble-")
            .tempdir()
            .expect("a folder for Pebble");
        // Pebble's own HTTPS certificate (Debian ships none).
        let ca = TestCa::new();
        let (certificate, key) = ca.issue("127.0.0.1");
        let (listen, management, dns, http) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": certificate,
            "privateKey": key,
            "httpPort": http,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity.as_secs(),
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble.json");
        let log = |name: &str| {
            Stdio::from(std::fs::File::create(dir.path().join(name)).expect("a log file"))
        };
        let dns_server = spawn(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{}", free_port())])
                .stdout(log("challtestsrv.log"))
                .stderr(log("challtestsrv.err")),
        );
        let pebble = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                // Validate at once; never refuse a nonce at random (the
                // test is about the node, not about retrying bad nonces).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(log("pebble.log"))
                .stderr(log("pebble.err")),
        );
        let pebble = Self {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            ca,
            _processes: [dns_server, pebble],
            _dir: dir,
        };
        let http = pebble.http();
        eventually(
            "Pebble to serve its directory",
            Duration::from_secs(30),
            || {
                let request = http.get(&pebble.directory).send();
                async move { request.await.ok().filter(|r| r.status().is_success()) }
            },
        )
        .await;
        pebble
    }

    /// A client that trusts Pebble's own HTTPS certificate.
    fn http(&self) -> reqwest::Client {
        let ca = std::fs::read(self.ca.bundle()).expect("read the CA");
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("a PEM CA")])
            .build()
            .expect("an HTTPS client")
    }

    /// The CA bundle the node trusts for the ACME directory.
    fn bundle(&self) -> PathBuf {
        self.ca.bundle()
    }

    /// The root that signs the certificates Pebble issues (new each run).
    async fn issuing_root(&self) -> reqwest::Certificate {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        let pem = self
            .http()
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("Pebble's issuing root")
            .bytes()
            .await
            .expect("the root's PEM");
        reqwest::Certificate::from_pem(&pem).expect("a PEM root")
    }
}

fn spawn(command: &mut Command) -> Child {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting {program}: {e} (install Debian's `pebble` package: .ci/run does)")
        })
}

/// The leaf certificate served at `DOMAIN:port`, checked against `root`
/// for that name; `None` while the node serves none that passes.
async fn served_certificate(root: &reqwest::Certificate, port: u16) -> Option<Vec<u8>> {
    let client = reqwest::Client::builder()
        .tls_certs_only([root.clone()])
        .tls_info(true)
        .resolve(DOMAIN, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTPS client");
    let response = client
        .get(format!("https://{DOMAIN}:{port}/_matrix/client/versions"))
        .send()
        .await
        .ok()?;
    assert!(response.status().is_success(), "{}", response.status());
    let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

/// The served certificate's expiry, from the node's metrics.
async fn expires(node: &TestServer) -> f64 {
    let scrape = crate::metrics::scrape(node).await;
    crate::metrics::value(
        &scrape,
        "archipel_tls_certificate_expiry_timestamp_seconds",
        &[],
    )
    .expect("the certificate's expiry")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64()
}

fn acme_config(root: &Path, tls_port: u16, pebble: &Pebble) -> String {
    let key = root.join("vault.key");
    archipel_vault::seal::VaultKey::load_or_generate(&key).expect("a vault key");
    format!(
        r#"[node]
data_dir = "{data}"
listen = "127.0.0.1:0"

[homeserver]
server_name = "{DOMAIN}"

[tls]
listen = "127.0.0.1:{tls_port}"

[tls.acme]
directory = "{directory}"
contact = ["mailto:ict-beheer@archipel.test"]
ca_bundle = "{bundle}"

[vault]
key_file = "{key}"

[console]
listen = "127.0.0.1:0"
"#,
        data = root.join("data").display(),
        directory = pebble.directory,
        bundle = pebble.bundle().display(),
        key = key.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_obtained_served_and_renewed_over_acme() {
    let tls_port = free_port();
    // Renewal starts when a third of the validity is left: about every 20 s.
    let pebble = Pebble::start(tls_port, Duration::from_secs(30)).await;
    let mut node =
        TestServer::start_configured(DOMAIN, |root| acme_config(root, tls_port, &pebble)).await;
    assert_eq!(
        node.https_url(),
        Some(format!("https://127.0.0.1:{tls_port}").as_str())
    );
    let root = pebble.issuing_root().await;

    // Obtained and served: the client API answers over HTTPS with a
    // certificate for the server name that chains to Pebble's root.
    let first = eventually(
        "the node to serve a certificate from Pebble",
        Duration::from_secs(60),
        || served_certificate(&root, tls_port),
    )
    .await;
    assert!(
        node.log()
            .contains("obtained a new TLS certificate over ACME"),
        "{}",
        node.log_tail()
    );
    let cached: Vec<_> = std::fs::read_dir(node.data_dir().join("acme"))
        .expect("the ACME cache in the data folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached.iter().any(|name| name.starts_with("cached_cert_")),
        "{cached:?}"
    );
    // The metrics tell when it expires: Pebble's certificates last 30 s.
    let expiry = expires(&node).await;
    let now = unix_now();
    assert!(now < expiry && expiry <= now + 60.0, "{expiry} vs {now}");

    // Renewed before it expires: another certificate is served, without a restart.
    let renewed = eventually(
        "the node to renew its certificate",
        Duration::from_secs(60),
        || {
            let first = first.clone();
            let root = root.clone();
            async move {
                served_certificate(&root, tls_port)
                    .await
                    .filter(|served| *served != first)
            }
        },
    )
    .await;
    assert_ne!(renewed, first);

    // A restart serves the cached certificate at once (no new order first).
    node.restart().await;
    served_certificate(&root, tls_port)
        .await
        .expect("the cached certificate is served right after a restart");
    assert!(
        node.log()
            .contains("serving the TLS certificate cached from ACME"),
        "{}",
        node.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_served_and_a_bad_pair_is_refused() {
    let ca = TestCa::new();
    let (certificate, key) = ca.issue(DOMAIN);
    let tls_port = free_port();
    let mut node = TestServer::start_configured(DOMAIN, |root| {
        let vault_key = root.join("vault.key");
        archipel_vault::seal::VaultKey::load_or_generate(&vault_key).expect("a vault key");
        format!(
            "[node]\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n[homeserver]\nserver_name = \"{DOMAIN}\"\n\
             [tls]\nlisten = \"127.0.0.1:{tls_port}\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\n\
             [vault]\nkey_file = \"{}\"\n[console]\nlisten = \"127.0.0.1:0\"\n",
            root.join("data").display(),
            certificate.display(),
            key.display(),
            vault_key.display()
        )
    })
    .await;
    let root =
        reqwest::Certificate::from_pem(&std::fs::read(ca.bundle()).expect("CA")).expect("a PEM CA");
    let served = served_certificate(&root, tls_port)
        .await
        .expect("the client API over HTTPS");
    assert!(!served.is_empty());
    // The metrics tell when the file's certificate expires: the test CA
    // issues until rcgen's default end, 4096-01-01.
    assert_eq!(expires(&node).await, 67_090_118_400.0);

    // Another key than the certificate's: the node refuses to start, naming both files.
    let (_, other_key) = ca.issue("other.archipel.test");
    let config = node.root().join("mismatched.toml");
    let text = std::fs::read_to_string(node.root().join("archipel.toml"))
        .expect("the configuration")
        .replace(&key.display().to_string(), &other_key.display().to_string());
    std::fs::write(&config, text).expect("write the configuration");
    node.stop().await;
    let output = crate::harness::run_archipel(&["run", "--config", config.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("does not match its key") && stderr.contains("other.archipel.test.key"),
        "{stderr}"
    );
}
