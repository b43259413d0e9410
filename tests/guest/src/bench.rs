// SPDX-License-Identifier: GPL-2.0

//! binfmt_ape's guest benchmark: times `posix_spawn` (vfork + execve) + `waitpid` round trips
//! of the same programs started different ways, and prints one JSON line for the host
//! (`scripts/bench.sh`) to tabulate and chart.
//!
//! `ape-bench [ITERATIONS]` (default 1000 per scenario). The machine goes through three
//! states, each a phase, and the phases repeat in rounds so drift spreads evenly over them:
//!
//! - `module`: binfmt_ape loaded, the production build;
//! - `misc`: binfmt_ape unloaded, binfmt_misc running APEs with cosmopolitan's own loader,
//!   extracted by a first shell run of `ent.com` (we write no loader of our own);
//! - `shell`: no handler at all: the shell's ENOEXEC fallback runs the APE's prologue.
//!
//! Inside a phase the scenarios are interleaved, one exec of each in turn, after a warm-up.
//! Last, a profile pass loads the bench build of the module (`APE_BENCH=1`), which reports its
//! own time and the bytes it reads per APE exec through `/proc/sys/fs/binfmt_ape/bench_*`;
//! its timer would otherwise weigh on the timed runs. The module keeps nothing from one exec
//! to the next, so every exec of a file costs it the same, the first one included.
//! Guest layout as for `ape-runner` (qemu/mkinitramfs.sh), plus /ape/bench/worst-window.ape.

// The benchmark is its own program: it shares the runner's view of the guest's kernel, of which
// it needs only a part.
#[allow(dead_code)]
mod sys;

use std::ffi::CString;
use std::fs;
use sys::{sh, MISC, MODULE, SYSCTL};

/// The same module built with `APE_BENCH=1`: it also counts its own time and the bytes it
/// reads (sysctl `bench_*`). Timed runs use the production build; this one only profiles.
const PROFILE_MODULE: &str = "/lib/modules/binfmt_ape-bench.ko";
const LOADER: &str = "/tmp/.ape-1.10";
const FAT: &str = "/ape/fix/exec-mz-xa.ape";
const NATIVE: &str = "/bin/payload-exec";
const ENT_COM: &str = "/ape/real/ent.com";
const ENT_ELF: &str = "/ape/real/ent.elf";
const SCRIPT: &str = "/test/hello.sh";
const WARMUP: usize = 20;
const ROUNDS: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Module,
    Misc,
    Shell,
    /// The bench build of the module loaded, for its counters.
    Profile,
}

struct Scenario {
    name: &'static str,
    phase: Phase,
    /// Whether the file is an APE (the module's own time is measured for those).
    ape: bool,
    path: String,
    argv: Vec<String>,
    samples: Vec<u64>,
    module_ns: u64,
    module_calls: u64,
    bytes_read: u64,
}

fn scenario(name: &'static str, phase: Phase, path: &str, args: &[&str]) -> Scenario {
    let mut argv = vec![path.to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Scenario {
        name,
        phase,
        ape: path.ends_with(".ape") || path.ends_with(".com"),
        path: path.into(),
        argv,
        samples: Vec::new(),
        module_ns: 0,
        module_calls: 0,
        bytes_read: 0,
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Spawns `path` (vfork + execve, stdio on /dev/null), waits, and returns the round trip in
/// ns; `Err` says how the run went wrong.
fn time_exec(path: &str, argv: &[String]) -> Result<u64, String> {
    let c_path = CString::new(path).map_err(|e| e.to_string())?;
    let c_argv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap_or_default())
        .collect();
    let mut p_argv: Vec<*mut libc::c_char> = c_argv.iter().map(|c| c.as_ptr().cast_mut()).collect();
    p_argv.push(std::ptr::null_mut());
    let env: Vec<CString> = ["PATH=/bin:/sbin", "HOME=/tmp", "TMPDIR=/tmp"]
        .iter()
        .map(|e| CString::new(*e).unwrap_or_default())
        .collect();
    let mut p_env: Vec<*mut libc::c_char> = env.iter().map(|c| c.as_ptr().cast_mut()).collect();
    p_env.push(std::ptr::null_mut());
    let null = c"/dev/null";
    let mut pid = 0;
    // SAFETY: Every pointer handed to posix_spawn points to a live, NUL-terminated string or
    // a NULL-terminated array of them; the file actions are initialised and destroyed here.
    let (rc, t0) = unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut fa);
        for fd in 0..3 {
            let mode = if fd == 0 {
                libc::O_RDONLY
            } else {
                libc::O_WRONLY
            };
            libc::posix_spawn_file_actions_addopen(&mut fa, fd, null.as_ptr(), mode, 0);
        }
        let t0 = now_ns();
        let rc = libc::posix_spawn(
            &mut pid,
            c_path.as_ptr(),
            &fa,
            std::ptr::null(),
            p_argv.as_ptr(),
            p_env.as_ptr(),
        );
        libc::posix_spawn_file_actions_destroy(&mut fa);
        (rc, t0)
    };
    if rc != 0 {
        return Err(format!("posix_spawn {path}: errno {rc}"));
    }
    let mut status = 0;
    // SAFETY: `status` is valid for writes.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let dt = now_ns() - t0;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(dt)
    } else {
        Err(format!("{path}: wait status {status:#x}"))
    }
}

/// The bench build's counters (module time in ns, calls, bytes read), if this is one.
fn module_counters() -> Option<(u64, u64, u64)> {
    let get = |n: &str| -> Option<u64> {
        fs::read_to_string(format!("{SYSCTL}/{n}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((
        get("bench_ns")?,
        get("bench_calls")?,
        get("bench_bytes_read")?,
    ))
}

/// Machine state for a phase: which build of the module is loaded (if any), binfmt_misc's
/// APE rule on or off.
fn enter(phase: Phase) -> Result<(), String> {
    static LOADED: std::sync::Mutex<Option<&str>> = std::sync::Mutex::new(None);
    let want = match phase {
        Phase::Module => Some(MODULE),
        Phase::Profile => Some(PROFILE_MODULE),
        Phase::Misc | Phase::Shell => None,
    };
    let mut loaded = LOADED.lock().map_err(|e| e.to_string())?;
    if *loaded != want {
        if loaded.is_some() {
            sh("rmmod", &["binfmt_ape"])?;
        }
        *loaded = None;
        if let Some(ko) = want {
            sh("insmod", &[ko])?;
        }
        *loaded = want;
    }
    let rule = if phase == Phase::Misc { "1" } else { "0" };
    fs::write(format!("{MISC}/APE"), rule).map_err(|e| format!("{MISC}/APE: {e}"))
}

fn run_phase(scenarios: &mut [Scenario], phase: Phase, iterations: usize) -> Result<(), String> {
    enter(phase)?;
    let idx: Vec<usize> = (0..scenarios.len())
        .filter(|&i| scenarios[i].phase == phase)
        .collect();
    for _ in 0..WARMUP / ROUNDS + 1 {
        for &i in &idx {
            time_exec(&scenarios[i].path, &scenarios[i].argv)?;
        }
    }
    for _ in 0..iterations {
        for &i in &idx {
            let s = &mut scenarios[i];
            let dt = time_exec(&s.path, &s.argv).map_err(|e| format!("{}: {e}", s.name))?;
            s.samples.push(dt);
        }
    }
    Ok(())
}

/// With the bench build loaded, the module's own time and bytes read per exec of each APE
/// that the module phase runs (the counters are read around each exec, and only then).
fn profile(scenarios: &mut [Scenario], iterations: usize) -> Result<(), String> {
    enter(Phase::Profile)?;
    for s in scenarios
        .iter_mut()
        .filter(|s| s.phase == Phase::Module && s.ape)
    {
        for _ in 0..iterations {
            let before = module_counters().ok_or("the bench build has no bench_* counters")?;
            time_exec(&s.path, &s.argv).map_err(|e| format!("{}: {e}", s.name))?;
            let after = module_counters().ok_or("the bench build has no bench_* counters")?;
            s.module_ns += after.0 - before.0;
            s.module_calls += after.1 - before.1;
            s.bytes_read += after.2 - before.2;
        }
    }
    Ok(())
}

/// Per-exec round trips of `workers` concurrent loops of `n` execs of `path` each.
fn concurrent(path: &str, workers: usize, n: usize) -> Vec<u64> {
    let argv = vec![path.to_string()];
    let mut pipes = Vec::new();
    for _ in 0..workers {
        let mut fds = [0; 2];
        // SAFETY: `fds` is valid for two ints.
        unsafe { libc::pipe(fds.as_mut_ptr()) };
        // SAFETY: The benchmark is single-threaded; the child only runs the loop and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut out = Vec::with_capacity(n * 8);
            for _ in 0..n {
                out.extend_from_slice(&time_exec(path, &argv).unwrap_or(0).to_le_bytes());
            }
            // SAFETY: Writing our own buffer to our own pipe, then leaving.
            unsafe {
                libc::write(fds[1], out.as_ptr().cast(), out.len());
                libc::_exit(0);
            }
        }
        // SAFETY: Closing the parent's copy of the write end.
        unsafe { libc::close(fds[1]) };
        pipes.push((pid, fds[0]));
    }
    let mut samples = Vec::new();
    for (pid, fd) in pipes {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: `chunk` is valid for writes of its length.
            let r = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            let Ok(r) = usize::try_from(r) else { break };
            if r == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..r]);
        }
        // SAFETY: Our descriptor and our child.
        unsafe {
            libc::close(fd);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        samples.extend(
            buf.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .filter(|&v| v != 0),
        );
    }
    samples
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

fn stats_json(name: &str, samples: &[u64], extra: &str) -> String {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let mean = if s.is_empty() {
        0
    } else {
        s.iter().sum::<u64>() / s.len() as u64
    };
    format!(
        "{{\"name\":\"{name}\",\"n\":{},\"median_ns\":{},\"p90_ns\":{},\"p99_ns\":{},\"mean_ns\":{mean}{extra}}}",
        s.len(),
        percentile(&s, 50),
        percentile(&s, 90),
        percentile(&s, 99)
    )
}

/// Copies of the fat fixture padded (sparse) to `size` bytes.
fn padded(size: u64, name: &str) -> Result<String, String> {
    let p = format!("/tmp/{name}.ape");
    fs::copy(FAT, &p).map_err(|e| format!("{p}: {e}"))?;
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|f| f.set_len(size))
        .map_err(|e| format!("{p}: {e}"))?;
    Ok(p)
}

fn setup() -> Result<(), String> {
    // The module loads binfmt_misc (its init asks for it); mount it and add the loader rule.
    sh("insmod", &[MODULE])?;
    sh("mount", &["-t", "binfmt_misc", "none", MISC])?;
    sh("rmmod", &["binfmt_ape"])?;
    // A first run through the shell extracts cosmopolitan's loader to $TMPDIR/.ape-1.10.
    time_exec("/bin/sh", &["sh".into(), "-c".into(), ENT_COM.into()])?;
    if fs::metadata(LOADER).is_err() {
        return Err(format!("the shell run of {ENT_COM} left no {LOADER}"));
    }
    fs::write(
        format!("{MISC}/register"),
        format!(":APE:M::MZqFpD::{LOADER}:"),
    )
    .map_err(|e| format!("register: {e}"))
}

fn bench(iterations: usize) -> Result<String, String> {
    setup()?;
    // The APE and its native twin side by side, names of one length: path lookup and the
    // payload's own output cost the same for both.
    let (ape, native) = ("/tmp/a.ape", "/tmp/n.elf");
    for (from, to) in [(FAT, ape), (NATIVE, native)] {
        fs::copy(from, to).map_err(|e| format!("{to}: {e}"))?;
    }
    let pad_1m = padded(1 << 20, "pad-1m")?;
    let pad_64m = padded(64 << 20, "pad-64m")?;
    let pad_4g = padded(4 << 30, "pad-4g")?;
    let script = SCRIPT;
    let mut sc = vec![
        scenario("native", Phase::Module, native, &[]),
        scenario("ape", Phase::Module, ape, &[]),
        scenario("ent.elf", Phase::Module, ENT_ELF, &[]),
        scenario("ent.com", Phase::Module, ENT_COM, &[]),
        scenario("script", Phase::Module, script, &[]),
        scenario("ape-1m", Phase::Module, &pad_1m, &[]),
        scenario("ape-64m", Phase::Module, &pad_64m, &[]),
        scenario("ape-4g", Phase::Module, &pad_4g, &[]),
        scenario(
            "ape-worst-window",
            Phase::Module,
            "/ape/bench/worst-window.ape",
            &[],
        ),
        scenario("native-no-module", Phase::Misc, native, &[]),
        scenario("script-no-module", Phase::Misc, script, &[]),
        scenario("ape-misc-loader", Phase::Misc, ape, &[]),
        scenario("ent.com-misc-loader", Phase::Misc, ENT_COM, &[]),
        scenario("ent.com-shell", Phase::Shell, "/bin/sh", &["-c", ENT_COM]),
    ];
    // The shell fallback is slow: fewer of those keep the run short, the median stable.
    let per_round = iterations.div_ceil(ROUNDS);
    for _ in 0..ROUNDS {
        run_phase(&mut sc, Phase::Module, per_round)?;
        run_phase(&mut sc, Phase::Misc, per_round)?;
        run_phase(&mut sc, Phase::Shell, per_round.div_ceil(4))?;
    }
    enter(Phase::Module)?;
    let n = iterations.div_ceil(2).max(10);
    let one = concurrent(ape, 1, n);
    let two = concurrent(ape, 2, n);
    profile(&mut sc, iterations.div_ceil(4).max(8))?;
    let mut rows: Vec<String> = sc
        .iter()
        .map(|s| {
            let per_call = |v: u64| v.checked_div(s.module_calls);
            let extra = match (per_call(s.module_ns), per_call(s.bytes_read)) {
                (Some(ns), Some(bytes)) => format!(",\"module_ns\":{ns},\"bytes_read\":{bytes}"),
                _ => String::new(),
            };
            stats_json(s.name, &s.samples, &extra)
        })
        .collect();
    rows.push(stats_json("ape-1-loop", &one, ""));
    rows.push(stats_json("ape-2-loops", &two, ""));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(format!(
        "{{\"arch\":\"{}\",\"kernel\":\"{}\",\"page_size\":{page},\"iterations\":{iterations},\"rounds\":{ROUNDS},\"scenarios\":[{}]}}",
        std::env::consts::ARCH,
        kernel.trim(),
        rows.join(",")
    ))
}

fn main() {
    let iterations = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    match bench(iterations) {
        Ok(json) => {
            println!("BENCH-JSON: {json}");
        }
        Err(e) => {
            println!("ape-bench: {e}");
            std::process::exit(1);
        }
    }
}
