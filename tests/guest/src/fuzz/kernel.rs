// SPDX-License-Identifier: GPL-2.0

//! The kernel side of the fuzzer's view: the module's counters, its log lines and kernel
//! reports read from /dev/kmsg, kmemleak, and a cold ext2 file system on a loop device.

use crate::sys::{free_loop_device, has_filesystem, sh, COUNTERS, DEBUGFS, MODULE, SYSCTL};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// The module's counter files, open: reading one again is a `pread` (a path lookup in
/// /proc/sys costs more than the read, under KASAN and lockdep).
pub struct CounterFiles(Vec<Option<fs::File>>);

impl CounterFiles {
    pub fn open() -> Self {
        Self(
            COUNTERS
                .iter()
                .map(|n| fs::File::open(format!("{SYSCTL}/{n}")).ok())
                .collect(),
        )
    }

    /// The counters now.
    pub fn now(&self) -> Counters {
        let mut c = [None; COUNTERS.len()];
        let mut buf = [0u8; 32];
        for (v, f) in c.iter_mut().zip(&self.0) {
            *v = f
                .as_ref()
                .and_then(|f| f.read_at(&mut buf, 0).ok())
                .and_then(|n| std::str::from_utf8(&buf[..n]).ok())
                .and_then(|s| s.trim().parse().ok());
        }
        Counters(c)
    }
}

/// The counters at one moment (`None` where the module has no such counter).
#[derive(Clone, Copy)]
pub struct Counters([Option<u64>; COUNTERS.len()]);

impl Counters {
    /// How each counter moved since `before`.
    pub fn since(&self, before: &Self) -> Delta {
        let mut d = [0; COUNTERS.len()];
        for (i, v) in d.iter_mut().enumerate() {
            if let (Some(a), Some(b)) = (self.0[i], before.0[i]) {
                *v = a.wrapping_sub(b) as i64;
            }
        }
        Delta(d)
    }
}

/// How the counters moved over one exec.
pub struct Delta([i64; COUNTERS.len()]);

impl Delta {
    pub fn get(&self, name: &str) -> i64 {
        COUNTERS
            .iter()
            .position(|c| *c == name)
            .map_or(0, |i| self.0[i])
    }

    /// The counters that moved, and by how much.
    pub fn moved(&self) -> impl Iterator<Item = (&'static str, i64)> + '_ {
        COUNTERS
            .iter()
            .zip(self.0)
            .filter(|(_, d)| *d != 0)
            .map(|(c, d)| (*c, d))
    }

    /// The moves, for a diagnostic.
    pub fn describe(&self) -> String {
        let v: Vec<String> = self.moved().map(|(c, d)| format!("{c} {d:+}")).collect();
        if v.is_empty() {
            "no counter moved".into()
        } else {
            v.join(", ")
        }
    }

    /// How many decisions the module counted (a header handed over, or a refusal).
    pub fn decisions(&self) -> i64 {
        self.moved()
            .filter(|(c, _)| *c == "handled" || c.starts_with("declined_"))
            .map(|(_, d)| d)
            .sum()
    }
}

/// Loads the module, unless it is built in (its controls exist already).
pub fn load_module() -> Result<(), String> {
    if std::path::Path::new(SYSCTL).exists() {
        return Ok(());
    }
    sh("insmod", &[MODULE])
}

/// The module's refusal in a log line: (file name, reason).
pub fn refusal(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("binfmt_ape: ")?;
    let (name, why) = rest.rsplit_once(": not run natively: ")?;
    Some((name.to_string(), why.trim().to_string()))
}

/// kmemleak, where the kernel has it (the debug kernel).
pub fn kmemleak() -> Option<Kmemleak> {
    let _ = sh("mount", &["-t", "debugfs", "none", DEBUGFS]);
    std::path::Path::new(KMEMLEAK).exists().then_some(Kmemleak)
}

pub struct Kmemleak;

impl Kmemleak {
    /// Forgets what was found so far: only what leaks from here on counts.
    pub fn clear(&self) -> Result<(), String> {
        fs::write(KMEMLEAK, "clear").map_err(|e| format!("{KMEMLEAK}: {e}"))
    }

    /// Scans (twice: an object is reported once it looked unreferenced twice) and returns the
    /// report, empty when nothing leaked.
    pub fn scan(&self) -> Result<String, String> {
        for _ in 0..2 {
            fs::write(KMEMLEAK, "scan").map_err(|e| format!("{KMEMLEAK}: {e}"))?;
        }
        fs::read_to_string(KMEMLEAK).map_err(|e| format!("{KMEMLEAK}: {e}"))
    }
}

/// An ext2 file system on a loop device, mounted read-write: files written there are read
/// cold once [`evict`] has dropped their pages.
pub struct Ext2 {
    pub dir: &'static str,
    pub image: &'static str,
}

impl Ext2 {
    /// Makes and mounts one of `mib` MiB, where the kernel has ext2 and loop devices.
    pub fn mount(mib: u64) -> Result<Option<Self>, String> {
        const IMG: &str = "/tmp/fuzz-ext2.img";
        const MNT: &str = "/mnt/fuzz-cold";
        if !has_filesystem("ext2") || !std::path::Path::new("/dev/loop-control").exists() {
            return Ok(None);
        }
        fs::File::create(IMG)
            .and_then(|f| f.set_len(mib << 20))
            .map_err(|e| format!("{IMG}: {e}"))?;
        sh("mke2fs", &["-F", "-q", "-b", "4096", IMG])?;
        fs::create_dir_all(MNT).map_err(|e| format!("{MNT}: {e}"))?;
        free_loop_device()?;
        sh("mount", &["-t", "ext2", "-o", "loop", IMG, MNT])?;
        sh("chmod", &["755", MNT])?;
        Ok(Some(Self {
            dir: MNT,
            image: IMG,
        }))
    }
}

impl Drop for Ext2 {
    fn drop(&mut self) {
        let _ = sh("umount", &[self.dir]);
        let _ = fs::remove_file(self.image);
    }
}

/// Writes the file's dirty pages back and drops every page of it from the page cache, so that
/// the next read of it goes to the block device. Returns whether its first page is gone.
pub fn evict(path: &str) -> bool {
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let fd = f.as_raw_fd();
    // SAFETY: Calls on an open descriptor; the mapping (one page, read-only, shared) is
    // unmapped before the block ends, and mincore writes one byte into `v`.
    unsafe {
        libc::fdatasync(fd);
        libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED);
        let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
        let addr = libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if addr == libc::MAP_FAILED {
            // An empty file: nothing cached.
            return true;
        }
        let mut v = [0u8; 1];
        let r = libc::mincore(addr, page, v.as_mut_ptr());
        libc::munmap(addr, page);
        r == 0 && v[0] & 1 == 0
    }
}

/// Where the file system keeps the first `n` blocks (4 KiB) of `path` (FIBMAP), in bytes from
/// its start; as many as it has.
pub fn blocks(path: &str, n: u32) -> Vec<u64> {
    const FIBMAP: libc::c_ulong = 1;
    let Ok(f) = fs::File::open(path) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for i in 0..n {
        let mut block = libc::c_int::try_from(i).unwrap_or(0);
        // SAFETY: FIBMAP reads and writes one int, `block`, on an open descriptor.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), FIBMAP as _, &mut block) };
        match u64::try_from(block) {
            Ok(b) if r == 0 && b > 0 => v.push(b * 4096),
            _ => break,
        }
    }
    v
}
