//! rlogd: the collector that stores by date, and the follower that replicates it.
//!
//! ```text
//! producers ─ rlogd:// tcp:// udp:// unix:// ─▶ server.rs ─▶ commit.rs (group commit) ─▶ store.rs
//!                                                                 │ publishes what is durable
//! followers ◀──────────── rlogd:// ─ replication.rs (master) ◀────┘   reader.rs reads it back
//! ```
//!
//! `format.rs` is the on-disk format (docs/STORAGE.md), `frame.rs` the wire protocol, `net.rs`
//! listener URLs, TLS and the connection type. The binary is `src/bin/rlogd.rs`.

pub mod commit;
pub mod format;
pub mod frame;
pub mod net;
pub mod reader;
pub mod replication;
pub mod server;
pub mod store;
