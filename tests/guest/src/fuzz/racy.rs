// SPDX-License-Identifier: GPL-2.0

//! The racy phase: while a file is exec'd, a second task rewrites it (stores through a shared
//! mapping, `pwrite`, `ftruncate`, a new file renamed over it, and on ext2 writes to the
//! blocks under it, behind the file system's back, with its pages dropped). No oracle: the
//! file changes under the exec. Every exec must end in a classified outcome, and the module
//! counts at most one decision for it.

use super::child::{self, Ended};
use super::kernel::{self, CounterFiles, Ext2};
use super::mutate::{self, Rng, Seed};
use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// One racy exec's result.
pub struct RacyExec {
    pub ended: Ended,
    /// Decisions the module counted for it (at most one is right).
    pub decisions: i64,
    /// Writes the second task made while the exec was in flight, and how many were refused
    /// (ETXTBSY: the file is being executed).
    pub writes: u64,
    pub refused: u64,
    pub where_: &'static str,
}

/// Races exec `index` of the phase: a file made from a seed, rewritten with bytes of another
/// mutation of the same seed while it is exec'd.
pub fn race(
    seeds: &[Seed],
    seed: u64,
    index: u64,
    page: usize,
    ext2: Option<&Ext2>,
    counters: &CounterFiles,
    limit: Duration,
) -> RacyExec {
    let mut rng = Rng::for_exec(seed, 2, index);
    let own = rng.below(seeds.len());
    let mut a = seeds[own].bytes.clone();
    let mut b = a.clone();
    mutate::mutate(&mut a, seeds, &mut rng, page);
    mutate::mutate(&mut b, seeds, &mut rng, page);
    // On ext2 every other time: there the blocks change under the page cache.
    let on_ext2 = ext2.filter(|_| index % 2 == 1);
    let (path, where_) = match on_ext2 {
        Some(e) => (format!("{}/racy.ape", e.dir), "ext2"),
        None => ("/tmp/fuzz/racy.ape".to_string(), "tmpfs"),
    };
    if write_file(&path, &a).is_err() {
        return RacyExec {
            ended: Ended::Errno(-1),
            decisions: 0,
            writes: 0,
            refused: 0,
            where_,
        };
    }
    let raw = on_ext2.map(|e| (e.image, kernel::blocks(&path, 3)));
    if on_ext2.is_some() {
        kernel::evict(&path);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (stop, writes, refused) = (stop.clone(), writes.clone(), refused.clone());
        let (path, a, b) = (path.clone(), a.clone(), b);
        let mut rng = Rng::for_exec(seed, 3, index);
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                let ok = rewrite(&path, &a, &b, raw.as_ref(), &mut rng);
                writes.fetch_add(1, Relaxed);
                if !ok {
                    refused.fetch_add(1, Relaxed);
                }
                std::thread::yield_now();
            }
        })
    };
    let before = counters.now();
    let e = child::exec(&path, limit);
    let after = counters.now();
    stop.store(true, Relaxed);
    let _ = writer.join();
    let _ = fs::remove_file(&path);
    let _ = fs::remove_file(format!("{path}.new"));
    RacyExec {
        ended: e.ended,
        decisions: after.since(&before).decisions(),
        writes: writes.load(Relaxed),
        refused: refused.load(Relaxed),
        where_,
    }
}

/// Writes a whole file (mode 0755) and closes it.
pub fn write_file(path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)?;
    f.write_all_at(bytes, 0)
}

/// One rewrite of the file at `path`, between its two versions `a` and `b`: whether the file
/// system let it happen (not ETXTBSY).
fn rewrite(path: &str, a: &[u8], b: &[u8], raw: Option<&(&str, Vec<u64>)>, rng: &mut Rng) -> bool {
    let src = if rng.one_in(2) { a } else { b };
    let w = src.len().min(mutate_window(src));
    let at = rng.below(w.max(1));
    let len = (1 + rng.below(256)).min(src.len().saturating_sub(at));
    let chunk = src.get(at..at + len).unwrap_or(&[]);
    // Every rewrite but the raw one holds the file open for writing for a moment, which fails
    // the exec with ETXTBSY if it comes then: half the rewrites on ext2 are raw, and on tmpfs
    // renames (a new file, no writer on the old one) come as often as the three others.
    let op = if raw.is_some() && rng.one_in(2) {
        4
    } else {
        *rng.pick(&[0, 1, 2, 3, 3, 3])
    };
    match op {
        0 => fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.write_all_at(chunk, at as u64))
            .is_ok(),
        1 => shared_stores(path, chunk, at, rng),
        2 => fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| {
                let cut = *rng.pick(&[0, 8, 100, 2048, 4096, 8192, src.len() as u64 / 2]);
                f.set_len(cut)?;
                std::thread::yield_now();
                f.write_all_at(src, 0)
            })
            .is_ok(),
        3 => {
            let new = format!("{path}.new");
            write_file(&new, src).is_ok() && fs::rename(&new, path).is_ok()
        }
        _ => {
            // Under ext2: the loop device's backing file, at the file's block; then the file's
            // pages go, so that the next read of them sees the new bytes.
            let Some(&block) = raw.and_then(|(_, b)| b.get(at / 4096)) else {
                return false;
            };
            let image = raw.map_or("", |r| r.0);
            let chunk = &chunk[..chunk.len().min(4096 - at % 4096)];
            let done = fs::OpenOptions::new()
                .write(true)
                .open(image)
                .and_then(|f| f.write_all_at(chunk, block + (at % 4096) as u64))
                .is_ok();
            if let Ok(f) = fs::File::open(path) {
                // SAFETY: fadvise on an open descriptor.
                unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
            done
        }
    }
}

/// The part of a file the module reads: the window.
fn mutate_window(f: &[u8]) -> usize {
    f.len().min(apekit::ape::WINDOW)
}

/// Stores `chunk` at `at` through a shared writable mapping of the file, a few bytes at a
/// time.
fn shared_stores(path: &str, chunk: &[u8], at: usize, rng: &mut Rng) -> bool {
    let Ok(c) = CString::new(path) else {
        return false;
    };
    // SAFETY: open/fstat/mmap/munmap on our own descriptor and mapping; the stores stay inside
    // the mapping, which covers the file's first `len` bytes (all of them exist).
    unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st);
        let len = usize::try_from(st.st_size)
            .unwrap_or(0)
            .min(at + chunk.len());
        if len == 0 || at >= len {
            libc::close(fd);
            return true;
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        libc::close(fd);
        if p == libc::MAP_FAILED {
            return false;
        }
        let dst = p.cast::<u8>();
        for (i, &v) in chunk.iter().enumerate().take(len - at) {
            dst.add(at + i).write_volatile(v);
            if rng.one_in(16) {
                libc::sched_yield();
            }
        }
        libc::munmap(p, len);
    }
    true
}
