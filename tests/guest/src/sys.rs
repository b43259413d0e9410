// SPDX-License-Identifier: GPL-2.0

//! The guest's kernel as every guest program sees it (the suite, the fuzzer, the storm and the
//! benchmark): where the module and its controls are, commands run to their end, the kernel
//! log read record by record, and loop devices.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

pub const MODULE: &str = "/lib/modules/binfmt_ape.ko";
pub const SYSCTL: &str = "/proc/sys/fs/binfmt_ape";
pub const MISC: &str = "/proc/sys/fs/binfmt_misc";
pub const DEBUGFS: &str = "/sys/kernel/debug";

/// The module's counters, in /proc/sys/fs/binfmt_ape (`declined_setid` only out of tree).
pub const COUNTERS: [&str; 9] = [
    "handled",
    "elf_refused",
    "declined_debug",
    "declined_no_header",
    "declined_no_machine",
    "declined_invalid",
    "read_errors",
    "alloc_errors",
    "declined_setid",
];

/// Runs a command (busybox's, mostly) to its end: it must succeed.
pub fn sh(cmd: &str, args: &[&str]) -> Result<(), String> {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Whether the kernel knows the file system `name` (/proc/filesystems).
pub fn has_filesystem(name: &str) -> bool {
    fs::read_to_string("/proc/filesystems")
        .is_ok_and(|f| f.lines().any(|l| l.split_whitespace().last() == Some(name)))
}

/// Whether a kernel log line reports a bug, a warning, a memory error, a locking problem, a
/// leak or an unpatched thunk.
pub fn is_report(line: &str) -> bool {
    const WORDS: [&str; 15] = [
        "BUG",
        "WARNING",
        "Oops",
        "rust_panic",
        "Call Trace",
        "kernel panic",
        "KASAN",
        "UBSAN",
        "DEBUG_LOCKS_WARN_ON",
        "possible circular locking",
        "possible recursive locking",
        "inconsistent lock state",
        "suspected memory leak",
        "Unpatched",
        "INFO: task",
    ];
    WORDS.iter().any(|w| line.contains(w))
}

/// The kernel log from a point on, read from /dev/kmsg record by record: what was logged
/// after that point, however full the ring is and whatever was logged before.
pub struct Kmsg(fs::File);

impl Kmsg {
    /// The log from now on.
    pub fn open() -> Result<Self, String> {
        const KMSG: &str = "/dev/kmsg";
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(KMSG)
            .map_err(|e| format!("{KMSG}: {e}"))?;
        // SAFETY: Seeking an open descriptor; SEEK_END on /dev/kmsg moves past every record.
        if unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) } < 0 {
            return Err(format!("{KMSG}: {}", std::io::Error::last_os_error()));
        }
        Ok(Self(f))
    }

    /// The messages logged since the last call (or the opening), as dmesg prints them.
    pub fn drain(&mut self) -> Vec<String> {
        let (mut lines, mut rec) = (Vec::new(), vec![0u8; 8192]);
        loop {
            match self.0.read(&mut rec) {
                Ok(n) if n > 0 => lines.extend(rec.get(..n).and_then(kmsg_text)),
                // Records overwritten before they were read: the next read goes on after them.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                // EAGAIN: no record left.
                _ => return lines,
            }
        }
    }
}

/// The text of a /dev/kmsg record (`prio,seq,time,flags;text\n` and ` KEY=value` lines), with
/// the `\xNN` escapes it writes for backslashes and unprintable bytes undone.
fn kmsg_text(rec: &[u8]) -> Option<String> {
    let start = rec.iter().position(|&b| b == b';')? + 1;
    let text = rec.get(start..)?;
    let text = text.split(|&b| b == b'\n').next().unwrap_or(text);
    let (mut out, mut i) = (Vec::new(), 0);
    while let Some(&b) = text.get(i) {
        let escaped = text
            .get(i..i + 4)
            .filter(|e| e.starts_with(b"\\x"))
            .and_then(|e| std::str::from_utf8(&e[2..]).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let Some(v) = escaped {
            out.push(v);
            i += 4;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Makes sure the free loop device that `mount -o loop` will take has its node: a loop
/// module loaded at boot (Debian's) creates devices on demand, through /dev/loop-control.
pub fn free_loop_device() -> Result<(), String> {
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    let ctl = fs::File::open("/dev/loop-control").map_err(|e| format!("/dev/loop-control: {e}"))?;
    // SAFETY: An ioctl without argument on an open descriptor.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    let n = u32::try_from(n)
        .map_err(|_| format!("LOOP_CTL_GET_FREE: {}", std::io::Error::last_os_error()))?;
    let node = format!("/dev/loop{n}");
    if !std::path::Path::new(&node).exists() {
        let c = std::ffi::CString::new(node.as_str()).map_err(|e| e.to_string())?;
        // SAFETY: A valid path; a block device node for loop device `n` (major 7).
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, n)) };
        if r != 0 {
            return Err(format!("mknod {node}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
