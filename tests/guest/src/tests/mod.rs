// SPDX-License-Identifier: GPL-2.0

//! The guest test plan, one module per area, run as KTAP.
//!
//! Every test has a name; the plan is printed first, each result as a KTAP line, and a failing
//! test prints what it saw as `#` diagnostics. Test names are what histories compare: a test
//! keeps its name when it moves.

mod common;
mod corpus;
mod debug;
mod doctor;
mod exec;
mod fs;
mod misc;
mod module;
mod reads;
mod real;
mod selftests;
mod setid;
mod sysctl;

use crate::exec::{errno_name, run, spawn, Outcome, Stdin};
use crate::storm;
use common::{
    builtin, counter, dmesg, exec_mappings, in_tree, insmod, kernel_log_problems, page_size, read,
    Check, ARCH, ENT_COM,
};

struct Test {
    name: String,
    body: Box<dyn FnOnce() -> Check>,
    /// Why the test does not apply to this kernel (KTAP `# SKIP`).
    skip: Option<&'static str>,
}

impl Test {
    /// Skips the test, by name, where `cond` holds, saying `why`.
    fn skip_if(mut self, cond: bool, why: &'static str) -> Self {
        if cond {
            self.skip = Some(why);
        }
        self
    }
}

/// A test that runs on every kernel.
fn test(name: impl Into<String>, body: impl FnOnce() -> Check + 'static) -> Test {
    Test {
        name: name.into(),
        body: Box::new(body),
        skip: None,
    }
}

/// A test of loading or unloading binfmt_ape or binfmt_misc: skipped, by name, where both are
/// built in.
fn unless_builtin(name: impl Into<String>, body: impl FnOnce() -> Check + 'static) -> Test {
    test(name, body).skip_if(builtin(), "binfmt_ape and binfmt_misc are built in")
}

/// A test of the set-id policy of the module built out of tree: skipped, by name, in tree.
fn unless_in_tree(name: impl Into<String>, body: impl FnOnce() -> Check + 'static) -> Test {
    test(name, body).skip_if(
        in_tree(),
        "in tree, exec's own rules apply to set-id APEs: no policy of its own",
    )
}

/// The plan: each area's tests. A test needs nothing from another but the state of the
/// module that this order gives it, and it measures what it checks (counters, the kernel log)
/// around its own actions. Order matters only where said here.
fn plan() -> Vec<Test> {
    let fix = corpus::manifest("/ape/fix");
    let cases = corpus::manifest("/ape/corpus");
    // Decided now, before anything is loaded.
    let _ = builtin();
    let debug = debug::is_debug_kernel();
    let mut v = Vec::new();
    // The debug kernel's leak check spans the run: cleared first, scanned last.
    if debug {
        v.push(debug::kmemleak_clear());
    }
    v.push(corpus::manifests_present(&fix, &cases));
    // The module's life: without it, loaded (every area's tests), then unloaded and loaded
    // again around binfmt_misc, ending unloaded for the tests that load it themselves.
    v.extend(module::loading());
    v.extend(sysctl::enabled());
    v.extend(real::tests());
    v.extend(exec::tests());
    v.extend(setid::tests());
    v.push(corpus::refusals_logged_by_name());
    v.extend(fs::tests());
    v.extend(doctor::tests());
    if debug {
        v.extend(debug::faults());
    }
    v.extend(corpus::cases(&fix, &cases));
    v.push(selftests::binfmt_ape());
    v.extend(sysctl::counters());
    v.extend(reads::tests(debug));
    v.extend(misc::tests(&fix, &cases));
    v.extend(module::reloading());
    v.push(selftests::same_without_module());
    v.push(module::storm(debug));
    if debug {
        v.push(debug::kmemleak_finds_nothing());
    }
    v.push(test("dmesg_clean", || {
        let bad = kernel_log_problems();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }));
    v
}

/// Runs the whole suite, or with `only` the tests whose names start with one of its prefixes
/// (and `insmod`, which they need): `scripts/guest.sh check PREFIX...`, for a quick look at a
/// few. Returns the exit status (0 when everything passed).
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
            println!("demo: execve failed: {}", errno_name(e));
            return 1;
        }
    };
    let mapped = exec_mappings(child.pid, &path);
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.pid))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "(already exited)".into());
    // The default demo (ent) reads stdin: give it some input now that it was inspected.
    child.feed(&std::fs::read("/ape/real/input").unwrap_or_default());
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

/// `make soak`: the storm for `seconds`, then the kernel log must be clean.
pub fn soak(seconds: u64) -> i32 {
    let b = storm::Bounds {
        execs_per_worker: u64::MAX,
        min_cycles: 100,
        until: Some(std::time::Instant::now() + std::time::Duration::from_secs(seconds)),
    };
    let r = storm::storm(2, &module::storm_programs(), &b);
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
