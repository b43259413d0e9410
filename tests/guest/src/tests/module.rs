// SPDX-License-Identifier: GPL-2.0

//! The module's life: APEs refused without it, loading it, and unloading and loading it again
//! around binfmt_misc, then the exec storm against loads and unloads.

use super::common::{
    check_case, check_payload, insmod, read, real_apes_run, refused, rmmod, sh, unloaded, ENT_COM,
    FAT, PLEDGE,
};
use super::misc::{with_rules, APE_RULES};
use super::{unless_builtin, Test};
use crate::storm;

/// Loading the module: without it a direct execve of an APE fails, whatever a shell would do.
pub fn loading() -> Vec<Test> {
    vec![
        unless_builtin("without_module.ent_com_enoexec", || refused(ENT_COM)),
        unless_builtin("without_module.fixture_enoexec", || refused(FAT)),
        unless_builtin("insmod", insmod),
        unless_builtin("loads_binfmt_misc_first", || {
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
pub fn reloading() -> Vec<Test> {
    vec![
        unless_builtin("rmmod", rmmod),
        unless_builtin("after_rmmod.misc_takes_apes", || {
            with_rules(&APE_RULES, || check_case(FAT, "exec", "sentinel"))
        }),
        unless_builtin("insmod_after_binfmt_misc", insmod),
        unless_builtin("reloaded.ahead_of_binfmt_misc", || {
            with_rules(&APE_RULES, || check_payload(FAT, "exec"))
        }),
        unless_builtin("misc_reload.unload_binfmt_misc", || {
            sh("rmmod", &["binfmt_misc"])
        }),
        unless_builtin("misc_reload.binfmt_misc_goes_ahead", || {
            sh("modprobe", &["binfmt_misc"])?;
            with_rules(&APE_RULES, || check_case(FAT, "exec", "sentinel"))
        }),
        unless_builtin("misc_reload.reloading_binfmt_ape_restores_order", || {
            rmmod()?;
            insmod()?;
            with_rules(&APE_RULES, || check_payload(FAT, "exec"))
        }),
        unless_builtin("rmmod_again", rmmod),
        unless_builtin("after_rmmod.enoexec", || refused(ENT_COM)),
    ]
}

/// Execs of APEs while the module is loaded and unloaded without pause: it ends unloaded.
pub fn storm(debug: bool) -> Test {
    unless_builtin("storm.execs_during_load_unload", move || {
        unloaded()?;
        let r = storm::storm(2, &storm_programs(), &storm_check_bounds(debug))?;
        println!("# storm: {r}");
        Ok(())
    })
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
pub fn storm_programs() -> Vec<(&'static str, &'static [&'static str], i32)> {
    let mut p: Vec<(&str, &[&str], i32)> = vec![(FAT, &["--exit", "3"], 3)];
    if real_apes_run() {
        p.push((PLEDGE, &["-h"], 0));
    }
    p
}
