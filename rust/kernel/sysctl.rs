// SPDX-License-Identifier: GPL-2.0

//! Sysctl tables: a directory of integer entries under `/proc/sys`, registered while the
//! registration object lives.
//!
//! C header: [`include/linux/sysctl.h`](srctree/include/linux/sysctl.h)

use crate::{bindings, compat};
use core::{
    ptr,
    sync::atomic::{AtomicI32, AtomicUsize},
};
use kernel::{
    ffi::{c_int, c_void},
    prelude::*,
    str::CStr,
    types::Opaque,
};

/// Bounds of a [`Entry::Switch`].
static ZERO: c_int = 0;
static ONE: c_int = 1;

/// One file in the directory.
#[derive(Clone, Copy)]
pub enum Entry {
    /// A root-writable 0/1 switch, world-readable.
    Switch(&'static CStr, &'static AtomicI32),
    /// A read-only counter.
    Counter(&'static CStr, &'static AtomicUsize),
}

impl Entry {
    fn to_ctl_table(self) -> bindings::ctl_table {
        // SAFETY: An all-zero `ctl_table` is valid: null pointers and no handler.
        let mut t: bindings::ctl_table = unsafe { core::mem::zeroed() };
        match self {
            Self::Switch(name, value) => {
                t.procname = name.as_char_ptr();
                t.data = value.as_ptr().cast::<c_void>();
                t.maxlen = c_int::try_from(core::mem::size_of::<c_int>()).unwrap_or(4);
                t.mode = 0o644;
                t.proc_handler = Some(bindings::proc_dointvec_minmax);
                // The handler only reads the bounds.
                t.extra1 = ptr::addr_of!(ZERO).cast_mut().cast::<c_void>();
                t.extra2 = ptr::addr_of!(ONE).cast_mut().cast::<c_void>();
            }
            Self::Counter(name, value) => {
                t.procname = name.as_char_ptr();
                t.data = value.as_ptr().cast::<c_void>();
                t.maxlen = c_int::try_from(core::mem::size_of::<usize>()).unwrap_or(8);
                t.mode = 0o444;
                t.proc_handler = Some(bindings::proc_doulongvec_minmax);
            }
        }
        t
    }
}

/// A sysctl directory of `N` entries.
///
/// The C handlers read and write the entries' values with plain `int`/`unsigned long`
/// accesses (`READ_ONCE`/`WRITE_ONCE` in the handlers), which Rust's atomics of the same size
/// and layout tolerate.
#[pin_data(PinnedDrop)]
pub struct Registration<const N: usize> {
    #[pin]
    inner: Opaque<Registered<N>>,
}

/// What the kernel holds pointers into while the directory is registered.
///
/// # Invariants
///
/// `header` is the non-null result of registering `table`, which stays pinned and unmodified
/// until [`Registration`]'s `drop` unregisters it.
struct Registered<const N: usize> {
    table: [bindings::ctl_table; N],
    header: *mut bindings::ctl_table_header,
}

// SAFETY: The registration owns its table; registering and unregistering may happen on any
// thread, and the values it points to are atomics.
unsafe impl<const N: usize> Send for Registration<N> {}
// SAFETY: `&Registration` gives access to nothing.
unsafe impl<const N: usize> Sync for Registration<N> {}

impl<const N: usize> Registration<N> {
    /// Registers `entries` as the directory `path` (e.g. `c_str!("fs/binfmt_ape")`).
    pub fn new(path: &'static CStr, entries: [Entry; N]) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            inner <- compat::try_ffi_init(move |slot: *mut Registered<N>| {
                // SAFETY: `slot` is valid for writes and pinned.
                let table = unsafe { ptr::addr_of_mut!((*slot).table) };
                // SAFETY: As above; the table is written in full before it is registered.
                unsafe { table.write(entries.map(Entry::to_ctl_table)) };
                // SAFETY: `path` is a NUL-terminated static string and `table` points to `N`
                // initialised entries that stay pinned until `drop`.
                let header = unsafe {
                    bindings::register_sysctl_sz(path.as_char_ptr(), table.cast(), N)
                };
                if header.is_null() {
                    return Err(ENOMEM);
                }
                // INVARIANT: `header` is non-null and `table` is registered.
                // SAFETY: `slot` is valid for writes.
                unsafe { ptr::addr_of_mut!((*slot).header).write(header) };
                Ok(())
            }),
        })
    }
}

#[pinned_drop]
impl<const N: usize> PinnedDrop for Registration<N> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `inner` was initialised by `new`, so by the invariant of `Registered`
        // `header` came from `register_sysctl_sz`; this waits for users of the table to
        // finish, so the table may be freed afterwards.
        unsafe { bindings::unregister_sysctl_table((*self.inner.get()).header) };
    }
}
