// SPDX-License-Identifier: GPL-2.0

//! Sysctl tables: a directory of integer entries under `/proc/sys`, registered while the
//! registration object lives.
//!
//! C header: [`include/linux/sysctl.h`](srctree/include/linux/sysctl.h)

use crate::bindings;
use core::{
    ptr::{self, NonNull},
    sync::atomic::{AtomicI32, AtomicUsize},
};
use kernel::{
    ffi::{c_int, c_void},
    prelude::*,
    str::CStr,
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

/// A sysctl directory, registered while this object lives.
///
/// The C handlers read and write the entries' values with plain `int`/`unsigned long`
/// accesses (`READ_ONCE`/`WRITE_ONCE` in the handlers), which Rust's atomics of the same size
/// and layout tolerate.
///
/// # Invariants
///
/// `header` is the result of registering `table`, whose entries stay in place and unmodified
/// until `drop` unregisters it.
pub struct Registration {
    /// What the kernel reads the directory from; only `header` is used here.
    _table: KVec<bindings::ctl_table>,
    header: NonNull<bindings::ctl_table_header>,
}

// SAFETY: The registration owns its table; registering and unregistering may happen on any
// thread, and the values it points to are atomics.
unsafe impl Send for Registration {}
// SAFETY: `&Registration` gives access to nothing.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers `entries` as the directory `path` (e.g. `c_str!("fs/binfmt_ape")`).
    pub fn new(path: &'static CStr, entries: &[Entry]) -> Result<Self> {
        let mut table = KVec::with_capacity(entries.len(), GFP_KERNEL)?;
        for e in entries {
            table.push(e.to_ctl_table(), GFP_KERNEL)?;
        }
        // SAFETY: `path` is a NUL-terminated static string and `table` holds `table.len()`
        // initialised entries, which stay in place (the vector is not touched again) until
        // `drop` unregisters them.
        let header = unsafe {
            bindings::register_sysctl_sz(path.as_char_ptr(), table.as_mut_ptr(), table.len())
        };
        let header = NonNull::new(header).ok_or(ENOMEM)?;
        // INVARIANT: `header` registers `table`.
        Ok(Self {
            _table: table,
            header,
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `header` came from `register_sysctl_sz`; this waits
        // for users of the table to finish, so the table may be freed after it, with `self`.
        unsafe { bindings::unregister_sysctl_table(self.header.as_ptr()) };
    }
}
