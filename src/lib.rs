//! # rlog
//!
//! Ship logs from any process to a remote collector: fast, never blocking the caller, and
//! never losing a message without counting it.
//!
//! The data path, one module per step:
//!
//! ```text
//! caller ─ ffi ─▶ logger (buffer, limits, counters) ─▶ worker thread ─▶ transport ─▶ collector
//!          ffi.rs  logger.rs  buffer.rs  stats.rs       worker.rs        transport/
//! ```
//!
//! `config.rs` turns config text into a [`config::Config`]; `global.rs` holds the process-wide
//! default logger of `rlog_init`; `lifecycle.rs` handles `fork()` and process exit.

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
pub mod stats;
mod sync;
pub mod target;
pub mod transport;
pub mod worker;

pub use config::Config;
pub use logger::{Logged, Logger};
pub use stats::rlog_stats;
