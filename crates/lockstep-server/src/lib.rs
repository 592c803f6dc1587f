//! lockstep's RESP front end.
//!
//! Accepts Redis clients (RESP2 and RESP3, pipelined or inline), parses
//! their commands, answers connection-level commands itself (PING, HELLO,
//! CLIENT, INFO, ROLE, ...), and sends everything else to the node: writes
//! as proposals through the log, reads through a ReadIndex barrier. It
//! checks every command against the connection's user (ACLs) first, serves
//! TLS clients on a second listener, and the operations HTTP endpoints
//! (/metrics, /livez, /readyz, /health).
//!
//! What this crate must not do: decide command semantics (the engine does),
//! or touch raft state directly (it asks the node handle). It is the only
//! crate that knows RESP.

mod acl;
mod clients;
mod codec;
mod connection;
mod encode;
mod flights;
mod http;
mod info;
mod keepalive;
mod limits;
mod metrics;
mod pubsub;
mod server;
mod session;
mod subscriptions;
mod tls;
mod tracking;
mod transaction;
mod watchers;
mod znode_watches;

pub use acl::{password_hash, AclCache};
pub use codec::{ProtocolError, RequestDecoder};
pub use http::serve_http;
pub use limits::Limits;
pub use metrics::ServerMetrics;
pub use pubsub::{Mailbox, PubSub, Push};
pub use server::{serve, Events, ServerContext, StoreStats};
pub use tls::{serve_tls, ClientAuth, ReloadingAcceptor, TlsFiles};
pub use znode_watches::{Kind as ZnodeWatchKind, ZnodeWatches, MAX_WATCHES_PER_CONNECTION};
