//! One appliance, from a blank disk to a working node and back after power
//! cuts: the image boots under qemu with a provisioning file on its
//! `ARCHIPEL-CFG` partition and a TPM2, seals its data partition and shows
//! the recovery key once; from the host, over TLS through the forwarded
//! port 443 only, an administrator sets up with the provisioning's setup
//! token, issues a registration token, a user registers with it, and a
//! message goes from one to the other. The message survives a power cut
//! (the TPM2 unlocks the data) and then a clean shutdown and a boot on a
//! machine without the TPM2 (the recovery key typed on the console unlocks
//! it).
//!
//! Needs root (the image build), qemu-system-x86, ovmf, qemu-utils, swtpm,
//! mtools and mmdebstrap; see `.ci/run`. Takes several minutes: the machine
//! is emulated.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use archipel_test_vm::image::Image;
use archipel_test_vm::matrix::{self, Node};
use archipel_test_vm::pki::TestCa;
use archipel_test_vm::provisioning::{self, ADMIN};
use archipel_test_vm::vm::{Vm, fact};
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

const SERVER_NAME: &str = "archipel.test";
const SETUP_TOKEN: &str = "Vm7t-Qx2k-Lp9w-Rz4d-Hs3n";
/// Generous: an emulated machine on a busy 2-core host.
const BOOT: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread")]
async fn an_appliance_boots_serves_and_keeps_its_messages() -> Result<()> {
    let started = Instant::now();
    let image = Image::get()?;
    let scratch = archipel_test_vm::scratch("archipel-vm-")?;
    let ca = TestCa::new()?;
    let cfg = scratch.path().join("cfg");
    provisioning::write(
        &cfg,
        &ca,
        &provisioning::Spec {
            server_name: SERVER_NAME,
            hostname: "archipel-vm",
            setup_token: SETUP_TOKEN,
            static_nic: None,
            peers: &[],
            time_servers: &["ntp1.archipel.test", "ntp2.archipel.test"],
            // qemu's user network: the host reaches the guest from 10.0.2.2.
            management: Some("10.0.2.0/24"),
        },
    )?;
    let disk = scratch.path().join("archipel.raw");
    image.disk_with(&cfg, &disk)?;
    let mut vm = Vm::create(
        "single",
        &scratch.path().join("vm"),
        &disk,
        &[443, 8008, 9443],
        None,
    )?;
    archipel_test_vm::keep_on_error(scratch, scenario(&mut vm, &ca, started).await)
}

async fn scenario(vm: &mut Vm, ca: &TestCa, started: Instant) -> Result<()> {
    eprintln!("image ready after {:.0?}", started.elapsed());

    // First boot, with a TPM2: the data partition is made and sealed, the
    // provisioning applied, the node started.
    vm.boot(true).await?;
    let report = vm.wait_ready(BOOT).await?;
    let first_boot = vm.since_boot();
    let keyslots = fact(&report, "luks-keyslots=").context("no keyslots in the report")?;
    ensure!(
        keyslots.contains("systemd-recovery") && keyslots.contains("systemd-tpm2"),
        "sealed with a recovery key and the TPM2: {keyslots}"
    );
    let recovery_key = recovery_key(&vm.console()).context("the recovery key was shown")?;
    eprintln!("first boot ready after {first_boot:.0?}");
    // The local console keeps the recovery key on the screen until Enter.
    let screen = fact(&report, "tty1=").unwrap_or_default();
    ensure!(
        screen.contains("Press Enter once the recovery key above is written down"),
        "tty1 at the first boot: {screen}"
    );
    closed_by_default(vm, &report).await?;
    // systemd reads what provisioning wrote (as its own users).
    let fact = |key: &str| fact(&report, key).unwrap_or_default();
    ensure!(
        fact("network-files=").contains("/etc/systemd/network/20-archipel.network"),
        "the provisioned network is in use: {}",
        fact("network-files=")
    );
    ensure!(
        fact("ntp=") == "ntp1.archipel.test ntp2.archipel.test",
        "the provisioned time servers are in use: {}",
        fact("ntp=")
    );

    // From the host: only through port 443, over TLS, by server name.
    let node = Node {
        server_name: SERVER_NAME.to_owned(),
        port: vm.port(443),
        ca_pem: ca.pem().to_owned(),
    };
    let versions = node
        .http()?
        .get(format!("{}/_matrix/client/versions", node.url()))
        .send()
        .await?;
    ensure!(
        versions.status().is_success(),
        "/versions: {}",
        versions.status()
    );

    // The web console, from the management network: its own port, over
    // TLS with the node's certificate; the metrics want their token.
    let console = Node {
        server_name: SERVER_NAME.to_owned(),
        port: vm.port(9443),
        ca_pem: ca.pem().to_owned(),
    };
    let sign_in = console
        .http()?
        .get(format!("{}/sign-in", console.url()))
        .send()
        .await?;
    ensure!(
        sign_in.status().is_success() && sign_in.headers().contains_key("content-security-policy"),
        "the console's sign-in page: {} {:?}",
        sign_in.status(),
        sign_in.headers()
    );
    let metrics = console
        .http()?
        .get(format!("{}/metrics", console.url()))
        .send()
        .await?;
    ensure!(
        metrics.status() == reqwest::StatusCode::UNAUTHORIZED,
        "/metrics without its token: {}",
        metrics.status()
    );

    // The administrator uses the provisioning's setup token; the user a
    // registration token the administrator issues.
    let admin = node.register_with_token(ADMIN, SETUP_TOKEN).await?;
    let token = node.issue_registration_token(&admin, 1).await?;
    let user = node.register_with_token("medewerker", &token).await?;
    ensure!(
        node.register_with_token("nog-een", &token).await.is_err(),
        "a one-use token registers one account"
    );

    let mut request = create_room::v3::Request::new();
    request.invite = vec![user.user_id().context("user id")?.to_owned()];
    request.name = Some("Beleidsoverleg".to_owned());
    let room = admin.create_room(request).await?;
    let room_id = room.room_id().to_owned();
    matrix::sync(&user).await?;
    user.join_room_by_id(&room_id).await?;
    room.send(RoomMessageEventContent::text_plain(
        "Het concept staat klaar.",
    ))
    .await?;
    let seen = matrix::message_bodies(&matrix::room(&user, &room_id).await?).await?;
    ensure!(
        seen == ["Het concept staat klaar."],
        "the user reads it: {seen:?}"
    );

    // A power cut right after the acknowledgement. The next boot opens the
    // data partition with the TPM2, and the message is there.
    vm.pull_plug().await?;
    vm.boot(true).await?;
    let report = vm.wait_ready(BOOT).await?;
    eprintln!("boot after a power cut ready after {:.0?}", vm.since_boot());
    // With no recovery key to keep on the screen, the local console shows
    // the node on tty1.
    let screen = archipel_test_vm::vm::fact(&report, "tty1=").unwrap_or_default();
    ensure!(
        screen.contains("Archipel")
            && screen.contains(&format!("Web console https://{SERVER_NAME}:9443"))
            && screen.contains("Data disk encrypted, sealed to this machine's TPM2"),
        "the local console on tty1: {screen}"
    );
    ensure!(
        !vm.console().contains("RECOVERY KEY"),
        "the recovery key is shown once"
    );
    let user = node.login("medewerker").await?;
    let room = matrix::room(&user, &room_id).await?;
    let seen = matrix::message_bodies(&room).await?;
    ensure!(
        seen == ["Het concept staat klaar."],
        "after the power cut: {seen:?}"
    );
    room.send(RoomMessageEventContent::text_plain("Akkoord, dank."))
        .await?;

    // A clean shutdown, and a boot without the TPM2 (the board was
    // replaced): the console asks for the recovery key.
    vm.power_off(Duration::from_secs(300)).await?;
    vm.boot(false).await?;
    vm.wait_for("for disk archipel-data", BOOT).await?;
    vm.type_line(&recovery_key).await?;
    vm.wait_ready(BOOT).await?;
    eprintln!(
        "boot with the recovery key ready after {:.0?}",
        vm.since_boot()
    );
    let admin = node.login(ADMIN).await?;
    let room = matrix::room(&admin, &room_id).await?;
    let seen = matrix::message_bodies(&room).await?;
    ensure!(
        seen == ["Het concept staat klaar.", "Akkoord, dank."],
        "after the shutdown: {seen:?}"
    );
    vm.power_off(Duration::from_secs(300)).await?;
    eprintln!("whole scenario {:.0?}", started.elapsed());
    Ok(())
}

/// Nothing but the client API (443, with ACME's tls-alpn-01) and
/// federation (8448) is reachable: nothing else listens on the network, the
/// firewall opens nothing else, and the node's plain-HTTP listener (8008,
/// for the machine itself) does not answer from outside.
async fn closed_by_default(vm: &Vm, report: &[String]) -> Result<()> {
    let fact = |key: &str| -> Vec<String> {
        fact(report, key)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let allowed = ["tcp:443", "tcp:8448", "tcp:9443", "udp:68", "udp:546"];
    let listening = fact("listening=");
    ensure!(
        listening.contains(&"tcp:443".to_owned())
            && listening.iter().all(|l| allowed.contains(&l.as_str())),
        "listening on the network: {listening:?}"
    );
    let mut open = fact("firewall-open=");
    open.sort();
    ensure!(
        open == ["tcp:443", "tcp:8448", "udp:546", "udp:68"],
        "the firewall opens to all: {open:?}"
    );
    // The web console's port only to the management network.
    let management = fact("management=");
    ensure!(
        management == ["10.0.2.0/24", "port:9443"],
        "the firewall opens to the management network: {management:?}"
    );
    let inside_only = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!(
            "http://127.0.0.1:{}/_matrix/client/versions",
            vm.port(8008)
        ))
        .send()
        .await;
    ensure!(
        inside_only.is_err(),
        "port 8008 answered from outside: {inside_only:?}"
    );
    Ok(())
}

/// The recovery key in the banner the first boot printed.
fn recovery_key(console: &str) -> Option<String> {
    let after = console.split("RECOVERY KEY").nth(1)?;
    after
        .split_whitespace()
        .find(|w| w.len() == 71 && w.split('-').count() == 8)
        .map(str::to_owned)
}
