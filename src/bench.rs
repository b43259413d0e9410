// SPDX-License-Identifier: GPL-2.0

//! Instrumentation for `make bench` only (`APE_BENCH=1`, `cfg(ape_bench)`): the module's own
//! time and the bytes it reads for each file with an APE magic, as sysctl counters.
//!
//! Under QEMU's `-icount shift=0`, guest time advances one nanosecond per instruction, so
//! `bench_ns / bench_calls` is the module's instruction count per APE exec.

use crate::{bindings, sysctl::Entry};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use kernel::{c_str, prelude::*};

crate::controls! {
    pub(crate) fn entries;
    "bench_ns": Counter(NS: AtomicUsize = 0),
    "bench_calls": Counter(CALLS: AtomicUsize = 0),
    "bench_bytes_read": Counter(pub(crate) BYTES_READ: AtomicUsize = 0),
}

fn now() -> usize {
    // SAFETY: `ktime_get` may be called from any context that can sleep.
    usize::try_from(unsafe { bindings::ktime_get() }).unwrap_or(0)
}

/// Adds the time from its creation to its drop to the counters.
pub(crate) struct Timer(usize);

impl Timer {
    pub(crate) fn start() -> Self {
        Self(now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        NS.fetch_add(now().wrapping_sub(self.0), Relaxed);
        CALLS.fetch_add(1, Relaxed);
    }
}
