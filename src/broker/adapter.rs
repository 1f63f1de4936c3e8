//! The boundary between this node and other nodes of a cluster.
//!
//! Today sockeye runs as one node: cores exchange broadcasts among themselves, and no adapter
//! is set. A cluster backend (Redis pub/sub, NATS, ...) implements [`Adapter`]: every broadcast
//! that starts on this node is handed to `publish` once, in the form the other nodes need to
//! deliver it themselves. What arrives from other nodes goes back in through
//! [`ServerHandle::deliver_from_cluster`](crate::api::ServerHandle::deliver_from_cluster), which
//! delivers to this node's members only (never published again, so nothing loops).

use bytes::Bytes;

use super::rooms::Room;

/// A broadcast as it crosses nodes: who it reaches and what it says, before Engine.IO framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroadcast {
    pub ns: String,
    /// Rooms to reach; everyone in the namespace when empty.
    pub rooms: Vec<Room>,
    /// Rooms whose members are left out (a sender's own room excludes the sender).
    pub except: Vec<Room>,
    pub event: String,
    /// The arguments' JSON without the surrounding brackets.
    pub args_inner: String,
    pub attachments: Vec<Bytes>,
}

/// A cluster backend. `publish` runs on the core where the broadcast started, so it must not
/// block: hand the message to the backend's own thread.
pub trait Adapter: Send + Sync {
    fn publish(&self, broadcast: ClusterBroadcast);
}
