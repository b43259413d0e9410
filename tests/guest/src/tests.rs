// SPDX-License-Identifier: GPL-2.0

//! The guest test plan. Every test has a name; the plan is printed first, each result as a
//! KTAP line, and a failing test prints what it saw as `#` diagnostics.

use crate::exec::{self, run, run_as, run_how, spawn, As, How, Outcome, Run, Stdin};
use crate::storm;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

const MODULE: &str = "/lib/modules/binfmt_ape.ko";
const SYSCTL: &str = "/proc/sys/fs/binfmt_ape";
const MISC: &str = "/proc/sys/fs/binfmt_misc";
const ENT_COM: &str = "/ape/real/ent.com";
const ENT_ELF: &str = "/ape/real/ent.elf";
const PLEDGE: &str = "/ape/real/pledge";
const FAT: &str = "/ape/fix/exec-mz-xa.ape";
const SENTINEL: &str = "/bin/sentinel";
const DEBUGFS: &str = "/sys/kernel/debug";
/// Present on the debug kernel (`qemu/config/variant-debug.config`) once debugfs is mounted.
const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";
/// The payload of [`FAT`] as a plain ELF: what an APE's exec must behave like.
const NATIVE: &str = "/bin/payload-exec";

#[cfg(target_arch = "x86_64")]
const ARCH: &str = "x86_64";
#[cfg(target_arch = "aarch64")]
const ARCH: &str = "aarch64";
/// This CPU's ELF `e_machine` (EM_X86_64, EM_AARCH64).
#[cfg(target_arch = "x86_64")]
const E_MACHINE: u16 = 62;
#[cfg(target_arch = "aarch64")]
const E_MACHINE: u16 = 183;

type Check = Result<(), String>;

/// cosmo-ent 1.4.4's aarch64 images (ent.com and pledge) align their segments to 16 KiB, as the
/// host tests assert (`tests/apekit/tests/real.rs`): with larger pages they cannot be mapped.
const REAL_APE_ALIGN_AARCH64: u64 = 16384;

/// The page size of the running kernel.
fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0)
}

/// Whether the real APEs can run here; where they cannot (arm64 with 64 KiB pages) binfmt_ape
/// must decline them (`align`) rather than have them mapped wrongly.
fn real_apes_run() -> bool {
    ARCH == "x86_64" || page_size() <= REAL_APE_ALIGN_AARCH64
}

struct Test {
    name: String,
    body: Box<dyn FnOnce() -> Check>,
    /// Why the test does not apply to this kernel (KTAP `# SKIP`).
    skip: Option<&'static str>,
}

fn t(name: impl Into<String>, body: impl FnOnce() -> Check + 'static) -> Test {
    Test {
        name: name.into(),
        body: Box::new(body),
        skip: None,
    }
}

/// Whether binfmt_ape is built into this kernel (make patches' tree, `BINFMT_APE=y`, with
/// `BINFMT_MISC=y`): its controls exist before anything is loaded.
fn builtin() -> bool {
    static BUILTIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BUILTIN.get_or_init(|| std::path::Path::new(SYSCTL).exists())
}

/// Whether binfmt_ape is the in-tree one (make patches' tree): built in, or a module that
/// modpost marked `intree=Y`. It has binfmt_elf load APEs directly, never rewriting
/// `bprm->buf`, so binfmt_misc's rules never see a decoded header.
fn in_tree() -> bool {
    static IN_TREE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_TREE.get_or_init(|| {
        builtin() || fs::read(MODULE).is_ok_and(|ko| ko.windows(9).any(|w| w == b"intree=Y\0"))
    })
}

/// A test of loading or unloading binfmt_ape or binfmt_misc: skipped, by name, where both are
/// built in.
fn m(name: impl Into<String>, body: impl FnOnce() -> Check + 'static) -> Test {
    let mut test = t(name, body);
    if builtin() {
        test.skip = Some("binfmt_ape and binfmt_misc are built in");
    }
    test
}

/// One manifest line.
#[derive(Clone)]
struct Case {
    dir: &'static str,
    name: String,
    expect: String,
    with_misc: String,
}

fn manifest(dir: &'static str) -> Vec<Case> {
    let text = fs::read_to_string(format!("{dir}/MANIFEST.tsv")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let expect = if ARCH == "x86_64" {
                f.get(1)?
            } else {
                f.get(2)?
            };
            Some(Case {
                dir,
                name: f.first()?.to_string(),
                expect: expect.to_string(),
                with_misc: f.get(3)?.to_string(),
            })
        })
        .collect()
}

fn sh(cmd: &str, args: &[&str]) -> Check {
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

fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

fn write(path: &str, v: &str) -> Check {
    fs::write(path, v).map_err(|e| format!("{path}: {e}"))
}

fn counter(name: &str) -> u64 {
    read(&format!("{SYSCTL}/{name}"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

fn describe(r: &Run) -> String {
    format!("{} stdout={:?} stderr={:?}", r.outcome, r.out(), r.err())
}

/// Runs a payload APE with fixed arguments and checks everything it reports.
fn check_payload(path: &str, kind: &str) -> Check {
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
fn check_case(path: &str, name: &str, expect: &str) -> Check {
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

/// The lines of /proc/PID/maps that map `path` executable. The exec's status pipe closes in
/// begin_new_exec(), before binfmt_elf maps the segments, so wait (bounded) for them to appear.
fn exec_mappings(pid: i32, path: &str) -> Vec<String> {
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

/// Runs `f` on the fat APE and on its payload as a plain ELF: both must end the same way, and
/// the APE's run must pass `ok`.
fn twin(f: impl Fn(&str) -> Result<Run, String>, ok: impl Fn(&Run) -> bool) -> Check {
    twin_run(f, ok).map(drop)
}

/// As [`twin`], returning the APE's run.
fn twin_run(
    f: impl Fn(&str) -> Result<Run, String>,
    ok: impl Fn(&Run) -> bool,
) -> Result<Run, String> {
    let (ape, elf) = (f(FAT)?, f(NATIVE)?);
    if ape.outcome != elf.outcome || !ok(&ape) {
        return Err(format!("APE {}; ELF {}", describe(&ape), describe(&elf)));
    }
    Ok(ape)
}

/// The payload ran and printed its line.
fn ran(r: &Run) -> bool {
    r.outcome == Outcome::Exit(0) && r.out().starts_with("payload: ")
}

fn open(path: &str, flags: i32) -> Result<i32, String> {
    let c = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: `c` is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(format!("open {path}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(fd)
    }
}

/// Runs `path` with `execveat(fd, "", AT_EMPTY_PATH)` on a descriptor opened with `flags`.
fn fd_run(path: &str, flags: i32) -> Result<Run, String> {
    let fd = open(path, flags)?;
    let r = run_how(As::default(), How::Fd(fd), &["fd"], Stdin::Null);
    // SAFETY: Closing our descriptor.
    unsafe { libc::close(fd) };
    Ok(r)
}

fn write_exe(path: &str, text: &str) -> Check {
    write(path, text)?;
    sh("chmod", &["755", path])
}

/// Runs a chain of `depth` `#!` scripts that ends in `target`.
fn chain_run(target: &str, depth: usize) -> Result<Run, String> {
    let tag = target.rsplit('/').next().unwrap_or("x");
    let mut next = target.to_string();
    for i in 0..depth {
        let script = format!("/tmp/chain-{tag}-{depth}-{i}.sh");
        write_exe(&script, &format!("#!{next}\n"))?;
        next = script;
    }
    Ok(run(&next, &[&next], Stdin::Null))
}

/// `make check`'s storm, at least 20 load/unload cycles on two vCPUs: 20k execs on x86_64,
/// 5k on arm64 (slower under TCG), 2k on the debug kernel (KASAN and lockdep make an exec
/// some 50 times slower there; a 20k storm passed on it in 18 minutes).
fn storm_check_bounds(debug: bool) -> storm::Bounds {
    let execs_per_worker = if debug {
        1_000
    } else if cfg!(target_arch = "x86_64") {
        10_000
    } else {
        2_500
    };
    storm::Bounds {
        execs_per_worker,
        min_cycles: 20,
        until: None,
    }
}

/// What the storm execs: the fat fixture, and the real `pledge` where real APEs run.
fn storm_programs() -> Vec<(&'static str, &'static [&'static str], i32)> {
    let mut p: Vec<(&str, &[&str], i32)> = vec![(FAT, &["--exit", "3"], 3)];
    if real_apes_run() {
        p.push((PLEDGE, &["-h"], 0));
    }
    p
}

/// `make soak`: the storm for `seconds`, then the kernel log must be clean.
pub fn soak(seconds: u64) -> i32 {
    let b = storm::Bounds {
        execs_per_worker: u64::MAX,
        min_cycles: 100,
        until: Some(std::time::Instant::now() + std::time::Duration::from_secs(seconds)),
    };
    let r = storm::storm(2, &storm_programs(), &b);
    let bad = kernel_log_problems();
    match (r, bad.is_empty()) {
        (Ok(r), true) => {
            println!("soak: {r}; kernel log clean");
            0
        }
        (r, _) => {
            println!("soak: {r:?}; kernel log: {bad:?}");
            1
        }
    }
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

/// Runs the kernel's exec selftests (qemu/mkinitramfs.sh builds them) in their directory.
fn exec_selftests() -> Vec<(&'static str, Run)> {
    const DIR: &str = "/selftests/exec";
    let who = As {
        cwd: Some(DIR),
        ..As::default()
    };
    ["execveat", "non-regular", "null-argv", "recursion-depth"]
        .into_iter()
        .map(|name| {
            let path = format!("{DIR}/{name}");
            (name, run_as(who, &path, &[&path], Stdin::Null))
        })
        .collect()
}

/// The first 40 bytes (through `e_phoff`) of the ELF header that [`FAT`] spells for this CPU:
/// mkape writes each image at a 64 KiB boundary with that very header.
fn fat_elf_header() -> Result<Vec<u8>, String> {
    let file = fs::read(FAT).map_err(|e| format!("{FAT}: {e}"))?;
    file.chunks(65536)
        .skip(1)
        .find(|c| c.starts_with(b"\x7fELF") && c.get(18..20) == Some(&E_MACHINE.to_le_bytes()[..]))
        .and_then(|c| c.get(..40))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("no ELF image for {ARCH} in {FAT}"))
}

/// binfmt_misc rules for every APE magic, the way Wine's MZ rule catches APEs.
const APE_RULES: [&str; 3] = [
    ":mz:M::MZ::/bin/sentinel:",
    ":jartsr:M::jartsr::/bin/sentinel:",
    ":apedbg:M::APEDBG::/bin/sentinel:",
];

/// The name a binfmt_misc rule gives itself (its first field).
fn rule_name(rule: &str) -> &str {
    rule.split(':').nth(1).unwrap_or_default()
}

/// Runs `f` with binfmt_misc mounted: mounted for it, and unmounted again, if it was not.
fn with_misc(f: impl FnOnce() -> Check) -> Check {
    let mount = !std::path::Path::new(&format!("{MISC}/register")).exists();
    if mount {
        sh("mount", &["-t", "binfmt_misc", "none", MISC])?;
    }
    let r = f();
    if mount {
        r.and(sh("umount", &[MISC]))
    } else {
        r
    }
}

/// Runs `f` with the binfmt_misc `rules` registered (binfmt_misc mounted first if it is not),
/// and removes them again, whatever `f` returned.
fn with_rules(rules: &[&str], f: impl FnOnce() -> Check) -> Check {
    with_misc(|| {
        let mut added = Vec::new();
        let mut r = rules.iter().try_for_each(|rule| {
            write(&format!("{MISC}/register"), rule)?;
            added.push(rule_name(rule));
            Ok(())
        });
        if r.is_ok() {
            r = f();
        }
        for name in added.into_iter().rev() {
            let removed = write(&format!("{MISC}/{name}"), "-1");
            r = r.and(removed);
        }
        r
    })
}

/// Whether a kernel log line reports a bug, a warning or a crash.
fn is_problem(line: &str) -> bool {
    [
        "BUG",
        "WARNING",
        "Oops",
        "rust_panic",
        "Call Trace",
        "kernel panic",
    ]
    .iter()
    .any(|w| line.contains(w))
}

/// Kernel log lines that report a bug, a warning or a crash, since boot.
fn kernel_log_problems() -> Vec<String> {
    dmesg()
        .lines()
        .filter(|l| is_problem(l))
        .map(String::from)
        .collect()
}

/// A point in the kernel log. The records logged after it, read from /dev/kmsg, are what a
/// test caused: whatever earlier tests logged, and however full the ring is.
struct LogMark(fs::File);

impl LogMark {
    fn now() -> Result<Self, String> {
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

    /// The messages logged since the mark, as dmesg prints them.
    fn since(mut self) -> Vec<String> {
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

    /// Runs `act`, which must make the kernel log `want`.
    fn expect(want: &str, act: impl FnOnce() -> Check) -> Check {
        let mark = Self::now()?;
        act()?;
        let logged = mark.since();
        if logged.iter().any(|l| l.contains(want)) {
            Ok(())
        } else {
            Err(format!("no {want:?} in the kernel log; logged: {logged:?}"))
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

/// A copy of the fat fixture with file capabilities (`cap_net_raw`, permitted and effective).
fn cap_copy(path: &str) -> Check {
    sh("cp", &[FAT, path])?;
    // struct vfs_cap_data, revision 2: magic_etc (revision | effective), then permitted and
    // inheritable for capabilities 0-31 and 32-63.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let c_path = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: Both strings are NUL-terminated and `cap` is `cap.len()` readable bytes.
    let r = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"security.capability".as_ptr(),
            cap.as_ptr().cast(),
            cap.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!("setxattr: {}", std::io::Error::last_os_error()))
    }
}

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// A crashing APE dumps core as an ELF program does: an `ET_CORE` file for this CPU.
fn core_dump() -> Check {
    let old = read(CORE_PATTERN)?;
    write(CORE_PATTERN, "/tmp/core.%p")?;
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `unlimited` is a valid rlimit; children inherit it.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &unlimited) };
    let child = spawn(FAT, &[FAT, "--wait"], Stdin::Pipe);
    let dumped = child
        .map_err(|e| format!("execve: {}", exec::errno_name(e)))
        .and_then(|child| {
            let pid = child.pid;
            // SAFETY: `kill` has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            let r = child.finish();
            expect_eq("outcome", r.outcome, Outcome::Signal(libc::SIGQUIT))?;
            let path = format!("/tmp/core.{pid}");
            let core = fs::read(&path).map_err(|e| format!("{path}: {e}"));
            let _ = fs::remove_file(&path);
            core
        });
    write(CORE_PATTERN, &format!("{old}\n"))?;
    let core = dumped?;
    let half = |at: usize| {
        core.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    expect_eq("magic", core.get(..4), Some(&b"\x7fELF"[..]))?;
    expect_eq("e_type (ET_CORE)", half(16), Some(4))?;
    expect_eq("e_machine", half(18), Some(E_MACHINE))
}

/// Sets the module's set-id policy (`setid`). In tree there is none to set: exec's own rules
/// apply to APEs as to any ELF, as with `setid` at 1.
fn set_setid(v: &str) -> Check {
    if in_tree() {
        return Ok(());
    }
    write(&format!("{SYSCTL}/setid"), &format!("{v}\n"))
}

/// A test of the set-id policy of the module built out of tree: skipped, by name, in tree.
fn p(name: impl Into<String>, body: impl FnOnce() -> Check + 'static) -> Test {
    let mut test = t(name, body);
    if in_tree() {
        test.skip = Some("in tree, exec's own rules apply to set-id APEs: no policy of its own");
    }
    test
}

fn suid_copy(path: &str) -> Check {
    sh("cp", &[FAT, path])?;
    sh("chmod", &["4755", path])
}

/// The payload ran natively, with AT_SECURE as `secure` says.
fn secure_run(r: &Run, secure: &str) -> Check {
    if r.outcome == Outcome::Exit(0) && r.out().contains(&format!(" secure={secure} ")) {
        Ok(())
    } else {
        Err(format!("{}; want a run with secure={secure}", describe(r)))
    }
}

/// A direct execve of `path` fails with ENOEXEC.
fn refused(path: &str) -> Check {
    expect_eq(
        "execve",
        run(path, &[path], Stdin::Null).outcome,
        Outcome::Errno(libc::ENOEXEC),
    )
}

/// A running APE's /proc/PID/exe and executable mappings name the APE itself. `args` keep it
/// running until its stdin (a pipe) closes.
fn proc_exe_and_maps(path: &str, args: &[&str]) -> Check {
    let argv: Vec<&str> = std::iter::once(path).chain(args.iter().copied()).collect();
    let child =
        spawn(path, &argv, Stdin::Pipe).map_err(|e| format!("execve: {}", exec::errno_name(e)))?;
    let mapped = exec_mappings(child.pid, path);
    let exe = fs::read_link(format!("/proc/{}/exe", child.pid)).map(|p| p.display().to_string());
    let r = child.finish();
    expect_eq(
        "/proc/pid/exe",
        exe.map_err(|e| e.to_string())?,
        path.to_string(),
    )?;
    if mapped.is_empty() {
        return Err(format!("no executable mapping of {path} in /proc/pid/maps"));
    }
    expect_eq("exit", r.outcome, Outcome::Exit(0))
}

/// A real APE whose aarch64 segments are aligned below the page size: ENOEXEC, counted as
/// invalid, and logged with the reason `align`.
fn declined_align(path: &str) -> Check {
    let want = format!("binfmt_ape: {}: not run natively: align", base(path));
    LogMark::expect(&want, || {
        let before = counter("declined_invalid");
        refused(path)?;
        expect_eq(
            "declined_invalid increment",
            counter("declined_invalid").wrapping_sub(before),
            1,
        )
    })
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

/// Whether the kernel knows the file system `name` (/proc/filesystems).
fn has_filesystem(name: &str) -> bool {
    read("/proc/filesystems")
        .is_ok_and(|f| f.lines().any(|l| l.split_whitespace().last() == Some(name)))
}

/// An interpreter APE for a binfmt_misc rule with the `C` flag, and a set-user-ID root file
/// the rule runs through it (plain data: only the rule makes it run). Returns the
/// `(interpreter, target)` paths.
fn misc_credentials_files() -> Result<(&'static str, &'static str), String> {
    const INTERP: &str = "/tmp/interp.ape";
    const TARGET: &str = "/tmp/prog.xsuid";
    sh("cp", &[FAT, INTERP])?;
    sh("chmod", &["0755", INTERP])?;
    fs::write(TARGET, "not an executable of any format\n").map_err(|e| format!("{TARGET}: {e}"))?;
    sh("chmod", &["4755", TARGET])?;
    Ok((INTERP, TARGET))
}

/// Mounts an ext2 image on a loop device and copies `files` into it, then mounts it again
/// read-only, so that nothing of them is in the page cache; runs `f` on the mount point.
fn on_cold_ext2(files: &[&str], f: impl FnOnce(&str) -> Check) -> Check {
    const IMG: &str = "/tmp/cold.img";
    const MNT: &str = "/mnt/cold";
    fs::File::create(IMG)
        .and_then(|f| f.set_len(8 << 20))
        .map_err(|e| format!("{IMG}: {e}"))?;
    sh("mke2fs", &["-F", "-q", "-b", "4096", IMG])?;
    fs::create_dir_all(MNT).map_err(|e| format!("{MNT}: {e}"))?;
    free_loop_device()?;
    sh("mount", &["-t", "ext2", "-o", "loop", IMG, MNT])?;
    let copied = files.iter().try_for_each(|p| sh("cp", &[p, MNT]));
    sh("umount", &[MNT])?;
    copied?;
    sh("mount", &["-t", "ext2", "-o", "loop,ro", IMG, MNT])?;
    let r = f(MNT);
    let unmounted = sh("umount", &[MNT]);
    let _ = fs::remove_file(IMG);
    r.and(unmounted)
}

/// Makes sure the free loop device that `mount -o loop` will take has its node: a loop
/// module loaded at boot (Debian's) creates devices on demand, through /dev/loop-control.
fn free_loop_device() -> Check {
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

/// The file name of `path`.
fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
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
    let problems: Vec<String> = mark.since().into_iter().filter(|l| is_problem(l)).collect();
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

fn ent(path: &str) -> Run {
    run(path, &[path, "/ape/real/input"], Stdin::Null)
}

fn dmesg() -> String {
    Command::new("dmesg")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn insmod() -> Check {
    sh("insmod", &[MODULE])
}

fn rmmod() -> Check {
    sh("rmmod", &["binfmt_ape"])
}

/// The plan: each area's tests, in an order that matters only where said here. A test needs
/// nothing from another but the module's state that this order gives it, and it measures
/// what it checks (counters, the kernel log) around its own actions.
fn plan() -> Vec<Test> {
    let fix = manifest("/ape/fix");
    let corpus = manifest("/ape/corpus");
    // Decided now, before anything is loaded.
    let _ = builtin();
    let debug = debug_kernel();
    let mut v = Vec::new();
    // The debug kernel's leak check spans the run: cleared first, scanned last.
    if debug {
        v.push(t("debug.kmemleak_clear", || write(KMEMLEAK, "clear")));
    }
    v.push(manifests_present(&fix, &corpus));
    // The module's life: without it, loaded (every area's tests), then unloaded and loaded
    // again around binfmt_misc, ending unloaded for the tests that load it themselves.
    v.extend(loading());
    v.extend(sysctl_tests());
    // binfmt_ape logs at most 10 refusals in 5 s: the tests that look for their own refusal in
    // the kernel log come before the corpus, whose refusals use up the log's burst.
    v.extend(real_ape_tests());
    v.extend(exec_tests());
    v.extend(setid_tests());
    v.push(refusals_logged_by_name());
    v.extend(fs_tests());
    if debug {
        v.extend(fault_tests());
    }
    v.extend(corpus_tests(&fix, &corpus));
    v.push(selftest());
    v.extend(counter_tests());
    v.extend(read_tests(debug));
    v.extend(misc_tests(&fix, &corpus));
    v.extend(reloading());
    v.push(m(
        "selftests.exec_same_with_and_without_module",
        selftests_same_without_module,
    ));
    v.push(m("storm.execs_during_load_unload", move || {
        let r = storm::storm(2, &storm_programs(), &storm_check_bounds(debug))?;
        println!("# storm: {r}");
        Ok(())
    }));
    if debug {
        v.push(t("debug.kmemleak_finds_nothing", || {
            // Two scans: kmemleak reports an object only once it has looked unreferenced twice.
            write(KMEMLEAK, "scan")?;
            write(KMEMLEAK, "scan")?;
            let report = fs::read_to_string(KMEMLEAK).map_err(|e| format!("{KMEMLEAK}: {e}"))?;
            if report.trim().is_empty() {
                Ok(())
            } else {
                Err(report.lines().take(60).collect::<Vec<_>>().join("\n"))
            }
        }));
    }
    v.push(t("dmesg_clean", || {
        let bad = kernel_log_problems();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }));
    v
}

/// Whether this is the debug kernel (`qemu/config/variant-debug.config`): it has kmemleak
/// once debugfs is mounted.
fn debug_kernel() -> bool {
    let _ = sh("mount", &["-t", "debugfs", "none", DEBUGFS]);
    std::path::Path::new(KMEMLEAK).exists()
}

fn manifests_present(fix: &[Case], corpus: &[Case]) -> Test {
    let (f, c) = (fix.len(), corpus.len());
    t("manifests_present", move || {
        if f >= 12 && c >= 40 {
            Ok(())
        } else {
            Err(format!("{f} fixtures, {c} corpus cases"))
        }
    })
}

/// Loading the module: without it a direct execve of an APE fails, whatever a shell would do.
fn loading() -> Vec<Test> {
    vec![
        m("without_module.ent_com_enoexec", || refused(ENT_COM)),
        m("without_module.fixture_enoexec", || refused(FAT)),
        m("insmod", insmod),
        m("loads_binfmt_misc_first", || {
            // binfmt_ape's init asks for binfmt_misc before registering, so it stays ahead of it.
            let m = read("/proc/modules")?;
            if m.contains("binfmt_misc") {
                Ok(())
            } else {
                Err(format!("binfmt_misc not loaded: {m}"))
            }
        }),
    ]
}

/// Unloading and reloading the module, and binfmt_misc under it: a sequence, each test in the
/// state the one before left. binfmt_misc registers at the head of the list: reloaded while
/// binfmt_ape stays, it goes ahead (README, "binfmt_misc"), and reloading binfmt_ape puts it
/// back in front.
fn reloading() -> Vec<Test> {
    vec![
        m("rmmod", rmmod),
        m("after_rmmod.misc_takes_apes", || {
            with_rules(&APE_RULES, || check_case(FAT, "exec", "sentinel"))
        }),
        m("insmod_after_binfmt_misc", insmod),
        m("reloaded.ahead_of_binfmt_misc", || {
            with_rules(&APE_RULES, || check_payload(FAT, "exec"))
        }),
        m("misc_reload.unload_binfmt_misc", || {
            sh("rmmod", &["binfmt_misc"])
        }),
        m("misc_reload.binfmt_misc_goes_ahead", || {
            sh("modprobe", &["binfmt_misc"])?;
            with_rules(&APE_RULES, || check_case(FAT, "exec", "sentinel"))
        }),
        m("misc_reload.reloading_binfmt_ape_restores_order", || {
            rmmod()?;
            insmod()?;
            with_rules(&APE_RULES, || check_payload(FAT, "exec"))
        }),
        m("rmmod_again", rmmod),
        m("after_rmmod.enoexec", || refused(ENT_COM)),
    ]
}

/// The switch `enabled`.
fn sysctl_tests() -> Vec<Test> {
    vec![
        t("sysctl.enabled_is_1", || {
            expect_eq("enabled", read(&format!("{SYSCTL}/enabled"))?, "1".into())
        }),
        t("sysctl.disable_restores_enoexec", || {
            // The real APE where it runs here, else a fixture that does.
            let ape = if real_apes_run() { ENT_COM } else { FAT };
            write(&format!("{SYSCTL}/enabled"), "0\n")?;
            let off = ent(ape).outcome;
            write(&format!("{SYSCTL}/enabled"), "1\n")?;
            let on = ent(ape).outcome;
            expect_eq("disabled", off, Outcome::Errno(libc::ENOEXEC))?;
            expect_eq("re-enabled", on, Outcome::Exit(0))
        }),
        t("sysctl.rejects_2", || {
            let bad = fs::write(format!("{SYSCTL}/enabled"), "2\n");
            expect_eq("write 2 fails", bad.is_err(), true)?;
            expect_eq(
                "still enabled",
                read(&format!("{SYSCTL}/enabled"))?,
                "1".into(),
            )
        }),
    ]
}

/// The counters: each exec counted once, in the counter of its verdict.
fn counter_tests() -> Vec<Test> {
    let mut v = vec![t("counters", counters)];
    if ARCH == "aarch64" {
        v.push(t("elf_refused.counted", || {
            // arm64's binfmt_elf refuses this header after binfmt_ape handed it over; the
            // tail handler puts the file's bytes back and counts it.
            let before = counter("elf_refused");
            let f = "/ape/corpus/gnu-property-too-big.ape";
            expect_eq(
                "execve",
                run(f, &[f], Stdin::Null).outcome,
                Outcome::Errno(libc::ENOEXEC),
            )?;
            expect_eq("elf_refused", counter("elf_refused"), before + 1)
        }));
    }
    v
}

/// An exec of each verdict moves its own counter by one and no other: `handled` for an APE
/// that runs, a `declined_*` for each reason to decline, and never `read_errors`.
fn counters() -> Check {
    const COUNTERS: [&str; 8] = [
        "handled",
        "elf_refused",
        "declined_debug",
        "declined_no_header",
        "declined_no_machine",
        "declined_invalid",
        "read_errors",
        "alloc_errors",
    ];
    let other = if ARCH == "x86_64" {
        "aarch64"
    } else {
        "x86_64"
    };
    let no_machine = format!("/ape/corpus/{other}-only.ape");
    for (path, name) in [
        (FAT, "handled"),
        ("/ape/fix/exec-debug-xa.ape", "declined_debug"),
        ("/ape/corpus/no-printf.ape", "declined_no_header"),
        (no_machine.as_str(), "declined_no_machine"),
        ("/ape/corpus/phentsize-55.ape", "declined_invalid"),
    ] {
        let before = COUNTERS.map(counter);
        run(path, &[path], Stdin::Null);
        let moved: Vec<(&str, u64)> = COUNTERS
            .iter()
            .zip(before)
            .map(|(&c, b)| (c, counter(c).wrapping_sub(b)))
            .filter(|&(_, d)| d != 0)
            .collect();
        expect_eq(path, moved, vec![(name, 1)])?;
    }
    Ok(())
}

/// cosmo's real APEs: where they run, as their assimilated ELF does, named by their own path;
/// where they cannot (64 KiB pages), declined, and the fat fixture shows the naming instead.
fn real_ape_tests() -> Vec<Test> {
    if !real_apes_run() {
        return vec![
            t("ent.declined_align_on_large_pages", || {
                declined_align(ENT_COM)
            }),
            t("pledge.declined_align_on_large_pages", || {
                declined_align(PLEDGE)
            }),
            t("fixture.proc_exe_and_maps_name_the_ape", || {
                proc_exe_and_maps(FAT, &["--wait"])
            }),
        ];
    }
    vec![
        t("ent.output_matches_assimilated_elf", || {
            let (a, b) = (ent(ENT_COM), ent(ENT_ELF));
            if a.outcome != Outcome::Exit(0) || b.outcome != Outcome::Exit(0) {
                return Err(format!(
                    "ent.com: {}; ent.elf: {}",
                    describe(&a),
                    describe(&b)
                ));
            }
            if a.stdout != b.stdout || a.stdout.is_empty() {
                return Err(format!("outputs differ: {:?} vs {:?}", a.out(), b.out()));
            }
            Ok(())
        }),
        t("ent.proc_exe_and_maps_name_the_ape", || {
            proc_exe_and_maps(ENT_COM, &[])
        }),
        t("pledge.runs", || {
            let r = run(PLEDGE, &[PLEDGE, "-h"], Stdin::Null);
            if r.outcome == Outcome::Exit(0) && (r.out() + &r.err()).contains("usage: pledge") {
                Ok(())
            } else {
                Err(describe(&r))
            }
        }),
    ]
}

/// The fault injection of the debug kernel.
fn fault_tests() -> Vec<Test> {
    vec![
        t("debug.failed_allocations_give_enomem", failed_allocations),
        t("debug.failed_reads_give_eio", failed_reads),
    ]
}

/// File systems an APE may be read from: each exec reads it through the file system.
fn fs_tests() -> Vec<Test> {
    let mut ext2 = t("fs.ext2_read_cold", || {
        let files: Vec<&str> = if real_apes_run() {
            vec![FAT, ENT_COM]
        } else {
            vec![FAT]
        };
        on_cold_ext2(&files, |mnt| {
            check_payload(&format!("{mnt}/{}", base(FAT)), "exec")?;
            if real_apes_run() {
                expect_eq(
                    "ent.com",
                    ent(&format!("{mnt}/ent.com")).outcome,
                    Outcome::Exit(0),
                )?;
            }
            Ok(())
        })
    });
    if !(has_filesystem("ext2") && std::path::Path::new("/dev/loop-control").exists()) {
        ext2.skip = Some("kernel without ext2 or loop devices");
    }
    let mut ninep = t("fs.9p_cache_none", || {
        const MNT: &str = "/mnt/9p";
        fs::create_dir_all(MNT).map_err(|e| format!("{MNT}: {e}"))?;
        sh(
            "mount",
            &[
                "-t",
                "9p",
                "-o",
                "trans=virtio,version=9p2000.L,cache=none,ro",
                "apefix",
                MNT,
            ],
        )?;
        let r = check_payload(&format!("{MNT}/{}", base(FAT)), "exec");
        let unmounted = sh("umount", &[MNT]);
        r.and(unmounted)
    });
    let shared = fs::read_dir("/sys/bus/virtio/devices").is_ok_and(|d| {
        d.flatten()
            .any(|e| fs::read(e.path().join("mount_tag")).is_ok_and(|t| t.starts_with(b"apefix")))
    });
    if !(has_filesystem("9p") && shared) {
        ninep.skip = Some("no 9p share from the QEMU host (kernel without 9p or virtio)");
    }
    let mut overlay = t("fs.overlayfs", || {
        const MNT: &str = "/mnt/ovl";
        const UPPER: &str = "/tmp/ovl-top";
        fs::create_dir_all(MNT).map_err(|e| format!("{MNT}: {e}"))?;
        fs::create_dir_all(UPPER).map_err(|e| format!("{UPPER}: {e}"))?;
        if real_apes_run() {
            sh("cp", &[ENT_COM, UPPER])?;
        }
        let lower = format!("lowerdir={UPPER}:/ape/fix");
        sh("mount", &["-t", "overlay", "overlay", "-o", &lower, MNT])?;
        let r = check_payload(&format!("{MNT}/{}", base(FAT)), "exec").and_then(|()| {
            if real_apes_run() {
                expect_eq(
                    "ent.com",
                    ent(&format!("{MNT}/ent.com")).outcome,
                    Outcome::Exit(0),
                )
            } else {
                Ok(())
            }
        });
        let unmounted = sh("umount", &[MNT]);
        r.and(unmounted)
    });
    if !has_filesystem("overlay") {
        overlay.skip = Some("kernel without overlayfs");
    }
    vec![ext2, ninep, overlay]
}

/// Exec semantics: each case gives the fat APE and its payload as a plain ELF the same
/// outcome, and the one named; the kernel's own exec checks still apply to APEs.
fn exec_tests() -> Vec<Test> {
    let mut v = vec![
        t("exec.refused_name_escaped_in_log", || {
            // A file name may hold a newline: the log escapes it, so no line of its own begins
            // with what followed it.
            let path = "/tmp/bad\nname.ape";
            sh("cp", &["/ape/corpus/phentsize-55.ape", path])?;
            let mark = LogMark::now()?;
            refused(path)?;
            let logged = mark.since();
            let want = "binfmt_ape: bad\\nname.ape: not run natively: phentsize";
            let forged = logged
                .iter()
                .flat_map(|m| m.lines())
                .any(|l| l.starts_with("name.ape: not run"));
            if logged.iter().any(|l| l.contains(want)) && !forged {
                Ok(())
            } else {
                Err(format!("no {want:?} in the kernel log; logged: {logged:?}"))
            }
        }),
        t("exec.execveat_cloexec_fd", || {
            twin(|p| fd_run(p, libc::O_RDONLY), ran)
        }),
        t("exec.execveat_o_path_fd", || {
            twin(|p| fd_run(p, libc::O_PATH), ran)
        }),
        t("exec.execveat_memfd", || {
            twin(
                |p| {
                    let bytes = fs::read(p).map_err(|e| format!("{p}: {e}"))?;
                    // MFD_EXEC (6.3+): an executable memfd, said so (else the kernel warns once).
                    const MFD_EXEC: libc::c_uint = 0x10;
                    // SAFETY: A valid name; the descriptor is ours.
                    let fd = unsafe {
                        libc::memfd_create(c"ape".as_ptr(), libc::MFD_CLOEXEC | MFD_EXEC)
                    };
                    if fd < 0 {
                        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
                    }
                    // SAFETY: `fd` is open; `bytes` is valid for its length.
                    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
                    let r = (usize::try_from(n).ok() == Some(bytes.len()))
                        .then(|| run_how(As::default(), How::Fd(fd), &["memfd"], Stdin::Null))
                        .ok_or_else(|| "short write to the memfd".to_string());
                    // SAFETY: Closing our descriptor.
                    unsafe { libc::close(fd) };
                    r
                },
                ran,
            )
        }),
        t("exec.execveat_unlinked_file", || {
            twin(
                |p| {
                    let copy = format!("/tmp/unlinked-{}", base(p));
                    sh("cp", &[p, &copy])?;
                    let fd = open(&copy, libc::O_RDONLY)?;
                    fs::remove_file(&copy).map_err(|e| format!("{copy}: {e}"))?;
                    let r = run_how(As::default(), How::Fd(fd), &["unlinked"], Stdin::Null);
                    // SAFETY: Closing our descriptor.
                    unsafe { libc::close(fd) };
                    Ok(r)
                },
                ran,
            )
        }),
        t("exec.script_interpreter", || {
            twin(
                |p| {
                    let script = format!("/tmp/interp-{}.sh", base(p));
                    write_exe(&script, &format!("#!{p}\n"))?;
                    let r = run(&script, &[&script], Stdin::Null);
                    if r.out().contains(&format!("argv=[{p},{script}]")) {
                        Ok(r)
                    } else {
                        Err(format!(
                            "{script}: {}; want argv=[{p},{script}]",
                            describe(&r)
                        ))
                    }
                },
                ran,
            )
        }),
        t("exec.refused_interpreter_logged_by_its_path", || {
            // The log names the APE (bprm->interp), not the script that named it.
            sh(
                "cp",
                &["/ape/corpus/phentsize-55.ape", "/tmp/bad-interp.ape"],
            )?;
            write_exe("/tmp/bad-interp.sh", "#!/tmp/bad-interp.ape\n")?;
            let want = "binfmt_ape: bad-interp.ape: not run natively: phentsize";
            LogMark::expect(want, || {
                let r = run("/tmp/bad-interp.sh", &["/tmp/bad-interp.sh"], Stdin::Null);
                expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))
            })
        }),
        t("exec.script_chain_depth_eloop", || {
            // Each #! level is one round of the kernel's handler search; binfmt_ape adds none.
            for depth in 1..=7 {
                let r = twin_run(|p| chain_run(p, depth), |_| true)?;
                let want = if depth <= 4 {
                    Some(Outcome::Exit(0))
                } else if depth >= 6 {
                    Some(Outcome::Errno(libc::ELOOP))
                } else {
                    None
                };
                if want.is_some_and(|w| w != r.outcome) {
                    return Err(format!(
                        "{depth} scripts deep: {}; want {want:?}",
                        describe(&r)
                    ));
                }
            }
            Ok(())
        }),
        t("exec.write_while_running_etxtbsy", || {
            twin(
                |p| {
                    let copy = format!("/tmp/busy-{}", base(p));
                    sh("cp", &[p, &copy])?;
                    let child = exec::spawn(&copy, &[&copy, "--wait"], Stdin::Pipe)
                        .map_err(|e| format!("{copy}: {}", exec::errno_name(e)))?;
                    let w = fs::OpenOptions::new().write(true).open(&copy);
                    let r = child.finish();
                    match w {
                        Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => Ok(r),
                        Err(e) => Err(format!("open {copy} for writing: {e}; want ETXTBSY")),
                        Ok(_) => Err(format!("open {copy} for writing succeeded; want ETXTBSY")),
                    }
                },
                ran,
            )
        }),
        t("exec.argv_near_and_past_the_limit", || {
            // One string may be at most MAX_ARG_STRLEN (32 pages) long.
            let limit = usize::try_from(32 * page_size()).map_err(|e| e.to_string())?;
            let near = "a".repeat(120 * 1024);
            twin(|p| Ok(run(p, &[p, &near], Stdin::Null)), ran)?;
            let past = "a".repeat(limit + 1024);
            twin(
                |p| Ok(run(p, &[p, &past], Stdin::Null)),
                |r| r.outcome == Outcome::Errno(libc::E2BIG),
            )
        }),
        t("exec.empty_argv", || {
            // The kernel supplies an empty argv[0] (since 5.18).
            twin(
                |p| Ok(run(p, &[], Stdin::Null)),
                |r| ran(r) && r.out().contains(" argc=1 argv=[] "),
            )
        }),
        t("exec.empty_chroot", || {
            // No /bin/sh, no loader, no /tmp: only a kernel that runs the APE itself can.
            for (jail, p) in [("/tmp/jail-ape", FAT), ("/tmp/jail-elf", NATIVE)] {
                fs::create_dir_all(jail).map_err(|e| format!("{jail}: {e}"))?;
                sh("cp", &[p, &format!("{jail}/x")])?;
            }
            let inside = |jail: &'static str| {
                let who = As {
                    chroot: Some(jail),
                    ..As::default()
                };
                run_as(who, "/x", &["/x"], Stdin::Null)
            };
            let (ape, elf) = (inside("/tmp/jail-ape"), inside("/tmp/jail-elf"));
            if !(ran(&ape) && ape.outcome == elf.outcome) {
                return Err(format!("APE {}; ELF {}", describe(&ape), describe(&elf)));
            }
            write(&format!("{SYSCTL}/enabled"), "0\n")?;
            let off = inside("/tmp/jail-ape");
            write(&format!("{SYSCTL}/enabled"), "1\n")?;
            expect_eq("with enabled=0", off.outcome, Outcome::Errno(libc::ENOEXEC))
        }),
    ];
    let mut core = t("exec.core_dump_is_an_elf_core", core_dump);
    if !std::path::Path::new(CORE_PATTERN).exists() {
        core.skip = Some("kernel without core dumps (CONFIG_COREDUMP)");
    }
    v.push(core);
    v.push(t("permissions.noexec_mount_eacces", || {
        fs::create_dir_all("/mnt/noexec").map_err(|e| e.to_string())?;
        sh(
            "mount",
            &["-t", "tmpfs", "-o", "noexec", "none", "/mnt/noexec"],
        )?;
        sh("cp", &[FAT, "/mnt/noexec/x.ape"])?;
        let r = run("/mnt/noexec/x.ape", &["x"], Stdin::Null);
        sh("umount", &["/mnt/noexec"])?;
        expect_eq("execve", r.outcome, Outcome::Errno(libc::EACCES))
    }));
    v.push(t("permissions.mode_0644_eacces", || {
        sh("cp", &[FAT, "/tmp/0644.ape"])?;
        sh("chmod", &["0644", "/tmp/0644.ape"])?;
        expect_eq(
            "execve",
            run("/tmp/0644.ape", &["x"], Stdin::Null).outcome,
            Outcome::Errno(libc::EACCES),
        )
    }));
    v.push(t("elf_still_runs", || check_payload(NATIVE, "exec")));
    v.push(t("script_still_runs", || {
        let r = run("/test/hello.sh", &["/test/hello.sh"], Stdin::Null);
        if r.outcome == Outcome::Exit(0) && r.out() == "hello from #!\n" {
            Ok(())
        } else {
            Err(describe(&r))
        }
    }));
    v
}

/// Set-id APEs: declined unless root opts in (`setid`), run unprivileged where the kernel
/// would ignore the bits anyway.
fn setid_tests() -> Vec<Test> {
    let nobody = As {
        uid: Some(65534),
        ..As::default()
    };
    let mut v = vec![
        p("setid.declined_by_default", move || {
            suid_copy("/tmp/suid.ape")?;
            let want = "binfmt_ape: suid.ape: not run natively: setid";
            LogMark::expect(want, || {
                let before = counter("declined_setid");
                let r = run_as(nobody, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
                expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))?;
                expect_eq("declined_setid", counter("declined_setid"), before + 1)
            })
        }),
        t("setid.sgid_without_group_exec_runs", move || {
            // bprm_fill_uid() ignores set-group-ID without group execute: so do we.
            sh("cp", &[FAT, "/tmp/sgid.ape"])?;
            sh("chmod", &["2745", "/tmp/sgid.ape"])?;
            let r = run_as(nobody, "/tmp/sgid.ape", &["/tmp/sgid.ape"], Stdin::Null);
            secure_run(&r, "0")
        }),
        t("setid.opt_in_sets_at_secure", move || {
            suid_copy("/tmp/suid.ape")?;
            set_setid("1")?;
            let r = run_as(nobody, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
            set_setid("0")?;
            secure_run(&r, "1")
        }),
        t("setid.nosuid_mount_runs_unprivileged", move || {
            fs::create_dir_all("/mnt/nosuid").map_err(|e| e.to_string())?;
            sh(
                "mount",
                &["-t", "tmpfs", "-o", "nosuid", "none", "/mnt/nosuid"],
            )?;
            let r = suid_copy("/mnt/nosuid/x.ape")
                .map(|()| run_as(nobody, "/mnt/nosuid/x.ape", &["x"], Stdin::Null));
            sh("umount", &["/mnt/nosuid"])?;
            secure_run(&r?, "0")
        }),
        t("setid.no_new_privs_runs_unprivileged", || {
            suid_copy("/tmp/suid.ape")?;
            let who = As {
                uid: Some(65534),
                no_new_privs: true,
                ..As::default()
            };
            let r = run_as(who, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
            secure_run(&r, "0")
        }),
    ];
    let mut caps = p("setid.file_capabilities_declined_by_default", move || {
        // `security.capability` makes an ELF run with more privileges, as set-id bits do.
        cap_copy("/tmp/caps.ape")?;
        let before = counter("declined_setid");
        let r = run_as(nobody, "/tmp/caps.ape", &["/tmp/caps.ape"], Stdin::Null);
        expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))?;
        expect_eq("declined_setid", counter("declined_setid"), before + 1)?;
        set_setid("1")?;
        let r = run_as(nobody, "/tmp/caps.ape", &["/tmp/caps.ape"], Stdin::Null);
        set_setid("0")?;
        expect_eq("with setid=1", r.outcome, Outcome::Exit(0))
    });
    if cap_copy("/tmp/caps-probe").is_err() {
        caps.skip = Some("no security.* xattrs on tmpfs (CONFIG_TMPFS_XATTR)");
    }
    v.push(caps);
    // A binfmt_misc rule with the C flag takes the credentials from the file it matched, not
    // from its interpreter: a set-id target is declined even though the interpreter APE is
    // not set-id (an exec that failed before binfmt_ape), and runs set-id where root opted in.
    v.push(p("setid.misc_credentials_rule_declined", move || {
        let (interp, target) = misc_credentials_files()?;
        let rule = format!(":apecreds:E::xsuid::{interp}:C");
        with_rules(&[&rule], || {
            let before = counter("declined_setid");
            let r = run_as(nobody, target, &[target], Stdin::Null);
            expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))?;
            expect_eq("declined_setid", counter("declined_setid"), before + 1)
        })
    }));
    v.push(t("setid.misc_credentials_rule_allowed", move || {
        let (interp, target) = misc_credentials_files()?;
        let rule = format!(":apecreds:E::xsuid::{interp}:C");
        set_setid("1")?;
        let r = with_rules(&[&rule], || {
            secure_run(&run_as(nobody, target, &[target], Stdin::Null), "1")
        });
        set_setid("0")?;
        r
    }));
    v.push(t("setid.ptrace_gets_elf_semantics", move || {
        // Traced by an unprivileged tracer (ptracer_capable() false), a set-id ELF runs with
        // exec's ptrace rules (commoncap keeps the caller's ids, and still sets AT_SECURE):
        // a set-id APE that binfmt_ape hands over runs the same way.
        suid_copy("/tmp/suid.ape")?;
        sh("cp", &[NATIVE, "/tmp/suid.elf"])?;
        sh("chmod", &["4755", "/tmp/suid.elf"])?;
        let traced = As {
            traced: true,
            ..nobody
        };
        set_setid("1")?;
        let ape = run_as(traced, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
        set_setid("0")?;
        let elf = run_as(traced, "/tmp/suid.elf", &["/tmp/suid.elf"], Stdin::Null);
        let secure = |r: &Run| {
            r.out()
                .split_whitespace()
                .find(|w| w.starts_with("secure="))
                .map(String::from)
        };
        if ran(&ape)
            && ape.outcome == elf.outcome
            && secure(&ape).is_some()
            && secure(&ape) == secure(&elf)
        {
            Ok(())
        } else {
            Err(format!("APE {}; ELF {}", describe(&ape), describe(&elf)))
        }
    }));
    v.push(p("setid.ptrace_declined_by_default", move || {
        // binfmt_ape cannot ask whether the tracer may raise privileges (ptracer_capable() is
        // not exported): with `setid` at 0 it declines, erring that way.
        suid_copy("/tmp/suid.ape")?;
        let traced = As {
            traced: true,
            ..nobody
        };
        let before = counter("declined_setid");
        let r = run_as(traced, "/tmp/suid.ape", &["/tmp/suid.ape"], Stdin::Null);
        expect_eq("execve", r.outcome, Outcome::Errno(libc::ENOEXEC))?;
        expect_eq("declined_setid", counter("declined_setid"), before + 1)
    }));
    v
}

/// The first refusals fit the log's rate limit, each naming its file.
fn refusals_logged_by_name() -> Test {
    t("refusals_logged_by_name", || {
        let want = "binfmt_ape: magic-only.ape: not run natively: no-printf";
        LogMark::expect(want, || refused("/ape/corpus/magic-only.ape"))
    })
}

/// The fixtures and the malformed corpus, each case as its manifest says.
fn corpus_tests(fix: &[Case], corpus: &[Case]) -> Vec<Test> {
    fix.iter()
        .chain(corpus)
        .cloned()
        .map(|c| {
            let area = if c.dir == "/ape/fix" {
                "fixture"
            } else {
                "corpus"
            };
            t(format!("{area}.{}", c.name), move || {
                check_case(&format!("{}/{}.ape", c.dir, c.name), &c.name, &c.expect)
            })
        })
        .collect()
}

/// Every exec reads the file anew: a change, however it is made, is seen by the next one, and
/// execs racing a writer end in one of the outcomes a rewritten file can give.
fn read_tests(debug: bool) -> Vec<Test> {
    vec![
        t("reads.write_in_place_is_seen", || {
            changed_then(|f| {
                for at in statement_quotes(f) {
                    pwrite(CHANGED, at, b"\"")?;
                }
                Ok(())
            })
        }),
        t("reads.mmap_write_is_seen", || {
            changed_then(|f| {
                let quotes = statement_quotes(f);
                mmap_write(CHANGED, |m| {
                    for &at in &quotes {
                        m[at] = b'"';
                    }
                })
            })
        }),
        t("reads.table_past_window_is_seen", || {
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
        t("storm.rewrites_during_execs", move || {
            rewrites_during_execs(if debug { 100 } else { 400 })
        }),
    ]
}

/// binfmt_misc with rules for every APE magic, each test with its own: APEs binfmt_ape runs
/// never reach binfmt_misc, and what it declines reaches it with `bprm->buf` untouched.
fn misc_tests(fix: &[Case], corpus: &[Case]) -> Vec<Test> {
    let mut v = vec![
        t("misc.register_rules", || {
            with_rules(&APE_RULES, || {
                APE_RULES.iter().map(|r| rule_name(r)).try_for_each(|name| {
                    let state = read(&format!("{MISC}/{name}"))?;
                    expect_eq(name, state.lines().next(), Some("enabled"))
                })
            })
        }),
        t("misc.ape_still_native", || {
            with_rules(&APE_RULES, || check_payload(FAT, "exec"))
        }),
        t("misc.rule_matching_this_cpus_elf_header", || {
            // A rule for the very ELF header the fat fixture spells for this CPU (through
            // e_phoff, so no plain ELF matches it). Out of tree, binfmt_misc lies between
            // binfmt_ape and binfmt_elf and sees that header in `bprm->buf`, so it takes the
            // APE (README, "Known limits"); in-tree binfmt_elf gets the header directly and
            // the rule never matches.
            let header = fat_elf_header()?;
            let magic: String = header.iter().map(|b| format!("\\x{b:02x}")).collect();
            let rule = format!(":apehdr:M::{magic}::/bin/sentinel:");
            with_rules(&APE_RULES, || {
                with_rules(&[&rule], || {
                    if in_tree() {
                        check_payload(FAT, "exec")
                    } else {
                        check_case(FAT, "exec", "sentinel")
                    }
                })
            })
        }),
    ];
    if real_apes_run() {
        v.push(t("misc.ent_still_native", || {
            with_rules(&APE_RULES, || {
                expect_eq("ent.com", ent(ENT_COM).outcome, Outcome::Exit(0))
            })
        }));
    } else {
        // Declined with its magic intact, so binfmt_misc's MZ rule gets it.
        v.push(t("misc.ent_declined_reaches_misc", || {
            with_rules(&APE_RULES, || check_case(ENT_COM, "ent", "sentinel"))
        }));
    }
    // Declined files must reach binfmt_misc with `bprm->buf` untouched, magic and all.
    for c in fix
        .iter()
        .chain(corpus)
        .filter(|c| c.expect == "ENOEXEC" && c.with_misc != "same")
        .cloned()
    {
        v.push(t(format!("misc.{}", c.name), move || {
            with_rules(&APE_RULES, || {
                check_case(&format!("{}/{}.ape", c.dir, c.name), &c.name, &c.with_misc)
            })
        }));
    }
    const EXTENSION_RULE: &str = ":apeext:E::ape::/bin/sentinel:";
    if in_tree() {
        v.push(t("misc.extension_rule_does_not_take_ape", || {
            // In-tree, binfmt_ape has binfmt_elf load the APE itself: an `E::` rule, which
            // matches the file's name, sees only what binfmt_ape declines.
            with_rules(&APE_RULES, || {
                with_rules(&[EXTENSION_RULE], || check_payload(FAT, "exec"))
            })
        }));
    } else {
        v.push(t("misc.extension_rule_takes_ape", || {
            // binfmt_ape hands the exec on (ENOEXEC) to binfmt_elf, and binfmt_misc lies
            // between: an `E::` rule matches the file's name, not its bytes, so it takes the
            // APE, as it did without binfmt_ape (README, "Known limits").
            with_rules(&APE_RULES, || {
                with_rules(&[EXTENSION_RULE], || check_case(FAT, "exec", "sentinel"))?;
                check_payload(FAT, "exec")
            })
        }));
    }
    v.push(t("misc.unregister_rules", || {
        with_misc(|| {
            with_rules(&APE_RULES, || Ok(()))?;
            for name in APE_RULES.iter().map(|r| rule_name(r)) {
                if std::path::Path::new(&format!("{MISC}/{name}")).exists() {
                    return Err(format!("{MISC}/{name} is still there"));
                }
            }
            Ok(())
        })
    }));
    v
}

/// binfmt_ape's kselftest (tools/testing/selftests/exec/binfmt_ape.c in the upstream series),
/// as the kernel's selftest runner would run it.
fn selftest() -> Test {
    t("selftest.binfmt_ape", || {
        let path = "/selftests/exec/binfmt_ape";
        let r = run(path, &[path], Stdin::Null);
        let out = r.out();
        if r.outcome == Outcome::Exit(0)
            && out.contains("# Totals: pass:7 fail:0")
            && !out.contains("not ok")
        {
            Ok(())
        } else {
            Err(format!("{}:\n{out}", describe(&r)))
        }
    })
}

/// The kernel's own tools/testing/selftests/exec, built from the kernel under test. A few of
/// their cases fail in this minimal guest whatever the module does (their scripts expect
/// bash, the guest has busybox sh): what counts is that every case ends the same with
/// binfmt_ape loaded as without it. Starts and ends with the module unloaded.
fn selftests_same_without_module() -> Check {
    let without = exec_selftests();
    insmod()?;
    let with = exec_selftests();
    rmmod()?;
    // The verdicts, not the text: the text names child pids.
    let verdicts = |r: &Run| -> Vec<String> {
        r.out()
            .lines()
            .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
            .map(String::from)
            .collect()
    };
    let (mut bad, mut summary) = (Vec::new(), Vec::new());
    for ((name, a), (_, b)) in without.iter().zip(&with) {
        let (va, vb) = (verdicts(a), verdicts(b));
        let ok = va.iter().filter(|l| l.starts_with("ok ")).count();
        if ok == 0 {
            bad.push(format!("{name}: no case passed: {}", describe(a)));
        }
        if (a.outcome, &va) != (b.outcome, &vb) {
            let differ: Vec<String> = va
                .iter()
                .zip(&vb)
                .filter(|(x, y)| x != y)
                .map(|(x, y)| format!("  without: {x}\n  with:    {y}"))
                .collect();
            bad.push(format!(
                "{name}: {} without the module, {} with it\n{}",
                a.outcome,
                b.outcome,
                differ.join("\n")
            ));
        }
        summary.push(format!("{name} {ok}/{}", va.len()));
    }
    println!(
        "# selftests (cases passed): {}; the same with binfmt_ape",
        summary.join(", ")
    );
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}

/// Runs the suite; returns the exit status (0 when everything passed).
/// The whole suite, or with `only` the tests whose names start with one of its prefixes (and
/// `insmod`, which they need): `scripts/guest.sh check PREFIX...`, for a quick look at a few.
pub fn check(only: &[String]) -> i32 {
    let mut tests = plan();
    if !only.is_empty() {
        tests.retain(|t| t.name == "insmod" || only.iter().any(|p| t.name.starts_with(p.as_str())));
    }
    println!("KTAP version 1");
    println!(
        "# binfmt_ape guest tests on {ARCH}, Linux {}, {} KiB pages",
        read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        page_size() / 1024
    );
    println!("1..{}", tests.len());
    let mut failed = 0;
    for (i, test) in tests.into_iter().enumerate() {
        if let Some(why) = test.skip {
            println!("ok {} {} # SKIP {why}", i + 1, test.name);
            continue;
        }
        let res = (test.body)();
        match res {
            Ok(()) => println!("ok {} {}", i + 1, test.name),
            Err(why) => {
                failed += 1;
                println!("not ok {} {}", i + 1, test.name);
                for l in why.lines() {
                    println!("# {l}");
                }
            }
        }
    }
    println!("# {ARCH}: {failed} failed");
    if failed != 0 {
        // The kernel log goes with any failure: the console only shows errors.
        let log = dmesg();
        let lines: Vec<&str> = log.lines().collect();
        println!("# dmesg (last 200 lines):");
        for l in &lines[lines.len().saturating_sub(200)..] {
            println!("#   {l}");
        }
    }
    i32::from(failed != 0)
}

/// Shows an APE running natively: refused without the module, run with it.
pub fn demo(args: &[String]) -> i32 {
    let (path, rest): (String, Vec<String>) = match args.split_first() {
        Some((p, r)) => (p.clone(), r.to_vec()),
        None => (ENT_COM.into(), vec![]),
    };
    let mut argv: Vec<&str> = vec![&path];
    argv.extend(rest.iter().map(String::as_str));
    println!(
        "demo: {ARCH} guest, kernel {}",
        read("/proc/sys/kernel/osrelease").unwrap_or_default()
    );
    let r = run(&path, &argv, Stdin::Null);
    println!("demo: without binfmt_ape, execve({path}) -> {}", r.outcome);
    if let Err(e) = insmod() {
        println!("demo: insmod failed: {e}");
        return 1;
    }
    println!(
        "demo: insmod binfmt_ape.ko: ok; handled = {}",
        counter("handled")
    );
    println!("demo: execve({}) ...", argv.join(" "));
    let mut child = match spawn(&path, &argv, Stdin::Pipe) {
        Ok(c) => c,
        Err(e) => {
            println!("demo: execve failed: {}", exec::errno_name(e));
            return 1;
        }
    };
    let mapped = exec_mappings(child.pid, &path);
    let exe = fs::read_link(format!("/proc/{}/exe", child.pid))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "(already exited)".into());
    // The default demo (ent) reads stdin: give it some input now that it was inspected.
    child.feed(&fs::read("/ape/real/input").unwrap_or_default());
    let r = child.finish();
    for l in &mapped {
        println!("demo: /proc/<pid>/maps: {l}");
    }
    println!("----- output -----");
    print!("{}", r.out());
    eprint!("{}", r.err());
    println!("------------------");
    println!(
        "demo: {} ran natively: {}; /proc/<pid>/exe = {exe}",
        path, r.outcome
    );
    println!(
        "demo: /proc/sys/fs/binfmt_ape/handled = {} (the kernel decoded its header)",
        counter("handled")
    );
    i32::from(!matches!(r.outcome, Outcome::Exit(_)))
}
