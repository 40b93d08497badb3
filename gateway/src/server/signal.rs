//! SIGINT / SIGTERM → an atomic flag the server loop polls (and a wake-up of its poll).

use std::sync::atomic::{AtomicBool, Ordering};

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe. Relaxed: the loop re-reads it every turn and
    // needs no other memory to be visible with it.
    SIGNALLED.store(true, Ordering::Relaxed);
}

/// Installs the handler for SIGINT and SIGTERM (idempotent).
pub fn install() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `on_signal` is async-signal-safe (one relaxed atomic store) and has the
        // signature `signal` expects; replacing the default disposition of SIGINT/SIGTERM
        // affects no memory owned by Rust.
        #[allow(unsafe_code)]
        let previous = unsafe { libc::signal(sig, handler) };
        if previous == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// True once SIGINT or SIGTERM has arrived since [`install`].
pub fn received() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}
