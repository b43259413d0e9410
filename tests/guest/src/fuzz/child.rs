// SPDX-License-Identifier: GPL-2.0

//! One exec of a fuzzed file: in a child, unprivileged, traced to the exec's stop (where the
//! auxiliary vector tells which image started), then let go and given a time limit.

use crate::exec::{errno_name, signal_name};
use std::ffi::CString;
use std::time::{Duration, Instant};

/// Who the fuzzed programs run as: they run whatever a mutation made of them.
const NOBODY: u32 = 65534;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_ENTRY: u64 = 9;

/// How an exec ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// `execve` failed with this errno.
    Errno(i32),
    /// The program ran and exited with this status.
    Exit(i32),
    /// The program ran (or its exec failed past the point of no return) and was killed by
    /// this signal.
    Signal(i32),
    /// It ran past the time limit and was killed.
    Timeout,
    /// It could not be reaped even after SIGKILL: stuck in the kernel.
    Stuck,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Errno(e) => write!(f, "{}", errno_name(e)),
            Self::Exit(c) => write!(f, "exit {c}"),
            Self::Signal(s) => write!(f, "{}", signal_name(s)),
            Self::Timeout => write!(f, "timeout"),
            Self::Stuck => write!(f, "stuck"),
        }
    }
}

/// What the new image's auxiliary vector says.
#[derive(Clone, Copy, Debug)]
pub struct Auxv {
    pub entry: u64,
    pub phnum: u64,
    pub pagesz: u64,
}

/// A finished exec.
pub struct Exec {
    pub ended: Ended,
    pub auxv: Option<Auxv>,
}

/// Makes this process the reaper of its descendants' orphans.
pub fn become_reaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Kills what is left of the fuzzed programs (anything running as [`NOBODY`]) and reaps it.
pub fn reap_all() {
    // SAFETY: fork; the child only calls async-signal-safe functions, then exits.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            if libc::setuid(NOBODY) == 0 {
                // As that user, -1 means every process of the user but this one.
                libc::kill(-1, libc::SIGKILL);
            }
            libc::_exit(0);
        }
        if pid > 0 {
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
        }
        while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
    }
}

/// What the child of [`exec`] needs, prepared by the parent: the child shares its memory and
/// runs before the parent goes on (`CLONE_VM | CLONE_VFORK`), so it allocates nothing.
struct Spawn {
    path: *const libc::c_char,
    argv: [*const libc::c_char; 2],
    envp: [*const libc::c_char; 3],
    null: libc::c_int,
    /// Set by the child when `execve` fails: its errno.
    errno: libc::c_int,
}

/// The child: stdio on /dev/null, its own process group, limits, [`NOBODY`], traced by the
/// parent, then `execve`. Raw system calls only: libc's `setuid` and `setrlimit` would
/// synchronise with the parent's threads, and this child is none of them.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Spawn`, alive until the child has exec'd or exited (the
    // parent waits, CLONE_VFORK); every call is a system call on values it holds.
    unsafe {
        let a = &mut *arg.cast::<Spawn>();
        for fd in 0..3 {
            libc::syscall(libc::SYS_dup3, a.null, fd, 0);
        }
        libc::syscall(libc::SYS_setpgid, 0, 0);
        for (res, v) in [
            (libc::RLIMIT_CORE, 0),
            (libc::RLIMIT_FSIZE, 1 << 20),
            (libc::RLIMIT_NPROC, 32),
        ] {
            let l = libc::rlimit {
                rlim_cur: v,
                rlim_max: v,
            };
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                res,
                &l,
                std::ptr::null::<libc::rlimit>(),
            );
        }
        if libc::syscall(libc::SYS_setgid, NOBODY) != 0
            || libc::syscall(libc::SYS_setuid, NOBODY) != 0
        {
            a.errno = -1;
            libc::syscall(libc::SYS_exit_group, 126);
        }
        libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
        libc::syscall(libc::SYS_execve, a.path, a.argv.as_ptr(), a.envp.as_ptr());
        a.errno = *libc::__errno_location();
        libc::syscall(libc::SYS_exit_group, 127);
    }
    127
}

/// Execs `path` (argv `[path]`, stdio on /dev/null) and waits at most `limit` for it to end.
pub fn exec(path: &str, limit: Duration) -> Exec {
    let c_path = CString::new(path).unwrap_or_default();
    // SAFETY: A fresh descriptor, closed below; close-on-exec (the child dup3s it).
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    let mut a = Spawn {
        path: c_path.as_ptr(),
        argv: [c_path.as_ptr(), std::ptr::null()],
        envp: [
            c"PATH=/bin".as_ptr(),
            c"TMPDIR=/tmp".as_ptr(),
            std::ptr::null(),
        ],
        null,
        errno: 0,
    };
    let mut stack = vec![0u8; 64 << 10];
    // The stack grows down on both arches; the top, aligned to 16.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: The child runs `child_main` on `stack` with `a`, both alive until clone returns:
    // CLONE_VFORK suspends this thread until the child has exec'd or exited.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut a as *mut Spawn).cast(),
        )
    };
    // SAFETY: Ours.
    unsafe { libc::close(null) };
    drop(stack);
    if pid < 0 || a.errno == -1 {
        if pid > 0 {
            wait_until(pid, Instant::now() + Duration::from_secs(10));
        }
        return Exec {
            ended: Ended::Errno(-1),
            auxv: None,
        };
    }
    let deadline = Instant::now() + limit;
    let mut auxv = None;
    let st;
    // Stops: the exec's SIGTRAP (read the auxiliary vector, then let go), or a signal.
    loop {
        let Some(s) = wait_until(pid, deadline) else {
            return Exec {
                ended: kill_and_reap(pid),
                auxv,
            };
        };
        if !libc::WIFSTOPPED(s) {
            st = s;
            break;
        }
        let sig = libc::WSTOPSIG(s);
        let pass = if sig == libc::SIGTRAP && auxv.is_none() {
            auxv = read_auxv(pid);
            0
        } else {
            sig
        };
        // SAFETY: `pid` is our stopped tracee.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, pass) };
    }
    // SAFETY: Killing what the program left in its process group (nothing, usually).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let ended = if a.errno != 0 {
        Ended::Errno(a.errno)
    } else if libc::WIFEXITED(st) {
        Ended::Exit(libc::WEXITSTATUS(st))
    } else {
        Ended::Signal(libc::WTERMSIG(st))
    };
    Exec { ended, auxv }
}

/// Waits for `fd` to be readable (or closed) until `deadline`.
fn wait_readable(fd: i32, deadline: Instant) -> bool {
    let ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(i32::MAX as u128) as i32;
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: One pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Waits for a change of `pid`'s state until `deadline`: its wait status, or `None` on time.
fn wait_until(pid: i32, deadline: Instant) -> Option<i32> {
    // SAFETY: pidfd_open on our child; the descriptor is closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    loop {
        let mut st = 0;
        // SAFETY: `st` is valid for writes.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) };
        if r == pid {
            if pidfd >= 0 {
                // SAFETY: Ours.
                unsafe { libc::close(pidfd) };
            }
            return Some(st);
        }
        if Instant::now() >= deadline {
            if pidfd >= 0 {
                // SAFETY: Ours.
                unsafe { libc::close(pidfd) };
            }
            return None;
        }
        // A pidfd is readable when the process exits, not when it stops: poll in short steps.
        if pidfd >= 0 {
            let until = deadline.min(Instant::now() + Duration::from_millis(20));
            wait_readable(pidfd, until);
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Kills `pid` and its process group, and reaps it: [`Ended::Timeout`], or [`Ended::Stuck`]
/// when it does not die within 10 s.
fn kill_and_reap(pid: i32) -> Ended {
    // SAFETY: Signals to our child and its process group.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(st) = wait_until(pid, deadline) {
        if !libc::WIFSTOPPED(st) {
            return Ended::Timeout;
        }
    }
    Ended::Stuck
}

/// The new image's `AT_ENTRY`, `AT_PHNUM` and `AT_PAGESZ`.
fn read_auxv(pid: i32) -> Option<Auxv> {
    let b = std::fs::read(format!("/proc/{pid}/auxv")).ok()?;
    let mut a = Auxv {
        entry: 0,
        phnum: 0,
        pagesz: 0,
    };
    for kv in b.chunks_exact(16) {
        let k = u64::from_ne_bytes(kv[..8].try_into().ok()?);
        let v = u64::from_ne_bytes(kv[8..].try_into().ok()?);
        match k {
            AT_ENTRY => a.entry = v,
            AT_PHNUM => a.phnum = v,
            AT_PAGESZ => a.pagesz = v,
            _ => {}
        }
    }
    Some(a)
}
