// SPDX-License-Identifier: GPL-2.0

//! cosmo's real APEs, `ent.com` and `pledge`: where they run, as their assimilated ELF does and
//! named by their own path; where they cannot (64 KiB pages), declined.

use super::common::{
    base, counter, describe, ent, exec_mappings, expect_eq, real_apes_run, refused, Check, LogMark,
    ENT_COM, ENT_ELF, FAT, PLEDGE,
};
use super::{test, Test};
use crate::exec::{errno_name, run, spawn, Outcome, Stdin};
use std::fs;

/// The real APEs' tests for this kernel's page size: where they cannot run, the fat fixture
/// shows the naming instead.
pub fn tests() -> Vec<Test> {
    if !real_apes_run() {
        return vec![
            test("ent.declined_align_on_large_pages", || {
                declined_align(ENT_COM)
            }),
            test("pledge.declined_align_on_large_pages", || {
                declined_align(PLEDGE)
            }),
            test("fixture.proc_exe_and_maps_name_the_ape", || {
                proc_exe_and_maps(FAT, &["--wait"])
            }),
        ];
    }
    vec![
        test("ent.output_matches_assimilated_elf", || {
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
        test("ent.proc_exe_and_maps_name_the_ape", || {
            proc_exe_and_maps(ENT_COM, &[])
        }),
        test("pledge.runs", || {
            let r = run(PLEDGE, &[PLEDGE, "-h"], Stdin::Null);
            if r.outcome == Outcome::Exit(0) && (r.out() + &r.err()).contains("usage: pledge") {
                Ok(())
            } else {
                Err(describe(&r))
            }
        }),
    ]
}

/// A running APE's /proc/PID/exe and executable mappings name the APE itself. `args` keep it
/// running until its stdin (a pipe) closes.
fn proc_exe_and_maps(path: &str, args: &[&str]) -> Check {
    let argv: Vec<&str> = std::iter::once(path).chain(args.iter().copied()).collect();
    let child =
        spawn(path, &argv, Stdin::Pipe).map_err(|e| format!("execve: {}", errno_name(e)))?;
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
