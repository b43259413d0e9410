// SPDX-License-Identifier: GPL-2.0

//! Every exec reads the file anew: a change, however it is made, is seen by the next one, and
//! execs racing a writer end in one of the outcomes a rewritten file can give.

use super::common::{
    check_payload, describe, expect_eq, is_report, read, Check, LogMark, E_MACHINE, FAT,
};
use super::{test, Test};
use crate::exec::{run, Outcome, Stdin};
use std::fs;
use std::os::fd::AsRawFd;

/// Changes between execs, then execs racing a writer (fewer on the slow debug kernel).
pub fn tests(debug: bool) -> Vec<Test> {
    vec![
        test("reads.write_in_place_is_seen", || {
            changed_then(|f| {
                for at in statement_quotes(f) {
                    pwrite(CHANGED, at, b"\"")?;
                }
                Ok(())
            })
        }),
        test("reads.mmap_write_is_seen", || {
            changed_then(|f| {
                let quotes = statement_quotes(f);
                mmap_write(CHANGED, |m| {
                    for &at in &quotes {
                        m[at] = b'"';
                    }
                })
            })
        }),
        test("reads.table_past_window_is_seen", || {
            changed_then(|f| {
                // The first non-empty PT_LOAD of this CPU's table gets p_filesz > p_memsz.
                let h = this_cpus_header(f).ok_or("no header for this CPU")?;
                let phoff = u64::from_le_bytes(h[32..40].try_into().unwrap()) as usize;
                let phnum = usize::from(u16::from_le_bytes([h[56], h[57]]));
                if phoff < 8192 {
                    return Err(format!("the fixture's table is at {phoff}, in the window"));
                }
                let load = (0..phnum)
                    .map(|i| phoff + 56 * i)
                    .find(|&p| f[p..p + 4] == 1u32.to_le_bytes() && f[p + 40..p + 48] != [0; 8])
                    .ok_or("no PT_LOAD")?;
                let memsz = u64::from_le_bytes(f[load + 40..load + 48].try_into().unwrap());
                pwrite(CHANGED, load + 32, &(memsz + 1).to_le_bytes())
            })
        }),
        test("storm.rewrites_during_execs", move || {
            rewrites_during_execs(if debug { 100 } else { 400 })
        }),
    ]
}

/// The copy of the fat fixture that the change tests change.
const CHANGED: &str = "/tmp/changed.ape";

/// Runs a fresh copy of the fat fixture, has `change` change the copy's bytes in place (it
/// gets them as they are), and checks that the next run is refused: every exec reads the
/// file anew, whatever moved or did not move its timestamps.
fn changed_then(change: impl FnOnce(&[u8]) -> Check) -> Check {
    fs::copy(FAT, CHANGED).map_err(|e| format!("{CHANGED}: {e}"))?;
    check_payload(CHANGED, "exec")?;
    let bytes = fs::read(CHANGED).map_err(|e| format!("{CHANGED}: {e}"))?;
    change(&bytes)?;
    let r = run(CHANGED, &[CHANGED], Stdin::Null);
    expect_eq(
        "execve once changed",
        r.outcome,
        Outcome::Errno(libc::ENOEXEC),
    )
}

/// Offsets of the opening quotes of the window's `printf '` statements.
fn statement_quotes(f: &[u8]) -> Vec<usize> {
    let w = &f[..f.len().min(8192)];
    w.windows(8)
        .enumerate()
        .filter(|(_, x)| *x == b"printf '")
        .map(|(i, _)| i + 7)
        .collect()
}

/// This CPU's header in an APE's prologue: a plain decode of each `printf '` statement.
fn this_cpus_header(f: &[u8]) -> Option<[u8; 64]> {
    let w = &f[..f.len().min(8192)];
    statement_quotes(w).into_iter().find_map(|q| {
        let (mut j, mut out) = (q + 1, Vec::new());
        while j < w.len() && w[j] != b'\'' {
            let digits = w[j + 1..]
                .iter()
                .take(3)
                .take_while(|c| (b'0'..=b'7').contains(c));
            let (n, v) = digits.fold((0, 0u32), |(n, v), c| (n + 1, v * 8 + u32::from(c - b'0')));
            if w[j] == b'\\' && n > 0 {
                out.push(v as u8);
                j += 1 + n;
            } else {
                out.push(w[j]);
                j += 1;
            }
        }
        let h: [u8; 64] = out.get(..64)?.try_into().ok()?;
        (h.starts_with(b"\x7fELF") && u16::from_le_bytes([h[18], h[19]]) == E_MACHINE).then_some(h)
    })
}

/// Writes `bytes` at `at` in the file at `path`, in place.
fn pwrite(path: &str, at: usize, bytes: &[u8]) -> Check {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    f.write_all_at(bytes, at as u64)
        .map_err(|e| format!("{path}: {e}"))
}

/// Changes the file at `path` through a shared writable mapping (which on tmpfs moves neither
/// its timestamps nor its `i_version`).
fn mmap_write(path: &str, change: impl FnOnce(&mut [u8])) -> Check {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    let len = f.metadata().map_err(|e| format!("{path}: {e}"))?.len() as usize;
    // SAFETY: A fresh shared mapping of `len` bytes of an open file; checked before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap {path}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `p` maps `len` bytes, readable and writable, until the munmap below.
    change(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) });
    // SAFETY: `p` and `len` are the mapping made above.
    unsafe { libc::munmap(p, len) };
    Ok(())
}

/// An exec storm on a copy of the fat fixture while a second process rewrites it, in place
/// and without pause: quotes flipped by `pwrite` and through a shared writable mapping, the
/// file cut short by `ftruncate` and written back. There is no oracle for which bytes an exec
/// saw, so every exec must end in one of the outcomes a rewritten file can give: it ran (any
/// exit status, or a fault if its segments changed under it), or `ENOEXEC`, `EIO` or
/// `ETXTBSY` (the writer held the file open for writing). Then the kernel log must be clean.
fn rewrites_during_execs(execs: usize) -> Check {
    const F: &str = "/tmp/rewritten.ape";
    fs::copy(FAT, F).map_err(|e| format!("{F}: {e}"))?;
    let good = fs::read(F).map_err(|e| format!("{F}: {e}"))?;
    let quotes = statement_quotes(&good);
    check_payload(F, "exec").map_err(|e| format!("before the storm: {e}"))?;
    // Only what the storm adds to the kernel log counts here.
    let mark = LogMark::now()?;
    // SAFETY: The runner is single-threaded; the child only rewrites the file, then is killed.
    let writer = unsafe { libc::fork() };
    if writer < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if writer == 0 {
        // Each round breaks the file one way and puts it back; the putting back is retried
        // until it succeeds (an exec in progress makes opening for writing fail ETXTBSY).
        let mut busy = 0usize;
        let restore = |busy: &mut usize| {
            while fs::write(F, &good).is_err() {
                *busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        for i in 0usize.. {
            let q = quotes.get(i % quotes.len().max(1)).copied().unwrap_or(0);
            let _ = match i % 4 {
                0 => pwrite(F, q, b"\""),
                1 => mmap_write(F, |m| {
                    if let Some(b) = m.get_mut(q) {
                        *b = b'"';
                    }
                }),
                2 => fs::OpenOptions::new()
                    .write(true)
                    .open(F)
                    .and_then(|f| f.set_len(512))
                    .map_err(|e| e.to_string()),
                _ => pwrite(F, q + 1, b"\\777"),
            };
            std::thread::sleep(std::time::Duration::from_millis(1));
            restore(&mut busy);
            let _ = fs::write("/tmp/rewrites.writer", format!("rounds {i} busy {busy}\n"));
            // Room for execs of the good file: while the file is open for writing, exec
            // fails with ETXTBSY before any binary format sees it.
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        // SAFETY: Leaving the child without running the runner's exit paths.
        unsafe { libc::_exit(0) };
    }
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut bad = Vec::new();
    for _ in 0..execs {
        // A pause for the writer, which cannot open the file while an exec holds it.
        std::thread::sleep(std::time::Duration::from_millis(4));
        let r = run(F, &[F], Stdin::Null);
        let ok = match r.outcome {
            Outcome::Exit(_) => true,
            Outcome::Signal(s) => [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL].contains(&s),
            Outcome::Errno(e) => [libc::ENOEXEC, libc::EIO, libc::ETXTBSY].contains(&e),
        };
        *seen.entry(format!("{:?}", r.outcome)).or_default() += 1;
        if !ok && bad.len() < 5 {
            bad.push(describe(&r));
        }
    }
    // SAFETY: `writer` is our child.
    unsafe {
        libc::kill(writer, libc::SIGKILL);
        libc::waitpid(writer, std::ptr::null_mut(), 0);
    }
    println!(
        "# rewrites: {execs} execs: {seen:?}; writer: {}",
        read("/tmp/rewrites.writer").unwrap_or_default()
    );
    fs::write(F, &good).map_err(|e| format!("{F}: {e}"))?;
    check_payload(F, "exec").map_err(|e| format!("after the storm: {e}"))?;
    let problems: Vec<String> = mark.since().into_iter().filter(|l| is_report(l)).collect();
    if !bad.is_empty() {
        return Err(format!("unexpected outcomes: {}", bad.join("; ")));
    }
    if !seen.keys().any(|k| k.starts_with("Exit")) {
        return Err("no exec ran: the storm raced nothing".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
