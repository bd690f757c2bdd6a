//! # rlog
//!
//! Ship logs from any process to a remote collector: fast, never blocking the caller, and
//! never losing a message without counting it.
//!
//! The data path, one module per step:
//!
//! ```text
//! caller ─ ffi ─▶ the thread's ring ─▶ logger buffer ─▶ worker thread ─▶ transport ─▶ collector
//!          ffi.rs  producer.rs ring.rs  logger.rs        worker.rs        transport/
//!                  (lock-free append     buffer.rs       (fanout.rs with
//!                   on credit)           stats.rs         encoders)
//! ```
//!
//! `config.rs` turns config text into a [`config::Config`]; `global.rs` holds the process-wide
//! default logger of `rlog_init`; `lifecycle.rs` handles `fork()` and process exit; `sync.rs`
//! has the fork-safe lock and the fence pair the lock-free append relies on.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]

pub mod buffer;
pub mod config;
pub mod encode;
pub mod fanout;
pub mod ffi;
pub mod framing;
pub mod global;
mod ledger;
mod lifecycle;
pub mod logger;
mod producer;
mod ring;
/// The rlogd collector's library modules (not part of the C ABI).
/// cbindgen:ignore
pub mod rlogd;
pub mod route;
pub mod sink;
pub mod spool;
pub mod stats;
mod sync;
pub mod target;
pub mod transport;
pub mod worker;

pub use config::Config;
pub use logger::{Logged, Logger};
pub use stats::rlog_stats;
