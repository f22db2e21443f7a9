//! The management listener: the operators' side of the node, on its own
//! address (`[console] listen`), with the node's certificate or as plain
//! HTTP on loopback. It serves the web console ([`web`]) to people
//! signed in (`crate::sessions`), and `/metrics` to Prometheus, which presents
//! the node's metrics token as a bearer token.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use sha2::{Digest, Sha256};

use crate::{admin::server::Admin, ops::Node};

pub mod metrics;
pub mod web;

use crate::sessions::Sessions;
use metrics::Metrics;

/// What the management listener's handlers share.
pub struct Console {
    /// The running node, shared with the admin socket and the backup
    /// schedule.
    admin: Arc<Admin>,
    metrics: Arc<Metrics>,
    /// SHA-256 of the metrics token: a presented token is compared by its
    /// hash, so the comparison's timing says nothing about the token.
    token_hash: [u8; 32],
    sessions: Sessions,
    /// Served over HTTPS: the session cookie is `Secure`.
    secure: bool,
    /// Failed sign-ins, to slow down guessing.
    failures: web::Failures,
}

impl Console {
    pub fn new(admin: Arc<Admin>, metrics: Arc<Metrics>, secure: bool) -> Result<Arc<Self>> {
        let config = admin.config();
        let path = config.console.metrics_token_path(&config.node.data_dir);
        let token = metrics_token(&path)?;
        let sessions = crate::ops::console::sessions(admin.node())?;
        Ok(Arc::new(Self {
            token_hash: Sha256::digest(token.as_bytes()).into(),
            sessions,
            secure,
            failures: web::Failures::default(),
            admin,
            metrics,
        }))
    }

    /// The session cookie's name: on HTTPS with the `__Host-` prefix, so
    /// that no other origin can set it.
    fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-archipel"
        } else {
            "archipel"
        }
    }

    /// A one-time link that lets its holder create the first operator,
    /// if the node has no server administrator yet.
    pub fn first_operator_link(&self) -> Result<Option<String>> {
        let node = self.node();
        let has_operator = crate::ops::accounts::list_users(node)?
            .iter()
            .any(|(_, account)| account.admin && !account.deactivated);
        if has_operator {
            return Ok(None);
        }
        Ok(Some(self.sessions.create_setup_link()?))
    }

    /// Removes expired sessions, setup links and exports every ten
    /// minutes, for as long as the node runs.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let console = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tick.tick().await;
                let sweeping = console.clone();
                let exports = tokio::task::spawn_blocking(move || {
                    crate::ops::exports::sweep(sweeping.node())
                });
                if let Ok(Err(e)) = exports.await {
                    tracing::warn!(error = %format!("{e:#}"), "removing old exports");
                }
                let sweeping = console.clone();
                match tokio::task::spawn_blocking(move || sweeping.sessions.sweep()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %format!("{e:#}"), "removing expired console sessions")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "removing expired console sessions stopped")
                    }
                }
            }
        });
    }

    fn node(&self) -> Node<'_> {
        self.admin.node()
    }

    fn admin(&self) -> &Arc<Admin> {
        &self.admin
    }
}

/// The management listener's routes.
pub fn router(console: Arc<Console>) -> Router {
    web::router()
        .route("/metrics", get(scrape))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(console)
}

/// `GET /metrics`: the node's metrics for the bearer of the metrics token.
async fn scrape(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let authorized = presented.is_some_and(|token| {
        <[u8; 32]>::from(Sha256::digest(token.trim().as_bytes())) == console.token_hash
    });
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the metrics need the node's metrics token as a bearer token\n",
        )
            .into_response();
    }
    let rendered =
        tokio::task::spawn_blocking(move || console.metrics.render(console.node())).await;
    match rendered {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "reading the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the metrics stopped unexpectedly");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The metrics token in `path`, made (32 random bytes, mode 0600) if the
/// file does not exist yet.
fn metrics_token(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => anyhow::bail!("{}: the metrics token file is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let token = B64URL.encode(rand::random::<[u8; 32]>());
    archipel_store::create_durably(path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}
