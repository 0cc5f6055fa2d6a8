//! Ctrl-C (or SIGTERM) during training: the run stops after the batch in hand, discards the
//! unfinished epoch, and says which checkpoint holds the last whole epoch and how to resume.
//! Checkpoints are written atomically, so even a kill leaves nothing half-written; this is
//! about stopping cleanly (the feature cache removed, the message shown). A second Ctrl-C
//! exits at once.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Exit status of a run stopped by Ctrl-C, as shells report SIGINT (128 + 2).
pub const EXIT_CODE: u8 = 130;

/// Starts watching for Ctrl-C and SIGTERM (once per process) and clears any earlier request.
pub fn watch() {
    INSTALL.call_once(|| {
        // Another handler already installed (an embedding program's) is left in charge.
        let _ = ctrlc::set_handler(|| {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: exiting now");
                std::process::exit(EXIT_CODE as i32);
            }
            eprintln!("\ninterrupted: stopping after this batch (Ctrl-C again to exit now)");
        });
    });
    REQUESTED.store(false, Ordering::SeqCst);
}

/// Whether a stop was asked for since [`watch`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
