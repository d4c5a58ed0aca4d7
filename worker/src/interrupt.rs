//! Ctrl-C and SIGTERM as a flag that long-running loops poll.
//!
//! A rank that is asked to stop finishes its current step, writes a checkpoint
//! and exits with [`crate::stages::Error::Interrupted`], so a retry (or
//! `--resume`) continues from there; the local launcher stops its ranks the same
//! way. The flag is process-wide because signals are.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C / SIGTERM handler once per process.
pub fn install() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if let Err(e) = ctrlc::set_handler(|| REQUESTED.store(true, Ordering::SeqCst)) {
            tracing::warn!("cannot install the Ctrl-C/SIGTERM handler: {e}; a stop will not checkpoint");
        }
    });
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
