// SPDX-License-Identifier: GPL-2.0

//! Binary format handlers: a pinned registration in the kernel's list of formats.
//!
//! C header: [`include/linux/binfmts.h`](srctree/include/linux/binfmts.h)

use crate::bindings;
use core::{marker::PhantomData, mem::MaybeUninit, ptr};
#[cfg(CONFIG_BINFMT_APE)]
use kernel::error::to_result;
use kernel::{
    error::Result,
    ffi::{c_int, c_void},
    prelude::*,
    types::Opaque,
};

/// Size of [`Binprm::buf`], the file's first bytes as `execve` read them.
pub const BUF_SIZE: usize = bindings::BINPRM_BUF_SIZE as usize;

/// Size of a 64-bit ELF file header, as [`Binprm::load_elf`] takes it.
#[cfg(CONFIG_BINFMT_APE)]
pub const ELF_HEADER_SIZE: usize = 64;
#[cfg(CONFIG_BINFMT_APE)]
const _: () = assert!(core::mem::size_of::<bindings::elf64_hdr>() == ELF_HEADER_SIZE);

/// The state of one `execve`, as handed to a format's `load_binary`.
///
/// # Invariants
///
/// `self.0` is a valid `struct linux_binprm` whose `file` is open for reading, and the caller
/// of `load_binary` holds it exclusively for the duration of the call.
#[repr(transparent)]
pub struct Binprm(Opaque<bindings::linux_binprm>);

impl Binprm {
    /// Creates a mutable reference from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct linux_binprm` with an open `file`, not accessed by
    /// anything else for `'a` (true for the argument of `load_binary` during the call).
    unsafe fn from_raw<'a>(ptr: *mut bindings::linux_binprm) -> &'a mut Self {
        // SAFETY: `Binprm` is `repr(transparent)` over `Opaque<linux_binprm>`, which has the
        // layout of `linux_binprm`; the caller guarantees validity and exclusivity for `'a`.
        unsafe { &mut *ptr.cast::<Self>() }
    }

    /// The raw `struct linux_binprm`, valid for the duration of `load_binary`.
    pub fn as_ptr(&self) -> *mut bindings::linux_binprm {
        self.0.get()
    }

    /// The first [`BUF_SIZE`] bytes of the file (fewer are valid if the file is shorter; the
    /// rest are zero).
    pub fn buf(&self) -> &[u8; BUF_SIZE] {
        // SAFETY: By the type invariant the binprm is valid and not written concurrently; `buf`
        // is a `[c_char; BUF_SIZE]` and `c_char` is `u8` in the kernel.
        unsafe { &(*self.0.get()).buf }
    }

    /// The buffer the next format's `load_binary` inspects.
    pub fn buf_mut(&mut self) -> &mut [u8; BUF_SIZE] {
        // SAFETY: As in `buf`, and `&mut self` makes this the only access.
        unsafe { &mut (*self.0.get()).buf }
    }

    /// Whether running the file as an ELF would give the new program other credentials, by
    /// the rules of exec: the file the credentials come from (`bprm->executable` for a
    /// binfmt_misc rule with the `C` flag, else the file being loaded) is set-user-ID,
    /// set-group-ID with group execute, or has file capabilities, and neither a `nosuid` mount
    /// nor `no_new_privs` rules that out. Errs towards `true` where a module cannot ask the
    /// kernel (a foreign mount, a tracer's capabilities).
    #[cfg(not(CONFIG_BINFMT_APE))]
    pub fn gains_privilege(&self) -> bool {
        // SAFETY: By the type invariant the binprm and its `file` are valid.
        unsafe { bindings::binprm_gains_privilege(self.0.get()) }
    }

    /// Loads the file as the ELF image that `ehdr` describes: binfmt_elf's `load_binary` with
    /// this header instead of the file's first bytes, which stay as they are in [`Binprm::buf`].
    /// `ENOEXEC` means binfmt_elf refused the header before changing anything, and the caller
    /// may decline in turn; any other error comes after it began replacing the old program.
    #[cfg(CONFIG_BINFMT_APE)]
    pub fn load_elf(&mut self, ehdr: &[u8; ELF_HEADER_SIZE]) -> Result {
        // SAFETY: `elf64_hdr` is `ELF_HEADER_SIZE` bytes of integers (checked below), so any
        // bytes are a valid value; the read does not assume alignment.
        let ehdr: bindings::elf64_hdr = unsafe { ptr::read_unaligned(ehdr.as_ptr().cast()) };
        // SAFETY: By the type invariant the binprm is valid, open and ours for the call; `ehdr`
        // outlives the call, which only reads it.
        to_result(unsafe { bindings::binfmt_elf_load_header(self.0.get(), &ehdr) })
    }

    /// Reads the file from offset `pos` into `buf` through the file system (`kernel_read()`),
    /// until `buf` is full or the file ends. Returns the bytes read, which are the first of
    /// `buf` and are now initialised: fewer than `buf.len()` only at the end of the file.
    ///
    /// The bytes are a private copy: later changes to the file do not reach them.
    pub fn read_at<'b>(&self, pos: u64, buf: &'b mut [MaybeUninit<u8>]) -> Result<&'b mut [u8]> {
        let mut done = 0usize;
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            let at = u64::try_from(done)
                .ok()
                .and_then(|d| pos.checked_add(d))
                .and_then(|p| i64::try_from(p).ok());
            let Some(mut at) = at else {
                // Past `loff_t`'s range, where no file has bytes.
                break;
            };
            // SAFETY: By the type invariant `file` is open for reading; `rest` is valid for
            // writes of `rest.len()` bytes, which need not be initialised, and `at` is a valid
            // `loff_t`.
            let ret = unsafe {
                bindings::kernel_read(
                    (*self.0.get()).file,
                    rest.as_mut_ptr().cast::<c_void>(),
                    rest.len(),
                    &mut at,
                )
            };
            if ret < 0 {
                return Err(c_int::try_from(ret).map_or(EIO, Error::from_errno));
            }
            match usize::try_from(ret) {
                Ok(0) => break,
                // `kernel_read` never returns more than it was asked for.
                Ok(n) if n <= rest.len() => done += n,
                _ => return Err(EIO),
            }
        }
        let buf = buf.get_mut(..done).ok_or(EIO)?;
        // SAFETY: `kernel_read` wrote each of the first `done` bytes of `buf`, so they are
        // initialised, and `MaybeUninit<u8>` has the layout of `u8`.
        Ok(unsafe { &mut *(ptr::from_mut(buf) as *mut [u8]) })
    }
}

/// A binary format handler.
pub trait Binfmt {
    /// Called on every `execve` in list order until one returns something other than
    /// `ENOEXEC`. Returning `ENOEXEC` passes the binprm on to the next format.
    fn load_binary(bprm: &mut Binprm) -> Result;
}

/// A format registered in the kernel's list for as long as this object lives.
///
/// # Invariants
///
/// `fmt` is registered with the kernel between the end of [`Registration::new`]'s initializer
/// and the start of `drop`, and it is not moved meanwhile (the object is pinned).
#[pin_data(PinnedDrop)]
pub struct Registration<T: Binfmt> {
    #[pin]
    fmt: Opaque<bindings::linux_binfmt>,
    _t: PhantomData<T>,
}

// SAFETY: The registration only hands the kernel a pointer to itself; registering and
// unregistering take the kernel's `binfmt_lock`, so they may happen on any thread.
unsafe impl<T: Binfmt> Send for Registration<T> {}
// SAFETY: `&Registration` exposes nothing; the kernel reads `fmt` under its own lock.
unsafe impl<T: Binfmt> Sync for Registration<T> {}

impl<T: Binfmt> Registration<T> {
    /// Registers `T` as a binary format owned by `module`, at the head of the list if
    /// `first`, else at the tail.
    ///
    /// While registered, an `execve` that reaches `T` holds a reference on `module` for the
    /// call (`search_binary_handler()` takes it under `binfmt_lock`), so the module cannot be
    /// unloaded under a running `load_binary`.
    ///
    /// # Safety
    ///
    /// `module` must be the module whose code `T` is, and the registration must be dropped
    /// only once that module is unloading (from its exit path): `unregister_binfmt()` does not
    /// wait for `load_binary` calls in progress, and only the reference they hold on `module`
    /// keeps its code and this registration alive until they return.
    ///
    /// Nothing that can fail may follow the registration in the module's init: when init fails,
    /// the module is freed without waiting for the references that execs took meanwhile, so a
    /// `load_binary` in progress would run freed code.
    pub unsafe fn new(module: &'static ThisModule, first: bool) -> impl PinInit<Self> {
        pin_init!(Self {
            fmt <- Opaque::ffi_init(move |slot: *mut bindings::linux_binfmt| {
                // SAFETY: `slot` is valid for writes and pinned; an all-zero `linux_binfmt` is
                // valid (null pointers, empty list head about to be initialised by the list
                // insertion).
                unsafe {
                    ptr::write_bytes(slot, 0, 1);
                    // Both bindings name the same C `struct module`.
                    (*slot).module = module.as_ptr().cast();
                    (*slot).load_binary = Some(Self::load_binary_callback);
                }
                // INVARIANT: `fmt` is registered here and unregistered in `drop`.
                // SAFETY: `slot` is initialised, pinned, and outlives the registration.
                unsafe { bindings::__register_binfmt(slot, c_int::from(first)) };
            }),
            _t: PhantomData,
        })
    }

    /// The `load_binary` the kernel calls.
    ///
    /// # Safety
    ///
    /// `bprm` must be a valid binprm that the caller holds exclusively during the call.
    unsafe extern "C" fn load_binary_callback(bprm: *mut bindings::linux_binprm) -> c_int {
        // SAFETY: The kernel calls `load_binary` with a valid binprm it holds exclusively for
        // the duration of the call.
        let bprm = unsafe { Binprm::from_raw(bprm) };
        match T::load_binary(bprm) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
}

#[pinned_drop]
impl<T: Binfmt> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant `fmt` is registered. `unregister_binfmt` takes
        // `binfmt_lock`, after which no new `execve` can find us. By the safety contract of
        // `new` this runs only as the owning module unloads, which a running `load_binary`'s
        // module reference prevents: none is running.
        unsafe { bindings::unregister_binfmt(self.fmt.get()) };
    }
}
