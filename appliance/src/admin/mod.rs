//! The admin socket: management commands carried out by a running node.
//!
//! A running node holds its database locked, so `archipel user ...`,
//! `archipel registration-token ...` and the vault commands that change the
//! archive cannot open it. They send the command to the node instead, over
//! `admin.sock` in the data folder: mode 0600 inside the 0700 data folder, so
//! only the node's own system user and root reach it. The node audits the
//! command (who, by Unix credentials; what, without secrets), carries it out
//! exactly as the CLI would on a stopped node, and answers with what the
//! command printed. One JSON line each way.

//!
//! `protocol` is what both ends share (the request, the answer, asking);
//! `server` is the node's end, which carries commands out through the
//! operations layer (`ops`) as the asking local account.

pub mod protocol;
pub mod server;

pub use protocol::{Request, read_request};
