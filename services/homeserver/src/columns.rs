//! Every column family the homeserver owns, in one table.
//!
//! Names read `key_value`: `roomid_count_eventid` maps a room and a stream
//! position to an event ID. Composite keys are joined with `0xFF`
//! (see `archipel_store::key`).

use archipel_store::ColumnSpec;

pub const GLOBAL: &str = "global";

// Accounts and sessions.
pub const USERID_ACCOUNT: &str = "userid_account";
pub const USERDEVICEID_DEVICE: &str = "userdeviceid_device";
pub const TOKENHASH_SESSION: &str = "tokenhash_session";
pub const REFRESHHASH_SESSION: &str = "refreshhash_session";
pub const REGTOKEN_INFO: &str = "regtoken_info";
pub const USERID_FILTERID_FILTER: &str = "userid_filterid_filter";

// Rooms and events.
pub const EVENTID_PDU: &str = "eventid_pdu";
pub const EVENTID_ORIGINALPDU: &str = "eventid_originalpdu";
pub const EVENTID_POSITION: &str = "eventid_position";
pub const ROOMID_COUNT_EVENTID: &str = "roomid_count_eventid";
pub const ROOMID_META: &str = "roomid_meta";
pub const ROOMID_STATEKEY_EVENTID: &str = "roomid_statekey_eventid";
pub const ROOMID_STATEKEY_COUNT_EVENTID: &str = "roomid_statekey_count_eventid";
pub const USERID_ROOMID_MEMBERSHIP: &str = "userid_roomid_membership";
pub const ROOMID_USERID_MEMBERSHIP: &str = "roomid_userid_membership";
pub const TXN_EVENTID: &str = "userdevicetxn_eventid";
pub const ALIAS_ROOMID: &str = "alias_roomid";
pub const ROOMID_PUBLISHED: &str = "roomid_published";
pub const TARGETID_COUNT_RELATION: &str = "targetid_count_relation";
/// The room state right after an event, as a snapshot ID.
pub const EVENTID_STATEID: &str = "eventid_stateid";
/// State snapshots: a delta on a parent snapshot, or a full map.
pub const STATEID_SNAPSHOT: &str = "stateid_snapshot";
/// Events received from peers, exactly as they were signed.
pub const EVENTID_FEDERATIONJSON: &str = "eventid_federationjson";
/// Events received from peers that failed the auth rules.
pub const EVENTID_REJECTED: &str = "eventid_rejected";

// Federation.
pub const SERVERNAME_KEYS: &str = "servername_keys";
/// The outgoing queue: events to send to each peer, in stream order.
pub const SERVERNAME_COUNT_EVENTID: &str = "servername_count_eventid";
pub const SERVERNAME_COUNT_EDU: &str = "servername_count_edu";

// Per-user state that syncs.
pub const USERID_ROOMID_TYPE_ACCOUNTDATA: &str = "userid_roomid_type_accountdata";
pub const ROOMID_USERID_TYPE_RECEIPT: &str = "roomid_userid_type_receipt";
pub const USERID_PRESENCE: &str = "userid_presence";
/// Stream position of each user's latest presence change → the user.
pub const COUNT_USERID_PRESENCE: &str = "count_userid_presence";
pub const USERID_PUSHKEY_PUSHER: &str = "userid_pushkey_pusher";
/// Reports of content for the operators, by time.
pub const ID_REPORT: &str = "id_report";
/// Sliding sync connections: what each position of a connection was sent.
pub const USERDEVICECONN_POS_SLIDINGSYNC: &str = "userdeviceconn_pos_slidingsync";

// End-to-end encryption.
pub const USERDEVICEID_KEYS: &str = "userdeviceid_keys";
pub const USERDEVICEID_KEYID_ONETIMEKEY: &str = "userdeviceid_keyid_onetimekey";
pub const USERDEVICEID_ALGORITHM_FALLBACKKEY: &str = "userdeviceid_algorithm_fallbackkey";
pub const USERID_USAGE_CROSSSIGNINGKEY: &str = "userid_usage_crosssigningkey";
pub const COUNT_USERID_KEYCHANGE: &str = "count_userid_keychange";
pub const USERDEVICEID_COUNT_TODEVICE: &str = "userdeviceid_count_todevice";
pub const USERID_VERSION_BACKUP: &str = "userid_version_backup";
pub const USERID_VERSION_ROOM_SESSION_BACKUPKEY: &str = "userid_version_room_session_backupkey";

// Media.
pub const MEDIAID_META: &str = "mediaid_meta";

// Archive capture: written in the same batch as the event, drained by the vault.
pub const COUNT_VAULTCAPTURE: &str = "count_vaultcapture";

/// The table the store opens.
/// Every event since the bridges last took theirs, in stream order (count
/// -> event ID), written in the event's own batch while any bridge is
/// installed.
pub const COUNT_APPSERVICE: &str = "count_appservice";
/// Per bridge: how far it has been sent, and the transaction in flight.
pub const APPSERVICEID_STATE: &str = "appserviceid_state";

pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::lookups(GLOBAL),
    ColumnSpec::lookups(USERID_ACCOUNT),
    ColumnSpec::new(USERDEVICEID_DEVICE),
    ColumnSpec::lookups(TOKENHASH_SESSION),
    ColumnSpec::lookups(REFRESHHASH_SESSION),
    ColumnSpec::lookups(REGTOKEN_INFO),
    ColumnSpec::lookups(USERID_FILTERID_FILTER),
    ColumnSpec::lookups(EVENTID_PDU),
    ColumnSpec::lookups(EVENTID_ORIGINALPDU),
    ColumnSpec::lookups(EVENTID_POSITION),
    ColumnSpec::new(ROOMID_COUNT_EVENTID),
    ColumnSpec::lookups(ROOMID_META),
    ColumnSpec::new(ROOMID_STATEKEY_EVENTID),
    ColumnSpec::new(ROOMID_STATEKEY_COUNT_EVENTID),
    ColumnSpec::new(USERID_ROOMID_MEMBERSHIP),
    ColumnSpec::new(ROOMID_USERID_MEMBERSHIP),
    ColumnSpec::lookups(TXN_EVENTID),
    ColumnSpec::lookups(ALIAS_ROOMID),
    ColumnSpec::new(ROOMID_PUBLISHED),
    ColumnSpec::new(TARGETID_COUNT_RELATION),
    ColumnSpec::lookups(EVENTID_STATEID),
    ColumnSpec::lookups(STATEID_SNAPSHOT),
    ColumnSpec::lookups(EVENTID_FEDERATIONJSON),
    ColumnSpec::lookups(EVENTID_REJECTED),
    ColumnSpec::lookups(SERVERNAME_KEYS),
    ColumnSpec::new(SERVERNAME_COUNT_EVENTID),
    ColumnSpec::new(SERVERNAME_COUNT_EDU),
    ColumnSpec::new(USERID_ROOMID_TYPE_ACCOUNTDATA),
    ColumnSpec::new(ROOMID_USERID_TYPE_RECEIPT),
    ColumnSpec::lookups(USERID_PRESENCE),
    ColumnSpec::new(COUNT_USERID_PRESENCE),
    ColumnSpec::new(USERID_PUSHKEY_PUSHER),
    ColumnSpec::new(ID_REPORT),
    ColumnSpec::new(USERDEVICECONN_POS_SLIDINGSYNC),
    ColumnSpec::new(USERDEVICEID_KEYS),
    ColumnSpec::new(USERDEVICEID_KEYID_ONETIMEKEY),
    ColumnSpec::new(USERDEVICEID_ALGORITHM_FALLBACKKEY),
    ColumnSpec::new(USERID_USAGE_CROSSSIGNINGKEY),
    ColumnSpec::new(COUNT_USERID_KEYCHANGE),
    ColumnSpec::new(USERDEVICEID_COUNT_TODEVICE),
    ColumnSpec::new(USERID_VERSION_BACKUP),
    ColumnSpec::new(USERID_VERSION_ROOM_SESSION_BACKUPKEY),
    ColumnSpec::lookups(MEDIAID_META),
    ColumnSpec::new(COUNT_VAULTCAPTURE),
    ColumnSpec::new(COUNT_APPSERVICE),
    ColumnSpec::lookups(APPSERVICEID_STATE),
];
