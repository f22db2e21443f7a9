//! Running a node: listeners, background tasks, clean shutdown on SIGTERM.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use archipel_homeserver::listen;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
};
use tracing_subscriber::EnvFilter;

use crate::{
    admin, archive_device, capture,
    config::Config,
    console::{Console, metrics::Metrics},
    decryption, node, witness,
};

pub fn run(config: Config) -> Result<()> {
    // ruma's auth checks narrate every event at info level; keep them for debugging only.
    let default = if config.log.level.contains("ruma_state_res") {
        config.log.level.clone()
    } else {
        format!("{},ruma_state_res=warn", config.log.level)
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours on a terminal only: the journal and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> Result<()> {
    let node = node::open(&config)?;
    if config.dev {
        crate::config::record_dev_appservices(
            &config.node.data_dir,
            &config.homeserver.appservices,
        )?;
    }
    // The database lock is ours: no backup of this data runs any more.
    crate::backup::remove_stale_snapshots(&config.node.data_dir);
    let homeserver = node.homeserver;
    let services = homeserver.services.clone();
    homeserver.register_appservice_senders().await?;
    let housekeeping = homeserver.spawn_housekeeping();
    let trimming = tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            let _ = tokio::task::spawn_blocking(archipel_homeserver::memory::trim_heap).await;
        }
    });
    let (stop_capture, capture_stopped) = tokio::sync::watch::channel(false);
    let captured = Arc::new(tokio::sync::Notify::new());
    let capture = config.homeserver.archive_capture.then(|| {
        tokio::spawn(capture::run(
            services.clone(),
            node.vault.clone(),
            captured.clone(),
            capture_stopped,
        ))
    });
    let archive_device = archive_device::start(
        &services,
        homeserver.router(),
        &node.vault,
        &config.node.data_dir,
    )
    .await
    .context("starting the archive member's device")?;
    let _ = services
        .admin_trail
        .set(Arc::new(crate::ops::VaultTrail(node.vault.clone())));
    if services.archive_member.is_some() {
        let _ = services
            .refused_joins
            .set(Arc::new(archive_device::RefusedInVault(node.vault.clone())));
    }
    // The device syncs for room keys; the worker decrypts the vault's
    // encrypted events with them.
    let (stop_decryption, decryption_stopped) = tokio::sync::watch::channel(false);
    let (archive_syncing, decrypting) = match archive_device {
        Some(device) => {
            let (keys, received) = tokio::sync::mpsc::unbounded_channel();
            let syncing = {
                let device = device.clone();
                tokio::spawn(async move {
                    device
                        .run(|infos| {
                            let sessions = infos
                                .into_iter()
                                .map(|info| (info.room_id, info.session_id))
                                .collect();
                            let _ = keys.send(sessions);
                        })
                        .await
                })
            };
            let incoming = archive_device::incoming_dir(&config.node.data_dir);
            decryption::empty(&incoming)?;
            let decrypting = tokio::spawn(decryption::run(
                node.vault.clone(),
                device,
                incoming,
                captured.clone(),
                received,
                decryption_stopped,
            ));
            (Some(syncing), Some(decrypting))
        }
        None => (None, None),
    };
    let admin_path = admin::protocol::socket_path(&config);
    let admin_listener = admin::server::bind(&admin_path)?;
    let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
    let admin_state =
        admin::server::Admin::new(config.clone(), services.clone(), node.vault.clone());
    let admin = tokio::spawn(admin::server::serve(
        admin_state.clone(),
        admin_listener,
        admin_stopped.clone(),
    ));
    // The search index follows the vault in the background, so that a
    // search has little to catch up on.
    let indexing = {
        let admin = admin_state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let admin = admin.clone();
                let done = tokio::task::spawn_blocking(move || {
                    crate::ops::search::catch_up(admin.node(), |_, _| {})
                })
                .await;
                if let Ok(Err(e)) = done {
                    tracing::warn!(error = %format!("{e:#}"), "indexing the archive for search");
                }
            }
        })
    };
    let backups = (!config.backup.targets.is_empty()).then(|| {
        tokio::spawn(crate::backup::schedule::run(
            admin_state.clone(),
            admin_stopped,
        ))
    });
    let listener = TcpListener::bind(config.node.listen)
        .await
        .with_context(|| format!("listening on {}", config.node.listen))?;
    let address = listener.local_addr()?;
    let tls = crate::tls::start(&config)?;
    let https = match &tls {
        Some(tls) => Some((bind(tls.listen, "HTTPS").await?, tls.server_config.clone())),
        None => None,
    };
    let https_address = https
        .as_ref()
        .map(|(listener, _)| listener.local_addr())
        .transpose()?;
    let federation = match config.federation.listen {
        Some(listen) => Some(federation_listener(&config, tls.as_ref(), listen).await?),
        None => None,
    };
    let federation_address = federation
        .as_ref()
        .map(|(listener, _)| listener.local_addr())
        .transpose()?;
    // Installed before the ready line, so a SIGTERM right after it is a clean stop.
    let term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;

    // Every listener within the same bounds; one stop for them all.
    let admission = listen::Admission::new(config.node.bounds());
    let (stop_listening, listening_stopped) = tokio::sync::watch::channel(false);
    let (stop_federation, federation_stopped) = tokio::sync::watch::channel(false);
    // Peers' checkpoints are co-signed by this node's vault, and this
    // node's by its peers.
    let witnessing = federation.is_some().then(|| {
        let _ = services.witness.set(Arc::new(witness::VaultWitness {
            vault: node.vault.clone(),
            name: config.homeserver.server_name.to_string(),
        }));
        tokio::spawn(witness::run(
            services.clone(),
            node.vault.clone(),
            federation_stopped.clone(),
        ))
    });
    // Every request the APIs answer is counted for `/metrics`.
    let metrics = Metrics::new();
    let client_router = || {
        homeserver
            .router()
            .layer(axum::middleware::from_fn_with_state(
                (metrics.clone(), "client"),
                crate::console::metrics::count,
            ))
    };
    let mut servers = vec![tokio::spawn(listen::serve(
        listener,
        None,
        client_router(),
        admission.clone(),
        listening_stopped.clone(),
    ))];
    if let Some((listener, server_config)) = https {
        servers.push(tokio::spawn(listen::serve(
            listener,
            Some(server_config),
            client_router(),
            admission.clone(),
            listening_stopped.clone(),
        )));
    }
    if let Some((listener, server_config)) = federation {
        servers.push(tokio::spawn(listen::serve(
            listener,
            Some(server_config),
            homeserver
                .federation_router()
                .layer(axum::middleware::from_fn_with_state(
                    (metrics.clone(), "federation"),
                    crate::console::metrics::count,
                )),
            admission.clone(),
            listening_stopped.clone(),
        )));
    }
    let console_address = match config.console.listen {
        Some(listen) => {
            let listener = bind(listen, "management").await?;
            let address = listener.local_addr()?;
            // Setup links name the address it got (port 0 included).
            crate::ops::console::console_bound(address);
            // On loopback plain HTTP (a tunnel or a local scraper);
            // anywhere else HTTPS with the node's certificate.
            let server_config = (!listen.ip().is_loopback())
                .then(|| tls.as_ref().map(|tls| tls.server_config.clone()))
                .flatten();
            let scheme = if server_config.is_some() {
                "https"
            } else {
                "http"
            };
            let console = Console::new(
                admin_state.clone(),
                metrics.clone(),
                server_config.is_some(),
            )?;
            console.spawn_sweeper();
            servers.push(tokio::spawn(listen::serve(
                listener,
                server_config,
                crate::console::router(console.clone()),
                admission.clone(),
                listening_stopped.clone(),
            )));
            let url = format!("{scheme}://{address}");
            // A development node prints a way in for its first operator.
            let setup = if config.dev {
                console
                    .first_operator_link()?
                    .map(|token| format!("{url}/setup/{token}"))
            } else {
                None
            };
            Some((url, setup))
        }
        None => None,
    };
    let sender = homeserver.spawn_federation_sender();
    let pusher = homeserver.spawn_pusher();
    let bridges = homeserver.spawn_appservice_sender();

    tracing::info!(%address, server_name = %config.homeserver.server_name, data_dir = %config.node.data_dir.display(), "archipel started");
    crate::ops::status::started();
    // The one line scripts and tests wait for.
    let mut ready = format!("archipel ready: client API at http://{address}");
    if let Some(https) = https_address {
        ready.push_str(&format!(" and https://{https}"));
    }
    if let Some(federation) = federation_address {
        ready.push_str(&format!(", federation at https://{federation}"));
    }
    if let Some((console, _)) = &console_address {
        ready.push_str(&format!(", console at {console}"));
    }
    if let Some((_, Some(setup))) = &console_address {
        println!(
            "first operator: open {setup} (once, within a day) to create the console's operator account"
        );
    }
    println!("{ready}, server name {}", config.homeserver.server_name);
    crate::systemd::notify("READY=1");
    // Pings from the runtime itself: if its workers wedge, systemd restarts the node.
    let watchdog = crate::systemd::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                crate::systemd::notify("WATCHDOG=1");
            }
        })
    });

    shutdown_signal(term).await;
    crate::systemd::notify("STOPPING=1");
    // Open requests get the stop grace to finish, then are cut.
    let _ = stop_listening.send(true);
    for server in servers {
        let _ = server.await;
    }

    housekeeping.abort();
    trimming.abort();
    indexing.abort();
    if let Some(syncing) = archive_syncing {
        syncing.abort();
    }
    if let Some(bridges) = bridges {
        bridges.abort();
    }
    if let Some(pusher) = pusher {
        pusher.abort();
    }
    if let Some(sender) = sender {
        sender.abort();
    }
    let _ = stop_federation.send(true);
    if let Some(witnessing) = witnessing {
        let _ = witnessing.await;
    }
    let _ = stop_admin.send(true);
    let _ = admin.await;
    if let Some(backups) = backups {
        // A backup being written is abandoned: its target keeps nothing of it.
        backups.abort();
    }
    let _ = std::fs::remove_file(&admin_path);
    if let Some(capture) = capture {
        tracing::info!("shutting down: archiving the last events");
        let _ = stop_capture.send(true);
        capture.await.context("the capture pump failed")?;
    }
    let _ = stop_decryption.send(true);
    if let Some(decrypting) = decrypting {
        let _ = decrypting.await;
    }
    tracing::info!("shutting down: flushing the database");
    services.store.flush().context("flushing the database")?;
    node.vault
        .store()
        .flush()
        .context("flushing the vault's database")?;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The federation listener: TLS with its own certificate files, or else
/// the node's `[tls]` certificate.
async fn federation_listener(
    config: &Config,
    tls: Option<&crate::tls::NodeTls>,
    listen: SocketAddr,
) -> Result<(TcpListener, Arc<rustls::ServerConfig>)> {
    let federation = &config.federation;
    let server_config = match (
        &federation.tls_certificate,
        &federation.tls_private_key,
        tls,
    ) {
        (Some(certificate), Some(key), _) => {
            archipel_homeserver::tls::server_config(certificate, key)?
        }
        (_, _, Some(tls)) => tls.server_config.clone(),
        _ => anyhow::bail!(
            "federation.listen needs federation.tls_certificate and federation.tls_private_key, or [tls]"
        ),
    };
    Ok((bind(listen, "federation").await?, server_config))
}

async fn bind(listen: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening for {what} on {listen}"))
}

async fn shutdown_signal(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}
