// SPDX-License-Identifier: GPL-2.0

//! Test payload for binfmt_ape: a freestanding static program that prints one line proving
//! what ran, then exits with a chosen status.
//!
//! `payload [--exit N] [--wait] [ARGS...]` prints
//! `payload: arch=A type=T argc=N argv=[...] execfn=P secure=S exe=E` and exits with N (0),
//! after its stdin ends with `--wait`.
//! It uses raw system calls and no relocations, so the same code links as ET_EXEC and as a
//! static PIE (ET_DYN) whose dynamic section can be dropped (see mkape's `prepare`).

#![no_std]
#![no_main]

use core::arch::global_asm;

#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call payload_main",
    "ud2"
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x0, sp",
    "bl payload_main",
    "brk #0"
);

#[cfg(target_arch = "x86_64")]
mod sys {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const READLINKAT: usize = 267;
    pub const EXIT_GROUP: usize = 231;
    pub const ARCH: &[u8] = b"x86_64";

    pub unsafe fn call3(n: usize, a: usize, b: usize, c: usize) -> isize {
        let ret: isize;
        unsafe {
            core::arch::asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b,
                in("rdx") c, lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret
    }
    pub unsafe fn call4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        unsafe {
            core::arch::asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b,
                in("rdx") c, in("r10") d, lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret
    }
}

#[cfg(target_arch = "aarch64")]
mod sys {
    pub const READ: usize = 63;
    pub const WRITE: usize = 64;
    pub const READLINKAT: usize = 78;
    pub const EXIT_GROUP: usize = 94;
    pub const ARCH: &[u8] = b"aarch64";

    pub unsafe fn call3(n: usize, a: usize, b: usize, c: usize) -> isize {
        let ret: isize;
        unsafe {
            core::arch::asm!("svc 0", in("x8") n, inlateout("x0") a as isize => ret, in("x1") b,
                in("x2") c, options(nostack));
        }
        ret
    }
    pub unsafe fn call4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        unsafe {
            core::arch::asm!("svc 0", in("x8") n, inlateout("x0") a as isize => ret, in("x1") b,
                in("x2") c, in("x3") d, options(nostack));
        }
        ret
    }
}

#[cfg(payload_dyn)]
const TYPE: &[u8] = b"dyn";
#[cfg(not(payload_dyn))]
const TYPE: &[u8] = b"exec";

const AT_SECURE: usize = 23;
const AT_EXECFN: usize = 31;

/// A fixed output line buffer; overlong output is cut, never overflows.
struct Line {
    buf: &'static mut [u8; 1024],
    len: usize,
}

// Buffers live in .bss, zeroed by the loader: zeroing them on the stack would make the compiler
// call memset through the GOT, a relocation a static PIE without a dynamic section cannot have.
static mut LINE: [u8; 1024] = [0; 1024];
static mut EXE: [u8; 512] = [0; 512];

impl Line {
    fn put(&mut self, s: &[u8]) {
        for &b in s {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }
    fn num(&mut self, n: usize) {
        // Largest power of ten not above n, then digits from the top: no buffer to index.
        let mut p = 1usize;
        while n.checked_div(p).unwrap_or(0) >= 10 {
            p = p.saturating_mul(10);
        }
        loop {
            self.put(&[b'0' + (n.checked_div(p).unwrap_or(0) % 10) as u8]);
            if p == 1 {
                break;
            }
            p /= 10;
        }
    }
}

/// The NUL-terminated string at `p` (empty for null).
unsafe fn cstr<'a>(p: *const u8) -> &'a [u8] {
    if p.is_null() {
        return &[];
    }
    let mut n = 0;
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    unsafe { core::slice::from_raw_parts(p, n) }
}

fn parse(s: &[u8]) -> usize {
    s.iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0, |a, &c| {
            a.wrapping_mul(10).wrapping_add((c - b'0') as usize)
        })
}

#[no_mangle]
unsafe extern "C" fn payload_main(sp: *const usize) -> ! {
    let argc = unsafe { *sp };
    let argv = unsafe { sp.add(1) } as *const *const u8;
    let mut envp = unsafe { argv.add(argc + 1) };
    while !unsafe { *envp }.is_null() {
        envp = unsafe { envp.add(1) };
    }
    let mut auxv = unsafe { envp.add(1) } as *const usize;
    let (mut execfn, mut secure) = (core::ptr::null::<u8>(), usize::MAX);
    while unsafe { *auxv } != 0 {
        let (k, v) = unsafe { (*auxv, *auxv.add(1)) };
        if k == AT_EXECFN {
            execfn = v as *const u8;
        } else if k == AT_SECURE {
            secure = v;
        }
        auxv = unsafe { auxv.add(2) };
    }

    // SAFETY: Single-threaded, and the only references ever made to these statics.
    let (buf, exe) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(LINE),
            &mut *core::ptr::addr_of_mut!(EXE),
        )
    };
    let mut line = Line { buf, len: 0 };
    line.put(b"payload: arch=");
    line.put(sys::ARCH);
    line.put(b" type=");
    line.put(TYPE);
    line.put(b" argc=");
    line.num(argc);
    line.put(b" argv=[");
    let (mut status, mut wait) = (0, false);
    for i in 0..argc {
        let a = unsafe { cstr(*argv.add(i)) };
        if i > 0 {
            line.put(b",");
        }
        line.put(a);
        if a == b"--exit" && i + 1 < argc {
            status = parse(unsafe { cstr(*argv.add(i + 1)) });
        }
        wait |= a == b"--wait";
    }
    line.put(b"] execfn=");
    line.put(unsafe { cstr(execfn) });
    line.put(b" secure=");
    line.num(secure);
    line.put(b" exe=");
    let path = b"/proc/self/exe\0";
    let n = unsafe {
        sys::call4(
            sys::READLINKAT,
            -100isize as usize,
            path.as_ptr() as usize,
            exe.as_mut_ptr() as usize,
            exe.len(),
        )
    };
    if n > 0 {
        line.put(exe.get(..n as usize).unwrap_or(&[]));
    } else {
        line.put(b"?");
    }
    line.put(b"\n");
    unsafe { sys::call3(sys::WRITE, 1, line.buf.as_ptr() as usize, line.len) };
    // `--wait`: stay alive until stdin ends, so a test can look at /proc/PID.
    if wait {
        let mut byte = 0u8;
        while unsafe { sys::call3(sys::READ, 0, &mut byte as *mut u8 as usize, 1) } > 0 {}
    }
    unsafe { sys::call3(sys::EXIT_GROUP, status, 0, 0) };
    loop {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe { sys::call3(sys::EXIT_GROUP, 101, 0, 0) };
    loop {}
}

// The compiler may call these for copies and fills; no libc is linked.
#[no_mangle]
unsafe extern "C" fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        unsafe { core::ptr::write_volatile(d.add(i), c as u8) };
    }
    d
}

#[no_mangle]
unsafe extern "C" fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
    }
    d
}

#[no_mangle]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

#[no_mangle]
unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    while unsafe { core::ptr::read_volatile(s.add(n)) } != 0 {
        n += 1;
    }
    n
}

#[no_mangle]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { bcmp(a, b, n) }
}
