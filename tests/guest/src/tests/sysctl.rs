// SPDX-License-Identifier: GPL-2.0

//! The module's controls under /proc/sys/fs/binfmt_ape: the switch `enabled`, and the
//! counters, each exec counted once, in the counter of its verdict.

use super::common::{
    counter, ent, expect_eq, read, real_apes_run, write, Check, ARCH, ENT_COM, FAT, SYSCTL,
};
use super::{test, Test};
use crate::exec::{run, Outcome, Stdin};
use crate::sys::COUNTERS;
use std::fs;

/// The switch `enabled`.
pub fn enabled() -> Vec<Test> {
    vec![
        test("sysctl.enabled_is_1", || {
            expect_eq("enabled", read(&format!("{SYSCTL}/enabled"))?, "1".into())
        }),
        test("sysctl.disable_restores_enoexec", || {
            // The real APE where it runs here, else a fixture that does.
            let ape = if real_apes_run() { ENT_COM } else { FAT };
            write(&format!("{SYSCTL}/enabled"), "0\n")?;
            let off = ent(ape).outcome;
            write(&format!("{SYSCTL}/enabled"), "1\n")?;
            let on = ent(ape).outcome;
            expect_eq("disabled", off, Outcome::Errno(libc::ENOEXEC))?;
            expect_eq("re-enabled", on, Outcome::Exit(0))
        }),
        test("sysctl.rejects_2", || {
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
pub fn counters() -> Vec<Test> {
    let mut v = vec![test("counters", each_verdict_counted_once)];
    if ARCH == "aarch64" {
        v.push(test("elf_refused.counted", || {
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
fn each_verdict_counted_once() -> Check {
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
