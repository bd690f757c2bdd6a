//! Starting a logger: the one place that puts the data path together. `Logger::start` builds
//! what the config only names (each output's TLS settings), makes the caller-side queue
//! (`queue.rs`), starts the worker that drains it (`pipeline.rs`) and registers the logger for
//! `fork()` and exit (`lifecycle.rs`).

use std::sync::Arc;

use crate::config::{Config, SpoolConfig};
use crate::lifecycle;
use crate::output::dead_letter::DeadLetters;
use crate::output::driver::Disk;
use crate::output::spool_key;
use crate::output::tls::TlsSettings;
use crate::pipeline::{self, OpenDisks};
pub(crate) use crate::queue::{Inner, SpawnWorker, CLOSE_GRACE};
pub use crate::queue::{Logged, Logger, PendingError, BUFFER_FULL};
use crate::stats::rlog_sink_stats;

impl Logger {
    /// Starts a logger for `config`: builds its outputs' TLS settings, allocates its buffer and
    /// starts its worker thread.
    ///
    /// Errors: a CA file rustls refuses, no system CA certificates, a `spool` directory or
    /// `dead_letter` file that cannot be used, or the thread could not be started.
    pub fn start(config: Config) -> Result<Logger, String> {
        let tls = build_tls(&config)?;
        let dead = config
            .dead_letter
            .as_deref()
            .map(DeadLetters::open)
            .transpose()?
            .map(Arc::new);
        // The spool is opened here, so an unusable directory is an init error; a fork child's
        // worker opens one of its own (the parent's stays the parent's), on its own thread: the
        // `log` call that starts it in the child must not wait for the disk (creating the
        // instance, and reading every record it adopts from dead processes).
        let spool = config.spool.clone();
        let keys = spool_key::keys(&config);
        let opened = spool.as_ref().map(|s| open_disks(s, &keys)).transpose()?;
        let first = std::sync::Mutex::new(opened);
        let spawn = move |inner: Arc<Inner>| {
            let disks: Option<OpenDisks> =
                match first.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    Some(d) => Some(Box::new(move || Ok(d))),
                    None => spool.clone().map(|s| {
                        let keys = keys.clone();
                        Box::new(move || open_disks(&s, &keys)) as OpenDisks
                    }),
                };
            pipeline::spawn(
                inner,
                tls.clone(),
                dead.clone(),
                disks,
                lifecycle::unregister,
            )
        };
        let lg = Logger::unstarted(config, SpawnWorker(Box::new(spawn)));
        lg.start_worker()?;
        lifecycle::register(lg.0.clone());
        Ok(lg)
    }
}

/// Opens every output's disk queue under `spool`, each also adopting from its target's other
/// keys (`spool_key::strays_of`).
fn open_disks(spool: &SpoolConfig, keys: &[String]) -> Result<Vec<Disk>, String> {
    (0..keys.len())
        .map(|i| Disk::open(spool, &keys[i], spool_key::strays_of(keys, i)))
        .collect()
}

/// Builds each output's TLS settings (reads CA files, chooses the verifier).
///
/// Errors: an unreadable or empty CA file, naming it (and its config line for plain configs).
fn build_tls(config: &Config) -> Result<Vec<Option<Arc<TlsSettings>>>, String> {
    config
        .outputs
        .outputs
        .iter()
        .map(|o| {
            let Some(t) = &o.tls else { return Ok(None) };
            let client = t.client.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
            crate::output::tls::settings_with_client(
                &t.server_name,
                t.verify,
                t.ca.as_deref(),
                client,
            )
            .map(|s| Some(Arc::new(s)))
            .map_err(|e| match t.ca_line {
                Some(line) => format!("{e} (\"ssl_ca\" at line {line})"),
                None => e,
            })
        })
        .collect()
}

impl Logger {
    /// How many outputs (loggers) this handle delivers to: 1 for a plain `host`/`port`/`path`
    /// config.
    pub fn sink_count(&self) -> usize {
        self.0.config.outputs.outputs.len()
    }

    /// Output `i`'s label (`logger "NAME"`, or `logger TARGET` for an unnamed one) and its
    /// counters as of its driver's last round; `None` when there is no output `i`.
    pub fn sink_stats(&self, i: usize) -> Option<(String, rlog_sink_stats)> {
        self.own_process();
        let spec = self.0.config.outputs.outputs.get(i)?;
        let st = self.0.state.lock();
        let mut stats = st.outputs.get(i).copied().unwrap_or_default();
        if self.0.config.delivers_directly() {
            // Its drops happen in `log`, against the handle's `drop_limit`: they are its own.
            stats.dropped = st.counters.dropped.msgs;
            stats.dropped_bytes = st.counters.dropped.bytes;
        }
        Some((spec.label(), stats))
    }
}
