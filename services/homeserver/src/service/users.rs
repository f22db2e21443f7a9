//! Accounts, devices, access and refresh tokens, profiles, registration tokens.
//!
//! Tokens are stored only as SHA-256 hashes: a copy of the database does not
//! hand out sessions. Passwords are argon2id hashes.

use archipel_store::{Batch, Store, Tree, key};
use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use rand::{Rng, distributions::Alphanumeric};
use ruma::{DeviceId, MilliSecondsSinceUnixEpoch, OwnedDeviceId, OwnedMxcUri, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result, columns as cf};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Account {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub created_ts: u64,
    #[serde(default)]
    pub deactivated: bool,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub displayname: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<OwnedMxcUri>,
    /// Owned by the node itself (the archive member): it has no password,
    /// and no API gives it one or deactivates it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub node_owned: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Device {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<u64>,
    token_hash: String,
    #[serde(default)]
    refresh_hash: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    #[serde(default)]
    expires_at: Option<u64>,
}

/// A registration token an administrator issued.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegistrationToken {
    pub token: String,
    pub uses_allowed: Option<u32>,
    pub completed: u32,
    pub expiry_time: Option<u64>,
    /// A setup token (from provisioning): it registers only this user, once,
    /// as a server administrator.
    #[serde(default)]
    pub for_user: Option<OwnedUserId>,
}

impl RegistrationToken {
    pub fn is_valid(&self, now: u64) -> bool {
        self.uses_allowed.is_none_or(|n| self.completed < n)
            && self.expiry_time.is_none_or(|t| now < t)
    }
}

/// Tokens handed to a client at login.
pub struct NewSession {
    pub device_id: OwnedDeviceId,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

pub struct Users {
    store: Store,
    userid_account: Tree,
    userdeviceid_device: Tree,
    tokenhash_session: Tree,
    refreshhash_session: Tree,
    regtoken_info: Tree,
    refreshable_lifetime_ms: u64,
    /// Serializes what reads a record before it writes it: creating an
    /// account (its name free, its registration token unused) and changing
    /// a device's session (sign-in, refresh, sign-out).
    writes: tokio::sync::Mutex<()>,
}

impl Users {
    pub fn new(store: Store, refreshable_lifetime_secs: u64) -> Result<Self> {
        Ok(Self {
            userid_account: store.tree(cf::USERID_ACCOUNT)?,
            userdeviceid_device: store.tree(cf::USERDEVICEID_DEVICE)?,
            tokenhash_session: store.tree(cf::TOKENHASH_SESSION)?,
            refreshhash_session: store.tree(cf::REFRESHHASH_SESSION)?,
            regtoken_info: store.tree(cf::REGTOKEN_INFO)?,
            refreshable_lifetime_ms: refreshable_lifetime_secs * 1000,
            store,
            writes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn account(&self, user_id: &UserId) -> Result<Option<Account>> {
        Ok(self.userid_account.get_json(user_id.as_bytes())?)
    }

    pub fn exists(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.userid_account.contains(user_id.as_bytes())?)
    }

    pub fn is_active(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.account(user_id)?.is_some_and(|a| !a.deactivated))
    }

    /// Creates an account. `password` of `None` makes an account that cannot log in with a password.
    pub async fn create(
        &self,
        user_id: &UserId,
        password: Option<String>,
        admin: bool,
        token: Option<&str>,
    ) -> Result<()> {
        let password_hash = match password {
            Some(password) => Some(hash_password(password).await?),
            None => None,
        };
        self.create_hashed(user_id, password_hash, admin, token)
            .await
    }

    /// Creates an account whose password is given as its argon2id hash (PHC
    /// form), as provisioning hands it over. With a registration token, it
    /// counts one use of it in the same write, if the token is still valid.
    pub async fn create_hashed(
        &self,
        user_id: &UserId,
        password_hash: Option<String>,
        admin: bool,
        token: Option<&str>,
    ) -> Result<()> {
        let _serialized = self.writes.lock().await;
        if self.exists(user_id)? {
            return Err(Error::user_in_use());
        }
        let mut batch = Batch::new();
        if let Some(token) = token {
            let mut info = self
                .registration_token(token)?
                .filter(|info| info.is_valid(now_ms()))
                .ok_or_else(|| Error::forbidden("The registration token is used up or expired."))?;
            info.completed += 1;
            batch.put_json(&self.regtoken_info, token.as_bytes(), &info);
        }
        let account = Account {
            password_hash,
            created_ts: now_ms(),
            admin,
            displayname: Some(user_id.localpart().to_owned()),
            ..Account::default()
        };
        batch.put_json(&self.userid_account, user_id.as_bytes(), &account);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Makes the node's own account `user_id` exist with `display_name`
    /// (created, or renamed when the configuration changed). An ordinary
    /// account of that name is never taken over.
    pub fn ensure_node_owned(&self, user_id: &UserId, display_name: &str) -> Result<()> {
        if self.store.is_follower() {
            // A command reading along with the running node, which made
            // the account when it started (perhaps configured otherwise).
            return Ok(());
        }
        let mut account = match self.account(user_id)? {
            Some(account) if !account.node_owned => {
                return Err(Error::internal(format!(
                    "{user_id} is an ordinary account; give the node's archive member another name \
                     ([homeserver.archive_member] localpart)"
                )));
            }
            Some(account) if account.displayname.as_deref() == Some(display_name) => return Ok(()),
            Some(account) => account,
            None => Account {
                created_ts: now_ms(),
                node_owned: true,
                ..Account::default()
            },
        };
        account.displayname = Some(display_name.to_owned());
        let mut batch = Batch::new();
        batch.put_json(&self.userid_account, user_id.as_bytes(), &account);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Refuses, before anything else is done, to deactivate or give a
    /// password to an account the node owns.
    pub fn refuse_if_node_owned(&self, user_id: &UserId) -> Result<()> {
        match self.account(user_id)? {
            Some(account) => Self::refuse_node_owned(&account, user_id),
            None => Ok(()),
        }
    }

    fn refuse_node_owned(account: &Account, user_id: &UserId) -> Result<()> {
        if account.node_owned {
            return Err(Error::forbidden(format!(
                "{user_id} belongs to the node itself (its archive member): it has no password \
                 and cannot be deactivated."
            )));
        }
        Ok(())
    }

    async fn put_account(&self, user_id: &UserId, account: &Account) -> Result<()> {
        let mut batch = Batch::new();
        batch.put_json(&self.userid_account, user_id.as_bytes(), account);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Whether `password` is the user's password. Deactivated accounts never match.
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> Result<bool> {
        let Some(account) = self.account(user_id)? else {
            return Ok(false);
        };
        let Some(hash) = account.password_hash.filter(|_| !account.deactivated) else {
            return Ok(false);
        };
        let password = password.to_owned();
        hashing(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
    }

    pub async fn set_password(&self, user_id: &UserId, password: String) -> Result<()> {
        let mut account = self
            .account(user_id)?
            .ok_or_else(|| Error::not_found("Unknown user."))?;
        Self::refuse_node_owned(&account, user_id)?;
        account.password_hash = Some(hash_password(password).await?);
        self.put_account(user_id, &account).await
    }

    /// Makes the account a server administrator, or not.
    pub async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<()> {
        let _serial = self.writes.lock().await;
        let mut account = self
            .account(user_id)?
            .ok_or_else(|| Error::not_found("Unknown user."))?;
        Self::refuse_node_owned(&account, user_id)?;
        if account.deactivated {
            return Err(Error::forbidden(format!("{user_id} is deactivated.")));
        }
        account.admin = admin;
        self.put_account(user_id, &account).await
    }

    /// Marks the account deactivated and ends all its sessions.
    pub async fn deactivate(&self, user_id: &UserId) -> Result<()> {
        let mut account = self
            .account(user_id)?
            .ok_or_else(|| Error::not_found("Unknown user."))?;
        Self::refuse_node_owned(&account, user_id)?;
        account.deactivated = true;
        account.password_hash = None;
        self.put_account(user_id, &account).await?;
        for device in self.devices(user_id)? {
            self.remove_device(user_id, &device.device_id).await?;
        }
        Ok(())
    }

    pub async fn set_displayname(&self, user_id: &UserId, name: Option<String>) -> Result<()> {
        let mut account = self
            .account(user_id)?
            .ok_or_else(|| Error::not_found("Unknown user."))?;
        account.displayname = name;
        self.put_account(user_id, &account).await
    }

    pub async fn set_avatar_url(&self, user_id: &UserId, url: Option<OwnedMxcUri>) -> Result<()> {
        let mut account = self
            .account(user_id)?
            .ok_or_else(|| Error::not_found("Unknown user."))?;
        account.avatar_url = url;
        self.put_account(user_id, &account).await
    }

    /// Every local account, in user ID order.
    pub fn list(&self) -> Result<Vec<(OwnedUserId, Account)>> {
        self.userid_account
            .iter_json()
            .map(|row| {
                let (k, account) = row?;
                Ok((self.userid_account.decode_str(&k)?, account))
            })
            .collect()
    }

    /// Starts a session on a new or existing device.
    pub async fn login(
        &self,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        refreshable: bool,
    ) -> Result<NewSession> {
        let _serialized = self.writes.lock().await;
        self.login_serialized(user_id, device_id, display_name, refreshable)
            .await
    }

    /// [`Users::login`], under the `writes` lock.
    async fn login_serialized(
        &self,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        refreshable: bool,
    ) -> Result<NewSession> {
        let device_id = device_id.unwrap_or_else(|| random_string(10).to_uppercase().into());
        let access_token = random_string(48);
        let refresh_token = refreshable.then(|| random_string(48));
        let expires_at = refreshable.then(|| now_ms() + self.refreshable_lifetime_ms);

        let mut batch = Batch::new();
        let previous = self.device(user_id, &device_id)?;
        if let Some(previous) = &previous {
            self.forget_tokens(&mut batch, previous);
        }
        let device = Device {
            device_id: device_id.clone(),
            display_name: display_name
                .or_else(|| previous.as_ref().and_then(|p| p.display_name.clone())),
            last_seen_ip: None,
            last_seen_ts: Some(now_ms()),
            token_hash: token_hash(&access_token),
            refresh_hash: refresh_token.as_deref().map(token_hash),
        };
        let session = Session {
            user_id: user_id.to_owned(),
            device_id: device_id.clone(),
            expires_at,
        };
        self.put_device(&mut batch, user_id, &device);
        batch.put_json(
            &self.tokenhash_session,
            device.token_hash.as_bytes(),
            &session,
        );
        if let Some(refresh_hash) = &device.refresh_hash {
            batch.put_json(&self.refreshhash_session, refresh_hash.as_bytes(), &session);
        }
        self.store.commit_async(batch).await?;
        Ok(NewSession {
            device_id,
            access_token,
            refresh_token,
            expires_in_ms: refreshable.then_some(self.refreshable_lifetime_ms),
        })
    }

    /// Creates device `device_id` of `user_id` with no session of its own
    /// (a bridge's device, MSC4190: the bridge uses it through its
    /// as_token). Returns whether it was new.
    pub async fn create_device_without_session(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        display_name: Option<String>,
    ) -> Result<bool> {
        let _serialized = self.writes.lock().await;
        if self.device(user_id, device_id)?.is_some() {
            return Ok(false);
        }
        let device = Device {
            device_id: device_id.to_owned(),
            display_name,
            last_seen_ip: None,
            last_seen_ts: Some(now_ms()),
            // No token hashes to this: the device has no session.
            token_hash: String::new(),
            refresh_hash: None,
        };
        let mut batch = Batch::new();
        self.put_device(&mut batch, user_id, &device);
        self.store.commit_async(batch).await?;
        Ok(true)
    }

    /// Swaps a refresh token for a new access and refresh token.
    /// A refresh token is used once: of two refreshes with it, one wins.
    pub async fn refresh(&self, refresh_token: &str) -> Result<(OwnedUserId, NewSession)> {
        let _serialized = self.writes.lock().await;
        let hash = token_hash(refresh_token);
        let session: Session = self
            .refreshhash_session
            .get_json(hash.as_bytes())?
            .ok_or_else(|| Error::unknown_token(false))?;
        let current = self.device(&session.user_id, &session.device_id)?;
        if current.and_then(|d| d.refresh_hash).as_deref() != Some(&*hash) {
            // Not the device's current token: left behind, never honoured.
            let mut batch = Batch::new();
            batch.delete(&self.refreshhash_session, hash.as_bytes());
            self.store.commit_async(batch).await?;
            return Err(Error::unknown_token(false));
        }
        let new = self
            .login_serialized(
                &session.user_id,
                Some(session.device_id.clone()),
                None,
                true,
            )
            .await?;
        Ok((session.user_id, new))
    }

    /// The user and device an access token belongs to.
    pub fn authenticate(&self, access_token: &str) -> Result<(OwnedUserId, OwnedDeviceId)> {
        let session: Session = self
            .tokenhash_session
            .get_json(token_hash(access_token).as_bytes())?
            .ok_or_else(|| Error::unknown_token(false))?;
        if session.expires_at.is_some_and(|t| t <= now_ms()) {
            return Err(Error::unknown_token(true));
        }
        Ok((session.user_id, session.device_id))
    }

    pub fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<Device>> {
        Ok(self
            .userdeviceid_device
            .get_json(device_key(user_id, device_id))?)
    }

    /// Writes `device` of `user_id` in `batch`.
    fn put_device(&self, batch: &mut Batch, user_id: &UserId, device: &Device) {
        batch.put_json(
            &self.userdeviceid_device,
            device_key(user_id, &device.device_id),
            device,
        );
    }

    pub fn devices(&self, user_id: &UserId) -> Result<Vec<Device>> {
        self.userdeviceid_device
            .scan_prefix_json(key::prefix([user_id.as_bytes()]))
            .map(|row| Ok(row?.1))
            .collect()
    }

    pub async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> Result<()> {
        let _serialized = self.writes.lock().await;
        let mut device = self
            .device(user_id, device_id)?
            .ok_or_else(|| Error::not_found("Unknown device."))?;
        device.display_name = name;
        let mut batch = Batch::new();
        self.put_device(&mut batch, user_id, &device);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Ends the device's session and forgets the device.
    pub async fn remove_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<()> {
        let _serialized = self.writes.lock().await;
        let Some(device) = self.device(user_id, device_id)? else {
            return Ok(());
        };
        let mut batch = Batch::new();
        self.forget_tokens(&mut batch, &device);
        batch.delete(&self.userdeviceid_device, device_key(user_id, device_id));
        self.store.commit_async(batch).await?;
        Ok(())
    }

    fn forget_tokens(&self, batch: &mut Batch, device: &Device) {
        batch.delete(&self.tokenhash_session, device.token_hash.as_bytes());
        if let Some(refresh_hash) = &device.refresh_hash {
            batch.delete(&self.refreshhash_session, refresh_hash.as_bytes());
        }
    }

    /// Searches local users by ID or display name (case-insensitive substring).
    pub fn search(&self, term: &str, limit: usize) -> Result<(Vec<(OwnedUserId, Account)>, bool)> {
        let term = term.to_lowercase();
        let mut found: Vec<_> = self
            .list()?
            .into_iter()
            .filter(|(user, account)| {
                !account.deactivated
                    && (user.as_str().to_lowercase().contains(&term)
                        || account
                            .displayname
                            .as_deref()
                            .is_some_and(|n| n.to_lowercase().contains(&term)))
            })
            .collect();
        let limited = found.len() > limit;
        found.truncate(limit);
        Ok((found, limited))
    }

    pub async fn create_registration_token(
        &self,
        token: Option<String>,
        uses_allowed: Option<u32>,
        expiry_time: Option<u64>,
    ) -> Result<RegistrationToken> {
        self.insert_registration_token(token, uses_allowed, expiry_time, None)
            .await
    }

    /// Checks and stores a new token, in one write.
    async fn insert_registration_token(
        &self,
        token: Option<String>,
        uses_allowed: Option<u32>,
        expiry_time: Option<u64>,
        for_user: Option<OwnedUserId>,
    ) -> Result<RegistrationToken> {
        let token = token.unwrap_or_else(|| random_string(16));
        if token.is_empty()
            || token.len() > 64
            || !token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c))
        {
            return Err(Error::invalid_param(
                "Registration tokens use only A-Z a-z 0-9 . _ ~ - and at most 64 characters.",
            ));
        }
        if self.regtoken_info.contains(token.as_bytes())? {
            return Err(Error::invalid_param(
                "That registration token already exists.",
            ));
        }
        let info = RegistrationToken {
            token: token.clone(),
            uses_allowed,
            completed: 0,
            expiry_time,
            for_user,
        };
        let mut batch = Batch::new();
        batch.put_json(&self.regtoken_info, token.as_bytes(), &info);
        self.store.commit_async(batch).await?;
        Ok(info)
    }

    /// Issues a one-time setup token: whoever holds it registers `user_id`
    /// (choosing the password) as a server administrator.
    pub async fn create_setup_token(&self, token: &str, user_id: &UserId) -> Result<()> {
        self.insert_registration_token(
            Some(token.to_owned()),
            Some(1),
            None,
            Some(user_id.to_owned()),
        )
        .await
        .map(drop)
    }

    /// The valid setup token that reserves `user_id`, if any.
    pub fn setup_token_for(&self, user_id: &UserId) -> Result<Option<RegistrationToken>> {
        let now = now_ms();
        Ok(self
            .registration_tokens()?
            .into_iter()
            .find(|t| t.for_user.as_deref() == Some(user_id) && t.is_valid(now)))
    }

    pub fn registration_token(&self, token: &str) -> Result<Option<RegistrationToken>> {
        Ok(self.regtoken_info.get_json(token.as_bytes())?)
    }

    pub fn registration_token_valid(&self, token: &str) -> Result<bool> {
        Ok(self
            .registration_token(token)?
            .is_some_and(|t| t.is_valid(now_ms())))
    }

    pub fn registration_tokens(&self) -> Result<Vec<RegistrationToken>> {
        self.regtoken_info
            .iter_json()
            .map(|row| Ok(row?.1))
            .collect()
    }
}

/// argon2id with 7 MiB, 5 passes, 1 lane: one of OWASP's equivalent
/// recommended settings, chosen for the smallest working memory per hash.
fn argon2() -> Argon2<'static> {
    let params =
        argon2::Params::new(7 * 1024, 5, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Runs `work` (a password hash or its check) in a blocking thread, one
/// at a time. Each takes 7 MiB and a core for a few tens of milliseconds:
/// under a login storm (or a password-guessing flood) logins queue here,
/// without a thread each, rather than taking 7 MiB and a core each while
/// the node's chat waits. The one that runs also holds
/// [`crate::memory::large_work`].
async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _permit = PERMITS.acquire().await.map_err(Error::internal)?;
    tokio::task::spawn_blocking(move || {
        let _large = crate::memory::large_work();
        work()
    })
    .await
    .map_err(Error::internal)
}

/// The argon2id hash (PHC form) this server stores for `password`, with
/// its parameters; blocking (tens of milliseconds). For provisioning files.
pub fn password_hash(password: &str) -> std::result::Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

pub(crate) async fn hash_password(password: String) -> Result<String> {
    hashing(move || password_hash(&password))
        .await?
        .map_err(Error::internal)
}

/// A device's key in `userdeviceid_device`.
fn device_key(user_id: &UserId, device_id: &DeviceId) -> Vec<u8> {
    key::key([user_id.as_bytes(), device_id.as_bytes()])
}

fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn random_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

pub fn now_ms() -> u64 {
    MilliSecondsSinceUnixEpoch::now().get().into()
}
