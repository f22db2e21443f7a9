//! Operations that span several services.
//!
//! Services do not call each other, and handlers do not import each other:
//! work that needs several services (joining a room, through a peer when
//! this node is not in it; ending a device's session and telling its
//! contacts; creating a room with its members and invites) lives here, one
//! module per domain. The client and federation handlers, the background
//! tasks and the appliance call these; an operation calls services and other
//! operations, never a handler.

pub mod create_room;
pub mod directory;
pub mod edu;
pub mod events;
pub mod filter;
pub mod keys;
pub mod membership;
pub mod peer_event;
pub mod remote_membership;
pub mod unread;
pub mod users;
