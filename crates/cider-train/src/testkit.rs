//! Test support: exclusive use of the backend's random number generator.
//!
//! Burn's `Flex` backend keeps one generator per process, so a test that seeds it and then draws
//! (model initialisation, dropout, a training run) reproduces its numbers only if no other test
//! thread draws in between. Every test of this crate that seeds or draws holds
//! [`backend_rng`] for as long as it does.

use std::sync::{Mutex, MutexGuard};

static BACKEND_RNG: Mutex<()> = Mutex::new(());

/// Holds the backend's generator for the calling test until the guard drops; a test that
/// panicked while holding it does not poison it for the others.
pub(crate) fn backend_rng() -> MutexGuard<'static, ()> {
    BACKEND_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
