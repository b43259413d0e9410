// SPDX-License-Identifier: GPL-2.0

//! What every area's tests share: the guest's files, facts about its kernel, and checks of a
//! run.
//!
//! Guest layout (built by qemu/mkinitramfs.sh): /lib/modules/binfmt_ape.ko, /ape/real (ent.com,
//! ent.elf for this CPU, pledge), /ape/fix and /ape/corpus (each with MANIFEST.tsv),
//! /ape/bench, /bin/payload-exec, /bin/payload-dyn, /bin/sentinel, /selftests/exec.

use crate::exec::{run, Outcome, Run, Stdin};
pub use crate::sys::is_report;
use crate::sys::Kmsg;
pub use crate::sys::{sh, DEBUGFS, MISC, MODULE, SYSCTL};
use std::fs;
use std::process::Command;

pub const ENT_COM: &str = "/ape/real/ent.com";
pub const ENT_ELF: &str = "/ape/real/ent.elf";
pub const PLEDGE: &str = "/ape/real/pledge";
/// The fat fixture: an APE with an image for each CPU, each that of [`NATIVE`].
pub const FAT: &str = "/ape/fix/exec-mz-xa.ape";
/// The payload of [`FAT`] as a plain ELF: what an APE's exec must behave like.
pub const NATIVE: &str = "/bin/payload-exec";
/// What the binfmt_misc rules of the tests run: it prints its argv and its /proc/self/exe.
pub const SENTINEL: &str = "/bin/sentinel";

#[cfg(target_arch = "x86_64")]
pub const ARCH: &str = "x86_64";
#[cfg(target_arch = "aarch64")]
pub const ARCH: &str = "aarch64";
/// This CPU's ELF `e_machine` (EM_X86_64, EM_AARCH64).
#[cfg(target_arch = "x86_64")]
pub const E_MACHINE: u16 = 62;
#[cfg(target_arch = "aarch64")]
pub const E_MACHINE: u16 = 183;

/// A test's verdict: what it saw, when it failed.
pub type Check = Result<(), String>;

/// cosmo-ent 1.4.4's aarch64 images (ent.com and pledge) align their segments to 16 KiB, as the
/// host tests assert (`tests/apekit/tests/real.rs`): with larger pages they cannot be mapped.
const REAL_APE_ALIGN_AARCH64: u64 = 16384;

/// The page size of the running kernel.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0)
}

/// Whether the real APEs can run here; where they cannot (arm64 with 64 KiB pages) binfmt_ape
/// must decline them (`align`) rather than have them mapped wrongly.
pub fn real_apes_run() -> bool {
    ARCH == "x86_64" || page_size() <= REAL_APE_ALIGN_AARCH64
}

/// Whether binfmt_ape is built into this kernel (make patches' tree, `BINFMT_APE=y`, with
/// `BINFMT_MISC=y`): its controls exist before anything is loaded, so the first call must come
/// before `insmod`.
pub fn builtin() -> bool {
    static BUILTIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BUILTIN.get_or_init(|| std::path::Path::new(SYSCTL).exists())
}

/// Whether binfmt_ape is the in-tree one (make patches' tree): built in, or a module that
/// modpost marked `intree=Y`. It has binfmt_elf load APEs directly, never rewriting
/// `bprm->buf`, so binfmt_misc's rules never see a decoded header.
pub fn in_tree() -> bool {
    static IN_TREE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_TREE.get_or_init(|| {
        builtin() || fs::read(MODULE).is_ok_and(|ko| ko.windows(9).any(|w| w == b"intree=Y\0"))
    })
}

pub fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

pub fn write(path: &str, v: &str) -> Check {
    fs::write(path, v).map_err(|e| format!("{path}: {e}"))
}

pub fn open(path: &str, flags: i32) -> Result<i32, String> {
    let c = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: `c` is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(format!("open {path}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(fd)
    }
}

/// The file name of `path`.
pub fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The module's counter `name` (`u64::MAX` where it has none).
pub fn counter(name: &str) -> u64 {
    read(&format!("{SYSCTL}/{name}"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

pub fn insmod() -> Check {
    sh("insmod", &[MODULE])
}

pub fn rmmod() -> Check {
    sh("rmmod", &["binfmt_ape"])
}

/// Unloads the module if it is loaded: for the tests that load and unload it themselves, which
/// the whole suite runs after `rmmod`, and `check PREFIX` right after `insmod`.
pub fn unloaded() -> Check {
    if std::path::Path::new(SYSCTL).exists() {
        rmmod()?;
    }
    Ok(())
}

pub fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

pub fn describe(r: &Run) -> String {
    format!("{} stdout={:?} stderr={:?}", r.outcome, r.out(), r.err())
}

/// Runs a payload APE with fixed arguments and checks everything it reports.
pub fn check_payload(path: &str, kind: &str) -> Check {
    let argv = [path, "a", "b c", "--exit", "7"];
    let r = run(path, &argv, Stdin::Null);
    let want = format!(
        "payload: arch={ARCH} type={kind} argc=5 argv=[{path},a,b c,--exit,7] execfn={path} secure=0 exe={path}\n"
    );
    if r.outcome != Outcome::Exit(7) || r.out() != want {
        return Err(format!("{}; want exit 7 and {want:?}", describe(&r)));
    }
    Ok(())
}

/// Checks one manifest case: `run`, a signal name, an errno name, or `sentinel`.
pub fn check_case(path: &str, name: &str, expect: &str) -> Check {
    match expect {
        "run" => check_payload(
            path,
            if name.starts_with("dyn-") {
                "dyn"
            } else {
                "exec"
            },
        ),
        "sentinel" => {
            let r = run(path, &[path, "x"], Stdin::Null);
            let want = format!("argv=[{SENTINEL},{path},x]");
            if r.outcome == Outcome::Exit(0)
                && r.out().contains(&want)
                && r.out().contains(&format!("exe={SENTINEL}"))
            {
                Ok(())
            } else {
                Err(format!(
                    "{}; want binfmt_misc's sentinel with {want}",
                    describe(&r)
                ))
            }
        }
        other => {
            // `elf:ENOEXEC`: binfmt_ape handed the header over and binfmt_elf refused it.
            let other = other.strip_prefix("elf:").unwrap_or(other);
            let r = run(path, &[path], Stdin::Null);
            let got = r.outcome.to_string();
            if got == other {
                Ok(())
            } else {
                Err(format!("{}; want {other}", describe(&r)))
            }
        }
    }
}

/// A direct execve of `path` fails with ENOEXEC.
pub fn refused(path: &str) -> Check {
    expect_eq(
        "execve",
        run(path, &[path], Stdin::Null).outcome,
        Outcome::Errno(libc::ENOEXEC),
    )
}

/// The payload ran and printed its line.
pub fn ran(r: &Run) -> bool {
    r.outcome == Outcome::Exit(0) && r.out().starts_with("payload: ")
}

/// cosmo's `ent` on the guest's input file.
pub fn ent(path: &str) -> Run {
    run(path, &[path, "/ape/real/input"], Stdin::Null)
}

/// The lines of /proc/PID/maps that map `path` executable. The exec's status pipe closes in
/// begin_new_exec(), before binfmt_elf maps the segments, so wait (bounded) for them to appear.
pub fn exec_mappings(pid: i32, path: &str) -> Vec<String> {
    for _ in 0..1000 {
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let hits: Vec<String> = maps
            .lines()
            .filter(|l| l.contains(" r-xp ") && l.ends_with(path))
            .map(String::from)
            .collect();
        // A process that already exited (a zombie) has no mappings left to show.
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let exited = stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z'));
        if !hits.is_empty() || exited {
            return hits;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Vec::new()
}

/// The whole kernel log, as dmesg prints it.
pub fn dmesg() -> String {
    Command::new("dmesg")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Kernel log lines that report a bug, a warning, a crash, a memory error, a locking problem,
/// a leak or an unpatched thunk ([`is_report`]), since boot.
pub fn kernel_log_problems() -> Vec<String> {
    dmesg()
        .lines()
        .filter(|l| is_report(l))
        .map(String::from)
        .collect()
}

/// A point in the kernel log. The records logged after it, read from /dev/kmsg, are what a
/// test caused: whatever earlier tests logged, and however full the ring is.
pub struct LogMark(Kmsg);

impl LogMark {
    pub fn now() -> Result<Self, String> {
        Kmsg::open().map(Self)
    }

    /// The messages logged since the mark, as dmesg prints them.
    pub fn since(mut self) -> Vec<String> {
        self.0.drain()
    }

    /// Runs `act`, whose kernel log must satisfy `found`. binfmt_ape logs at most 10 refusals
    /// in 5 s (its ratelimit state): when earlier tests used the burst up, the line is not
    /// there, so the interval is waited out once and `act` runs again.
    pub fn logged(act: impl Fn() -> Check, found: impl Fn(&[String]) -> bool) -> Check {
        const INTERVAL: std::time::Duration = std::time::Duration::from_millis(5500);
        let mut logged = Vec::new();
        for attempt in 0..2 {
            if attempt > 0 {
                std::thread::sleep(INTERVAL);
            }
            let mark = Self::now()?;
            act()?;
            logged = mark.since();
            if found(&logged) {
                return Ok(());
            }
        }
        Err(format!("logged: {logged:?}"))
    }

    /// Runs `act`, which must make the kernel log `want`.
    pub fn expect(want: &str, act: impl Fn() -> Check) -> Check {
        Self::logged(act, |l| l.iter().any(|m| m.contains(want)))
            .map_err(|e| format!("no {want:?} in the kernel log; {e}"))
    }
}
