// SPDX-License-Identifier: GPL-2.0

//! The exec storm: worker processes exec APEs in a loop while the module is loaded and
//! unloaded continuously. Every exec must either run the program or fail with ENOEXEC (the
//! module not loaded at that moment); anything else (another errno, a signal, a wrong exit
//! status) is a failure, and so is a kernel warning (the caller checks the log).
//!
//! `make check` runs a bounded storm in each guest; `make soak` runs one for as long as asked.

use crate::sys::MODULE;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// What a storm is bounded by.
pub struct Bounds {
    /// Execs per worker (a worker also stops when `until` passes).
    pub execs_per_worker: u64,
    /// Load/unload cycles the storm keeps going for, at least.
    pub min_cycles: u64,
    /// Wall-clock end, if any.
    pub until: Option<Instant>,
}

/// Outcomes of one worker's execs.
#[derive(Default, Debug)]
struct Tally {
    ran: u64,
    enoexec: u64,
    other: u64,
    first_other: String,
}

/// One program a worker execs, and the exit status that proves it ran.
struct Target {
    argv: Vec<CString>,
    status: i32,
}

/// `posix_spawn`s `t` with stdio on /dev/null and waits: `Ok(exit status)` or
/// `Err(description)` for a signal, `Ok(-errno)` when the exec itself failed.
fn spawn_wait(t: &Target) -> Result<i32, String> {
    let mut argv: Vec<*mut libc::c_char> = t.argv.iter().map(|c| c.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let env = [c"PATH=/bin".as_ptr().cast_mut(), std::ptr::null_mut()];
    let mut pid = 0;
    // SAFETY: Every pointer is a live NUL-terminated string or a NULL-terminated array of them;
    // the file actions are initialised and destroyed here.
    let rc = unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut fa);
        for fd in 0..3 {
            let mode = if fd == 0 {
                libc::O_RDONLY
            } else {
                libc::O_WRONLY
            };
            libc::posix_spawn_file_actions_addopen(&mut fa, fd, c"/dev/null".as_ptr(), mode, 0);
        }
        let rc = libc::posix_spawn(
            &mut pid,
            argv[0],
            &fa,
            std::ptr::null(),
            argv.as_ptr(),
            env.as_ptr(),
        );
        libc::posix_spawn_file_actions_destroy(&mut fa);
        rc
    };
    if rc != 0 {
        return Ok(-rc);
    }
    let mut status = 0;
    // SAFETY: `status` is valid for writes.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(format!("killed by signal {}", libc::WTERMSIG(status)))
    }
}

fn worker(targets: &[Target], b: &Bounds) -> Tally {
    let mut tally = Tally::default();
    for i in 0..b.execs_per_worker {
        if b.until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let Some(t) = usize::try_from(i)
            .ok()
            .and_then(|i| targets.get(i % targets.len()))
        else {
            break;
        };
        match spawn_wait(t) {
            Ok(s) if s == t.status => tally.ran += 1,
            Ok(s) if s == -libc::ENOEXEC => tally.enoexec += 1,
            other => {
                tally.other += 1;
                if tally.first_other.is_empty() {
                    tally.first_other = format!("{:?}: {other:?}", t.argv[0]);
                }
            }
        }
    }
    tally
}

/// Loads the module from an open descriptor; `Ok(false)` if it is loaded already.
fn load(ko: &OwnedFd) -> Result<bool, String> {
    // SAFETY: A valid descriptor and an empty, NUL-terminated parameter string.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, ko.as_raw_fd(), c"".as_ptr(), 0) };
    match r {
        0 => Ok(true),
        _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) => Ok(false),
        _ => Err(format!("finit_module: {}", std::io::Error::last_os_error())),
    }
}

/// Unloads the module; `Ok(false)` while an exec holds it.
fn unload() -> Result<bool, String> {
    // SAFETY: A valid NUL-terminated module name.
    let r = unsafe {
        libc::syscall(
            libc::SYS_delete_module,
            c"binfmt_ape".as_ptr(),
            libc::O_NONBLOCK,
        )
    };
    match (r, std::io::Error::last_os_error().raw_os_error()) {
        (0, _) => Ok(true),
        (_, Some(libc::EAGAIN | libc::EBUSY)) => Ok(false),
        _ => Err(format!(
            "delete_module: {}",
            std::io::Error::last_os_error()
        )),
    }
}

/// Runs a storm of `workers` exec loops over `programs` (path, args, expected exit status)
/// against continuous loads and unloads. Returns a one-line report, or why it failed.
pub fn storm(
    workers: usize,
    programs: &[(&str, &[&str], i32)],
    b: &Bounds,
) -> Result<String, String> {
    let targets: Vec<Target> = programs
        .iter()
        .map(|(path, args, status)| Target {
            argv: std::iter::once(*path)
                .chain(args.iter().copied())
                .map(|a| CString::new(a).unwrap_or_default())
                .collect(),
            status: *status,
        })
        .collect();
    let ko = std::fs::File::open(MODULE).map_err(|e| format!("{MODULE}: {e}"))?;
    let ko = OwnedFd::from(ko);
    let start = Instant::now();
    let mut children = Vec::new();
    for _ in 0..workers {
        let mut fds = [0; 2];
        // SAFETY: `fds` is valid for two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err("pipe2".into());
        }
        // SAFETY: Both descriptors are fresh and ours.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: The runner is single-threaded; the child runs the loop and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop(r);
            let t = worker(&targets, b);
            let line = format!("{} {} {} {}\n", t.ran, t.enoexec, t.other, t.first_other);
            // SAFETY: Writing our own buffer to our own pipe, then leaving.
            unsafe {
                libc::write(w.as_raw_fd(), line.as_ptr().cast(), line.len());
                libc::_exit(0);
            }
        }
        drop(w);
        children.push((pid, r));
    }
    // Load and unload until every worker is done and enough cycles have passed.
    let (mut cycles, mut busy) = (0u64, 0u64);
    let live = |children: &[(i32, OwnedFd)]| {
        children.iter().any(|&(pid, _)| {
            // SAFETY: Polling our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) == 0 }
        })
    };
    let mut running = true;
    while running || cycles < b.min_cycles {
        load(&ko)?;
        std::thread::sleep(Duration::from_micros(2000 + (cycles % 7) * 2000));
        // An exec in flight holds a module reference: try again shortly.
        while !unload()? {
            busy += 1;
            std::thread::sleep(Duration::from_micros(100));
        }
        cycles += 1;
        if running {
            running = live(&children);
        }
    }
    let mut total = Tally::default();
    for (pid, r) in children {
        let mut s = String::new();
        std::fs::File::from(r)
            .read_to_string(&mut s)
            .map_err(|e| e.to_string())?;
        // SAFETY: Reaping our own child (already reaped by `live` is fine: ECHILD).
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        let mut f = s.trim_end().splitn(4, ' ');
        let mut num = || f.next().and_then(|v| v.parse::<u64>().ok());
        let (Some(ran), Some(enoexec), Some(other)) = (num(), num(), num()) else {
            return Err(format!("a worker reported {s:?}"));
        };
        total.ran += ran;
        total.enoexec += enoexec;
        total.other += other;
        if total.first_other.is_empty() {
            total.first_other = f.next().unwrap_or_default().to_string();
        }
    }
    let report = format!(
        "{} execs by {workers} workers (ran {}, ENOEXEC {}, other {}), {cycles} load/unload cycles ({busy} unload retries), {:.1} s",
        total.ran + total.enoexec + total.other,
        total.ran,
        total.enoexec,
        total.other,
        start.elapsed().as_secs_f64()
    );
    if total.other != 0 {
        return Err(format!("{report}; first unexpected: {}", total.first_other));
    }
    if total.ran == 0 || total.enoexec == 0 {
        return Err(format!(
            "{report}; want both outcomes, the storm did not interleave"
        ));
    }
    Ok(report)
}
