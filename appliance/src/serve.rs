//! Running a node: listeners, background tasks, clean shutdown on SIGTERM.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::{admin, capture, config::Config, node, witness};

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
    // The database lock is ours: no backup of this data runs any more.
    crate::backup::remove_stale_snapshots(&config.node.data_dir);
    let homeserver = node.homeserver;
    let services = homeserver.services.clone();
    let housekeeping = homeserver.spawn_housekeeping();
    let trimming = tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            let _ = tokio::task::spawn_blocking(crate::trim_malloc).await;
        }
    });
    let (stop_capture, capture_stopped) = tokio::sync::watch::channel(false);
    let capture = config.homeserver.archive_capture.then(|| {
        tokio::spawn(capture::run(
            services.clone(),
            node.vault.clone(),
            capture_stopped,
        ))
    });
    let admin_path = admin::socket_path(&config);
    let admin_listener = admin::bind(&admin_path)?;
    let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
    let admin_state = admin::Admin::new(config.clone(), services.clone(), node.vault.clone());
    let admin = tokio::spawn(admin::serve(
        admin_state.clone(),
        admin_listener,
        admin_stopped.clone(),
    ));
    let backups = (!config.backup.targets.is_empty())
        .then(|| tokio::spawn(crate::backup::schedule::run(admin_state, admin_stopped)));
    let listener = tokio::net::TcpListener::bind(config.node.listen)
        .await
        .with_context(|| format!("listening on {}", config.node.listen))?;
    let address = listener.local_addr()?;
    let app = homeserver
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    let federation = match config.federation.listen {
        Some(listen) => Some(federation_listener(&config, listen).await?),
        None => None,
    };
    let federation_address = federation.as_ref().map(|(_, address)| *address);
    // Installed before the ready line, so a SIGTERM right after it is a clean stop.
    let term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;

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
    let federation_server = federation.map(|(listener, _)| {
        let app = homeserver.federation_router().into_make_service();
        let mut stopped = federation_stopped;
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        })
    });
    let sender = homeserver.spawn_federation_sender();

    tracing::info!(%address, server_name = %config.homeserver.server_name, data_dir = %config.node.data_dir.display(), "archipel started");
    // The one line scripts and tests wait for.
    match federation_address {
        Some(federation) => println!(
            "archipel ready: client API at http://{address}, federation at https://{federation}, server name {}",
            config.homeserver.server_name
        ),
        None => println!(
            "archipel ready: client API at http://{address}, server name {}",
            config.homeserver.server_name
        ),
    }

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal(term))
        .await
        .context("serving the client API")?;

    housekeeping.abort();
    trimming.abort();
    if let Some(sender) = sender {
        sender.abort();
    }
    let _ = stop_federation.send(true);
    if let Some(server) = federation_server {
        let _ = server.await;
    }
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
    tracing::info!("shutting down: flushing the database");
    services.store.flush().context("flushing the database")?;
    node.vault
        .store()
        .flush()
        .context("flushing the vault's database")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The federation listener: TLS with the node's certificate.
async fn federation_listener(
    config: &Config,
    listen: SocketAddr,
) -> Result<(archipel_homeserver::tls::TlsListener, SocketAddr)> {
    let federation = &config.federation;
    let (Some(certificate), Some(key)) = (&federation.tls_certificate, &federation.tls_private_key)
    else {
        anyhow::bail!(
            "federation.listen needs federation.tls_certificate and federation.tls_private_key"
        );
    };
    let tls = archipel_homeserver::tls::server_config(certificate, key)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening for federation on {listen}"))?;
    let address = listener.local_addr()?;
    Ok((
        archipel_homeserver::tls::TlsListener::new(listener, tls)?,
        address,
    ))
}

async fn shutdown_signal(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}
