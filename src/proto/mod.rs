//! rlogd's protocol, the client side: the wire frames (`frame.rs`), the record and store
//! format (`format.rs`, docs/STORAGE.md), and a reader of a store's dates and records
//! (`reader.rs`). The collector itself — server, group commit, store writer, replication — is
//! the `rlogd` binary (`src/bin/rlogd/`), not part of the library a host process loads.

pub mod format;
pub mod frame;
pub mod reader;
