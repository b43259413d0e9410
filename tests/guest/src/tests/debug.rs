// SPDX-License-Identifier: GPL-2.0

//! The debug kernel's tests: failures injected into the module's allocations and reads, and
//! kmemleak over the whole run.

use super::common::{
    counter, describe, expect_eq, page_size, ran, read, sh, write, Check, DEBUGFS, FAT,
};
use super::{test, Test};
use crate::exec::{run, run_as, As, Outcome, Stdin};
use std::fs;
use std::os::fd::AsRawFd;

/// Present on the debug kernel (`qemu/config/variant-debug.config`) once debugfs is mounted.
const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// Whether this is the debug kernel (`qemu/config/variant-debug.config`): it has kmemleak
/// once debugfs is mounted.
pub fn is_debug_kernel() -> bool {
    let _ = sh("mount", &["-t", "debugfs", "none", DEBUGFS]);
    std::path::Path::new(KMEMLEAK).exists()
}

/// Only the leaks of what runs from here on count.
pub fn kmemleak_clear() -> Test {
    test("debug.kmemleak_clear", || write(KMEMLEAK, "clear"))
}

/// Nothing that ran since [`kmemleak_clear`] leaked.
pub fn kmemleak_finds_nothing() -> Test {
    test("debug.kmemleak_finds_nothing", || {
        // Two scans: kmemleak reports an object only once it has looked unreferenced twice.
        write(KMEMLEAK, "scan")?;
        write(KMEMLEAK, "scan")?;
        let report = fs::read_to_string(KMEMLEAK).map_err(|e| format!("{KMEMLEAK}: {e}"))?;
        if report.trim().is_empty() {
            Ok(())
        } else {
            Err(report.lines().take(60).collect::<Vec<_>>().join("\n"))
        }
    })
}

/// Failures injected into the module's allocations and reads.
pub fn faults() -> Vec<Test> {
    vec![
        test("debug.failed_allocations_give_enomem", failed_allocations),
        test("debug.failed_reads_give_eio", failed_reads),
    ]
}

/// With failslab and fail_page_alloc failing every allocation whose call stack passes through
/// the module (and only in the exec's task), an APE exec fails with ENOMEM, counted in
/// `alloc_errors`, at its first allocation (the buffer of its first read), a typical APE and
/// the worst window alike; once they are disarmed, both run. (The worst window's second buffer
/// is not reached: every allocation fails.)
fn failed_allocations() -> Check {
    const WORST: &str = "/ape/bench/worst-window.ape";
    // /proc/modules: name size refs deps state address.
    let modules = read("/proc/modules")?;
    let line = modules
        .lines()
        .find(|l| l.starts_with("binfmt_ape "))
        .ok_or("binfmt_ape is not loaded")?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let size: u64 = f
        .get(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no module size")?;
    let base = f
        .get(5)
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .filter(|&a| a != 0)
        .ok_or("no module address")?;
    let set = |attr: &str, v: &str| write(&format!("{DEBUGFS}/{attr}"), v);
    let arm = || -> Check {
        for fa in ["failslab", "fail_page_alloc"] {
            set(&format!("{fa}/task-filter"), "Y")?;
            set(&format!("{fa}/interval"), "1")?;
            set(&format!("{fa}/times"), "-1")?;
            set(&format!("{fa}/verbose"), "0")?;
            set(&format!("{fa}/ignore-gfp-wait"), "N")?;
            set(&format!("{fa}/stacktrace-depth"), "32")?;
            set(&format!("{fa}/require-start"), &base.to_string())?;
            set(&format!("{fa}/require-end"), &(base + size).to_string())?;
            set(&format!("{fa}/probability"), "100")?;
        }
        set("fail_page_alloc/min-order", "0")
    };
    let disarm = || {
        ["failslab", "fail_page_alloc"]
            .iter()
            .try_for_each(|fa| set(&format!("{fa}/probability"), "0"))
    };
    for path in [FAT, WORST] {
        if let Err(e) = arm() {
            disarm()?;
            return Err(e);
        }
        injected_failure(path, libc::ENOMEM, "alloc_errors", disarm)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

/// With fault injection armed for the tasks that ask for it, an exec of `path` by such a task
/// fails with `errno` and adds one to the counter `name`; once `disarm` has run, `path` runs.
fn injected_failure(path: &str, errno: i32, name: &str, disarm: impl FnOnce() -> Check) -> Check {
    let before = counter(name);
    let who = As {
        make_it_fail: true,
        ..As::default()
    };
    let failed = run_as(who, path, &[path], Stdin::Null);
    disarm()?;
    expect_eq("execve", failed.outcome, Outcome::Errno(errno))?;
    expect_eq(name, counter(name), before + 1)?;
    let r = run(path, &[path], Stdin::Null);
    if ran(&r) {
        Ok(())
    } else {
        Err(format!("afterwards: {}", describe(&r)))
    }
}

/// Which pages of the first `pages` of the file at `path` are in the page cache (mincore).
fn cached_pages(path: &str, pages: usize) -> Result<Vec<bool>, String> {
    let f = fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let len = usize::try_from(page_size()).unwrap_or(4096) * pages;
    // SAFETY: A shared read-only mapping of `len` bytes of an open file, unmapped below;
    // mincore writes one byte per page into `vec`, which has `pages` of them.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if addr == libc::MAP_FAILED {
            return Err(format!("mmap {path}: {}", std::io::Error::last_os_error()));
        }
        let mut vec = vec![0u8; pages];
        let r = libc::mincore(addr, len, vec.as_mut_ptr());
        let err = std::io::Error::last_os_error();
        libc::munmap(addr, len);
        if r != 0 {
            return Err(format!("mincore {path}: {err}"));
        }
        Ok(vec.iter().map(|b| b & 1 != 0).collect())
    }
}

/// With fail_make_request failing the block I/O of the exec's task, an APE whose window
/// reaches past the first page, of which only the first page is cached, fails with EIO,
/// counted in `read_errors`; afterwards it runs. The file lies on ext2 on a loop device:
/// tmpfs, where every other file of the guest lies, always holds a file's pages, so reads
/// there cannot fail.
fn failed_reads() -> Check {
    const IMG: &str = "/tmp/blk.img";
    const MNT: &str = "/mnt/blk";
    const WORST: &str = "/ape/bench/worst-window.ape";
    let ape = format!("{MNT}/worst-window.ape");
    fs::File::create(IMG)
        .and_then(|f| f.set_len(4 << 20))
        .map_err(|e| format!("{IMG}: {e}"))?;
    sh("mke2fs", &["-F", "-b", "4096", IMG])?;
    fs::create_dir_all(MNT).map_err(|e| format!("{MNT}: {e}"))?;
    sh("mount", &["-t", "ext2", "-o", "loop", IMG, MNT])?;
    let copied = sh("cp", &[WORST, &ape]);
    sh("umount", &[MNT])?;
    copied?;
    // Mounted again, nothing of the file is cached. Read its first page with readahead off.
    sh("mount", &["-t", "ext2", "-o", "loop,ro", IMG, MNT])?;
    let result = (|| {
        let f = fs::File::open(&ape).map_err(|e| format!("{ape}: {e}"))?;
        let mut b = [0u8; 1];
        // SAFETY: `f` is open; `b` has room for the one byte read.
        let n = unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
            libc::pread(f.as_raw_fd(), b.as_mut_ptr().cast(), 1, 0)
        };
        expect_eq("pread", n, 1)?;
        drop(f);
        expect_eq("cached pages", cached_pages(&ape, 2)?, vec![true, false])?;
        let dev = read("/proc/mounts")?
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(MNT))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|d| d.strip_prefix("/dev/"))
            .map(String::from)
            .ok_or("no loop device in /proc/mounts")?;
        let set = |attr: &str, v: &str| write(&format!("{DEBUGFS}/fail_make_request/{attr}"), v);
        set("task-filter", "Y")?;
        set("interval", "1")?;
        set("times", "-1")?;
        set("verbose", "0")?;
        write(&format!("/sys/block/{dev}/make-it-fail"), "1")?;
        set("probability", "100")?;
        let disarm = || {
            set("probability", "0")?;
            write(&format!("/sys/block/{dev}/make-it-fail"), "0")
        };
        injected_failure(&ape, libc::EIO, "read_errors", disarm)
    })();
    let unmounted = sh("umount", &[MNT]);
    let _ = fs::remove_file(IMG);
    result.and(unmounted)
}
