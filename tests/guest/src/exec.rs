// SPDX-License-Identifier: GPL-2.0

//! Running programs with `fork` + `execve`, never through a shell: a shell would answer
//! ENOEXEC by running the APE's prologue itself and hide what the kernel did.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// How an exec ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `execve` itself failed with this errno.
    Errno(i32),
    /// The program exited with this status.
    Exit(i32),
    /// The program was killed by this signal.
    Signal(i32),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Outcome::Errno(e) => write!(f, "{}", errno_name(e)),
            Outcome::Exit(c) => write!(f, "exit {c}"),
            Outcome::Signal(s) => write!(f, "{}", signal_name(s)),
        }
    }
}

pub fn errno_name(e: i32) -> String {
    match e {
        libc::ENOEXEC => "ENOEXEC".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EIO => "EIO".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::E2BIG => "E2BIG".into(),
        libc::ELOOP => "ELOOP".into(),
        libc::ETXTBSY => "ETXTBSY".into(),
        libc::ELIBBAD => "ELIBBAD".into(),
        _ => format!("errno {e}"),
    }
}

pub fn signal_name(s: i32) -> String {
    match s {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGTRAP => "SIGTRAP".into(),
        libc::SIGABRT => "SIGABRT".into(),
        _ => format!("signal {s}"),
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Run {
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

fn cstrings(v: &[&str]) -> Vec<CString> {
    v.iter()
        .map(|s| CString::new(*s).expect("no NUL in test arguments"))
        .collect()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is valid for two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2");
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A started child: its pid, and the write end of its stdin when asked for.
pub struct Child {
    pub pid: i32,
    pub stdin: Option<OwnedFd>,
    out_path: String,
    err_path: String,
}

/// Where a child's stdin comes from.
pub enum Stdin {
    Null,
    Pipe,
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Who a child runs as, and where.
#[derive(Clone, Copy, Default)]
pub struct As {
    /// User and group id, set before `execve` (else the runner's, root).
    pub uid: Option<u32>,
    /// Whether the child sets `PR_SET_NO_NEW_PRIVS` before `execve`.
    pub no_new_privs: bool,
    /// A directory the child `chroot`s into first.
    pub chroot: Option<&'static str>,
    /// The child's working directory.
    pub cwd: Option<&'static str>,
    /// Whether the child asks for fault injection (`/proc/self/make-it-fail`) first.
    pub make_it_fail: bool,
    /// Whether the program runs traced, by a tracer with the child's ids (an unprivileged
    /// one when `uid` is set): the child forks the program, which asks to be traced
    /// (`PTRACE_TRACEME`) before `execve`, and passes on how it ended.
    pub traced: bool,
}

/// How the child names the program to the kernel.
#[derive(Clone, Copy)]
pub enum How<'a> {
    /// `execve(path, ...)`.
    Path(&'a str),
    /// `execveat(fd, "", ..., AT_EMPTY_PATH)` on a descriptor the child inherits.
    Fd(i32),
}

/// Starts `path` with `argv`; returns `Err(errno)` if `execve` failed.
pub fn spawn(path: &str, argv: &[&str], stdin: Stdin) -> Result<Child, i32> {
    spawn_as(As::default(), path, argv, stdin)
}

/// As [`spawn`], with the child's ids and privilege flags as `who` says.
pub fn spawn_as(who: As, path: &str, argv: &[&str], stdin: Stdin) -> Result<Child, i32> {
    spawn_how(who, How::Path(path), argv, stdin)
}

/// As [`spawn_as`], naming the program as `how` says.
pub fn spawn_how(who: As, how: How, argv: &[&str], stdin: Stdin) -> Result<Child, i32> {
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out_path, err_path) = (format!("/tmp/run{n}.out"), format!("/tmp/run{n}.err"));
    let c_path = CString::new(match how {
        How::Path(p) => p,
        How::Fd(_) => "",
    })
    .expect("path");
    let c_root = who.chroot.map(|r| CString::new(r).expect("path"));
    let c_cwd = who.cwd.map(|d| CString::new(d).expect("path"));
    let c_argv = cstrings(argv);
    let mut p_argv: Vec<*const libc::c_char> = c_argv.iter().map(|c| c.as_ptr()).collect();
    p_argv.push(std::ptr::null());
    let env = cstrings(&["PATH=/bin:/sbin", "HOME=/tmp", "TMPDIR=/tmp"]);
    let mut p_env: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    p_env.push(std::ptr::null());
    let open = |p: &str, flags: i32| {
        let c = CString::new(p).expect("path");
        // SAFETY: `c` is a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
        assert!(fd >= 0, "open {p}");
        // SAFETY: a fresh descriptor.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let out = open(&out_path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC);
    let err = open(&err_path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC);
    let (in_read, in_write) = match stdin {
        Stdin::Null => (open("/dev/null", libc::O_RDONLY), None),
        Stdin::Pipe => {
            let (r, w) = pipe();
            (r, Some(w))
        }
    };
    let (status_r, status_w) = pipe();
    // SAFETY: The runner is single-threaded; the child only calls async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: In the child: dup2/execve/write/_exit on descriptors and buffers we own.
        unsafe {
            libc::dup2(in_read.as_raw_fd(), 0);
            libc::dup2(out.as_raw_fd(), 1);
            libc::dup2(err.as_raw_fd(), 2);
            if let Some(id) = who.uid {
                if libc::setgid(id) != 0 || libc::setuid(id) != 0 {
                    libc::_exit(126);
                }
            }
            if who.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(126);
            }
            if let Some(root) = &c_root {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    libc::_exit(126);
                }
            }
            if who.make_it_fail {
                let fd = libc::open(c"/proc/self/make-it-fail".as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, c"1".as_ptr().cast(), 1) != 1 {
                    libc::_exit(126);
                }
                libc::close(fd);
            }
            if let Some(dir) = &c_cwd {
                if libc::chdir(dir.as_ptr()) != 0 {
                    libc::_exit(126);
                }
            }
            if who.traced {
                let tracee = libc::fork();
                if tracee < 0 {
                    libc::_exit(126);
                }
                if tracee > 0 {
                    // The tracer: let the tracee go on at each stop, then end as it did. Its
                    // copies of the pipes would keep the runner from seeing the exec succeed
                    // and the program from seeing the end of its input.
                    libc::close(status_w.as_raw_fd());
                    if let Some(w) = &in_write {
                        libc::close(w.as_raw_fd());
                    }
                    let mut st = 0;
                    loop {
                        if libc::waitpid(tracee, &mut st, 0) != tracee {
                            libc::_exit(126);
                        }
                        if !libc::WIFSTOPPED(st) {
                            break;
                        }
                        let sig = libc::WSTOPSIG(st);
                        let pass = if sig == libc::SIGTRAP { 0 } else { sig };
                        libc::ptrace(libc::PTRACE_CONT, tracee, 0, pass);
                    }
                    if libc::WIFSIGNALED(st) {
                        libc::signal(libc::WTERMSIG(st), libc::SIG_DFL);
                        libc::kill(libc::getpid(), libc::WTERMSIG(st));
                        libc::_exit(128 + libc::WTERMSIG(st));
                    }
                    libc::_exit(libc::WEXITSTATUS(st));
                }
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                    libc::_exit(126);
                }
            }
            match how {
                How::Path(_) => {
                    libc::execve(c_path.as_ptr(), p_argv.as_ptr(), p_env.as_ptr());
                }
                How::Fd(fd) => {
                    libc::syscall(
                        libc::SYS_execveat,
                        fd,
                        c_path.as_ptr(),
                        p_argv.as_ptr(),
                        p_env.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    );
                }
            }
            let e = *libc::__errno_location();
            libc::write(status_w.as_raw_fd(), (&e as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    drop(status_w);
    drop(in_read);
    let mut buf = [0u8; 4];
    let mut f = fs::File::from(status_r);
    // EOF (0 bytes) means the exec succeeded and closed the CLOEXEC pipe.
    if f.read(&mut buf).unwrap_or(0) == 4 {
        wait(pid);
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        return Err(i32::from_ne_bytes(buf));
    }
    Ok(Child {
        pid,
        stdin: in_write,
        out_path,
        err_path,
    })
}

fn wait(pid: i32) -> Outcome {
    let mut status = 0;
    // SAFETY: `status` is valid for writes.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    // A traced child stops at its exec and at each signal: let it go on, with its signal.
    while libc::WIFSTOPPED(status) {
        let sig = libc::WSTOPSIG(status);
        let pass = if sig == libc::SIGTRAP { 0 } else { sig };
        // SAFETY: `pid` is our stopped tracee; `status` is valid for writes.
        unsafe {
            libc::ptrace(libc::PTRACE_CONT, pid, 0, pass);
            libc::waitpid(pid, &mut status, 0);
        }
    }
    if libc::WIFEXITED(status) {
        Outcome::Exit(libc::WEXITSTATUS(status))
    } else {
        Outcome::Signal(libc::WTERMSIG(status))
    }
}

impl Child {
    /// Writes `data` to the child's stdin (when it is a pipe).
    pub fn feed(&mut self, data: &[u8]) {
        if let Some(fd) = &self.stdin {
            let mut f = fs::File::from(fd.try_clone().expect("dup"));
            let _ = std::io::Write::write_all(&mut f, data);
        }
    }

    /// Closes stdin, waits, and collects the output.
    pub fn finish(mut self) -> Run {
        self.stdin.take();
        let outcome = wait(self.pid);
        let stdout = fs::read(&self.out_path).unwrap_or_default();
        let stderr = fs::read(&self.err_path).unwrap_or_default();
        let _ = fs::remove_file(&self.out_path);
        let _ = fs::remove_file(&self.err_path);
        Run {
            outcome,
            stdout,
            stderr,
        }
    }
}

/// Runs to completion.
pub fn run(path: &str, argv: &[&str], stdin: Stdin) -> Run {
    run_as(As::default(), path, argv, stdin)
}

/// Runs to completion as `who` says.
pub fn run_as(who: As, path: &str, argv: &[&str], stdin: Stdin) -> Run {
    run_how(who, How::Path(path), argv, stdin)
}

/// Runs to completion, naming the program as `how` says.
pub fn run_how(who: As, how: How, argv: &[&str], stdin: Stdin) -> Run {
    match spawn_how(who, how, argv, stdin) {
        Ok(c) => c.finish(),
        Err(e) => Run {
            outcome: Outcome::Errno(e),
            stdout: vec![],
            stderr: vec![],
        },
    }
}
