//! Two appliances of two ministries, each from its own provisioning, on a
//! private network of their own (qemu's multicast socket network: no host
//! in between): static addresses on that NIC, each other as the only
//! federation peer, certificates from one CA. An administrator on each
//! sets up with a setup token; one invites the other into a room, and
//! messages cross both ways over federation.
//!
//! Needs what `single_vm.rs` needs; runs two emulated machines at once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use archipel_test_vm::image::Image;
use archipel_test_vm::matrix::{self, Node};
use archipel_test_vm::pki::TestCa;
use archipel_test_vm::provisioning::{self, ADMIN};
use archipel_test_vm::vm::{PrivateNet, Vm};
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, UserId};

const BOOT: Duration = Duration::from_secs(1200);
/// How long a message may take to cross (federation retries with backoff).
const CROSSING: Duration = Duration::from_secs(120);

struct Ministry {
    server_name: &'static str,
    hostname: &'static str,
    setup_token: &'static str,
    mac: &'static str,
    address: &'static str,
}

const A: Ministry = Ministry {
    server_name: "bzk.archipel.test",
    hostname: "archipel-bzk",
    setup_token: "Bz9k-Tq4m-Wx7p-Lr2v-Nh5d",
    mac: "52:54:00:a7:00:01",
    address: "10.77.0.1",
};
const B: Ministry = Ministry {
    server_name: "minfin.archipel.test",
    hostname: "archipel-minfin",
    setup_token: "Mf3n-Rk8q-Zt6w-Pv1x-Jc4s",
    mac: "52:54:00:a7:00:02",
    address: "10.77.0.2",
};

#[tokio::test(flavor = "multi_thread")]
async fn two_appliances_federate_on_a_private_network() -> Result<()> {
    let started = Instant::now();
    let image = Image::get()?;
    let scratch = archipel_test_vm::scratch("archipel-vms-")?;
    let ca = TestCa::new()?;
    // One multicast group per run: machines of another run never hear these.
    let group = format!("230.0.0.1:{}", 20000 + std::process::id() % 40000).parse()?;
    let mut vms = Vec::new();
    for (me, peer) in [(&A, &B), (&B, &A)] {
        let cfg = scratch.path().join(me.hostname).join("cfg");
        let peer_address = format!("{}:8448", peer.address);
        provisioning::write(
            &cfg,
            &ca,
            &provisioning::Spec {
                server_name: me.server_name,
                hostname: me.hostname,
                setup_token: me.setup_token,
                static_nic: Some((me.mac, &format!("{}/24", me.address))),
                peers: &[(peer.server_name, &peer_address)],
                time_servers: &[],
                management: None,
            },
        )?;
        let disk = scratch.path().join(me.hostname).join("archipel.raw");
        image.disk_with(&cfg, &disk)?;
        vms.push(Vm::create(
            me.hostname,
            &scratch.path().join(me.hostname).join("vm"),
            &disk,
            &[443],
            Some(PrivateNet {
                group,
                mac: me.mac.to_owned(),
            }),
        )?);
    }
    archipel_test_vm::keep_on_error(scratch, scenario(&mut vms, &ca, started).await)
}

async fn scenario(vms: &mut [Vm], ca: &TestCa, started: Instant) -> Result<()> {
    for vm in vms.iter_mut() {
        vm.boot(true).await?;
    }
    for vm in vms.iter_mut() {
        vm.wait_ready(BOOT).await?;
        eprintln!("{} ready after {:.0?}", vm.name(), vm.since_boot());
    }
    let node = |vm: &Vm, ministry: &Ministry| Node {
        server_name: ministry.server_name.to_owned(),
        port: vm.port(443),
        ca_pem: ca.pem().to_owned(),
    };
    let (a, b) = (node(&vms[0], &A), node(&vms[1], &B));
    let alice = a.register_with_token(ADMIN, A.setup_token).await?;
    let bob = b.register_with_token(ADMIN, B.setup_token).await?;
    let bob_id = UserId::parse(format!("@{ADMIN}:{}", B.server_name))?;

    let mut request = create_room::v3::Request::new();
    request.invite = vec![bob_id];
    request.name = Some("Interdepartementaal overleg".to_owned());
    let room = alice.create_room(request).await?;
    let room_id = room.room_id().to_owned();

    // The invite crosses; bob joins through his own node.
    let deadline = Instant::now() + CROSSING;
    loop {
        matrix::sync(&bob).await?;
        if bob.get_room(&room_id).is_some() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the invite did not reach {}",
            B.server_name
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bob.join_room_by_id(&room_id).await?;

    room.send(RoomMessageEventContent::text_plain("Voorstel van BZK"))
        .await?;
    wait_for_bodies(&bob, &room_id, &["Voorstel van BZK"]).await?;
    matrix::room(&bob, &room_id)
        .await?
        .send(RoomMessageEventContent::text_plain("Akkoord van Financiën"))
        .await?;
    wait_for_bodies(
        &alice,
        &room_id,
        &["Voorstel van BZK", "Akkoord van Financiën"],
    )
    .await?;
    eprintln!("messages crossed after {:.0?} in all", started.elapsed());

    for vm in vms.iter_mut() {
        vm.power_off(Duration::from_secs(300)).await?;
    }
    Ok(())
}

/// Waits until the room shows exactly `bodies` to `client`.
async fn wait_for_bodies(
    client: &matrix_sdk::Client,
    room_id: &OwnedRoomId,
    bodies: &[&str],
) -> Result<()> {
    let deadline = Instant::now() + CROSSING;
    loop {
        let room = matrix::room(client, room_id).await?;
        let seen = matrix::message_bodies(&room).await?;
        if seen == bodies {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{} sees {seen:?}, not {bodies:?}",
            client.user_id().context("logged in")?
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
