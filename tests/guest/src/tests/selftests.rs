// SPDX-License-Identifier: GPL-2.0

//! Selftests: binfmt_ape's own kselftest, and the kernel's exec selftests, which must end the
//! same with the module loaded as without it.

use super::common::{describe, insmod, rmmod, unloaded, Check};
use super::{test, unless_builtin, Test};
use crate::exec::{run, run_as, As, Outcome, Run, Stdin};

/// binfmt_ape's kselftest (tools/testing/selftests/exec/binfmt_ape.c in the upstream series),
/// as the kernel's selftest runner would run it.
pub fn binfmt_ape() -> Test {
    test("selftest.binfmt_ape", || {
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

/// The kernel's own tools/testing/selftests/exec, without the module and with it: it starts
/// and ends unloaded.
pub fn same_without_module() -> Test {
    unless_builtin(
        "selftests.exec_same_with_and_without_module",
        exec_same_without_module,
    )
}

/// The kernel's own tools/testing/selftests/exec, built from the kernel under test. A few of
/// their cases fail in this minimal guest whatever the module does (their scripts expect
/// bash, the guest has busybox sh): what counts is that every case ends the same with
/// binfmt_ape loaded as without it.
fn exec_same_without_module() -> Check {
    unloaded()?;
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
