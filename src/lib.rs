//! # rlog
//!
//! Ship logs from any process to a remote collector: fast, never blocking the caller, and
//! never losing a message without counting it.
//!
//! The data path, one module per step:
//!
//! ```text
//! caller ─ffi─▶ ring ──────▶ queue ─────────▶ pipeline ──────────────▶ output driver ─▶ output
//! rlog_log     producer.rs   queue.rs         pipeline.rs              output/driver.rs output/
//!              ring.rs       (limits, credit, (the worker: route,      (per output:     (tcp, unix,
//!              (lock-free    counters; the    encode, frame; one loop  batching, retry, tls, udp,
//!              append on     worker takes     for every config)        backoff+jitter)  rlogd)
//!              credit)       rounds from it)
//! ```
//!
//! Below the path: `config/` turns config text into plain data ([`config::Config`]: limits,
//! outputs, routes), `encode/` has the encoder chain and framing, `buffer.rs` the batches,
//! `ledger.rs` the per-message accounting when one message becomes several copies, `stats.rs`
//! the counters, `sync.rs` the fork-safe lock, the fence pair and the fork generation,
//! `credit.rs` the rings' credit and the protocol that hands it over, `atomics.rs` the atomics
//! those are built on (loom's under `cfg(loom)`, for the model checks of docs/MODELS.md), `proto/`
//! rlogd's wire format (the collector itself is the `rlogd` binary, `src/bin/rlogd/`). Above it:
//! `logger.rs` starts a logger (puts queue, pipeline and outputs together), `global.rs` holds
//! the process-wide default logger of `rlog_init`, `lifecycle.rs` handles `fork()` and process
//! exit, and `ffi.rs` is the C ABI. Dependencies point one way, from the bottom up.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]

mod atomics;
pub mod buffer;
mod civil;
pub mod config;
mod credit;
pub mod encode;
pub mod ffi;
pub mod global;
mod ledger;
mod lifecycle;
pub mod logger;
pub mod output;
pub mod pipeline;
mod producer;
/// rlogd's wire frames and record format, the client side (not part of the C ABI).
/// cbindgen:ignore
pub mod proto;
mod queue;
mod ring;
pub mod stats;
pub mod sync;

pub use config::Config;
pub use logger::{Logged, Logger};
pub use stats::rlog_stats;
