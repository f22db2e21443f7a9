//! Clients that reach a machine the way a ministry's users do: by its
//! server name, over TLS, trusting the ministry's CA; here through qemu's
//! port forwarding on the host's loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use matrix_sdk::config::{RequestConfig, SyncSettings};
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::api::client::account::register;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::{OwnedRoomId, UInt};
use matrix_sdk::{Client, Room};

pub const PASSWORD: &str = "een lang genoeg wachtwoord";

/// The address of a node: its server name, and the host port forwarded to
/// its port 443.
#[derive(Clone)]
pub struct Node {
    pub server_name: String,
    pub port: u16,
    pub ca_pem: String,
}

impl Node {
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.server_name, self.port)
    }

    /// An HTTP client that resolves the server name to the forward and
    /// trusts only the test CA.
    pub fn http(&self) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .resolve(
                &self.server_name,
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            )
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?])
            .timeout(Duration::from_secs(60))
            .build()?)
    }

    /// A matrix-sdk client for this node, not logged in.
    pub async fn client(&self) -> Result<Client> {
        Ok(Client::builder()
            .homeserver_url(self.url())
            .http_client(self.http()?)
            .request_config(
                RequestConfig::new()
                    .disable_retry()
                    .timeout(Duration::from_secs(60)),
            )
            .build()
            .await?)
    }

    /// Registers `name` with a registration token (or a provisioning setup
    /// token) and returns the logged-in client.
    pub async fn register_with_token(&self, name: &str, token: &str) -> Result<Client> {
        let client = self.client().await?;
        let auth = client.matrix_auth();
        let mut request = register::v3::Request::new();
        request.username = Some(name.to_owned());
        request.password = Some(PASSWORD.to_owned());
        let session = match auth.register(request.clone()).await {
            Ok(_) => bail!("{name} registered without a token"),
            Err(err) => err
                .as_uiaa_response()
                .with_context(|| format!("register {name}: no UIAA challenge: {err}"))?
                .session
                .clone(),
        };
        let mut stage = uiaa::RegistrationToken::new(token.to_owned());
        stage.session = session;
        request.auth = Some(uiaa::AuthData::RegistrationToken(stage));
        auth.register(request)
            .await
            .with_context(|| format!("register {name} with a token"))?;
        Ok(client)
    }

    /// Logs `name` in with [`PASSWORD`].
    pub async fn login(&self, name: &str) -> Result<Client> {
        let client = self.client().await?;
        client
            .matrix_auth()
            .login_username(name, PASSWORD)
            .send()
            .await
            .with_context(|| format!("log {name} in"))?;
        Ok(client)
    }

    /// Issues a registration token for `uses` accounts over the admin API,
    /// as `admin`.
    pub async fn issue_registration_token(&self, admin: &Client, uses: u32) -> Result<String> {
        let token = admin
            .access_token()
            .context("the administrator is logged in")?;
        let reply = self
            .http()?
            .post(format!(
                "{}/_synapse/admin/v1/registration_tokens/new",
                self.url()
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({ "uses_allowed": uses }))
            .send()
            .await?;
        let status = reply.status();
        let body: serde_json::Value = reply.json().await?;
        if !status.is_success() {
            bail!("the admin API refused a registration token: {status} {body}");
        }
        body["token"]
            .as_str()
            .map(str::to_owned)
            .context("no token in the answer")
    }
}

/// Syncs once, so the client knows its rooms.
pub async fn sync(client: &Client) -> Result<()> {
    client
        .sync_once(SyncSettings::default().timeout(Duration::from_secs(1)))
        .await?;
    Ok(())
}

/// The room `room_id` as `client` sees it, after a sync.
pub async fn room(client: &Client, room_id: &OwnedRoomId) -> Result<Room> {
    sync(client).await?;
    client
        .get_room(room_id)
        .with_context(|| format!("{room_id} is not among the client's rooms"))
}

/// The bodies of the room's latest text messages, oldest first.
pub async fn message_bodies(room: &Room) -> Result<Vec<String>> {
    let mut options = MessagesOptions::backward();
    options.limit = UInt::from(50_u32);
    let page = room.messages(options).await?;
    let mut bodies: Vec<String> = page
        .chunk
        .iter()
        .filter_map(|event| {
            let json: serde_json::Value = serde_json::from_str(event.raw().json().get()).ok()?;
            (json["type"] == "m.room.message")
                .then(|| json["content"]["body"].as_str().map(str::to_owned))
                .flatten()
        })
        .collect();
    bodies.reverse();
    Ok(bodies)
}
